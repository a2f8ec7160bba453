import AllocationEngine
import WAL

/// The commands of the power-loss campaign, as a client sends them: every
/// kind of change (deals, lots, holds with and without PARTIAL, ID and TTL,
/// releases, allocations with and without ID, approvals, rejections,
/// settlements, expiries after the clock moves, status changes, people,
/// commitments, fee plans and fees, invoices, payments, bank imports and
/// reconciliation, snapshots) and reads between them. Names are remembered
/// when a command is sent; whether it took effect does not matter to what
/// follows (a command on something missing is simply refused).
struct PowerLossWorkload {
    /// Commands run by the engine as a whole rather than by one deal's actor:
    /// each goes in a batch of its own (their waits for the disk happen
    /// inside them, and the simulation must see each one reach it).
    static let engineWide: Set<String> = ["DEAL.CREATE", "SNAPSHOT", "SWEEP", "INVESTOR.CREATE", "USER.CREATE", "BANK.IMPORT"]

    var counter = 0
    var deals: [String] = []
    var lots: [String: [String]] = [:]
    var holds: [String] = []
    var allocations: [String] = []
    var invoices: [String] = []
    var plans: [String: String] = [:]
    var bank: [String] = []
    var investors = ["inv0", "inv1", "inv2", "inv3"]

    mutating func fresh(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)\(counter)"
    }

    func units(_ rng: inout SplitMix64, _ max: Int) -> String {
        let whole = 1 + rng.below(max)
        return rng.chance(20) ? "\(whole).\(10 + rng.below(90))" : "\(whole)"
    }

    /// A read of something the workload knows (answered only once what it
    /// shows is durable: the read barrier).
    func read(_ rng: inout SplitMix64) -> [String] {
        if let h = pick(&rng, holds), rng.chance(60) { return ["HOLD.GET", h] }
        if let a = pick(&rng, allocations), rng.chance(50) { return ["ALLOCATION.GET", a] }
        if let d = pick(&rng, deals) { return rng.chance(70) ? ["INVENTORY", d] : ["POSITION.GET", pick(&rng, investors)!, d] }
        return ["DEAL.GET", "none"]
    }

    func pick<T>(_ rng: inout SplitMix64, _ items: [T]) -> T? { items.isEmpty ? nil : items[rng.below(items.count)] }

    /// One batch: an engine-wide command alone, or one to four deal commands
    /// (a pipelining client), mostly for the same deal.
    mutating func batch(_ rng: inout SplitMix64, clock: ManualClock) -> [[String]] {
        if deals.isEmpty || (deals.count < 4 && rng.chance(6)) {
            let id = fresh("d")
            deals.append(id)
            lots[id] = []
            var c = ["DEAL.CREATE", id]
            if rng.chance(60) { c += ["PRICE", "\(5 + rng.below(20))"] }
            if rng.chance(10) { c += ["STATUS", "draft"] }
            return [c]
        }
        let roll = rng.below(100)
        switch roll {
        case ..<3:
            return [["SNAPSHOT"]]
        case ..<7:
            // Time passes; the sweep expires what is due, as logged changes.
            clock.advance(millis: Int64(1 + rng.below(40 * 60)) * 1000)
            return [["SWEEP"]]
        case ..<9:
            let id = "inv\(investors.count)"
            investors.append(id)
            return [["INVESTOR.CREATE", id, "Investor \(id)", "KYC", rng.chance(80) ? "approved" : "pending"]]
        case ..<10:
            return [["USER.CREATE", fresh("user"), "investor", "NAME", "U"]]
        case ..<12:
            let t = fresh("t")
            bank.append(t)
            return [["BANK.IMPORT", t, "acct-1", "\(1 + rng.below(500)).00", "2026-03-02"]]
        default:
            break
        }
        var out: [[String]] = []
        let count = rng.chance(45) ? 1 : 2 + rng.below(3)
        let deal = pick(&rng, deals)!
        for _ in 0..<count { out.append(dealCommand(&rng, deal: rng.chance(85) ? deal : pick(&rng, deals)!)) }
        return out
    }

    mutating func dealCommand(_ rng: inout SplitMix64, deal: String) -> [String] {
        let roll = rng.below(100)
        switch roll {
        case ..<10:
            let lot = fresh("L")
            lots[deal, default: []].append(lot)
            var c = ["LOT.ADD", deal, lot, units(&rng, 400), "\(1 + rng.below(9))"]
            if rng.chance(30) { c += ["ACQUIRED", "2024-0\(1 + rng.below(9))-1\(rng.below(9))"] }
            return c
        case ..<42:
            var c = ["HOLD", deal, pick(&rng, investors)!, units(&rng, 60), "\(5 + rng.below(10))"]
            if rng.chance(30) { c += ["TTL", "\(60 + rng.below(3600))"] }
            if rng.chance(40) {
                let id = rng.chance(15) ? (pick(&rng, holds) ?? fresh("h-")) : fresh("h-")
                c += ["ID", id]
                if !holds.contains(id) { holds.append(id) }
            }
            if rng.chance(25) { c.append("PARTIAL") }
            return c
        case ..<50:
            guard let h = pick(&rng, holds) else { return read(&rng) }
            return ["RELEASE", h]
        case ..<60:
            guard let h = pick(&rng, holds) else { return read(&rng) }
            if rng.chance(50) {
                let id = fresh("a-")
                allocations.append(id)
                return ["ALLOCATE", h, "ID", id]
            }
            return ["ALLOCATE", h]
        case ..<68:
            guard let a = pick(&rng, allocations) else { return read(&rng) }
            return [["APPROVE", "APPROVE", "APPROVE", "REJECT", "SETTLE"][rng.below(5)], a]
        case ..<70:
            let status = ["open", "open", "allocation_pending", "closed", "cancelled"][rng.below(5)]
            return ["DEAL.STATUS", deal, status]
        case ..<73:
            guard let lot = pick(&rng, lots[deal] ?? []) else { return read(&rng) }
            return ["LOT.RESIZE", deal, lot, units(&rng, 500)]
        case ..<76:
            return ["COMMIT", deal, pick(&rng, investors)!, "UNITS", units(&rng, 20)]
        case ..<79:
            if let plan = plans[deal] {
                return ["FEEPLAN.ADD", plan, fresh("c"), "subscription", "percent_of_investment", "RATE_BPS", "\(50 + rng.below(400))"]
            }
            let plan = fresh("plan")
            plans[deal] = plan
            return ["FEEPLAN.CREATE", deal, plan, "Plan", "DEFAULT"]
        case ..<82:
            return ["FEES.COMPUTE", deal]
        case ..<85:
            var c = ["INVOICE.CREATE", deal, pick(&rng, investors)!]
            if rng.chance(50) { c += ["TAX_BPS", "\(rng.below(2000))"] }
            return c
        case ..<88:
            guard let v = pick(&rng, invoices) else { return read(&rng) }
            if let t = pick(&rng, bank), rng.chance(50) { return ["RECONCILE", v, t, "\(1 + rng.below(20)).00"] }
            return ["PAYMENT.RECORD", v, "\(1 + rng.below(50)).\(10 + rng.below(90))"]
        default:
            return read(&rng)
        }
    }
}
