import Foundation
import Testing
import WAL

/// Opt-in: WAL_BENCH=1 swift test -c release --filter WALBench
@Suite struct WALBenchTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["WAL_BENCH"] != nil))
    func printThroughput() async throws {
        for (mode, appenders) in [(DurabilityMode.strict, 1), (.strict, 64), (.strict, 512), (.none, 64)] {
            let dir = makeTempDirectory("bench")
            defer { removeTree(dir) }
            let r = try await WALBench.appendThroughput(directory: dir, records: mode == .strict && appenders == 1 ? 5_000 : 200_000,
                                                       payloadBytes: 64, mode: mode, appenders: appenders)
            print("append \(mode) appenders=\(appenders): \(Int(r.recordsPerSecond)) rec/s, \(Int(r.fsyncsPerSecond)) fsync/s, \(String(format: "%.1f", r.recordsPerFsync)) rec/fsync")
            if mode == .none {
                print("scan: \(Int(try WALBench.scanThroughput(directory: dir))) rec/s")
            }
        }
    }
}
