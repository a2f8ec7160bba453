import AllocationEngine
import Foundation
import WAL

/// Issue 3: durable holds per durability mode, replay speed, restart time,
/// snapshot cost. Each run uses a fresh data directory under --dir.
struct DurabilityBenchmarks {
    let options: BenchOptions

    func run(into report: inout BenchReport) async {
        let total = options.size(4_000_000, quick: 400_000)
        var strictRate = 0.0
        for mode in [DurabilityMode.strict, .periodic, .none] {
            let r = await durableHotDeal(mode: mode, callers: 256, batch: 64, total: total)
            report.row("durable hot deal, \(mode.rawValue), 256 callers x 64/call",
                       formatRate(r.rate) + " holds" + (mode == .strict ? String(format: ", %.0f fsyncs/s, %.0f records/fsync", r.fsyncsPerSecond, r.recordsPerFsync) : ""))
            switch mode {
            case .strict:
                strictRate = r.rate
                report.key("strict_hot_deal_batched_holds_per_s", r.rate)
                report.key("fsyncs_per_s", r.fsyncsPerSecond)
                report.key("records_per_fsync", r.recordsPerFsync)
            case .periodic: report.key("periodic_hot_deal_batched_holds_per_s", r.rate)
            case .none:
                report.key("none_hot_deal_batched_holds_per_s", r.rate)
                report.row("strict as a share of none", String(format: "%.0f%%", strictRate / max(r.rate, 1) * 100))
            }
        }
        for records in options.quick ? [1_000_000] : [1_000_000, 10_000_000] {
            let (replayRate, restart) = await replay(records: records)
            report.row("replay \(records / 1_000_000)M records", formatRate(replayRate) + String(format: " records, restart %.2f s", restart))
            if records == 1_000_000 { report.key("replay_records_per_s", replayRate) }
            if records == 10_000_000 { report.key("restart_10m_seconds", restart) }
        }
        let (seconds, bytes) = await snapshotCost(liveHolds: options.size(1_000_000, quick: 200_000))
        report.row("snapshot of \(options.size(1_000_000, quick: 200_000)) live holds", String(format: "%.3f s, %.1f MB", seconds, Double(bytes) / 1e6))
        report.key("snapshot_1m_holds_seconds", seconds)
        report.key("snapshot_1m_holds_bytes", bytes)
    }

    func freshDir(_ name: String) -> String {
        let path = options.workDir + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func open(_ dir: String, mode: DurabilityMode) async -> DurableEngine {
        var config = DurableConfig(dataDir: dir)
        config.mode = mode
        config.snapshotEveryRecords = 0
        config.snapshotEverySeconds = 0
        return try! await DurableEngine.open(config)
    }

    func setUpDeal(_ engine: Engine, units: Int) async {
        try! await engine.createDeal(DealSpec(id: "hot"))
        try! await engine.addLot(deal: "hot", LotSpec(id: "hot-a", unitsTotal: .whole(units / 2), unitCost: .whole(20)))
        try! await engine.addLot(deal: "hot", LotSpec(id: "hot-b", unitsTotal: .whole(units - units / 2), unitCost: .whole(21)))
    }

    /// Concurrent callers each submitting batches of holds and waiting until
    /// their batch is durable before sending the next (as network clients do).
    func durableHotDeal(mode: DurabilityMode, callers: Int, batch: Int, total: Int)
        async -> (rate: Double, fsyncsPerSecond: Double, recordsPerFsync: Double) {
        let dir = freshDir("hot-\(mode.rawValue)")
        let durable = await open(dir, mode: mode)
        let engine = durable.engine
        await setUpDeal(engine, units: total * 2)
        let deal = engine.deal("hot")!
        let perCaller = max(1, total / callers / batch)
        let before = durable.writer.stats
        let start = monotonicSeconds()
        await withTaskGroup(of: Void.self) { group in
            for c in 0..<callers {
                group.addTask {
                    let requests = [DealRequest](repeating: .hold(HoldRequest(investor: "inv-\(c)", units: .whole(1), price: .whole(25))), count: batch)
                    for _ in 0..<perCaller {
                        let replies = await engine.submit(requests, to: deal)
                        precondition(replies.last?.error == nil, "durable hold failed: \(String(describing: replies.last))")
                    }
                }
            }
        }
        let elapsed = monotonicSeconds() - start
        let after = durable.writer.stats
        let fsyncs = Double(after.fsyncs - before.fsyncs)
        let records = Double(after.recordsAppended - before.recordsAppended)
        try! await durable.close()
        try? FileManager.default.removeItem(atPath: dir)
        return (Double(perCaller * batch * callers) / elapsed, fsyncs / elapsed, fsyncs > 0 ? records / fsyncs : 0)
    }

    /// Logs `records` holds (durability none, to build the log fast), then
    /// times a full restart: recovery of every record plus opening the log.
    func replay(records: Int) async -> (Double, Double) {
        let dir = freshDir("replay-\(records)")
        do {
            let durable = await open(dir, mode: .none)
            await setUpDeal(durable.engine, units: records * 2)
            let deal = durable.engine.deal("hot")!
            let batch = 1024
            await withTaskGroup(of: Void.self) { group in
                for c in 0..<8 {
                    group.addTask {
                        let requests = [DealRequest](repeating: .hold(HoldRequest(investor: "inv-\(c)", units: .whole(1), price: .whole(25))), count: batch)
                        for _ in 0..<(records / batch / 8) { _ = await durable.engine.submit(requests, to: deal) }
                    }
                }
            }
            try! await durable.close()
        }
        let start = monotonicSeconds()
        let reopened = await open(dir, mode: .strict)
        let restart = monotonicSeconds() - start
        let replayed = reopened.recovery.recordsReplayed
        let rate = Double(replayed) / max(reopened.recovery.seconds, 1e-9)
        try! await reopened.close()
        if ProcessInfo.processInfo.environment["ENGINE_BENCH_KEEP"] == nil { try? FileManager.default.removeItem(atPath: dir) }
        return (rate, restart)
    }

    func snapshotCost(liveHolds: Int) async -> (Double, Int) {
        let dir = freshDir("snapshot")
        let durable = await open(dir, mode: .none)
        await setUpDeal(durable.engine, units: liveHolds * 2)
        let deal = durable.engine.deal("hot")!
        let requests = [DealRequest](repeating: .hold(HoldRequest(investor: "inv-1", units: .whole(1), price: .whole(25))), count: 1024)
        for _ in 0..<(liveHolds / 1024) { _ = await durable.engine.submit(requests, to: deal) }
        let stats = try! await durable.snapshot()
        try! await durable.close()
        try? FileManager.default.removeItem(atPath: dir)
        return (stats.lastSeconds, stats.lastBytes)
    }
}
