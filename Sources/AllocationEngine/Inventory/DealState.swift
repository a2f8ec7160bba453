import WAL
import Synchronization

/// Everything one deal owns: its lots, holds, allocations and positions, as plain
/// values. All changes go through `apply(_:time:)`, used alike by the live engine
/// (after a decision) and by replay (from the log), so the two cannot diverge.
/// The deal actor owns one `DealState`; a snapshot is a copy-on-write copy.
public struct DealState: Sendable {
    public internal(set) var info: DealInfo
    public internal(set) var lots: [Lot] = []
    var lotByID: [String: Int32] = [:]
    /// Lot positions, oldest first: the order a hold takes units in.
    var lotOrder: [Int32] = []
    /// Where each lot stands in `lotOrder`.
    var orderOfLot: [Int32] = []
    /// Every position in `lotOrder` before the cursor has no remaining units.
    var cursor = 0
    public internal(set) var holds = HoldTable()
    public internal(set) var allocations = AllocationTable()
    public internal(set) var investors: [String] = []
    var investorSlot: [IdKey: Int32] = [:]
    /// The last investor interned: a burst of holds for one investor (a
    /// pipeline, a retry loop) skips the hash lookup and the id validation.
    var lastInvestor: (id: String, slot: Int32)?
    public internal(set) var positions: [Position] = []
    /// Rows in memory naming each investor slot; freed slots (id "") are on
    /// `freeInvestorSlots`, reused last freed first (DealState+Investors.swift).
    var investorRefs: [Int32] = []
    var freeInvestorSlots: [Int32] = []
    var expiry = ExpiryHeap()
    /// Members, invite links, commitments and approvals (People/).
    public internal(set) var people = DealPeople()
    /// Fee plans, terms and fee events (Money/).
    public internal(set) var money = DealMoney()

    // Deal-wide sums of the lot counters, so the hot path need not add them up.
    public internal(set) var unitsTotal = Units.zero
    public internal(set) var unitsRemaining = Units.zero
    public internal(set) var unitsHeld = Units.zero
    public internal(set) var unitsAllocated = Units.zero
    public internal(set) var pendingHolds = 0

    public init(info: DealInfo) { self.info = info }

    var ref: UInt32 { info.number }

    // MARK: - Apply

    /// Applies a decided change. Replay calls it with logged changes, so it checks
    /// every precondition and throws instead of trusting its input; the live path
    /// only passes changes it has just decided, for which it cannot throw.
    /// `index` receives the ids of new holds and allocations when `indexNew` is set
    /// (the live path has already reserved them).
    /// Returns the slot of a new hold or allocation, or -1.
    @discardableResult
    public mutating func apply(_ change: Change, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) -> Int32 {
        let slot = try applyUnchecked(change, time: time, index: index, indexNew: indexNew)
        assertDealInvariant()
        return slot
    }

