import AllocationEngine
import Foundation
import Glibc
import Synchronization
import Testing
import WAL
@testable import EngineServer

// Helpers for the server (network protocol) tests: the real EngineRequestHandler
// in front of a DurableEngine in a temp directory, an EventLoopServer on port 0,
// and a blocking RESP client whose calls run on their own threads so a test
// never blocks a Swift-concurrency pool thread the engine's tasks need.

/// Runs blocking work on a fresh thread and awaits its result.
func srvBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
        let t = Thread { c.resume(with: Result { try body() }) }
        t.stackSize = 1 << 20
        t.start()
    }
}

func srvBlocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
        let t = Thread { c.resume(returning: body()) }
        t.stackSize = 1 << 20
        t.start()
    }
}

/// A decoded RESP2/RESP3 reply.
indirect enum Reply: Equatable, Sendable, CustomStringConvertible {
    case simple(String)
    case error(String)
    case int(Int)
    case bulk(String)
    case null
    case array([Reply])
    /// RESP3 `%`: keys and values alternating.
    case map([Reply])
    case other(String)

    var description: String {
        switch self {
        case .simple(let s): "+\(s)"
        case .error(let s): "-\(s)"
        case .int(let i): ":\(i)"
        case .bulk(let s): "\"\(s)\""
        case .null: "(nil)"
        case .array(let a): "[\(a.map(\.description).joined(separator: ", "))]"
        case .map(let a): "%{\(a.map(\.description).joined(separator: ", "))}"
        case .other(let s): "?\(s)"
        }
    }

    var string: String? {
        switch self {
        case .simple(let s), .bulk(let s): s
        default: nil
        }
    }
    var errorCode: String? {
        guard case .error(let s) = self else { return nil }
        return String(s.prefix { $0 != " " })
    }
    var isError: Bool { errorCode != nil }
    var intValue: Int? { if case .int(let i) = self { return i } else { return nil } }
    var elements: [Reply]? {
        switch self {
        case .array(let a), .map(let a): a
        default: nil
        }
    }
    /// Field/value pairs of a map (RESP3) or a flat array (RESP2) as a dictionary; null values are absent.
    var fields: [String: String]? {
        guard let e = elements, e.count % 2 == 0 else { return nil }
        var d: [String: String] = [:]
        for k in stride(from: 0, to: e.count, by: 2) {
            guard let key = e[k].string else { return nil }
            if let v = e[k + 1].string { d[key] = v } else if let i = e[k + 1].intValue { d[key] = String(i) }
        }
        return d
    }
    /// A `*.LIST` page: its next cursor and rows (each as fields).
    var page: (cursor: String, rows: [[String: String]])? {
        guard let e = elements, e.count == 2, let c = e[0].string, let rows = e[1].elements else { return nil }
        return (c, rows.compactMap(\.fields))
    }
    /// Field names in order (keys of a map / flat array).
    var fieldNames: [String] {
        guard let e = elements else { return [] }
        return stride(from: 0, to: e.count, by: 2).compactMap { e[$0].string }
    }
    /// The value of `name` as a reply (to tell a null apart from a missing field).
    func value(_ name: String) -> Reply? {
        guard let e = elements else { return nil }
        for k in stride(from: 0, to: e.count - 1, by: 2) where e[k].string == name { return e[k + 1] }
        return nil
    }
}

