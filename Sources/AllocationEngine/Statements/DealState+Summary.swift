/// `DEAL.SUMMARY`: the dashboard row of the seed's `v_deal_summary` and
/// `fn_get_deal_inventory`, from the deal's own rows. A user who is not staff
/// sees the deal-wide inventory and members, and the allocations,
/// commitments, fees and invoices of its own investors only.
extension DealState {
    func summaryFields(scope: [String: KYCStatus]?, index: EngineIndexes) throws(EngineError) -> [Field] {
        func mine(_ investor: String) -> Bool { scope.map { $0[investor] != nil } ?? true }
        let inv = inventory()
        var allocationCount = [Int](repeating: 0, count: AllocationStatus.allCases.count)
        var allocationUnits = [Units](repeating: .zero, count: AllocationStatus.allCases.count)
        allocations.forEachInMemory { _, a in
            guard mine(investors[Int(a.investor)]) else { return }
            allocationCount[Int(a.status.rawValue)] += 1
            allocationUnits[Int(a.status.rawValue)] += a.units
        }
        // Rejected allocations that left memory, read back from the history
        // (one entry per 64 rows; a deal that rejected none reads nothing).
        if allocations.archivedRows > 0 {
            guard let store = index.history.store else {
                throw EngineError(.corrupt, "deal \(info.id) has allocations in the history but the engine has none")
            }
            // An entry of stragglers is listed under each chunk it has rows of: read it once.
            var entries = Set<HistoryLocation>()
            for locations in allocations.archived.values { entries.formUnion(locations) }
            for location in entries {
                for (_, a) in try store.rows(ArchivedAllocation.self, at: location).rows where mine(a.investorID) {
                    allocationCount[Int(a.allocation.status.rawValue)] += 1
                    allocationUnits[Int(a.allocation.status.rawValue)] += a.allocation.units
                }
            }
        }
        var roles: [String: Int] = [:]
        for m in people.members where !m.removed { roles[m.role.rawValue, default: 0] += 1 }
        // Commitments: submitted (not yet decided: submitted or under review) and approved.
        var submitted = (count: 0, units: Units.zero, amount: Money.zero), approved = submitted
        for c in people.commitments where mine(c.investor) {
            switch c.status {
            case .submitted, .underReview:
                submitted.count += 1; submitted.units += c.units ?? .zero; submitted.amount.raw += c.amount?.raw ?? 0
            case .approved:
                approved.count += 1; approved.units += c.units ?? .zero; approved.amount.raw += c.amount?.raw ?? 0
            default: break
            }
        }
        var accrued = Money.zero, invoiced = Money.zero, paid = Money.zero, outstanding = Money.zero
        var open = 0
        for e in money.feeEvents where mine(e.investor) {
            if e.status == .accrued { accrued.raw += e.computedAmount.raw }
            if e.status == .invoiced { invoiced.raw += e.computedAmount.raw }
        }
        for i in money.invoices where !i.isStatement && mine(i.investor) {
            paid.raw += i.paid.raw
            if !i.cancelled && i.paid.raw < i.total.raw {
                open += 1
                outstanding.raw += i.total.raw - i.paid.raw
            }
        }
        var f = [
            Field("deal", info.id), Field("name", info.name), Field("status", info.status.name), Field("vehicle", info.vehicle),
            Field("currency", info.currency), Field("offer_unit_price", info.offerUnitPrice?.description),
            Field("units_total", inv.unitsTotal.description), Field("units_remaining", inv.unitsRemaining.description),
            Field("units_held", inv.unitsHeld.description), Field("units_allocated", inv.unitsAllocated.description),
            Field("utilization_percent", inv.utilizationPercent), Field("holds_pending", String(inv.holdsPending)),
        ]
        for s in AllocationStatus.allCases {
            f.append(Field("allocations_\(s.name)", String(allocationCount[Int(s.rawValue)])))
            f.append(Field("allocations_\(s.name)_units", allocationUnits[Int(s.rawValue)].description))
        }
        f += [
            Field("members", String(roles.values.reduce(0, +))),
            Field("members_by_role", table: roles.keys.sorted().map { [$0, String(roles[$0]!)] }),
            Field("commitments_submitted", String(submitted.count)), Field("commitments_submitted_units", submitted.units.description),
            Field("commitments_submitted_amount", submitted.amount.description),
            Field("commitments_approved", String(approved.count)), Field("commitments_approved_units", approved.units.description),
            Field("commitments_approved_amount", approved.amount.description),
            Field("fees_accrued", accrued.description), Field("fees_invoiced", invoiced.description), Field("fees_paid", paid.description),
            Field("invoices_outstanding", String(open)), Field("invoices_outstanding_amount", outstanding.description),
        ]
        return f
    }
}
