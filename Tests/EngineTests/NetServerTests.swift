import WAL
import Dispatch
import Foundation
import Glibc
import Synchronization
import Testing
@testable import EngineServer

/// A toy handler: PING, ECHO, INCR, SLOW ms (completes later from another
/// thread), BIG n (n-byte reply), QUIT, HELLO 3, WHO (session info).
final class ToyHandler: RequestHandler {
    let counters = Locked<[String: Int]>([:])
    /// Session ids with a batch outstanding: `handle` must never overlap for one.
    let outstanding = Locked<Set<UInt64>>([])
    let overlaps = Atomic<Int>(0)

    func handle(_ commands: [RESPCommand], session: Session,
                complete: @escaping @Sendable ([UInt8], Bool) -> Void) {
        let id = session.id
        if !outstanding.withLock({ $0.insert(id).inserted }) { overlaps.add(1, ordering: .relaxed) }
        var e = RESPEncoder(protocolVersion: session.protocolVersion)
        var delayMillis = 0
        var close = false
        for c in commands {
            switch c.name {
            case "PING":
                if c.count > 1 { e.bulk(c.bytes(at: 1)) } else { e.simple("PONG") }
            case "ECHO":
                e.bulk(c.bytes(at: 1))
            case "INCR":
                let key = c.string(at: 1)
                let v = counters.withLock { d -> Int in d[key, default: 0] += 1; return d[key]! }
                e.integer(v)
            case "SLOW":
                delayMillis += c.int(at: 1) ?? 10
                e.simple("SLOW-DONE")
            case "BIG":
                e.bulk([UInt8](repeating: 120, count: c.int(at: 1) ?? 1))
            case "HELLO":
                session.protocolVersion = c.int(at: 1) ?? 2
                e.protocolVersion = session.protocolVersion
                e.mapHeader(1)
                e.bulk("proto")
                e.integer(session.protocolVersion)
            case "WHO":
                e.bulk("\(session.remoteAddress) \(session.isLoopback) \(session.id)")
            case "QUIT":
                e.simple("OK")
                close = true
            default:
                e.error(code: "ERR", message: "unknown command '\(c.string(at: 0))'")
            }
            if close { break }
        }
        let bytes = e.bytes
        let shouldClose = close
        let finish: @Sendable () -> Void = { [self] in
            _ = self.outstanding.withLock { $0.remove(id) }
            complete(bytes, shouldClose)
        }
        if delayMillis > 0 {
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delayMillis), execute: finish)
        } else {
            finish()
        }
    }
}

/// A blocking test client with a receive timeout.
struct TestClient {
    let fd: Int32

