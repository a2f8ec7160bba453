import AllocationEngine
import Foundation

/// The audit chain's hash (`SHA256.digest`, once per record on the log
/// writer's thread): nanoseconds per digest of a typical record's size, with
/// the SHA extensions (when the CPU has them) and with the portable loop.
///
///   swift run -c release engine-bench --only sha
struct HashBenchmarks {
    let options: BenchOptions

    func run(into report: inout BenchReport) {
        let count = options.size(2_000_000, quick: 200_000)
        for size in [100, 300] {
            let message = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            for hardware in [true, false] where !hardware || SHA256.hardware {
                var sink: UInt32 = 0
                let start = monotonicSeconds()
                message.withUnsafeBytes { m in
                    for _ in 0..<count { sink ^= SHA256.digest(m, hardware: hardware).h.0 }
                }
                let ns = (monotonicSeconds() - start) / Double(count) * 1e9
                report.row("SHA-256 of \(size) bytes, \(hardware ? "SHA extensions" : "portable")", String(format: "%.0f ns (%d)", ns, sink & 1))
            }
        }
    }
}
