import WAL

/// A deal's investor table: each investor with a row in memory here has a
/// slot (its id, its position), so rows name it with four bytes instead of a
/// string. A slot lives only while rows in memory need it: every hold in
/// memory and every allocation counts one reference, and when the last of them
/// leaves memory (its hold chunk goes to the history) the slot is freed and
/// reused by the next new investor. Without that, a deal kept every investor
/// that ever held in it: about 132 bytes per (investor, deal) pair
/// (`engine-bench --only invmem`), 1.3 GB for 1,000 deals of 10,000 investors
/// each, whatever the live state.
///
/// What survives a freed slot: the history rows carry the investor's id (an
/// archived row's slot number may name another investor by now, so reads of the
/// history use the id, never the slot), and `Holdings` keeps which deals the
/// investor has rows in, for statements.
///
/// Replay and the live path free and reuse slots in the same order (both only
/// through `apply`), and the snapshot keeps the free list in order, so a
/// restored deal hands out the same slots: the digest covers both.
extension DealState {
    /// The slot of `id`, interned if it has none; `isNew` when the deal had no
    /// slot for it (the caller records the pair in `Holdings`).
    /// The caller takes a reference for the row it is about to add.
    mutating func internInvestor(_ id: String) -> (slot: Int32, isNew: Bool) {
        if let last = lastInvestor, last.id == id { return (last.slot, false) }
        let key = IdKey(id)
        let slot: Int32
        var isNew = false
        if let existing = investorSlot[key] {
            slot = existing
        } else if let reused = freeInvestorSlots.popLast() {
            slot = reused
            investors[Int(slot)] = id
            investorSlot[key] = slot
            isNew = true
        } else {
            slot = Int32(investors.count)
            investors.append(id)
            investorSlot[key] = slot
            positions.append(Position())
            investorRefs.append(0)
            isNew = true
        }
        lastInvestor = (id, slot)
        return (slot, isNew)
    }

    @inline(__always)
    mutating func retainInvestor(_ slot: Int32) {
        investorRefs[Int(slot)] += 1
    }

    /// Drops one reference; the last one frees the slot.
    mutating func releaseInvestor(_ slot: Int32) {
        let s = Int(slot)
        precondition(investorRefs[s] > 0, "investor slot \(slot) of deal \(info.id) released more often than retained")
        investorRefs[s] -= 1
        guard investorRefs[s] == 0 else { return }
        // Only an approved allocation adds to a position, and approved (and
        // settled) allocations stay in memory: a slot without references has
        // nothing in its position.
        precondition(positions[s].units.raw == 0, "investor \(investors[s]) of deal \(info.id) freed with a position")
        freeInvestorSlot(s)
    }

    /// Clears slot `s` and puts it on the free list (its references are gone).
    private mutating func freeInvestorSlot(_ s: Int) {
        investorSlot[IdKey(investors[s])] = nil
        if lastInvestor?.slot == Int32(s) { lastInvestor = nil }
        investors[s] = ""
        positions[s] = Position()
        freeInvestorSlots.append(Int32(s))
    }

    /// The references the rows in memory make, per slot (a slot out of range is not counted).
    private func countInvestorRefs() -> [Int32] {
        var refs = [Int32](repeating: 0, count: investors.count)
        holds.forEachInMemory { _, h in if Int(h.investor) < refs.count { refs[Int(h.investor)] += 1 } }
        allocations.forEachInMemory { _, a in if Int(a.investor) < refs.count { refs[Int(a.investor)] += 1 } }
        return refs
    }

    /// Counts the references from the rows in memory (after a snapshot is
    /// loaded) and checks them against the slots: a row must not name a freed
    /// slot, and a slot in use must have a row. `freeUnused`: an image from
    /// before slots were freed (format 6 and older) kept every investor; those
    /// without rows are freed now, lowest slot reused first.
    mutating func rebuildInvestorRefs(freeUnused: Bool) throws(DecodeError) {
        // The decoder checked every row's slot against the table's size.
        let refs = countInvestorRefs()
        investorRefs = refs
        if freeUnused {
            for s in investors.indices.reversed() where refs[s] == 0 && !investors[s].isEmpty {
                guard positions[s].units.raw == 0 else { throw DecodeError("investor \(investors[s]) has a position but no allocation") }
                freeInvestorSlot(s)
            }
        }
        for s in investors.indices {
            if investors[s].isEmpty && refs[s] > 0 { throw DecodeError("\(refs[s]) rows name the freed investor slot \(s)") }
            if !investors[s].isEmpty && refs[s] == 0 { throw DecodeError("investor \(investors[s]) has a slot but no row in memory") }
        }
        lastInvestor = nil
    }

    /// Problems with the investor table, for `invariantViolations`.
    func investorTableViolations() -> [String] {
        var problems: [String] = []
        let refs = countInvestorRefs()
        if refs != investorRefs { problems.append("deal \(info.id): investor reference counts disagree with the rows") }
        let free = Set(freeInvestorSlots)
        if free.count != freeInvestorSlots.count { problems.append("deal \(info.id): a free investor slot is listed twice") }
        for s in investors.indices {
            let isFree = investors[s].isEmpty
            if isFree != free.contains(Int32(s)) { problems.append("deal \(info.id): investor slot \(s) free list disagrees with the table") }
            if isFree && refs[s] > 0 { problems.append("deal \(info.id): rows name the freed investor slot \(s)") }
            if !isFree && refs[s] == 0 { problems.append("deal \(info.id): investor \(investors[s]) kept without a row in memory") }
            if !isFree && investorSlot[IdKey(investors[s])] != Int32(s) { problems.append("deal \(info.id): investor \(investors[s]) not in the slot map") }
        }
        if investorSlot.count != investors.count - free.count { problems.append("deal \(info.id): the slot map has \(investorSlot.count) investors, the table \(investors.count - free.count)") }
        return problems
    }
}
