import TestSupport
// The server under test as a child process, and what the soak measures from
// outside it: resident memory (/proc/<pid>/status), file sizes in the data
// directory, the heap gauge of the metrics endpoint when there is one.

import Foundation
import Glibc

final class ServerUnderTest {
    let binary: String
    let dataDir: String
    let port: Int
    /// The HTTP metrics port, when the binary has `--metrics-port`.
    let metricsPort: Int?
    let extraArguments: [String]
    let logPath: String
    private(set) var process: Process?

    init(binary: String, dataDir: String, port: Int, metricsPort: Int?, durability: String, extra: [String], logPath: String) {
        self.binary = binary
        self.dataDir = dataDir
        self.port = port
        self.metricsPort = metricsPort
        self.extraArguments = ["--durability", durability] + extra
        self.logPath = logPath
    }

    var pid: Int32 { process?.processIdentifier ?? 0 }
    var isRunning: Bool { process?.isRunning ?? false }

    /// Starts `serve` on the data directory and waits until it answers PING.
    /// Returns the seconds from the start of the process to the first PONG.
    @discardableResult
    func start(timeoutSeconds: Double = 600) throws -> Double {
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw SoakError("cannot write \(logPath)") }
        log.seekToEndOfFile()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["serve", "--data-dir", dataDir, "--port", String(port)]
            + (metricsPort.map { ["--metrics-port", String($0)] } ?? []) + extraArguments
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        let started = monotonicSeconds()
        try p.run()
        process = p
        while true {
            if !p.isRunning {
                throw SoakError("the server exited with status \(p.terminationStatus) before answering PING; its log:\n\(tail(of: logPath))")
            }
            if let client = try? AdminClient(port: port, timeoutSeconds: 5), case .simple("PONG")? = try? client.command("PING") {
                return monotonicSeconds() - started
            }
            if monotonicSeconds() - started > timeoutSeconds {
                kill9()
                throw SoakError("the server did not answer PING on port \(port) within \(Int(timeoutSeconds)) s")
            }
            usleep(5_000)
        }
    }

    func kill9() {
        guard let p = process else { return }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    /// SIGTERM (a clean shutdown), SIGKILL after the timeout. Returns the exit status.
    @discardableResult
    func stop(timeoutSeconds: Double = 30) -> Int32 {
        guard let p = process else { return 0 }
        if p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            let deadline = monotonicSeconds() + timeoutSeconds
            while p.isRunning && monotonicSeconds() < deadline { usleep(10_000) }
        }
        kill9()
        return p.terminationStatus
    }

    /// VmRSS of the server, in bytes.
    var residentBytes: Int? {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        return kb.map { $0 * 1024 }
    }

    /// `allocation_engine_heap_bytes` from the metrics endpoint, if there is one and it answers.
    var heapBytes: Double? {
        guard let metricsPort, let body = httpGet(port: metricsPort, path: "/metrics") else { return nil }
        return metricValue(body, name: "allocation_engine_heap_bytes")
    }
}

/// Whether `serve` of this binary takes `--metrics-port` (from its --help).
func supportsMetricsPort(binary: String) -> Bool {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = ["serve", "--help"]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return false }
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: out, as: UTF8.self).contains("--metrics-port")
}

/// The value of a Prometheus text-format sample `name` (or `name{...}`), the first one.
func metricValue(_ body: String, name: String) -> Double? {
    for line in body.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
        let rest = line.dropFirst(name.count)
        guard rest.first == " " || rest.first == "{" else { continue }
        let afterLabels = rest.first == "{" ? rest.drop { $0 != "}" }.dropFirst() : rest
        if let v = afterLabels.split(separator: " ").first.flatMap({ Double($0) }) { return v }
    }
    return nil
}

/// A plain HTTP/1.0 GET on 127.0.0.1; the body of a 200 reply, or nil.
func httpGet(port: Int, path: String, timeoutSeconds: Int = 5) -> String? {
    guard let fd = connectLoopback(port: port, receiveTimeoutSeconds: timeoutSeconds) else { return nil }
    defer { close(fd) }
    guard sendAll(fd, Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)) else { return nil }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while data.count < 64 << 20 {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data += chunk[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard text.hasPrefix("HTTP/1."), text.split(separator: " ", maxSplits: 2).dropFirst().first == "200",
          let split = text.range(of: "\r\n\r\n") else { return nil }
    return String(text[split.upperBound...])
}

/// Total bytes of the regular files under `path` (0 if it does not exist).
func treeBytes(_ path: String) -> Int {
    var st = stat()
    guard lstat(path, &st) == 0 else { return 0 }
    if (st.st_mode & S_IFMT) == S_IFREG { return Int(st.st_size) }
    guard (st.st_mode & S_IFMT) == S_IFDIR, let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return 0 }
    return names.reduce(0) { $0 + treeBytes(path + "/" + $1) }
}

/// Free bytes on the file system holding `path`.
func freeBytes(_ path: String) -> Int? {
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return nil }
    return Int(s.f_bavail) * Int(s.f_frsize)
}

/// MemTotal from /proc/meminfo, in bytes.
func memoryTotalBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }) else { return nil }
    return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
}


func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The last lines of a text file.
func tail(of path: String, lines: Int = 20) -> String {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
}
