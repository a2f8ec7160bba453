import WAL
import Foundation
import Glibc
import Synchronization

// Real processes for the crash and tool tests of both test targets: the built
// `allocation-engine` binary, a child server on a free port, a tiny blocking
// RESP client, and the data-directory tools.

public enum EngineBinary {
    /// The package root, from this file's path (Tests/<target>/<file>).
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `.build/debug/allocation-engine`, or nil when it has not been built.
    public static let path: String? = {
        var candidates = [packageRoot.appendingPathComponent(".build/debug/allocation-engine").path]
        // Next to the test bundle (e.g. .build/x86_64-unknown-linux-gnu/debug/).
        let bundle = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
        candidates.append(bundle.appendingPathComponent("allocation-engine").path)
        candidates.append(Bundle.main.bundleURL.appendingPathComponent("allocation-engine").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    public static let missingMessage = "allocation-engine is not built (looked in \(packageRoot.path)/.build/debug); run `swift build` first"
}

public struct ProcessTestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A fresh empty directory under the system temp directory.
public func makeTempDir(_ label: String) throws -> String {
    let path = NSTemporaryDirectory() + "ae-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Removes a directory and everything under it.
public func removeTempTree(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// A TCP port nobody listens on right now (bind to port 0, read it, close).
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ProcessTestError("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0 else { throw ProcessTestError("bind: errno \(errno)") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let got = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    guard got == 0 else { throw ProcessTestError("getsockname: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

// MARK: - RESP

public enum RESPValue: Equatable, CustomStringConvertible {
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk(String?)
    case array([RESPValue]?)

    public var isError: Bool { if case .error = self { return true } else { return false } }
    public var string: String? {
        switch self {
        case .simple(let s): s
        case .bulk(let s): s
        case .integer(let i): String(i)
        default: nil
        }
    }
    public var array: [RESPValue]? { if case .array(let a) = self { return a } else { return nil } }
    /// A flat field/value array (RESP2 map) as a dictionary.
    public var fields: [String: String] {
        guard let a = array else { return [:] }
        var out: [String: String] = [:]
        var i = 0
        while i + 1 < a.count {
            if let k = a[i].string { out[k] = a[i + 1].string }
            i += 2
        }
        return out
    }
    public var description: String {
        switch self {
        case .simple(let s): "+\(s)"
        case .error(let s): "-\(s)"
        case .integer(let i): ":\(i)"
        case .bulk(let s): s.map { "\"\($0)\"" } ?? "(nil)"
        case .array(let a): a.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "(nil array)"
        }
    }
}

/// A blocking RESP client on one TCP connection. Not thread-safe: one per thread.
public final class RESPClient {
    public let fd: Int32
    private var buffer: [UInt8] = []
    private var position = 0

    public init(port: Int, timeoutSeconds: Int = 10) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProcessTestError("socket: errno \(errno)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw ProcessTestError("connect to 127.0.0.1:\(port): errno \(e)")
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    /// Sends one command and reads its reply.
    public func command(_ args: [String]) throws -> RESPValue {
        var out: [UInt8] = Array("*\(args.count)\r\n".utf8)
        for a in args {
            let bytes = Array(a.utf8)
            out += Array("$\(bytes.count)\r\n".utf8) + bytes + [13, 10]
        }
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ProcessTestError("send failed: errno \(errno)") }
            sent += n
        }
        return try readValue()
    }

    public func command(_ args: String...) throws -> RESPValue { try command(args) }

    /// Sends many commands (`round` per write, pipelined) and reads all their replies.
    public func pipeline(_ commands: [[String]], round: Int = 500) throws -> [RESPValue] {
        var replies: [RESPValue] = []
        var start = 0
        while start < commands.count {
            let batch = commands[start..<min(commands.count, start + max(1, round))]
            var out: [UInt8] = []
            for args in batch {
                out += Array("*\(args.count)\r\n".utf8)
                for a in args {
                    let bytes = Array(a.utf8)
                    out += Array("$\(bytes.count)\r\n".utf8) + bytes + [13, 10]
                }
            }
            var sent = 0
            while sent < out.count {
                let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw ProcessTestError("send failed: errno \(errno)") }
                sent += n
            }
            for _ in batch { replies.append(try readValue()) }
            start += batch.count
        }
        return replies
    }

    private func fill() throws {
        if position > 0 && position == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            position = 0
        }
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { throw ProcessTestError("connection closed by the server") }
            guard n > 0 else { throw ProcessTestError("recv failed: errno \(errno)") }
            buffer += chunk[0..<n]
            return
        }
    }

    private func line() throws -> String {
        while true {
            if let end = buffer[position...].firstIndex(of: 10), end > position, buffer[end - 1] == 13 {
                let text = String(decoding: buffer[position..<(end - 1)], as: UTF8.self)
                position = end + 1
                return text
            }
            try fill()
        }
    }

    private func readValue() throws -> RESPValue {
        let l = try line()
        guard let kind = l.first else { throw ProcessTestError("empty reply line") }
        let rest = String(l.dropFirst())
        switch kind {
        case "+": return .simple(rest)
        case "-": return .error(rest)
        case ":":
            guard let v = Int(rest) else { throw ProcessTestError("bad integer \(rest)") }
            return .integer(v)
        case "$", "=":
            guard let n = Int(rest) else { throw ProcessTestError("bad bulk length \(rest)") }
            if n < 0 { return .bulk(nil) }
            while buffer.count - position < n + 2 { try fill() }
            let text = String(decoding: buffer[position..<(position + n)], as: UTF8.self)
            position += n + 2
            return .bulk(text)
        case "_": return .bulk(nil)
        case "*", "%", "~":
            guard let n = Int(rest) else { throw ProcessTestError("bad array length \(rest)") }
            if n < 0 { return .array(nil) }
            var items: [RESPValue] = []
            for _ in 0..<(kind == "%" ? 2 * n : n) { items.append(try readValue()) }
            return .array(items)
        case "#": return .simple(rest)
        case ",": return .simple(rest)
        default: throw ProcessTestError("unknown reply type '\(kind)' in \(l)")
        }
    }
}

// MARK: - Processes

/// A server child process; killed (SIGKILL) when released if still running.
///
/// `@unchecked Sendable` is safe here: every stored property is a `let`, and the
/// `Process` is configured and started only in `init`, before the object can be
/// shared; afterwards only Process's thread-safe queries and waits are used
/// (`isRunning`, `processIdentifier`, `terminationStatus`, `waitUntilExit`).
public final class ServerProcess: @unchecked Sendable {
    public let process = Process()
    public let port: Int
    public let dataDir: String
    public let logPath: String

