/// Decisions: each checks a request against the current state and returns the
/// change to log and apply, without changing anything. Between a decision and
/// its application there is no suspension point (see DealActor).
extension DealState {
    enum HoldDecision {
        case place(HoldSpec)
        case existing(HoldReceipt)
    }

    func decideHold(_ r: HoldRequest, now: Int64, defaultTTL: Int64, index: EngineIndexes, user: String?) throws(EngineError) -> HoldDecision {
        if lastInvestor?.id != r.investor { try Validate.id(r.investor, field: "investor") }
        guard r.units.raw > 0 && r.units.raw <= NumberLimits.maxUnitsRaw else {
            throw EngineError(.invalid, "units must be greater than zero and at most \(Units(raw: NumberLimits.maxUnitsRaw)), got \(r.units)")
        }
        guard r.price.raw >= 0 && Int128(r.price.raw) <= NumberLimits.maxPriceRaw else {
            throw EngineError(.invalid, "price must be between 0 and \(Price(raw: Int64(NumberLimits.maxPriceRaw))), got \(r.price)")
        }
        let ttl = r.ttlMillis ?? defaultTTL
        guard ttl >= EngineLimits.minHoldTTLMillis && ttl <= EngineLimits.maxHoldTTLMillis else {
            throw EngineError(.invalid, "TTL must be between \(EngineLimits.minHoldTTLMillis / 1000) and \(EngineLimits.maxHoldTTLMillis / 1000) seconds")
        }
        if let id = r.id {
            try Validate.callerID(id, field: "hold id")
            if let existing = index.holds.lookup(id) {
                guard existing.deal == ref, Int(existing.slot) < holds.count else {
                    throw EngineError(.conflict, "hold id \(id) is already used in another deal")
                }
                let row = try holdRow(existing.slot, index: index)
                let h = row.hold
                guard row.investor == r.investor, h.requested == r.units, h.proposedUnitPrice == r.price,
                      h.partial == r.partial, h.expiresAt - h.createdAt == ttl
                else { throw EngineError(.conflict, "hold id \(id) was used with different parameters") }
                return .existing(receipt(of: h))
            }
        }
        try checkOpenForHolds(now: now)
        guard pendingHolds < EngineLimits.maxPendingHoldsPerDeal, holds.count < EngineLimits.maxRowsPerDeal else {
            throw EngineError(.limit, "deal \(info.id) has the maximum of \(EngineLimits.maxPendingHoldsPerDeal) pending holds; allocate, release or let some expire")
        }
        let available = unitsRemaining
        if r.partial ? available.raw == 0 : available < r.units {
            throw EngineError(.insufficient, "requested \(r.units), available \(available)")
        }
        var need = r.partial ? min(r.units, available) : r.units
        var first: LotPart?
        var more: [LotPart] = []
        var pos = cursor
        while need.raw > 0 {
            // The deal-wide sum says enough remains, so the walk cannot run off the end.
            precondition(pos < lotOrder.count, "deal remaining units disagree with its lots")
            let lot = lotOrder[pos]
            let have = lots[Int(lot)].unitsRemaining
            if have.raw > 0 {
                let take = min(have, need)
                if first == nil { first = LotPart(lot: lot, units: take) } else { more.append(LotPart(lot: lot, units: take)) }
                need -= take
            }
            pos += 1
        }
        guard let first else { preconditionFailure("a hold of positive units took no lot") }
        return .place(HoldSpec(id: r.id ?? "", investor: r.investor, requested: r.units, price: r.price,
                               expiresAt: now + ttl, partial: r.partial, firstPart: first, moreParts: more, createdBy: user))
    }

    func checkOpenForHolds(now: Int64) throws(EngineError) {
        guard info.status == .open else { throw EngineError(.closed, "deal \(info.id) is \(info.status.name), not open") }
        if let closeAt = info.closeAt, now >= closeAt { throw EngineError(.closed, "deal \(info.id) closed at \(closeAt / 1000)") }
        if let openAt = info.openAt, now < openAt { throw EngineError(.closed, "deal \(info.id) opens at \(openAt / 1000)") }
    }

    func decideRelease(_ id: String, now: Int64, index: EngineIndexes) throws(EngineError) -> (Change?, EngineError?) {
        let slot = try holdSlot(id, index: index)
        let h = try holdRow(slot, index: index).hold
        switch h.status {
        case .pending:
            if h.expiresAt <= now {
                return (.holdExpired(deal: info.id, hold: id), EngineError(.expired, "hold \(id) expired at \(h.expiresAt)"))
            }
            return (.holdReleased(deal: info.id, hold: id), nil)
        case .cancelled: return (nil, nil)
        case .expired: throw EngineError(.expired, "hold \(id) expired at \(h.expiresAt)")
        case .approved: throw EngineError(.conflict, "hold \(id) is already allocated")
        }
    }

    enum AllocateDecision {
        case create(Change, id: String)
        case existing(String)
        case expire(Change, EngineError)
    }

