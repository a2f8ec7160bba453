// A small RESP load generator (like redis-benchmark) usable against any RESP
// server: N connections on one epoll thread, each sending `pipeline` copies of
// a command (or of a cycle of commands) and waiting for all replies before
// sending again. It reads every reply: errors are counted by code, and
// INSUFFICIENT refusals are checked against the units they say remained.

import AllocationEngine
import CLinux
import Foundation
import Glibc

public struct NetBenchResult: Sendable {
    public var requestsPerSecond: Double
    public var p50Micros: Double
    public var p99Micros: Double
    public var p999Micros: Double
    /// Replies that were errors (`-...`).
    public var errors: Int
    public var completed: Int
    /// Wall time of the run, and from its start to the last reply that was not an
    /// error (the sell-out's "time to sell out" when only holds are sent).
    public var elapsedSeconds: Double = 0
    public var lastSuccessSeconds: Double = 0
    /// `-INSUFFICIENT requested X, available Y` replies, and those among them with
    /// Y >= X: refused while the units asked for remained (a false refusal).
    public var refusals = 0
    public var refusalsWhileAvailable = 0
    /// Error replies by their code (the first word: `CONFLICT`, `ERR`, ...).
    public var errorCodes: [String: Int] = [:]

    /// Counts one error reply (its bytes after the `-`, line end included).
    mutating func classifyError(_ line: UnsafeBufferPointer<UInt8>) {
        errors += 1
        // The line end is one Character ("\r\n" is a single grapheme): trim by bytes.
        var end = line.count
        while end > 0 && (line[end - 1] == 13 || line[end - 1] == 10) { end -= 1 }
        let text = String(decoding: UnsafeBufferPointer(rebasing: line[0..<end]), as: UTF8.self)
        let code = String(text.prefix(while: { $0 != " " }))
        errorCodes[code, default: 0] += 1
        guard code == "INSUFFICIENT" else { return }
        refusals += 1
        // "INSUFFICIENT requested 100, available 40": both in the units format.
        let words = text.split(separator: " ")
        guard words.count == 5, words[1] == "requested", words[3] == "available",
              let requested = try? Units.parse(words[2].dropLast(words[2].hasSuffix(",") ? 1 : 0)).raw
        else { return }
        // "available 0" is not a valid Units (must be > 0): zero never covers a request.
        if let available = try? Units.parse(words[4]).raw, available >= requested { refusalsWhileAvailable += 1 }
    }
}

/// One cycle of commands, encoded as RESP with `__seq__` filled in per cycle.
struct CycleTemplate {
    /// Per command, per argument: the bytes before and after each `__seq__`.
    private let commands: [[[[UInt8]]]]
    let usesSequence: Bool

    init(_ cycle: [[String]]) {
        commands = cycle.map { command in
            command.map { arg in arg.components(separatedBy: "__seq__").map { Array($0.utf8) } }
        }
        usesSequence = commands.contains { $0.contains { $0.count > 1 } }
    }

    func encode(sequence: Int, into out: inout [UInt8]) {
        let digits = Array(String(sequence).utf8)
        for command in commands {
            out.append(contentsOf: Array("*\(command.count)\r\n".utf8))
            for parts in command {
                let length = parts.reduce(0) { $0 + $1.count } + (parts.count - 1) * digits.count
                out.append(contentsOf: Array("$\(length)\r\n".utf8))
                for (k, part) in parts.enumerated() {
                    if k > 0 { out.append(contentsOf: digits) }
                    out.append(contentsOf: part)
                }
                out.append(contentsOf: [13, 10])
            }
        }
    }
}

public enum NetBench {
    /// Runs the load for `seconds` and reports throughput and the latency of each
    /// round trip (one pipeline batch: send to last reply), in microseconds.
    /// Returns zeros if no connection could be made.
    public static func runPingLoad(
        port: Int, connections: Int, pipeline: Int, seconds: Double,
        command: [String] = ["PING"], host: String = "127.0.0.1"
    ) -> (requestsPerSecond: Double, p50Micros: Double, p99Micros: Double, p999Micros: Double) {
        let r = runLoad(port: port, connections: connections, pipeline: pipeline, seconds: seconds, commands: [command], host: host)
        return (r.requestsPerSecond, r.p50Micros, r.p99Micros, r.p999Micros)
    }

