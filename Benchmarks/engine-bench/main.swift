import AllocationEngine
import Foundation

// engine-bench: measures the engine as the issues ask, prints a table (or one
// JSON object with --json). Usage:
//   swift run -c release engine-bench [--json] [--quick] [--only engine|wal|net]
func runBenchmarks() async -> BenchReport {
    let options = BenchOptions(CommandLine.arguments.dropFirst())
    var report = BenchReport()
    if options.runs("engine") {
        await EngineBenchmarks(options: options).run(into: &report)
    }
    if options.runs("wal") {
        await DurabilityBenchmarks(options: options).run(into: &report)
    }
    if options.runs("net") {
        await NetBenchmarks(options: options).run(into: &report)
    }
    return report
}
let options = BenchOptions(CommandLine.arguments.dropFirst())
let finished = await runBenchmarks()
finished.print(json: options.json)