    func decideAllocate(hold id: String, allocationID: String?, now: Int64, index: EngineIndexes, user: String?) throws(EngineError) -> AllocateDecision {
        let slot = try holdSlot(id, index: index)
        let h = try holdRow(slot, index: index).hold
        if let a = allocationID { try Validate.callerID(a, field: "allocation id") }
        switch h.status {
        case .approved:
            let existing = self.allocationID(h.allocation, index: index)
            guard allocationID == nil || allocationID == existing else {
                throw EngineError(.conflict, "hold \(id) is already allocated as \(existing)")
            }
            return .existing(existing)
        case .expired: throw EngineError(.expired, "hold \(id) expired at \(h.expiresAt)")
        case .cancelled: throw EngineError(.conflict, "hold \(id) was released")
        case .pending: break
        }
        guard info.status == .open || info.status == .allocationPending else {
            throw EngineError(.closed, "deal \(info.id) is \(info.status.name); allocations need it open or allocation_pending")
        }
        if h.expiresAt <= now {
            return .expire(.holdExpired(deal: info.id, hold: id), EngineError(.expired, "hold \(id) expired at \(h.expiresAt)"))
        }
        guard allocations.count < EngineLimits.maxRowsPerDeal else {
            throw EngineError(.limit, "deal \(info.id) has the maximum number of allocations")
        }
        if let a = allocationID, index.allocations.lookup(a) != nil {
            throw EngineError(.conflict, "allocation id \(a) is already used")
        }
        return .create(.allocationCreated(deal: info.id, hold: id, allocation: allocationID ?? "", by: user), id: allocationID ?? "")
    }

    /// Approve, reject or settle. Asking for the state it is already in is a
    /// no-op (a retried request), any other move outside the state machine a conflict.
    func decideAllocationStatus(_ id: String, to target: AllocationStatus, index: EngineIndexes, user: String?) throws(EngineError) -> Change? {
        let slot = try allocationSlot(id, index: index)
        // In place for a row in memory (the approve path); a rejected one that left is read back.
        let current = allocations.isInMemory(slot) ? allocations[Int(slot)].status : try allocationRow(slot, index: index).allocation.status
        if current == target { return nil }
        guard info.status != .draft && info.status != .cancelled else {
            throw EngineError(.closed, "deal \(info.id) is \(info.status.name)")
        }
        switch (current, target) {
        case (.pendingReview, .approved), (.pendingReview, .rejected), (.approved, .settled):
            return .allocationStatus(deal: info.id, allocation: id, status: target, by: user)
        default:
            throw EngineError(.conflict, "allocation \(id) is \(current.name); it cannot become \(target.name)")
        }
    }

    func decideStatus(_ target: DealStatus) throws(EngineError) -> Change? {
        if info.status == target { return nil }
        guard info.status.canMove(to: target) else {
            throw EngineError(.conflict, "deal \(info.id) cannot move from \(info.status.name) to \(target.name)")
        }
        return .dealStatus(deal: info.id, status: target)
    }

    func decideAddLot(_ spec: LotSpec, index: EngineIndexes) throws(EngineError) -> Change {
        try Validate.id(spec.id, field: "lot id")
        try Validate.currency(spec.currency)
        if let s = spec.source { try Validate.text(s, field: "source") }
        guard spec.unitsTotal.raw > 0 && spec.unitsTotal.raw <= NumberLimits.maxUnitsRaw else {
            throw EngineError(.invalid, "lot units must be positive and at most the units limit")
        }
        guard info.status != .closed && info.status != .cancelled else {
            throw EngineError(.closed, "deal \(info.id) is \(info.status.name); no lots can be added")
        }
        guard lotByID[spec.id] == nil else { throw EngineError(.exists, "lot \(spec.id) already exists in deal \(info.id)") }
        guard index.lots.lookup(spec.id) == nil else { throw EngineError(.exists, "lot id \(spec.id) is already used by another deal") }
        guard lots.count < EngineLimits.maxLotsPerDeal else {
            throw EngineError(.limit, "deal \(info.id) has the maximum of \(EngineLimits.maxLotsPerDeal) lots")
        }
        return .lotAdded(deal: info.id, lot: spec)
    }

    func decideResizeLot(_ id: String, to total: Units) throws(EngineError) -> Change {
        guard let slot = lotByID[id] else { throw EngineError(.notFound, "lot \(id) not found in deal \(info.id)") }
        guard total.raw >= 0 && total.raw <= NumberLimits.maxUnitsRaw else {
            throw EngineError(.invalid, "lot units must be between 0 and \(Units(raw: NumberLimits.maxUnitsRaw)), got \(total)")
        }
        let lot = lots[Int(slot)]
        let committed = lot.unitsHeld + lot.unitsAllocated
        guard total >= committed else {
            throw EngineError(.conflict, "lot \(id) has \(committed) units held or allocated; it cannot shrink to \(total)")
        }
        return .lotResized(deal: info.id, lot: slot, unitsTotal: total)
    }

    func receipt(of h: Hold) -> HoldReceipt {
        let more = h.moreParts.isEmpty ? [] : h.moreParts.map { LotShare(lot: lots[Int($0.lot)].id, units: $0.units) }
        return HoldReceipt(id: h.id, expiresAt: h.expiresAt, units: h.filled,
                           firstPart: LotShare(lot: lots[Int(h.firstPart.lot)].id, units: h.firstPart.units), moreParts: more)
    }

    func receipt(of slot: Int32) -> HoldReceipt {
        // Field by field through the branch-free accessor: no copy of the whole row.
        let i = Int(slot)
        let more = holds[present: i].moreParts.isEmpty ? [] : holds[present: i].moreParts.map { LotShare(lot: lots[Int($0.lot)].id, units: $0.units) }
        let first = holds[present: i].firstPart
        return HoldReceipt(id: holds[present: i].id, expiresAt: holds[present: i].expiresAt, units: holds[present: i].filled,
                           firstPart: LotShare(lot: lots[Int(first.lot)].id, units: first.units), moreParts: more)
    }
}