    private mutating func applyUnchecked(_ change: Change, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) -> Int32 {
        switch change {
        case .dealCreated:
            throw EngineError(.conflict, "deal \(info.id) already exists")
        case .directory:
            throw EngineError(.invalid, "a directory change does not apply to a deal")
        case .people(_, let c):
            try applyPeople(c, time: time, index: index, indexNew: indexNew)
            return -1
        case .money(_, let c):
            try applyMoney(c, time: time, index: index, indexNew: indexNew)
            return -1
        case .group(_, let changes):
            // Decided together, so they apply in order; on replay a member
            // that does not apply is damage, which stops recovery.
            for c in changes { _ = try applyUnchecked(c, time: time, index: index, indexNew: indexNew) }
            return -1
        case .dealStatus(_, let status):
            guard info.status.canMove(to: status) else {
                throw EngineError(.conflict, "deal \(info.id) cannot move from \(info.status.name) to \(status.name)")
            }
            info.status = status
            if status == .cancelled || status == .closed {
                // Pending holds end with the deal's offering period; their units return.
                for slot in holds.pendingSlots() {
                    returnHoldUnits(slot, to: .cancelled, time: time)
                }
            }
            if status == .cancelled {
                // Every allocation under review is in memory (only rejected ones leave).
                for slot in 0..<allocations.count where allocations.isInMemory(Int32(slot)) && allocations[slot].status == .pendingReview {
                    rejectAllocation(Int32(slot), time: time, by: nil)
                }
            }
            return -1
        case .lotAdded(_, let spec):
            guard lotByID[spec.id] == nil else { throw EngineError(.exists, "lot \(spec.id) already exists in deal \(info.id)") }
            guard lots.count < EngineLimits.maxLotsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(EngineLimits.maxLotsPerDeal) lots")
            }
            let slot = Int32(lots.count)
            if indexNew {
                guard index.lots.insertIfAbsent(spec.id, RowRef(deal: ref, slot: slot)) == nil else {
                    throw EngineError(.exists, "lot id \(spec.id) is already used")
                }
            }
            lots.append(Lot(id: spec.id, unitsTotal: spec.unitsTotal, unitCost: spec.unitCost, currency: spec.currency,
                            acquiredAt: spec.acquiredAt, lockupUntil: spec.lockupUntil, source: spec.source, createdAt: time,
                            unitsRemaining: spec.unitsTotal, unitsHeld: .zero, unitsAllocated: .zero))
            lotByID[spec.id] = slot
            unitsTotal += spec.unitsTotal
            unitsRemaining += spec.unitsTotal
            rebuildLotOrder()
            return slot
        case .lotResized(_, let slot, let newTotal):
            guard slot >= 0 && Int(slot) < lots.count else { throw EngineError(.notFound, "lot #\(slot) not in deal \(info.id)") }
            let lot = lots[Int(slot)]
            let committed = lot.unitsHeld + lot.unitsAllocated
            guard newTotal >= committed else {
                throw EngineError(.conflict, "lot \(lot.id) has \(committed) units held or allocated; it cannot shrink to \(newTotal)")
            }
            let newRemaining = newTotal - committed
            unitsTotal += newTotal - lot.unitsTotal
            unitsRemaining += newRemaining - lot.unitsRemaining
            lots[Int(slot)].unitsTotal = newTotal
            lots[Int(slot)].unitsRemaining = newRemaining
            if newRemaining.raw > 0 { cursor = min(cursor, Int(orderOfLot[Int(slot)])) }
            assertLotInvariant(slot)
            return -1
        case .holdPlaced(_, let spec):
            return try applyHoldPlaced(spec, time: time, index: index, indexNew: indexNew)
        case .holdsArchived(_, let leaving, let location):
            // The rows that leave memory let go of their investors' slots.
            for investor in try holds.archive(leaving, at: location) { releaseInvestor(investor) }
            return -1
        case .allocationsArchived(_, let leaving, let location):
            for investor in try allocations.archive(leaving, at: location) { releaseInvestor(investor) }
            return -1
        case .approvalsArchived(_, let leaving, let location):
            // Approvals name no investor slot.
            _ = try people.approvals.archive(leaving, at: location)
            return -1
        case .holdIDsMoved(_, let count, _):
            // The run answers for these ids now; the id map forgets them.
            for gone in try holds.dropArchivedCallerIDs(first: count) {
                index.holds.removeFromMemory(gone.id, RowRef(deal: ref, slot: gone.slot))
            }
            return -1
        case .holdReleased(_, let id), .holdExpired(_, let id):
            let slot = try holdSlot(id, index: index)
            guard holds.isInMemory(slot), holds[Int(slot)].status == .pending else {
                throw EngineError(.conflict, "hold \(id) has ended, not pending")
            }
            if case .holdExpired = change {
                guard holds[Int(slot)].expiresAt <= time else {
                    throw EngineError(.conflict, "hold \(id) expires at \(holds[Int(slot)].expiresAt), not by \(time)")
                }
                returnHoldUnits(slot, to: .expired, time: time)
            } else {
                returnHoldUnits(slot, to: .cancelled, time: time)
            }
            return -1
        case .allocationCreated(_, let holdID, let allocationID, let by):
            let holdSlotValue = try holdSlot(holdID, index: index)
            let h = Int(holdSlotValue)
            guard holds.isInMemory(holdSlotValue), holds[h].status == .pending else {
                throw EngineError(.conflict, "hold \(holdID) has ended, not pending")
            }
            let slot = Int32(allocations.count)
            if indexNew {
                guard index.allocations.claim(allocationID, RowRef(deal: ref, slot: slot)) else {
                    throw EngineError(.exists, "allocation id \(allocationID) is already used or names another row")
                }
            }
            let units = holds[h].filled
            allocations.append(Allocation(units: units, firstPart: holds[h].firstPart, id: allocationID, holdID: holds[h].id,
                                          moreParts: holds[h].moreParts, unitPrice: holds[h].proposedUnitPrice, createdAt: time,
                                          decidedAt: 0, settledAt: 0, hold: holdSlotValue, investor: holds[h].investor,
                                          status: .pendingReview, createdBy: by, decidedBy: nil))
            // Every allocation opens its approval (the same change: one never exists without the other).
            allocations[Int(slot)].approval = openApproval(.allocation, entitySlot: slot, requestedBy: by, time: time)
            retainInvestor(holds[h].investor)
            holds[h].status = .approved
            holds[h].allocation = slot
            holds.ended(holdSlotValue, at: time)
            pendingHolds -= 1
            forEachPart(of: holdSlotValue) { lot, u in
                lots[Int(lot)].unitsHeld -= u
                lots[Int(lot)].unitsAllocated += u
                assertLotInvariant(lot)
            }
            unitsHeld -= units
            unitsAllocated += units
            return slot
        case .allocationStatus(_, let id, let status, let by):
            let slot = Int(try allocationSlot(id, index: index))
            // Only a rejected allocation leaves memory, and it cannot move again.
            guard allocations.isInMemory(Int32(slot)) else {
                throw EngineError(.conflict, "allocation \(id) is rejected; it cannot become \(status.name)")
            }
            let current = allocations[slot].status
            switch (current, status) {
            case (.pendingReview, .approved):
                approveAllocation(Int32(slot), time: time, by: by)
            case (.pendingReview, .rejected):
                rejectAllocation(Int32(slot), time: time, by: by)
            case (.approved, .settled):
                allocations[slot].status = .settled
                allocations[slot].settledAt = time
            default:
                throw EngineError(.conflict, "allocation \(id) is \(current.name); it cannot become \(status.name)")
            }
            return -1
        }
    }

    private mutating func applyHoldPlaced(_ spec: HoldSpec, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) -> Int32 {
        var total = Units.zero
        var valid = true
        spec.forEachPart { p in
            if !(p.lot >= 0 && Int(p.lot) < lots.count && p.units.raw > 0 && lots[Int(p.lot)].unitsRemaining >= p.units) { valid = false }
            total += p.units
        }
        guard valid else { throw EngineError(.insufficient, "hold \(spec.id) takes more units of a lot than remain") }
        guard total <= spec.requested, spec.partial || total == spec.requested else {
            throw EngineError(.invalid, "hold \(spec.id) split does not add up to its units")
        }
        let slot = Int32(holds.count)
        if indexNew {
            guard index.holds.claim(spec.id, RowRef(deal: ref, slot: slot)) else {
                throw EngineError(.exists, "hold id \(spec.id) is already used or names another row")
            }
        }
        let (investor, isNew) = internInvestor(spec.investor)
        // An investor new to this deal (or back after its rows left memory):
        // its statement and portfolio find the deal from now on.
        if isNew { index.holdings.add(spec.investor, deal: ref) }
        retainInvestor(investor)
        spec.forEachPart { p in
            lots[Int(p.lot)].unitsRemaining -= p.units
            lots[Int(p.lot)].unitsHeld += p.units
            assertLotInvariant(p.lot)
        }
        unitsRemaining -= total
        unitsHeld += total
        pendingHolds += 1
        holds.append(Hold(requested: spec.requested, firstPart: spec.firstPart, id: spec.id, proposedUnitPrice: spec.price,
                          createdAt: time, expiresAt: spec.expiresAt, moreParts: spec.moreParts,
                          investor: investor, allocation: -1, status: .pending, partial: spec.partial,
                          createdBy: spec.createdBy))
        expiry.push(at: spec.expiresAt, slot: slot)
        advanceCursor()
        return slot
    }

    // MARK: - Helpers shared by apply

    /// The slot of a hold of this deal, in memory or in the history.
    func holdSlot(_ id: String, index: EngineIndexes) throws(EngineError) -> Int32 {
        guard let r = index.holds.lookup(id), r.deal == ref, r.slot >= 0, Int(r.slot) < holds.count,
              !holds.isInMemory(r.slot) || holds[Int(r.slot)].id == id
        else {
            throw EngineError(.notFound, "hold \(id) not found in deal \(info.id)")
        }
        return r.slot
    }

    /// A hold's row, read from the history when it has left memory (a few
    /// `pread`s of page-cached files: only reads of ended holds pay it).
    func holdRow(_ slot: Int32, index: EngineIndexes) throws(EngineError) -> HoldRead {
        if holds.isInMemory(slot) { let h = holds[Int(slot)]; return HoldRead(hold: h, investor: investors[Int(h.investor)]) }
        guard let store = index.history.store else {
            throw EngineError(.corrupt, "hold #\(slot) of deal \(info.id) left memory but the engine has no history")
        }
        for location in holds.locations(of: slot) {
            if let a = try store.hold(deal: ref, slot: slot, at: location) { return HoldRead(hold: a.hold, investor: a.investorID) }
        }
        throw EngineError(.corrupt, "hold #\(slot) of deal \(info.id) left memory but is not in the history")
    }

    func allocationSlot(_ id: String, index: EngineIndexes) throws(EngineError) -> Int32 {
        guard let r = index.allocations.lookup(id), r.deal == ref, r.slot >= 0, Int(r.slot) < allocations.count,
              !allocations.isInMemory(r.slot) || allocations[Int(r.slot)].id == id
        else { throw EngineError(.notFound, "allocation \(id) not found in deal \(info.id)") }
        return r.slot
    }

    @inline(__always)
    func forEachPart(of holdSlot: Int32, _ body: (Int32, Units) -> Void) {
        let h = holds[Int(holdSlot)]
        body(h.firstPart.lot, h.firstPart.units)
        for p in h.moreParts { body(p.lot, p.units) }
    }

    mutating func returnHoldUnits(_ slot: Int32, to status: HoldStatus, time: Int64) {
        precondition(holds[Int(slot)].status == .pending, "only a pending hold returns its units")
        let units = holds[Int(slot)].filled
        forEachPart(of: slot) { lot, u in
            lots[Int(lot)].unitsHeld -= u
            lots[Int(lot)].unitsRemaining += u
            cursor = min(cursor, Int(orderOfLot[Int(lot)]))
            assertLotInvariant(lot)
        }
        holds[Int(slot)].status = status
        holds.ended(slot, at: time)
        unitsHeld -= units
        unitsRemaining += units
        pendingHolds -= 1
    }

    mutating func approveAllocation(_ slot: Int32, time: Int64, by: String?, note: String? = nil) {
        precondition(allocations[Int(slot)].status == .pendingReview, "only an allocation under review is approved")
        allocations[Int(slot)].status = .approved
        allocations[Int(slot)].decidedAt = time
        allocations[Int(slot)].decidedBy = by
        let a = allocations[Int(slot)]
        positions[Int(a.investor)].units += a.units
        positions[Int(a.investor)].costBasis.raw += a.units.raw * Int128(a.unitPrice.raw)
        positions[Int(a.investor)].lastUpdated = time
        closeApproval(a.approval, .approved, by: by, time: time, note: note)
    }

    mutating func rejectAllocation(_ slot: Int32, time: Int64, by: String?, note: String? = nil) {
        precondition(allocations[Int(slot)].status == .pendingReview, "only an allocation under review is rejected")
        let a = allocations[Int(slot)]
        allocations[Int(slot)].status = .rejected
        allocations[Int(slot)].decidedAt = time
        allocations[Int(slot)].decidedBy = by
        allocations.ended(slot, at: time)
        closeApproval(a.approval, .rejected, by: by, time: time, note: note)
        a.forEachPart { lot, u in
            lots[Int(lot)].unitsAllocated -= u
            lots[Int(lot)].unitsRemaining += u
            cursor = min(cursor, Int(orderOfLot[Int(lot)]))
            assertLotInvariant(lot)
        }
        unitsAllocated -= a.units
        unitsRemaining += a.units
    }

    mutating func advanceCursor() {
        while cursor < lotOrder.count && lots[Int(lotOrder[cursor])].unitsRemaining.raw == 0 { cursor += 1 }
    }

    /// Oldest lot first (the seed's order): by acquisition date, a lot without one
    /// dated by its creation, ties by the order lots were added.
    mutating func rebuildLotOrder() {
        func key(_ i: Int) -> Int64 {
            if let d = lots[i].acquiredAt { return Int64(d.days) }
            return lots[i].createdAt / 86_400_000
        }
        lotOrder = lots.indices.sorted { a, b in (key(a), a) < (key(b), b) }.map { Int32($0) }
        orderOfLot = Array(repeating: 0, count: lots.count)
        for (pos, lot) in lotOrder.enumerated() { orderOfLot[Int(lot)] = Int32(pos) }
        cursor = 0
        advanceCursor()
    }

    /// The deal-wide form of the invariant after every change (debug builds):
    /// total = remaining + held + allocated, nothing negative.
    @inline(__always)
    func assertDealInvariant() {
        assert(unitsTotal == unitsRemaining + unitsHeld + unitsAllocated
               && unitsRemaining.raw >= 0 && unitsHeld.raw >= 0 && unitsAllocated.raw >= 0,
               "deal \(info.id) invariant broken: total \(unitsTotal) remaining \(unitsRemaining) held \(unitsHeld) allocated \(unitsAllocated)")
    }

    /// Cheap per-lot check after each change, compiled in debug builds only.
    @inline(__always)
    func assertLotInvariant(_ lot: Int32) {
        assert({
            let l = lots[Int(lot)]
            return l.unitsRemaining.raw >= 0 && l.unitsHeld.raw >= 0 && l.unitsAllocated.raw >= 0
                && l.unitsTotal == l.unitsRemaining + l.unitsHeld + l.unitsAllocated
        }(), "lot invariant broken")
    }
}

