/// Read views with the seed's column names, as field/value pairs.
extension DealState {
    public func dealFields() -> [Field] {
        [
            Field("id", info.id), Field("number", String(info.number)), Field("name", info.name),
            Field("deal_type", info.dealType), Field("vehicle_id", info.vehicle), Field("status", info.status.name),
            Field("currency", info.currency), Field("offer_unit_price", info.offerUnitPrice?.description),
            Field("open_at", info.openAt.map { String($0) }), Field("close_at", info.closeAt.map { String($0) }),
            Field("created_at", String(info.createdAt)), Field("lots", String(lots.count)),
            Field("kyc_required", info.kycRequired ? "1" : "0"), Field("created_by", info.createdBy),
        ]
    }

    /// A hold's row, in memory or read back from the history.
    public func holdFields(_ slot: Int32, index: EngineIndexes) throws(EngineError) -> [Field] {
        let row = try holdRow(slot, index: index)
        return holdFields(row.hold, investor: row.investor, index: index)
    }

    /// `investor`: the id, for a row read from the history (its slot may name
    /// another investor by now); a row in memory finds it by its slot.
    func holdFields(_ h: Hold, investor: String? = nil, index: EngineIndexes) -> [Field] {
        var split = ""
        for p in [h.firstPart] + h.moreParts {
            if !split.isEmpty { split += "," }
            split += "\(lots[Int(p.lot)].id):\(p.units)"
        }
        return [
            Field("id", h.id), Field("deal", info.id), Field("investor", investor ?? investors[Int(h.investor)]),
            Field("units", h.filled.description), Field("requested_units", h.requested.description),
            Field("price", h.proposedUnitPrice.description), Field("proposed_unit_price", h.proposedUnitPrice.description),
            Field("status", h.status.name), Field("expires_at", String(h.expiresAt)), Field("created_at", String(h.createdAt)),
            Field("partial", h.partial ? "1" : "0"), Field("lots", split),
            Field("allocation", h.allocation >= 0 ? allocationID(h.allocation, index: index) : nil),
            Field("created_by", h.createdBy),
        ]
    }

    /// An allocation's row, in memory or read back from the history.
    public func allocationFields(_ slot: Int32, index: EngineIndexes) throws(EngineError) -> [Field] {
        let row = try allocationRow(slot, index: index)
        return allocationFields(row.allocation, investor: row.investor)
    }

    func allocationFields(_ a: Allocation, investor: String) -> [Field] {
        [
            Field("id", a.id), Field("deal", info.id), Field("hold", a.holdID),
            Field("investor", investor), Field("units", a.units.description),
            Field("unit_price", a.unitPrice.description), Field("status", a.status.name),
            Field("amount", ExactAmount(units: a.units, price: a.unitPrice).roundedToMoney.description),
            Field("created_at", String(a.createdAt)),
            Field("approved_at", a.status == .approved || a.status == .settled ? String(a.decidedAt) : nil),
            Field("rejected_at", a.status == .rejected ? String(a.decidedAt) : nil),
            Field("settled_at", a.status == .settled ? String(a.settledAt) : nil),
            Field("created_by", a.createdBy),
            Field("approved_by", a.status == .approved || a.status == .settled ? a.decidedBy : nil),
            Field("rejected_by", a.status == .rejected ? a.decidedBy : nil),
            Field("approval", a.approval >= 0 ? approvalID(a.approval) : nil),
        ]
    }

    public func lotFields(_ id: String) -> [Field]? {
        guard let slot = lotByID[id] else { return nil }
        let l = lots[Int(slot)]
        return [
            Field("id", l.id), Field("deal", info.id), Field("units_total", l.unitsTotal.description),
            Field("units_remaining", l.unitsRemaining.description), Field("units_held", l.unitsHeld.description),
            Field("units_allocated", l.unitsAllocated.description), Field("unit_cost", l.unitCost.description),
            Field("currency", l.currency), Field("acquired_at", l.acquiredAt?.description),
            Field("lockup_until", l.lockupUntil?.description), Field("source", l.source), Field("status", l.status.rawValue),
            Field("created_at", String(l.createdAt)),
        ]
    }

    /// The seed's `fn_get_deal_inventory` / `v_deal_summary`.
    public func inventory() -> Inventory {
        Inventory(deal: info.id, status: info.status, unitsTotal: unitsTotal, unitsRemaining: unitsRemaining,
                  unitsHeld: unitsHeld, unitsAllocated: unitsAllocated, holdsPending: pendingHolds,
                  lots: lots.map { Inventory.LotLine(id: $0.id, unitsTotal: $0.unitsTotal, unitsRemaining: $0.unitsRemaining,
                                                      unitsHeld: $0.unitsHeld, unitsAllocated: $0.unitsAllocated, status: $0.status) })
    }

    public func positionFields(investor: String) -> [Field] {
        let p = investorSlot[IdKey(investor)].map { positions[Int($0)] } ?? Position()
        return [
            Field("investor", investor), Field("deal", info.id), Field("units", p.units.description),
            Field("cost_basis", p.costBasis.roundedToMoney.description), Field("cost_basis_exact", p.costBasis.description),
            Field("last_updated", String(p.lastUpdated)),
        ]
    }

    public func position(investor: String) -> Position {
        investorSlot[IdKey(investor)].map { positions[Int($0)] } ?? Position()
    }
}

public struct Inventory: Sendable, Hashable {
    public struct LotLine: Sendable, Hashable {
        public var id: String
        public var unitsTotal, unitsRemaining, unitsHeld, unitsAllocated: Units
        public var status: LotStatus
    }
    public var deal: String
    public var status: DealStatus
    public var unitsTotal, unitsRemaining, unitsHeld, unitsAllocated: Units
    public var holdsPending: Int
    public var lots: [LotLine]

    /// (held + allocated) / total as a percent with two decimals, rounded half to
    /// even on the exact quotient.
    public var utilizationPercent: String {
        guard unitsTotal.raw > 0 else { return "0.00" }
        let numerator = (unitsHeld + unitsAllocated).raw * 10_000
        var q = numerator / unitsTotal.raw
        let r = numerator % unitsTotal.raw
        if r * 2 > unitsTotal.raw || (r * 2 == unitsTotal.raw && q % 2 != 0) { q += 1 }
        return Money(raw: q).description
    }

    public var fields: [Field] {
        var f = [
            Field("deal", deal), Field("status", status.name), Field("units_total", unitsTotal.description),
            Field("units_remaining", unitsRemaining.description), Field("units_held", unitsHeld.description),
            Field("units_allocated", unitsAllocated.description), Field("holds_pending", String(holdsPending)),
            Field("utilization_percent", utilizationPercent), Field("lots", String(lots.count)),
        ]
        for l in lots {
            f.append(Field("lot:\(l.id)", "total=\(l.unitsTotal) remaining=\(l.unitsRemaining) held=\(l.unitsHeld) allocated=\(l.unitsAllocated) status=\(l.status.rawValue)"))
        }
        return f
    }
}
