import AllocationEngine
import EngineServer
import Foundation

/// Issue 2: the in-memory engine, durability not involved.
struct EngineBenchmarks {
    let options: BenchOptions

    func run(into report: inout BenchReport) async {
        var invariantOK = true
        let holdsPerRun = options.size(2_000_000, quick: 200_000)

        // First, while the heap is fresh: resident size only grows when the
        // allocator needs new pages, and later runs would leave freed ones behind.
        let (bytes, ok4) = await bytesPerLiveHold(count: options.size(1_000_000, quick: 200_000))
        invariantOK = invariantOK && ok4
        report.row("memory per live hold (RSS growth / holds)", String(format: "%.0f bytes", bytes))
        report.key("bytes_per_live_hold", bytes)

        for callers in [2, 16, 64] {
            let (rate, ok) = await hotDeal(callers: callers, batch: 64, total: holdsPerRun)
            invariantOK = invariantOK && ok
            report.row("hot deal, batched (64/call), \(callers) callers", formatRate(rate) + " holds")
            if callers == 64 { report.key("hot_deal_batched_holds_per_s", rate) }
        }
        let (single, ok1) = await hotDeal(callers: 64, batch: 1, total: holdsPerRun / 4)
        invariantOK = invariantOK && ok1
        report.row("hot deal, one hold per call, 64 callers", formatRate(single) + " holds")
        report.key("hot_deal_single_holds_per_s", single)

        let (many, ok2) = await manyDeals(deals: 1000, callers: 64, batch: 64, total: holdsPerRun)
        invariantOK = invariantOK && ok2
        report.row("1,000 deals, batched (64/call), 64 callers", formatRate(many) + " holds")
        report.key("many_deals_holds_per_s", many)

        let (cycle, ok3) = await cycles(callers: 16, batch: 64, total: holdsPerRun / 4)
        invariantOK = invariantOK && ok3
        report.row("cycle hold->allocate->approve, 16 callers", formatRate(cycle) + " cycles")
        report.key("cycle_per_s", cycle)


        report.row("invariant after every run", invariantOK ? "holds" : "BROKEN")
        report.key("invariant_ok", invariantOK)
    }

    func makeEngine(deals: Int, unitsPerDeal: Int) async -> Engine {
        let engine = Engine()
        for d in 0..<deals {
            _ = try! await engine.createDeal(DealSpec(id: "deal-\(d)"))
            try! await engine.addLot(deal: "deal-\(d)", LotSpec(id: "lot-\(d)-a", unitsTotal: .whole(unitsPerDeal / 2), unitCost: .whole(20)))
            try! await engine.addLot(deal: "deal-\(d)", LotSpec(id: "lot-\(d)-b", unitsTotal: .whole(unitsPerDeal - unitsPerDeal / 2), unitCost: .whole(21)))
        }
        return engine
    }

    /// Runs `callers` concurrent tasks, each calling `round` `rounds` times with
    /// its own batch of one-unit holds; returns the elapsed seconds.
    func timeCallers(_ callers: Int, batch: Int, rounds: Int,
                     round: @escaping @Sendable (_ caller: Int, _ round: Int, _ holds: [DealRequest]) async -> Void) async -> Double {
        let start = monotonicSeconds()
        await withTaskGroup(of: Void.self) { group in
            for c in 0..<callers {
                group.addTask {
                    let request = DealRequest.hold(HoldRequest(investor: "inv-\(c)", units: .whole(1), price: .whole(25)))
                    let holds = [DealRequest](repeating: request, count: batch)
                    for i in 0..<rounds { await round(c, i, holds) }
                }
            }
        }
        return monotonicSeconds() - start
    }

    /// Holds of one unit from `callers` concurrent tasks on one deal.
    func hotDeal(callers: Int, batch: Int, total: Int) async -> (Double, Bool) {
        let engine = await makeEngine(deals: 1, unitsPerDeal: total * 2)
        let deal = engine.deal("deal-0")!
        let perCaller = total / callers / batch
        let elapsed = await timeCallers(callers, batch: batch, rounds: perCaller) { _, _, holds in
            let r = await deal.execute(holds)
            precondition(r.replies.last?.error == nil, "hold failed: \(String(describing: r.replies.last))")
        }
        let ok = await engine.invariantViolations().isEmpty
        return (Double(perCaller * batch * callers) / elapsed, ok)
    }

    func manyDeals(deals: Int, callers: Int, batch: Int, total: Int) async -> (Double, Bool) {
        let engine = await makeEngine(deals: deals, unitsPerDeal: total / deals * 4)
        let actors = (0..<deals).map { engine.deal("deal-\($0)")! }
        let perCaller = total / callers / batch
        let elapsed = await timeCallers(callers, batch: batch, rounds: perCaller) { c, i, holds in
            let r = await actors[(c * 7919 + i * 31) % deals].execute(holds)
            precondition(r.replies.last?.error == nil, "hold failed")
        }
        let ok = await engine.invariantViolations().isEmpty
        return (Double(perCaller * batch * callers) / elapsed, ok)
    }

    /// Full cycles: a batch of holds, then their allocations, then approvals.
    func cycles(callers: Int, batch: Int, total: Int) async -> (Double, Bool) {
        let engine = await makeEngine(deals: 1, unitsPerDeal: total * 2)
        let deal = engine.deal("deal-0")!
        let perCaller = total / callers / batch
        let elapsed = await timeCallers(callers, batch: batch, rounds: perCaller) { _, _, holds in
            let held = await deal.execute(holds).replies.map { reply -> DealRequest in
                guard case .hold(let receipt) = reply else { preconditionFailure("hold failed: \(reply)") }
                return .allocate(hold: receipt.id, id: nil)
            }
            let approvals = await deal.execute(held).replies.map { reply -> DealRequest in
                guard case .id(let id) = reply else { preconditionFailure("allocate failed: \(reply)") }
                return .approve(allocation: id)
            }
            let done = await deal.execute(approvals)
            precondition(done.replies.allSatisfy { $0 == .ok }, "approve failed")
        }
        let ok = await engine.invariantViolations().isEmpty
        return (Double(perCaller * batch * callers) / elapsed, ok)
    }

    /// Resident memory growth over `count` live holds, divided by `count`.
    func bytesPerLiveHold(count: Int) async -> (Double, Bool) {
        let engine = await makeEngine(deals: 1, unitsPerDeal: count * 2)
        let deal = engine.deal("deal-0")!
        // Warm up allocator and code paths, then measure from a settled baseline.
        _ = await deal.execute([.hold(HoldRequest(investor: "warm", units: .whole(1), price: .whole(25)))])
        let before = residentBytes()
        let heapBefore = heapBytesInUse()
        let batch = 256
        var requests: [DealRequest] = []
        for i in 0..<batch { requests.append(.hold(HoldRequest(investor: "inv-\(i % 97)", units: .whole(1), price: .whole(25)))) }
        for _ in 0..<(count / batch) { _ = await deal.execute(requests) }
        let after = residentBytes()
        let heapAfter = heapBytesInUse()
        let holds = Double(count / batch * batch)
        FileHandle.standardError.write(String(format: "memory per live hold: %.0f bytes resident, %.0f bytes of heap in use; Hold stride %d\n",
                                              Double(after - before) / holds, Double(heapAfter - heapBefore) / holds,
                                              MemoryLayout<Hold>.stride).data(using: .utf8)!)
        let ok = await engine.invariantViolations().isEmpty
        return (Double(after - before) / holds, ok)
    }
}
