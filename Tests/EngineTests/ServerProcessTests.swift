import AllocationEngine
import Foundation
import Glibc
import Testing
@testable import EngineServer

/// The `allocation-engine serve` binary end to end: start on port 0 with an
/// admin token file, serve, refuse a second server on the same data directory,
/// stop on SIGTERM, restart with the same state. Skips when the binary is not built.
@Suite struct ServerProcessTests {
    static func binary() -> String? {
        var candidates: [URL] = []
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug"))
        for dir in candidates {
            var d = dir
            // Inside an .xctest bundle on some layouts.
            for _ in 0..<3 {
                let p = d.appendingPathComponent("allocation-engine").path
                if FileManager.default.isExecutableFile(atPath: p) { return p }
                d = d.deletingLastPathComponent()
            }
        }
        return nil
    }

    /// A running `serve` process and its port.
    final class Served: @unchecked Sendable {
        let process = Process()
        let log = SrvLog()
        var port = 0

        init(binary: String, args: [String]) throws {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["serve"] + args
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let log = self.log
            Thread {
                let h = err.fileHandleForReading
                while true {
                    let d = h.availableData
                    if d.isEmpty { break }
                    log.append(String(decoding: d, as: UTF8.self))
                }
                log.finish()
            }.start()
        }

        /// Waits for "listening on host:port"; the port, or nil if it exited first.
        /// Readiness, not speed: a process started while the whole suite runs on two cores may take long to exec.
        func waitListening(_ seconds: Double = 60) async -> Int? {
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                let text = log.text
                if let m = text.firstMatch(of: #/listening on [^:]+:(\d+),/#), let p = Int(m.1) {
                    port = p
                    return p
                }
                if !process.isRunning { return nil }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return nil
        }

        /// Waits for the process to exit by itself (killing it after `seconds`).
        func waitExit(_ seconds: Double = 10) async -> Int32 {
            let p = process
            if !(await srvWait(seconds) { !p.isRunning }) { kill(p.processIdentifier, SIGKILL) }
            await srvBlocking { p.waitUntilExit() }
            _ = await srvWait(3) { self.log.done }
            return p.terminationStatus
        }

        func stop() async -> Int32 {
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            let p = process
            await srvBlocking { p.waitUntilExit() }
            _ = await srvWait(3) { self.log.done }
            return p.terminationStatus
        }
    }

    /// A SIGTERM at any moment of the start (during recovery, as the port
    /// opens, just after) stops the server cleanly with status 0. It used to be
    /// lost when it arrived just as the port listened (the handler was a
    /// dispatch source registered afterwards, asynchronously), and the server
    /// ran on until SIGKILL.
    @Test func sigtermDuringStartStopsTheServerCleanly() async throws {
        guard let bin = Self.binary() else { return }
        let root = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (i, delayMicros) in [0, 20_000, 50_000, 100_000, 200_000, 400_000].enumerated() {
            let s = try Served(binary: bin, args: ["--port", "0", "--data-dir", root + "/d\(i)"])
            // Wait until the process has at least passed exec and set its
            // handlers ("recovered" is logged after them), then a little more.
            _ = await srvWait(60) { s.log.text.contains("recovered ") }
            if delayMicros > 0 { usleep(UInt32(delayMicros)) }
            kill(s.process.processIdentifier, SIGTERM)
            let p = s.process
            let exited = await srvWait(30) { !p.isRunning }
            if !exited { kill(p.processIdentifier, SIGKILL) }
            await srvBlocking { p.waitUntilExit() }
            #expect(exited, "still running 30 s after SIGTERM (delay \(delayMicros) µs): \(s.log.text)")
            #expect(p.terminationReason == .exit && p.terminationStatus == 0, "delay \(delayMicros) µs: \(p.terminationStatus) \(s.log.text)")
        }
    }

    @Test func serveBinaryLifecycle() async throws {
        guard let bin = Self.binary() else { return }
        let dir = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "process-admin-token-0123456789"
        let tokenFile = dir + "/admin.token"
        try (token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let data = dir + "/data"
        let args = ["--port", "0", "--data-dir", data, "--admin-token-file", tokenFile, "--segment-mb", "1"]

        let s1 = try Served(binary: bin, args: args)
        guard let port = await s1.waitListening() else {
            Issue.record("serve did not start: \(s1.log.text)")
            _ = await s1.stop()
            return
        }
        var digest = Reply.null, hold = Reply.null
        do {
            let c = try SrvClient(port: port)
            #expect(await c.call("DEAL.CREATE", "d1").errorCode == "NOAUTH")
            #expect(await c.call("AUTH", token) == .simple("OK"))
            await srvSetupDeal(c)
            #expect(await c.call("HOLD", "d1", "inv1", "5", "10", "ID", "p-1").elements?.first == .bulk("p-1"))
            hold = await c.call("HOLD.GET", "p-1")
            digest = await c.call("DIGEST")
            let info = await c.call("INFO", "server").string ?? ""
            #expect(info.contains("durability:strict\r\n") && info.contains("data_dir:\(data)\r\n"), "\(info)")
            // INFO reports the port actually bound.
            #expect(info.contains("tcp_port:\(port)\r\n"), "\(info)")
            // A second server on the same data directory is refused.
            let s2 = try Served(binary: bin, args: args)
            let status2 = await s2.waitExit()
            #expect(status2 != 0)
            #expect(s2.log.text.contains("in use by another allocation-engine process"), "\(s2.log.text)")
            #expect(await c.call("PING") == .simple("PONG"))
        }
        let status = await s1.stop()
        #expect(status == 0, "\(s1.log.text)")
        #expect(s1.log.text.contains("shutdown complete"), "\(s1.log.text)")

        // Restart: the same state, and the admin token still required.
        let s3 = try Served(binary: bin, args: args)
        guard let port3 = await s3.waitListening() else {
            Issue.record("restart failed: \(s3.log.text)")
            _ = await s3.stop()
            return
        }
        let c = try SrvClient(port: port3)
        #expect(await c.call("DIGEST").errorCode == "NOAUTH")
        #expect(await c.call("AUTH", token) == .simple("OK"))
        #expect(await c.call("DIGEST") == digest)
        #expect(await c.call("HOLD.GET", "p-1") == hold)
        #expect(await s3.stop() == 0)
    }
}

final class SrvLog: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""
    private var finished = false
    func append(_ s: String) { lock.lock(); buffer += s; lock.unlock() }
    func finish() { lock.lock(); finished = true; lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return buffer }
    var done: Bool { lock.lock(); defer { lock.unlock() }; return finished }
}