    /// Like `runPingLoad`, with several command variants: each round trip of a
    /// connection sends the next variant (connection `i` starts at variant `i`),
    /// so e.g. 1,000 deals can be spread over 50 connections.
    public static func runLoad(
        port: Int, connections: Int, pipeline: Int, seconds: Double,
        commands: [[String]], host: String = "127.0.0.1"
    ) -> NetBenchResult {
        runCycles(port: port, connections: connections, pipeline: pipeline, seconds: seconds,
                  cycles: commands.map { [$0] }, host: host)
    }

    /// The general form: each variant is a *cycle* of commands sent back to back
    /// (`HOLD ... ID h__seq__`, `ALLOCATE h__seq__ ID a__seq__`, `APPROVE a__seq__`);
    /// a round trip carries `pipeline` cycles. `__seq__` in an argument becomes the
    /// cycle's number, unique in the run (1, 2, ...), so every cycle names its own
    /// holds. With `maxCycles` the run stops after that many cycles were sent (the
    /// sell-out's fixed demand), `seconds` then only bounds it.
    public static func runCycles(
        port: Int, connections: Int, pipeline: Int, seconds: Double, maxCycles: Int? = nil,
        cycles variants: [[[String]]], host: String = "127.0.0.1"
    ) -> NetBenchResult {
        var result = NetBenchResult(requestsPerSecond: 0, p50Micros: 0, p99Micros: 0, p999Micros: 0, errors: 0, completed: 0)
        let pipeline = max(1, pipeline)
        guard !variants.isEmpty, variants.allSatisfy({ !$0.isEmpty }) else { return result }
        let templates = variants.map(CycleTemplate.init)
        let commandsPerCycle = variants.map(\.count)
        // Variants without `__seq__` are the same bytes every time: encode them once.
        let fixed: [[UInt8]?] = templates.map { t in
            guard !t.usesSequence else { return nil }
            var request: [UInt8] = []
            for _ in 0..<pipeline { t.encode(sequence: 0, into: &request) }
            return request
        }

        struct Client {
            var fd: Int32
            var input: [UInt8] = []
            var awaiting = 0
            var sentAt: UInt64 = 0
            var variant = 0
        }
        let epfd = epoll_create1(SysFlags.cloexec)
        guard epfd >= 0 else { return result }
        defer { close(epfd) }
        var clients: [Client] = []
        defer { for c in clients { close(c.fd) } }
        for i in 0..<max(1, connections) {
            guard let fd = connectBlocking(host: host, port: port) else { continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | SysFlags.nonblock)
            setIntOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            _ = epollControl(epfd, EPOLL_CTL_ADD, fd, events: SysFlags.epollIn, token: UInt64(i))
            clients.append(Client(fd: fd, variant: i % variants.count))
        }
        guard !clients.isEmpty else { return result }
        var latencies: [UInt32] = []
        latencies.reserveCapacity(1 << 20)
        var completed = 0
        var sentCycles = 0
        var nextSequence = 1
        var lastSuccess: UInt64 = 0
        var scratchRequest: [UInt8] = []

        /// Sends the connection's next round trip; false if there is nothing left
        /// to send (maxCycles reached) or the socket failed.
        func send(_ index: Int) -> Bool {
            let batch = maxCycles.map { min(pipeline, $0 - sentCycles) } ?? pipeline
            guard batch > 0 else { return false }
            let v = clients[index].variant
            clients[index].variant = (v + 1) % variants.count
            clients[index].sentAt = monotonicNanos()
            clients[index].awaiting = batch * commandsPerCycle[v]
            sentCycles += batch
            let request: [UInt8]
            if let bytes = fixed[v], batch == pipeline {
                request = bytes
            } else {
                scratchRequest.removeAll(keepingCapacity: true)
                for _ in 0..<batch {
                    templates[v].encode(sequence: nextSequence, into: &scratchRequest)
                    nextSequence += 1
                }
                request = scratchRequest
            }
            var off = 0
            while off < request.count {
                let n = request.withUnsafeBytes { Glibc.send(clients[index].fd, $0.baseAddress! + off, $0.count - off, SysFlags.msgNoSignal) }
                if n > 0 { off += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) {
                    var p = pollfd(fd: clients[index].fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 100)
                    continue
                }
                clients[index].awaiting = 0
                return false
            }
            return true
        }

        let start = monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        for i in clients.indices { _ = send(i) }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { scratch.deallocate() }
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var live = clients.count
        var stopping = false
        while live > 0 {
            let nowNanos = monotonicNanos()
            if nowNanos >= end { stopping = true }
            let busy = clients.contains(where: { $0.awaiting > 0 && $0.fd >= 0 })
            if !busy && (stopping || maxCycles.map({ sentCycles >= $0 }) == true) { break }
            let n = epoll_wait(epfd, &events, 256, 100)
            if n < 0 { if errno == EINTR { continue }; break }
            if stopping && monotonicNanos() > end + 2_000_000_000 { break }
            for e in 0..<Int(n) {
                let i = Int(events[e].data.u64)
                let fd = clients[i].fd
                let r = read(fd, scratch.baseAddress, scratch.count)
                if r <= 0 {
                    if r < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                    _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
                    clients[i].awaiting = 0
                    live -= 1
                    continue
                }
                clients[i].input.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<r]))
                var pos = 0
                var succeeded = false
                let got: Int = clients[i].input.withUnsafeBufferPointer { buf in
                    var count = 0
                    while count < clients[i].awaiting, let next = skipReply(buf, from: pos) {
                        if buf[pos] == UInt8(ascii: "-") {
                            result.classifyError(UnsafeBufferPointer(rebasing: buf[(pos + 1)..<next]))
                        } else {
                            succeeded = true
                        }
                        pos = next
                        count += 1
                    }
                    return count
                }
                if pos > 0 { clients[i].input.removeSubrange(0..<pos) }
                clients[i].awaiting -= got
                completed += got
                let t = monotonicNanos()
                if succeeded { lastSuccess = t }
                if clients[i].awaiting == 0 {
                    latencies.append(UInt32(min((t - clients[i].sentAt) / 1000, UInt64(UInt32.max))))
                    if t < end { _ = send(i) }
                }
            }
        }
        let elapsed = Double(monotonicNanos() - start) / 1e9
        latencies.sort()
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            let idx = min(latencies.count - 1, Int(Double(latencies.count) * p))
            return Double(latencies[idx])
        }
        result.requestsPerSecond = Double(completed) / max(elapsed, 1e-9)
        result.p50Micros = percentile(0.50)
        result.p99Micros = percentile(0.99)
        result.p999Micros = percentile(0.999)
        result.completed = completed
        result.elapsedSeconds = elapsed
        result.lastSuccessSeconds = lastSuccess > start ? Double(lastSuccess - start) / 1e9 : 0
        return result
    }

    /// Index just after one complete RESP reply starting at `pos`, or nil if the
    /// buffer does not hold it yet (also the soak benchmark's).
    public static func skipReply(_ buf: UnsafeBufferPointer<UInt8>, from pos: Int) -> Int? {
        guard pos < buf.count else { return nil }
        var lineEnd = pos
        while lineEnd + 1 < buf.count && !(buf[lineEnd] == 13 && buf[lineEnd + 1] == 10) { lineEnd += 1 }
        guard lineEnd + 1 < buf.count else { return nil }
        let after = lineEnd + 2
        switch buf[pos] {
        case UInt8(ascii: "$"), UInt8(ascii: "="), UInt8(ascii: "!"):
            guard let n = parseDecimalInt(UnsafeBufferPointer(rebasing: buf[(pos + 1)..<lineEnd])) else { return nil }
            if n < 0 { return after }
            return after + n + 2 <= buf.count ? after + n + 2 : nil
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            guard var n = parseDecimalInt(UnsafeBufferPointer(rebasing: buf[(pos + 1)..<lineEnd])) else { return nil }
            if buf[pos] == UInt8(ascii: "%") || buf[pos] == UInt8(ascii: "|") { n *= 2 }
            var p = after
            if n > 0 {
                for _ in 0..<n {
                    guard let next = skipReply(buf, from: p) else { return nil }
                    p = next
                }
            }
            return p
        default:
            return after
        }
    }

    static func connectBlocking(host: String, port: Int) -> Int32? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(first) }
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let ai = current {
            current = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | SysFlags.cloexec, 0)
            if fd < 0 { continue }
            if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
            close(fd)
        }
        return nil
    }
}