/// The two global id maps, passed to the state so replay and the live path fill
/// them the same way.
public final class EngineIndexes: Sendable {
    /// Hold ids; caller ids of holds that left memory long ago are in the
    /// on-disk runs (`holdIDRuns`, opened by the durable engine).
    public let holds: IdIndex
    public let allocations = IdIndex(generatedPrefix: UInt8(ascii: "a"))
    /// Where rows that left memory are read back (set by the durable engine).
    public let history: HistoryAccess
    public let holdIDRuns: CallerIDRuns
    /// Lot ids are unique across deals (the seed's lots are UUIDs); never generated.
    public let lots = IdIndex(generatedPrefix: 0)
    /// Commitments: `c<deal>.<n>` or the caller's id.
    public let commitments = IdIndex(generatedPrefix: UInt8(ascii: "c"))
    /// Approvals (`p<deal>.<n>`) and invite links (`i<deal>.<n>`): generated
    /// ids only, so these tables stay empty and only parse.
    public let approvals = IdIndex(generatedPrefix: UInt8(ascii: "p"))
    public let invites = IdIndex(generatedPrefix: UInt8(ascii: "i"))
    /// Invite links by the SHA-256 of their token.
    public let inviteTokens = IdIndex(generatedPrefix: 0)
    /// Fee plans by id (unique across deals); fee events (`f<deal>.<n>`, generated only).
    public let feePlans = IdIndex(generatedPrefix: 0)
    public let feeEvents = IdIndex(generatedPrefix: UInt8(ascii: "f"))
    /// Invoices (`v<deal>.<n>` or the caller's id) and payments (`y<deal>.<n>` or the caller's id).
    public let invoices = IdIndex(generatedPrefix: UInt8(ascii: "v"))
    public let payments = IdIndex(generatedPrefix: UInt8(ascii: "y"))
    /// Term sheets (`t<deal>.<n>`, generated only).
    public let termSheets = IdIndex(generatedPrefix: UInt8(ascii: "t"))
    /// Introductions (`n<deal>.<n>` or the caller's id); commissions (`m<deal>.<n>`, generated only).
    public let introductions = IdIndex(generatedPrefix: UInt8(ascii: "n"))
    public let commissions = IdIndex(generatedPrefix: UInt8(ascii: "m"))
    /// The matched sum of each bank transaction, over every deal's reconciliations.
    public let bankMatches = BankMatches()
    /// The deals each investor holds approved units in.
    public let holdings = Holdings()

