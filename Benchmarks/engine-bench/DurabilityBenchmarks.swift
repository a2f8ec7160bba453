import AllocationEngine
import Foundation

/// Issue 3: durable holds, replay and restart. Filled in with the WAL.
struct DurabilityBenchmarks {
    let options: BenchOptions
    func run(into report: inout BenchReport) async {}
}
