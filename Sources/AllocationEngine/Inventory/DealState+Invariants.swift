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
        for (slot, h) in holds.enumerated() {
            var sum: Int128 = 0
            for p in [h.firstPart] + h.moreParts {
                sum += p.units.raw
                switch h.status {
                case .pending: held[Int(p.lot)] += p.units.raw
                case .approved:
                    if allocations[Int(h.allocation)].status.isLive { allocated[Int(p.lot)] += p.units.raw }
                case .expired, .cancelled: break
                }
            }
            if h.status == .pending { pending += 1 }
            if sum > h.requested.raw || (!h.partial && sum != h.requested.raw) {
                problems.append("deal \(info.id) hold \(h.id): split \(sum) vs requested \(h.requested.raw)")
            }
            if h.status == .approved && (h.allocation < 0 || allocations[Int(h.allocation)].hold != Int32(slot)) {
                problems.append("deal \(info.id) hold \(h.id): approved without its allocation")
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
        var positionUnits = [Int128](repeating: 0, count: investors.count)
        for a in allocations where a.status == .approved || a.status == .settled { positionUnits[Int(a.investor)] += a.units.raw }
        for (i, p) in positions.enumerated() where p.units.raw != positionUnits[i] {
            problems.append("deal \(info.id) investor \(investors[i]): position \(p.units) != approved allocations \(Units(raw: positionUnits[i]))")
        }
        return problems
    }
}
