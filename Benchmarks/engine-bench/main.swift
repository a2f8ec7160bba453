import AllocationEngine
import Foundation

// engine-bench: measures the engine as the issues ask, prints a table (or one
// JSON object with --json). Usage:
//   swift run -c release engine-bench [--json] [--quick] [--only engine|wal|net|hot|snapmem|invmem|rowmem|sha]
//   swift run -c release engine-bench --load --port P ... -- CMD ...   (LoadCommand.swift)
func runBenchmarks() async -> BenchReport {
    let options = BenchOptions(CommandLine.arguments.dropFirst())
    var report = BenchReport()
    if options.only.contains("hot") {
        // Repeated hot-deal runs in one process, to look at run-to-run spread.
        for callers in [1, 64, 1, 64, 1, 64] {
            let (rate, ok) = await EngineBenchmarks(options: options).hotDeal(callers: callers, batch: 64, total: options.size(2_000_000, quick: 200_000))
            report.row("hot deal, batched, \(callers) callers", formatRate(rate) + (ok ? "" : " INVARIANT BROKEN"))
        }
    }
    if options.runs("engine") && !options.only.contains("hot") {
        await EngineBenchmarks(options: options).run(into: &report)
    }
    if options.runs("wal") {
        await DurabilityBenchmarks(options: options).run(into: &report)
    }
    if options.only.contains("sha") {
        HashBenchmarks(options: options).run(into: &report)
    }
    if options.only.contains("snapmem") {
        await SnapshotMemoryBenchmarks(options: options).run(into: &report)
    }
    if options.only.contains("rowmem") {
        await RowMemoryBenchmarks(options: options).run(into: &report)
    }
    if options.only.contains("invmem") {
        await InvestorMemoryBenchmarks(options: options).run(into: &report)
    }
    if options.runs("net") {
        await NetBenchmarks(options: options).run(into: &report)
    }
    return report
}
if CommandLine.arguments.dropFirst().first == "--load" {
    exit(LoadCommand.run(Array(CommandLine.arguments.dropFirst())))
}
let options = BenchOptions(CommandLine.arguments.dropFirst())
let finished = await runBenchmarks()
finished.print(json: options.json)
