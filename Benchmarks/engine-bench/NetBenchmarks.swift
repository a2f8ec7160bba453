import AllocationEngine
import EngineServer
import Foundation
import WAL

/// Issue 4: durable holds over TCP from 50 connections, unpipelined and with 16
/// pipelined, on one hot deal and across 1,000 deals, strict durability. The
/// server runs in this process; the load generator (NetBench, one epoll thread)
/// in a thread beside it, on the same two cores.
struct NetBenchmarks {
    let options: BenchOptions

    func run(into report: inout BenchReport) async {
        let seconds = options.quick ? 2.0 : 6.0
        let dir = options.workDir + "/net"
        try? FileManager.default.removeItem(atPath: dir)
        var config = DurableConfig(dataDir: dir)
        config.mode = .strict
        config.snapshotEveryRecords = 0
        config.snapshotEverySeconds = 0
        let durable = try! await DurableEngine.open(config)
        let engine = durable.engine
        let supply = 1_000_000_000
        try! await engine.createDeal(DealSpec(id: "hot"))
        try! await engine.addLot(deal: "hot", LotSpec(id: "hot-a", unitsTotal: .whole(supply), unitCost: .whole(20)))
        for d in 0..<1000 {
            try! await engine.createDeal(DealSpec(id: "deal-\(d)"))
            try! await engine.addLot(deal: "deal-\(d)", LotSpec(id: "lot-\(d)", unitsTotal: .whole(supply / 1000), unitCost: .whole(20)))
        }
        let handler = EngineRequestHandler(engine: engine, durable: durable)
        let loops = Int(ProcessInfo.processInfo.environment["NET_LOOPS"] ?? "") ?? ServerConfig.defaultLoopCount
        let server = try! EventLoopServer(config: ServerConfig(host: "127.0.0.1", port: 0, loops: loops), handler: handler)
        try! server.start()
        let port = server.boundPort
        var invariantOK = true

        let hot = [["HOLD", "hot", "inv-1", "1", "25"]]
        let many = (0..<1000).map { ["HOLD", "deal-\($0)", "inv-1", "1", "25"] }
        for (label, commands, key) in [("one hot deal", hot, "net_hot"), ("1,000 deals", many, "net_many")] {
            for pipeline in [1, 16] {
                let r = await load(port: port, pipeline: pipeline, seconds: seconds, commands: commands)
                report.row("TCP strict, \(label), 50 conns, pipeline \(pipeline)",
                           formatRate(r.requestsPerSecond) + String(format: " holds, p50 %.2f ms, p99 %.2f ms, p999 %.2f ms, %d errors",
                                                                    r.p50Micros / 1000, r.p99Micros / 1000, r.p999Micros / 1000, r.errors))
                let name = "\(key)_\(pipeline == 1 ? "unpipelined" : "pipelined16")"
                report.key("\(name)_holds_per_s", r.requestsPerSecond)
                report.key("\(name)_p99_ms", r.p99Micros / 1000)
                invariantOK = invariantOK && r.errors == 0
            }
        }
        let stats = durable.writer.stats
        report.row("WAL over the TCP runs", String(format: "%.0f records/fsync, %d fsyncs", stats.recordsPerFsync, stats.fsyncs))
        let problems = await engine.invariantViolations()
        invariantOK = invariantOK && problems.isEmpty
        report.row("invariant after the TCP runs", problems.isEmpty ? "holds" : "BROKEN: \(problems.prefix(3))")
        report.key("net_invariant_ok", invariantOK)
        server.shutdown(gracefulTimeoutSeconds: 2)
        try? await durable.close()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Runs NetBench on its own thread (it blocks) and waits for it.
    func load(port: Int, pipeline: Int, seconds: Double, commands: [[String]]) async -> NetBenchResult {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: NetBench.runLoad(port: port, connections: 50, pipeline: pipeline,
                                                                seconds: seconds, commands: commands))
            }
            thread.start()
        }
    }
}
