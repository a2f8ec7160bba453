import AllocationEngine
import CLinux
import Foundation

/// Issue 10: what one (investor, deal) pair costs in memory, apart from its
/// holds: the same number of holds placed once with one investor per deal and
/// once with a new investor for every hold; the difference in C heap
/// (mallinfo2) divided by the holds is the cost of interning an investor in a
/// deal (its id, slot map entry, position, holdings entry).
///
///   swift run -c release engine-bench --only invmem [--quick]
struct InvestorMemoryBenchmarks {
    let options: BenchOptions

    func run(into report: inout BenchReport) async {
        let deals = options.quick ? 100 : 1000
        let holds = options.quick ? 500 : 2000
        for distinct in [false, true, false, true] {
            let bytes = await measure(deals: deals, holdsPerDeal: holds, distinctInvestors: distinct)
            report.row("heap, \(deals) deals x \(holds) holds, \(distinct ? "a new investor per hold" : "one investor per deal")",
                       String(format: "%.1f MB, %.0f B per hold", bytes / 1e6, bytes / Double(deals * holds)))
        }
        // What outlives a freed slot: the investor's entry in Holdings, one
        // deal number in a set per (investor, deal) pair.
        let investors = options.quick ? 1_000 : 10_000
        for _ in 0..<2 {
            let bytes = holdingsBytes(investors: investors, deals: deals)
            report.row("heap, Holdings of \(investors) investors x \(deals) deals",
                       String(format: "%.1f MB, %.1f B per pair", bytes / 1e6, bytes / Double(investors * deals)))
        }
    }

    func holdingsBytes(investors: Int, deals: Int) -> Double {
        _ = malloc_trim(0)
        let before = Self.heap()
        var holdings: Holdings? = Holdings()
        let allDeals = (0..<deals).map { UInt32($0) }
        holdings!.add(investors: (0..<investors).map { ("inv-\($0)", allDeals) })
        let bytes = Self.heap() - before
        holdings = nil
        _ = malloc_trim(0)
        return bytes
    }

    static func heap() -> Double {
        let info = mallinfo2()
        return Double(info.uordblks) + Double(info.hblkhd)
    }

    func measure(deals: Int, holdsPerDeal: Int, distinctInvestors: Bool) async -> Double {
        _ = malloc_trim(0)
        let before = Self.heap()
        var engine: Engine? = Engine()
        var actors: [DealActor] = []
        for d in 0..<deals {
            try! await engine!.createDeal(DealSpec(id: "m\(d)"))
            try! await engine!.addLot(deal: "m\(d)", LotSpec(id: "m\(d)-a", unitsTotal: .whole(holdsPerDeal * 4), unitCost: .whole(20)))
            actors.append(engine!.deal("m\(d)")!)
        }
        for a in actors {
            var placed = 0
            while placed < holdsPerDeal {
                let n = min(1024, holdsPerDeal - placed)
                let batch = (0..<n).map { k -> DealRequest in
                    .hold(HoldRequest(investor: distinctInvestors ? "inv-\(placed + k)" : "inv-0", units: .whole(1), price: .whole(25)))
                }
                _ = await engine!.submit(batch, to: a)
                placed += n
            }
        }
        let bytes = Self.heap() - before
        actors = []
        engine = nil
        _ = malloc_trim(0)
        return bytes
    }
}