    /// `holdIDRuns` and `history` come from the durable engine, which opens
    /// them before recovery (replay checks ids against the runs); an engine
    /// without a data directory gets empty ones that never open.
    public init(history: HistoryAccess = HistoryAccess(), holdIDRuns: CallerIDRuns? = nil) {
        self.history = history
        let runs = holdIDRuns ?? CallerIDRuns(history: history)
        self.holdIDRuns = runs
        holds = IdIndex(generatedPrefix: UInt8(ascii: "h"), spill: runs)
    }
}

/// The history store, once the durable engine has opened it; an engine
/// without a data directory never archives, so it never needs one.
public final class HistoryAccess: Sendable {
    private let box = Locked<HistoryStore?>(nil)
    public init() {}
    public var store: HistoryStore? { box.withLock { $0 } }
    public func attach(_ store: HistoryStore) { box.withLock { $0 = store } }
}

/// A hold's row as read, with its investor's id: the row of an archived hold
/// keeps the slot it had, which may name another investor by now.
struct HoldRead {
    var hold: Hold
    var investor: String
}

extension Allocation {
    @inline(__always)
    public func forEachPart(_ body: (Int32, Units) -> Void) {
        body(firstPart.lot, firstPart.units)
        for p in moreParts { body(p.lot, p.units) }
    }
}