enum ReplyParser {
    /// Parses one reply from `buf[pos...]`; nil when incomplete.
    static func parse(_ buf: [UInt8], _ pos: Int) -> (Reply, Int)? {
        guard pos < buf.count else { return nil }
        var end = pos
        while end + 1 < buf.count && !(buf[end] == 13 && buf[end + 1] == 10) { end += 1 }
        guard end + 1 < buf.count else { return nil }
        let line = String(decoding: buf[(pos + 1)..<end], as: UTF8.self)
        let next = end + 2
        switch buf[pos] {
        case UInt8(ascii: "+"): return (.simple(line), next)
        case UInt8(ascii: "-"): return (.error(line), next)
        case UInt8(ascii: ":"): return (.int(Int(line) ?? Int.min), next)
        case UInt8(ascii: "_"): return (.null, next)
        case UInt8(ascii: "#"), UInt8(ascii: ","): return (.other(line), next)
        case UInt8(ascii: "$"):
            let n = Int(line) ?? -1
            if n < 0 { return (.null, next) }
            guard next + n + 2 <= buf.count else { return nil }
            return (.bulk(String(decoding: buf[next..<(next + n)], as: UTF8.self)), next + n + 2)
        case UInt8(ascii: "*"), UInt8(ascii: "%"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            let n = Int(line) ?? -1
            if n < 0 { return (.null, next) }
            let isMap = buf[pos] == UInt8(ascii: "%")
            var items: [Reply] = []
            var p = next
            for _ in 0..<(isMap ? 2 * n : n) {
                guard let (r, q) = parse(buf, p) else { return nil }
                items.append(r)
                p = q
            }
            return (isMap ? .map(items) : .array(items), p)
        default:
            return (.other(line), next)
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
func respCommand(_ args: [String]) -> [UInt8] {
    var out = Array("*\(args.count)\r\n".utf8)
    for a in args {
        out += Array("$\(a.utf8.count)\r\n".utf8)
        out += Array(a.utf8)
        out += [13, 10]
    }
    return out
}

/// A blocking RESP client (use its async methods from tests).
final class SrvClient: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var pos = 0
    private let lock = NSLock()

    init(port: Int, receiveBuffer: Int32? = nil, timeoutSeconds: Int = 30) throws {
        guard let fd = NetBench.connectBlocking(host: "127.0.0.1", port: port) else {
            throw NetError.systemCall("connect", errno: errno)
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if let size = receiveBuffer {
            var v = size
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, socklen_t(MemoryLayout<Int32>.size))
        }
        self.fd = fd
    }

    /// Wraps an already connected socket.
    init(adopting fd: Int32, timeoutSeconds: Int = 30) {
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { _ = Glibc.close(fd) }

    // MARK: blocking primitives

    /// Sends everything; false when the peer is gone or the send timed out.
    @discardableResult
    func sendSync(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            if pos > 1 << 20 { buffer.removeFirst(pos); pos = 0 }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
    }

    /// Reads `count` replies (fewer on EOF/timeout).
    func readSync(_ count: Int) -> [Reply] {
        lock.lock(); defer { lock.unlock() }
        var out: [Reply] = []
        while out.count < count {
            if let (r, next) = ReplyParser.parse(buffer, pos) {
                out.append(r)
                pos = next
                continue
            }
            if !fill() { break }
        }
        return out
    }

    /// Reads `count` replies as their raw wire text.
    func readRawSync(_ count: Int) -> [String] {
        lock.lock(); defer { lock.unlock() }
        var out: [String] = []
        while out.count < count {
            if let (_, next) = ReplyParser.parse(buffer, pos) {
                out.append(String(decoding: buffer[pos..<next], as: UTF8.self))
                pos = next
                continue
            }
            if !fill() { break }
        }
        return out
    }

    /// Reads until EOF (what is left, raw); nil on timeout.
    func readToEOFSync() -> String? {
        lock.lock(); defer { lock.unlock() }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET { break }
                return nil
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
        let rest = String(decoding: buffer[pos...], as: UTF8.self)
        pos = buffer.count
        return rest
    }

    // MARK: async API

    /// One command as a RESP array; its reply.
    func call(_ args: String...) async -> Reply { await call(args) }
    func call(_ args: [String]) async -> Reply {
        await srvBlocking { () -> Reply in
            guard self.sendSync(respCommand(args)) else { return .other("send failed") }
            return self.readSync(1).first ?? .other("no reply")
        }
    }
    /// Raw bytes in, `count` decoded replies out.
    func send(_ text: String, replies count: Int) async -> [Reply] {
        await send(Array(text.utf8), replies: count)
    }
    func send(_ bytes: [UInt8], replies count: Int) async -> [Reply] {
        await srvBlocking { () -> [Reply] in
            self.sendSync(bytes)
            return self.readSync(count)
        }
    }
    func sendRaw(_ text: String, replies count: Int) async -> [String] {
        await srvBlocking { () -> [String] in
            self.sendSync(Array(text.utf8))
            return self.readRawSync(count)
        }
    }
    /// Sends without reading.
    @discardableResult
    func write(_ bytes: [UInt8]) async -> Bool { await srvBlocking { self.sendSync(bytes) } }
    func readToEOF() async -> String? { await srvBlocking { self.readToEOFSync() } }
}

/// A running server with the real handler over a durable engine.
final class SrvHarness: @unchecked Sendable {
    let dataDir: String
    let durable: DurableEngine
    let handler: EngineRequestHandler
    let server: EventLoopServer
    let settings: EngineRequestHandler.Settings
    let replication: Replication
    var port: Int { server.boundPort }
    var engine: Engine { durable.engine }
    private let ownsDir: Bool
    private var stopped = false

    struct Options {
        var access: AccessMode = .loopbackAdmin
        var limits = NetLimits()
        var loops = 2
        var mode: DurabilityMode = .strict
        var io: (any FileIO)?
        var engine = EngineConfig()
        var segmentBytes = 1 << 20
        /// Start as a replica of this port on loopback.
        var replicaOf: Int?
        var minReplicas = 0
        var replicaAckTimeoutSeconds: Double = 10
        var retention: RetentionPolicy?
        /// `serve --prune-log`: segments covered by the oldest kept snapshot are deleted.
        var pruneLog = false
        /// `serve --repl-backlog-mb`, in bytes.
        var replBacklogBytes = 16 << 20
    }

    private init(dataDir: String, ownsDir: Bool, durable: DurableEngine, handler: EngineRequestHandler,
                 server: EventLoopServer, settings: EngineRequestHandler.Settings, replication: Replication) {
        self.replication = replication
        self.dataDir = dataDir
        self.ownsDir = ownsDir
        self.durable = durable
        self.handler = handler
        self.server = server
        self.settings = settings
    }

    static func newTempDir() -> String {
        let path = NSTemporaryDirectory() + "srvtest-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func start(dataDir: String? = nil, _ options: Options = Options()) async throws -> SrvHarness {
        let dir = dataDir ?? newTempDir()
        var config = DurableConfig(dataDir: dir)
        config.mode = options.mode
        config.engine = options.engine
        config.snapshotEverySeconds = 0
        config.snapshotEveryRecords = 0
        // Segments are preallocated; small ones keep the tests quick.
        config.segmentBytes = options.segmentBytes
        config.startAsReplica = options.replicaOf != nil
        config.minReplicasToWrite = options.minReplicas
        config.replicaAckTimeoutSeconds = options.replicaAckTimeoutSeconds
        if let r = options.retention { config.retention = r }
        config.pruneLog = options.pruneLog
        let durable = if let io = options.io {
            try await DurableEngine.open(config, io: io)
        } else {
            try await DurableEngine.open(config)
        }
        var s = EngineRequestHandler.Settings()
        s.access = options.access
        s.dataDir = dir
        s.durability = options.mode.rawValue
        var replicationSettings = Replication.Settings()
        replicationSettings.backlogBytes = options.replBacklogBytes
        let replication = Replication(durable: durable, settings: replicationSettings, log: { _ in })
        if options.replicaOf == nil { try replication.startAsPrimary() }
        let handler = EngineRequestHandler(engine: durable.engine, durable: durable, settings: s, replication: replication)
        let server = try EventLoopServer(
            config: ServerConfig(host: "127.0.0.1", port: 0, loops: options.loops, limits: options.limits), handler: handler)
        try server.start()
        handler.attach(statsFrom: server)
        replication.setListeningPort(server.boundPort)
        if let p = options.replicaOf { await replication.replicate(from: "127.0.0.1", port: p) }
        return SrvHarness(dataDir: dir, ownsDir: dataDir == nil, durable: durable, handler: handler, server: server, settings: s,
                          replication: replication)
    }

    func client(receiveBuffer: Int32? = nil) throws -> SrvClient { try SrvClient(port: port, receiveBuffer: receiveBuffer) }

    /// Stops the server and closes the engine (the data directory stays).
    func stop() async {
        guard !stopped else { return }
        stopped = true
        let server = self.server
        await srvBlocking { server.shutdown(gracefulTimeoutSeconds: 2) }
        await replication.stop()
        try? await durable.close()
    }

    func removeData() {
        if ownsDir { try? FileManager.default.removeItem(atPath: dataDir) }
    }
}

/// Runs `body` with a fresh server in a fresh temp directory and cleans up.
func withSrv(_ options: SrvHarness.Options = SrvHarness.Options(),
             _ body: (SrvHarness) async throws -> Void) async throws {
    let h = try await SrvHarness.start(options)
    do {
        try await body(h)
    } catch {
        await h.stop(); h.removeData()
        throw error
    }
    await h.stop()
    h.removeData()
}

/// Creates an open deal `deal` with one lot of `units` through the protocol.
func srvSetupDeal(_ c: SrvClient, _ deal: String = "d1", lot: String? = nil, units: String = "100", cost: String = "5") async {
    let r1 = await c.call("DEAL.CREATE", deal, "PRICE", "10")
    #expect(r1 == .simple("OK"), "DEAL.CREATE \(deal): \(r1)")
    let r2 = await c.call("LOT.ADD", deal, lot ?? "\(deal)-L1", units, cost)
    #expect(r2 == .simple("OK"), "LOT.ADD: \(r2)")
}

/// Polls `condition` until true or `seconds` passed.
func srvWait(_ seconds: Double = 15, _ condition: @Sendable () async -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// Runs an executable with arguments and optional stdin; nil when it is missing.
func srvRun(_ path: String, _ args: [String], stdin: String? = nil, timeout: Double = 20) async throws -> (status: Int32, out: String, err: String)? {
    guard FileManager.default.isExecutableFile(atPath: path) else { return nil }
    return try await srvBlocking { () throws -> (Int32, String, String) in
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? inp.fileHandleForWriting.close()
        // Read both pipes on their own threads so a full pipe never blocks the child.
        let outData = SrvBox(), errData = SrvBox()
        let g = DispatchGroup()
        g.enter()
        Thread { outData.set(out.fileHandleForReading.readDataToEndOfFile()); g.leave() }.start()
        g.enter()
        Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()); g.leave() }.start()
        if g.wait(timeout: .now() + timeout) == .timedOut { p.terminate() }
        p.waitUntilExit()
        g.wait()
        return (p.terminationStatus, String(decoding: outData.get(), as: UTF8.self),
                String(decoding: errData.get(), as: UTF8.self))
    }
}

/// Locates a tool on PATH.
func srvWhich(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let p = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

final class SrvBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
