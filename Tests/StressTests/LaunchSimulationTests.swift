import Foundation
import Glibc
import TestSupport
import Testing

/// The launch simulation (Benchmarks/launch) at CI size: 100 connections over TCP
/// against the built server, one hot deal and 19 small ones with supply above and
/// far below demand, 3 kill -9 / restart cycles, the independent checker after
/// each cycle and at the end, and the checker's self-test (journals with one reply
/// falsified must fail). The long run is `Benchmarks/launch/run.sh`.
///
/// Sizes: `LAUNCH_CLIENTS` (100), `LAUNCH_SECONDS` (5), `LAUNCH_KILL_CYCLES` (3).
enum LaunchSimulation {
    static func env(_ name: String, _ fallback: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil } ?? fallback
    }

    /// Whether `python3` on the PATH has redis-py (the checker's client), as CI installs it.
    static let pythonReady: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import redis"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()
}

@Suite(.serialized) struct LaunchSimulationTests {
    /// The checker's own tests (Benchmarks/launch/test_check.py): hand-made journals
    /// for the timeline bound, the case that once made it report a false oversell
    /// and the real oversells and refusals it must catch.
    @Test(.enabled(if: LaunchSimulation.pythonReady, "needs python3 with redis-py (pip install 'redis>=8')"))
    func checkerTimelineCases() throws {
        let script = EngineBinary.packageRoot.appendingPathComponent("Benchmarks/launch/test_check.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-B", script]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "the checker's tests failed:\n\(out.suffix(4000))")
    }

    @Test(.enabled(if: EngineBinary.path != nil && LaunchSimulation.pythonReady,
                   "needs the built allocation-engine and python3 with redis-py (pip install 'redis>=8')"))
    func launchWithKillNineAgreesWithTheIndependentChecker() throws {
        let dir = try makeTempDir("launch")
        defer { removeTempTree(dir); removeTempTree(dir + "-data"); for suffix in [".journal.jsonl", ".journal.jsonl.diagnosis.txt", ".server.log", ".summary.json"] { unlink(dir + "-data" + suffix) } }
        let data = dir + "-data"
        let script = EngineBinary.packageRoot.appendingPathComponent("Benchmarks/launch/drive.py").path
        let outPath = dir + "/out"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, "--binary", EngineBinary.path!, "--data-dir", data, "--port", String(try freePort()),
                       "--clients", String(LaunchSimulation.env("LAUNCH_CLIENTS", 100)),
                       "--seconds", String(LaunchSimulation.env("LAUNCH_SECONDS", 5)),
                       "--kill-cycles", String(LaunchSimulation.env("LAUNCH_KILL_CYCLES", 3)),
                       "--deals", "20", "--supply", "mixed", "--hot-share", "0.5", "--scarce-units", "2000",
                       "--verify-every", "3", "--selftest", "--summary-json", data + ".summary.json"]
        p.standardOutput = FileHandle(forWritingAtPath: outPath)
        p.standardError = p.standardOutput
        p.standardInput = FileHandle.nullDevice
        try p.run()
        ChildProcesses.register(p.processIdentifier)
        // Generous: a loaded machine may be slow; only a hang is a failure here.
        let deadline = Date().addingTimeInterval(600)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        ChildProcesses.unregister(p.processIdentifier)
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        print(out.split(separator: "\n").filter { $0.hasPrefix("[launch] check") || $0.hasPrefix("[launch] selftest") || $0.hasPrefix("[launch] summary") }.joined(separator: "\n"))
        #expect(p.terminationStatus == 0, "the launch simulation failed:\n\(out.suffix(6000))")
        // The run did something: checks after every kill, answered requests, a caught lie per self-test case.
        let summary = (try? Data(contentsOf: URL(fileURLWithPath: data + ".summary.json")))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        // When the timeline bound fails, the checker writes which holds it counted as
        // certainly taken and what the replies said of each: print it whole.
        let diagnosis = (try? String(contentsOfFile: data + ".journal.jsonl.diagnosis.txt", encoding: .utf8)) ?? ""
        #expect(summary["ok"] as? Bool == true, "summary: \(summary)\n\(diagnosis.prefix(20_000))")
        #expect((summary["kill_cycles"] as? Int ?? 0) == LaunchSimulation.env("LAUNCH_KILL_CYCLES", 3))
        #expect((summary["replies"] as? Int ?? 0) > 100, "too few answered requests: \(summary)")
        #expect(out.contains("selftest") && !out.contains("MISSED"), "the checker missed a falsified journal:\n\(out.suffix(3000))")
    }
}