    public init(dataDir: String, port: Int? = nil, durability: String = "strict", extra: [String] = [],
         startTimeoutSeconds: Double = 20) throws {
        guard let binary = EngineBinary.path else { throw ProcessTestError(EngineBinary.missingMessage) }
        self.port = try port ?? freePort()
        self.dataDir = dataDir
        logPath = dataDir + ".server-\(UInt32.random(in: 0...UInt32.max)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--data-dir", dataDir, "--port", String(self.port), "--durability", durability] + extra
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        ChildProcesses.register(process.processIdentifier)
        let deadline = Date().addingTimeInterval(startTimeoutSeconds)
        while true {
            if !process.isRunning {
                throw ProcessTestError("server exited with status \(process.terminationStatus) before listening:\n\(self.log)")
            }
            if (try? RESPClient(port: self.port)) != nil { break }
            if Date() > deadline {
                kill9()
                throw ProcessTestError("server did not listen on port \(self.port) within \(startTimeoutSeconds) s:\n\(self.log)")
            }
            usleep(20_000)
        }
    }

    public var pid: Int32 { process.processIdentifier }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// kill -9 and wait for it to be gone.
    public func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        ChildProcesses.unregister(process.processIdentifier)
    }

    /// SIGTERM (clean shutdown), SIGKILL after the timeout. Returns the exit status.
    @discardableResult
    public func stop(timeoutSeconds: Double = 15) -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(timeoutSeconds)
            while process.isRunning && Date() < deadline { usleep(10_000) }
        }
        kill9()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        ChildProcesses.unregister(process.processIdentifier)
        try? FileManager.default.removeItem(atPath: logPath)
    }
}

/// Every child still running, killed at exit of the test process even if a test
/// forgot (or crashed past) its cleanup.
public enum ChildProcesses {
    private static let pids = Locked<Set<Int32>>([])
    private static let installed = Locked<Bool>(false)
    public static func register(_ pid: Int32) {
        pids.withLock { _ = $0.insert(pid) }
        installed.withLock { done in
            guard !done else { return }
            done = true
            atexit { ChildProcesses.killAll() }
        }
    }
    public static func unregister(_ pid: Int32) { pids.withLock { _ = $0.remove(pid) } }
    public static func killAll() {
        for pid in pids.withLock({ Array($0) }) { kill(pid, SIGKILL) }
    }
}

/// Runs `allocation-engine <args>` to completion; returns status, stdout, stderr.
public func runTool(_ args: [String], timeoutSeconds: Double = 60) throws -> (status: Int32, out: String, err: String) {
    guard let binary = EngineBinary.path else { throw ProcessTestError(EngineBinary.missingMessage) }
    let dir = try makeTempDir("tool")
    defer { removeTempTree(dir) }
    let outPath = dir + "/out", errPath = dir + "/err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    p.standardOutput = FileHandle(forWritingAtPath: outPath)
    p.standardError = FileHandle(forWritingAtPath: errPath)
    p.standardInput = FileHandle.nullDevice
    try p.run()
    ChildProcesses.register(p.processIdentifier)
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while p.isRunning && Date() < deadline { usleep(5_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    ChildProcesses.unregister(p.processIdentifier)
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return (p.terminationStatus, out, err)
}
