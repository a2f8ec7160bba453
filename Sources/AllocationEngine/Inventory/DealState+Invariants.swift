/// The full invariant check, recomputed from the rows rather than trusting the
/// counters. Costly (walks every hold), so tests, benchmarks and tools call it;
/// the hot path asserts the per-lot form in debug builds.
extension DealState {
    @inline(never)
    public func invariantViolations() -> [String] {
        var problems: [String] = []
        var held = [Int128](repeating: 0, count: lots.count)
        var allocated = [Int128](repeating: 0, count: lots.count)
        var pending = 0
        // Held units from the pending holds (all in memory), allocated units
        // from the live allocations' own splits (their holds may be in the history).
        holds.forEachInMemory { slot, h in
            var sum: Int128 = 0
            for p in [h.firstPart] + h.moreParts {
                sum += p.units.raw
                if h.status == .pending { held[Int(p.lot)] += p.units.raw }
            }
            if h.status == .pending { pending += 1 }
            if sum > h.requested.raw || (!h.partial && sum != h.requested.raw) {
                problems.append("deal \(info.id) hold \(h.id): split \(sum) vs requested \(h.requested.raw)")
            }
            // An allocation that left memory (rejected) is checked by its own row only.
            if h.status == .approved && (h.allocation < 0 || Int(h.allocation) >= allocations.count
                                         || (allocations.isInMemory(h.allocation) && allocations[Int(h.allocation)].hold != slot)) {
                problems.append("deal \(info.id) hold \(h.id): approved without its allocation")
            }
        }
        // Every live allocation is in memory; rejected ones may have left.
        allocations.forEachInMemory { _, a in
            var sum: Int128 = 0
            a.forEachPart { lot, u in
                sum += u.raw
                if a.status.isLive { allocated[Int(lot)] += u.raw }
            }
            if sum != a.units.raw { problems.append("deal \(info.id) allocation \(a.id): split \(sum) vs units \(a.units.raw)") }
            if holds.isInMemory(a.hold) && (holds[Int(a.hold)].status != .approved || holds[Int(a.hold)].id != a.holdID) {
                problems.append("deal \(info.id) allocation \(a.id): its hold \(a.holdID) is not the approved one")
            }
        }
        var totals = (Int128(0), Int128(0), Int128(0), Int128(0))
        for (i, l) in lots.enumerated() {
            if l.unitsRemaining.raw < 0 { problems.append("deal \(info.id) lot \(l.id): negative remaining \(l.unitsRemaining)") }
            if l.unitsTotal.raw != l.unitsRemaining.raw + held[i] + allocated[i] {
                problems.append("deal \(info.id) lot \(l.id): total \(l.unitsTotal) != remaining \(l.unitsRemaining) + held \(Units(raw: held[i])) + allocated \(Units(raw: allocated[i]))")
            }
            if l.unitsHeld.raw != held[i] || l.unitsAllocated.raw != allocated[i] {
                problems.append("deal \(info.id) lot \(l.id): counters held \(l.unitsHeld)/allocated \(l.unitsAllocated) disagree with rows")
            }
            totals.0 += l.unitsTotal.raw; totals.1 += l.unitsRemaining.raw; totals.2 += l.unitsHeld.raw; totals.3 += l.unitsAllocated.raw
        }
        if totals != (unitsTotal.raw, unitsRemaining.raw, unitsHeld.raw, unitsAllocated.raw) {
            problems.append("deal \(info.id): deal sums disagree with its lots")
        }
        if pending != pendingHolds { problems.append("deal \(info.id): \(pendingHolds) pending holds counted, \(pending) found") }
        problems.append(contentsOf: investorTableViolations())
        for (name, problem) in [("holds", holds.counterMismatch()), ("allocations", allocations.counterMismatch()),
                                ("approvals", people.approvals.counterMismatch())] {
            if let problem { problems.append("deal \(info.id) \(name) table: \(problem)") }
        }
        var positionUnits = [Int128](repeating: 0, count: investors.count)
        allocations.forEachInMemory { _, a in
            if a.status == .approved || a.status == .settled { positionUnits[Int(a.investor)] += a.units.raw }
        }
        for (i, p) in positions.enumerated() where p.units.raw != positionUnits[i] {
            problems.append("deal \(info.id) investor \(investors[i]): position \(p.units) != approved allocations \(Units(raw: positionUnits[i]))")
        }
        return problems
    }
}