    init(port: Int, host: String = "127.0.0.1", receiveBuffer: Int32? = nil) throws {
        guard let fd = NetBench.connectBlocking(host: host, port: port) else {
            throw NetError.systemCall("connect", errno: errno)
        }
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if let size = receiveBuffer { setIntOption(fd, SOL_SOCKET, SO_RCVBUF, size) }
        self.fd = fd
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads until `count` complete replies arrived (or EOF/timeout).
    func replies(_ count: Int) -> [String] {
        var buffer: [UInt8] = []
        var out: [String] = []
        var pos = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < count {
            let next = buffer.withUnsafeBufferPointer { NetBench.skipReply($0, from: pos) }
            if let next {
                out.append(String(decoding: buffer[pos..<next], as: UTF8.self))
                pos = next
                continue
            }
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            buffer.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Reads everything until the server closes; nil on timeout.
    func readToEOF() -> String? {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { return String(decoding: all, as: UTF8.self) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET { return String(decoding: all, as: UTF8.self) }
                return nil
            }
            all.append(contentsOf: chunk[0..<n])
        }
    }

    func close() { _ = Glibc.close(fd) }
}

private func withServer(
    limits: NetLimits = NetLimits(), loops: Int = 2, host: String = "127.0.0.1",
    _ body: (EventLoopServer, ToyHandler, Int) throws -> Void
) throws {
    let handler = ToyHandler()
    let server = try EventLoopServer(
        config: ServerConfig(host: host, port: 0, loops: loops, limits: limits), handler: handler)
    try server.start()
    defer { server.shutdown(gracefulTimeoutSeconds: 1) }
    try body(server, handler, server.boundPort)
}

private func waitUntil(_ seconds: Double = 3, _ condition: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

@Suite struct NetServerTests {
    @Test func pingInlineAndResp() throws {
        try withServer { server, _, port in
            let c = try TestClient(port: port)
            defer { c.close() }
            c.send("PING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhe\r\no\r\nPING \"a b\"\n")
            #expect(c.replies(3) == ["+PONG\r\n", "$5\r\nhe\r\no\r\n", "$3\r\na b\r\n"])
            #expect(server.stats.commandsProcessed >= 3)
        }
    }

    @Test func pipeliningOrderAcrossSyncAndAsyncBatches() throws {
        try withServer { _, handler, port in
            let c = try TestClient(port: port)
            defer { c.close() }
            var expected: [String] = []
            var text = ""
            var n = 0
            for round in 0..<20 {
                text += "SLOW \(round % 3 == 0 ? 15 : 0)\r\n"
                expected.append("+SLOW-DONE\r\n")
                for _ in 0..<5 {
                    n += 1
                    text += "INCR k\r\n"
                    expected.append(":\(n)\r\n")
                }
                text += "*2\r\n$4\r\nECHO\r\n$\(String(round).count)\r\n\(round)\r\n"
                expected.append("$\(String(round).count)\r\n\(round)\r\n")
            }
            // Send in pieces so later commands arrive while a batch is outstanding.
            let bytes = Array(text.utf8)
            for chunk in stride(from: 0, to: bytes.count, by: 37) {
                c.send(Array(bytes[chunk..<min(chunk + 37, bytes.count)]))
                if chunk % 5 == 0 { usleep(1000) }
            }
            #expect(c.replies(expected.count) == expected)
            #expect(handler.overlaps.load(ordering: .relaxed) == 0)
        }
    }

    @Test func manyClients() throws {
        try withServer { server, _, port in
            var clients: [TestClient] = []
            defer { clients.forEach { $0.close() } }
            for _ in 0..<200 { clients.append(try TestClient(port: port)) }
            for round in 1...5 {
                for (i, c) in clients.enumerated() { c.send("INCR c\(i)\r\nPING\r\n") }
                for c in clients { #expect(c.replies(2) == [":\(round)\r\n", "+PONG\r\n"]) }
            }
            #expect(server.stats.connectedClients == 200)
            #expect(server.stats.totalConnections == 200)
        }
    }

    @Test func slowReaderIsDisconnectedOthersServed() throws {
        let limits = NetLimits(maxOutputBufferBytes: 256 * 1024)
        try withServer(limits: limits, loops: 1) { server, _, port in
            let slow = try TestClient(port: port, receiveBuffer: 4096)
            let fast = try TestClient(port: port)
            defer { slow.close(); fast.close() }
            slow.send(String(repeating: "BIG 65536\r\n", count: 400))   // ~26 MB of replies
            for i in 0..<50 {
                fast.send("ECHO \(i)\r\n")
                #expect(fast.replies(1) == ["$\(String(i).count)\r\n\(i)\r\n"])
            }
            #expect(waitUntil { server.stats.outputBufferDisconnects == 1 })
            #expect(waitUntil { server.stats.connectedClients == 1 })
            fast.send("PING\r\n")
            #expect(fast.replies(1) == ["+PONG\r\n"])
        }
    }

    @Test func protocolErrorClosesOnlyThatConnection() throws {
        let log = Locked<[String]>([])
        let handler = ToyHandler()
        let server = try EventLoopServer(
            config: ServerConfig(port: 0, loops: 2, logger: { line in log.withLock { $0.append(line) } }),
            handler: handler)
        try server.start()
        defer { server.shutdown(gracefulTimeoutSeconds: 1) }
        let good = try TestClient(port: server.boundPort)
        let bad = try TestClient(port: server.boundPort)
        let bad2 = try TestClient(port: server.boundPort)
        defer { good.close(); bad.close(); bad2.close() }
        bad.send("PING\r\n*1\r\n$-5\r\nPING\r\n")
        #expect(bad.readToEOF() == "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n")
        bad2.send([42, 0xFF, 0x00, 0x13, 13, 10])
        #expect(bad2.readToEOF() == "-ERR Protocol error: invalid multibulk length\r\n")
        good.send("PING\r\n")
        #expect(good.replies(1) == ["+PONG\r\n"])
        #expect(server.stats.protocolErrors == 2)
        #expect(log.withLock { $0.contains { $0.contains("protocol error") } })
    }

    @Test func lineThatNeverEnds() throws {
        try withServer(limits: NetLimits(maxInlineLength: 1024)) { server, _, port in
            let c = try TestClient(port: port)
            defer { c.close() }
            c.send(String(repeating: "a", count: 600))
            usleep(20_000)
            c.send(String(repeating: "a", count: 600))
            #expect(c.readToEOF() == "-ERR Protocol error: too big inline request\r\n")
            let other = try TestClient(port: port)
            defer { other.close() }
            other.send("PING\r\n")
            #expect(other.replies(1) == ["+PONG\r\n"])
        }
    }

    @Test func quitClosesAfterReply() throws {
        try withServer { _, _, port in
            let c = try TestClient(port: port)
            defer { c.close() }
            c.send("PING\r\nQUIT\r\nPING\r\n")
            #expect(c.readToEOF() == "+PONG\r\n+OK\r\n")
        }
    }

    @Test func halfClosedClientStillGetsReplies() throws {
        try withServer { _, _, port in
            let c = try TestClient(port: port)
            defer { c.close() }
            c.send("PING\r\nSLOW 20\r\nECHO x\r\n")
            shutdown(c.fd, Int32(SHUT_WR))
            #expect(c.readToEOF() == "+PONG\r\n+SLOW-DONE\r\n$1\r\nx\r\n")
        }
    }

    @Test func idleTimeout() throws {
        try withServer(limits: NetLimits(idleTimeoutSeconds: 0.2)) { server, _, port in
            let c = try TestClient(port: port)
            defer { c.close() }
            c.send("PING\r\n")
            #expect(c.replies(1) == ["+PONG\r\n"])
            let start = Date()
            #expect(c.readToEOF() == "")
            #expect(Date().timeIntervalSince(start) >= 0.15)
            #expect(server.stats.idleDisconnects == 1)
        }
    }

    @Test func gracefulShutdownWaitsForInFlightBatch() throws {
        let handler = ToyHandler()
        let server = try EventLoopServer(config: ServerConfig(port: 0, loops: 2), handler: handler)
        try server.start()
        let port = server.boundPort
        let c = try TestClient(port: port)
        let idle = try TestClient(port: port)
        defer { c.close(); idle.close() }
        c.send("SLOW 300\r\n")
        usleep(50_000)
        let start = Date()
        server.shutdown(gracefulTimeoutSeconds: 5)
        let took = Date().timeIntervalSince(start)
        #expect(took >= 0.2 && took < 3)
        #expect(c.readToEOF() == "+SLOW-DONE\r\n")
        #expect(idle.readToEOF() == "")
        // The port is released.
        #expect(NetBench.connectBlocking(host: "127.0.0.1", port: port) == nil)
    }

    @Test func addressInUseNamesThePort() throws {
        try withServer { _, handler, port in
            let second = try EventLoopServer(config: ServerConfig(port: port, loops: 1), handler: handler)
            #expect(throws: NetError.addressInUse(host: "127.0.0.1", port: port)) { try second.start() }
            let message = "\(NetError.addressInUse(host: "127.0.0.1", port: port))"
            #expect(message.contains("\(port)"))
        }
    }

    @Test func maxConnectionsRejects() throws {
        try withServer(limits: NetLimits(maxConnections: 2)) { server, _, port in
            let a = try TestClient(port: port)
            let b = try TestClient(port: port)
            defer { a.close(); b.close() }
            a.send("PING\r\n"); b.send("PING\r\n")
            #expect(a.replies(1) == ["+PONG\r\n"])
            #expect(b.replies(1) == ["+PONG\r\n"])
            let c = try TestClient(port: port)
            defer { c.close() }
            #expect(c.readToEOF() == "-ERR max number of clients reached\r\n")
            #expect(server.stats.rejectedConnections == 1)
        }
    }

    @Test func sessionInfoAndResp3() throws {
        try withServer { _, _, port in
            let c = try TestClient(port: port)
            defer { c.close() }
            c.send("WHO\r\nHELLO 3\r\nPING\r\n")
            let r = c.replies(3)
            #expect(r.count == 3)
            #expect(r.first?.contains("127.0.0.1:") == true)
            #expect(r.first?.contains(" true ") == true)
            #expect(r.dropFirst().first == "%1\r\n$5\r\nproto\r\n:3\r\n")
        }
    }

    @Test func ipv6LoopbackIsLoopback() throws {
        let handler = ToyHandler()
        let server = try EventLoopServer(config: ServerConfig(host: "::1", port: 0, loops: 1), handler: handler)
        do { try server.start() } catch { return }   // no IPv6 on this host
        defer { server.shutdown(gracefulTimeoutSeconds: 1) }
        let c = try TestClient(port: server.boundPort, host: "::1")
        defer { c.close() }
        c.send("WHO\r\n")
        let r = c.replies(1)
        #expect(r.first?.contains("[::1]:") == true)
        #expect(r.first?.contains(" true ") == true)
    }

    @Test func redisCLIPing() throws {
        let path = "/usr/bin/redis-cli"
        guard FileManager.default.isExecutableFile(atPath: path) else { return }
        try withServer { _, _, port in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = ["-p", String(port), "PING"]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            p.waitUntilExit()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "PONG")
        }
    }

    @Test func redisPyClient() throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else { return }
        try withServer { _, _, port in
            let script = """
            import sys
            try:
                import redis
            except ImportError:
                print("SKIP"); sys.exit(0)
            r = redis.Redis(port=\(port), socket_timeout=20)
            assert r.ping() is True
            assert r.echo("héllo wörld") == "héllo wörld".encode()
            p = r.pipeline(transaction=False)
            for _ in range(100): p.execute_command("INCR", "py")
            assert p.execute() == list(range(1, 101))
            print("OK")
            """
            let p = Process()
            p.executableURL = URL(fileURLWithPath: python)
            p.arguments = ["-c", script]
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            p.waitUntilExit()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(out.hasSuffix("OK\n") || out == "SKIP\n", "\(out)")
        }
    }

    @Test func netBenchAgainstToyServer() throws {
        try withServer { _, _, port in
            let r = NetBench.runPingLoad(port: port, connections: 4, pipeline: 4, seconds: 0.2)
            #expect(r.requestsPerSecond > 1000)
            #expect(r.p50Micros > 0)
            let e = NetBench.runPingLoad(port: port, connections: 2, pipeline: 1, seconds: 0.1, command: ["ECHO", "hi"])
            #expect(e.requestsPerSecond > 100)
        }
    }
}
