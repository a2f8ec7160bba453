/// Running one request inside the deal actor. These are `mutating` on purpose:
/// the actor calls them on its stored state in place, so no copy of the state is
/// made per request (a non-mutating call on an actor's stored struct copies it).
extension DealState {

    mutating func execute(_ request: DealRequest, now: Int64, context: EngineContext, principal: Principal?, changes: inout [Change]) -> DealReply {
        let user = principal?.user
        do throws(EngineError) {
            switch request {
            case .hold(let r): return try hold(r, now: now, context: context, user: user, changes: &changes)
            case .release(let holdID):
                let (change, error) = try decideRelease(holdID, now: now, index: context.indexes)
                if let change { commit(change, time: now, context: context, changes: &changes) }
                if let error { return .failure(error) }
                return .ok
            case .allocate(let holdID, let allocationID):
                switch try decideAllocate(hold: holdID, allocationID: allocationID, now: now, index: context.indexes, user: user) {
                case .existing(let existing): return .id(existing)
                case .expire(let change, let error):
                    commit(change, time: now, context: context, changes: &changes)
                    return .failure(error)
                case .create(_, let given):
                    let slot = Int32(allocations.count)
                    let allocationID = try reserveID(given.isEmpty ? nil : given, prefix: UInt8(ascii: "a"), slot: slot,
                                                     index: context.indexes.allocations, what: "allocation")
                    commit(.allocationCreated(deal: info.id, hold: holdID, allocation: allocationID, by: user), time: now, context: context, changes: &changes)
                    return .id(allocationID)
                }
            case .approve(let a): return try allocationStatus(a, .approved, now: now, context: context, user: user, changes: &changes)
            case .reject(let a): return try allocationStatus(a, .rejected, now: now, context: context, user: user, changes: &changes)
            case .settle(let a): return try allocationStatus(a, .settled, now: now, context: context, user: user, changes: &changes)
            case .setStatus(let s):
                if let change = try decideStatus(s) { commit(change, time: now, context: context, changes: &changes) }
                return .ok
            case .addLot(let spec):
                let change = try decideAddLot(spec, index: context.indexes)
                if let source = spec.source, !context.directory.withLock({ $0.sources[source] != nil }) {
                    throw EngineError(.notFound, "share source \(source.prefix(128)) not found; SOURCE.CREATE it first")
                }
                // Claim the id across deals before applying (another deal may race for it).
                guard context.indexes.lots.insertIfAbsent(spec.id, RowRef(deal: ref, slot: Int32(lots.count))) == nil else {
                    throw EngineError(.exists, "lot id \(spec.id) is already used by another deal")
                }
                commit(change, time: now, context: context, changes: &changes)
                return .ok
            case .resizeLot(let lot, let units):
                commit(try decideResizeLot(lot, to: units), time: now, context: context, changes: &changes)
                return .ok
            case .getDeal: return .fields(dealFields())
            case .getHold(let h): return .fields(try holdFields(try holdSlot(h, index: context.indexes), index: context.indexes))
            case .getAllocation(let a):
                return .fields(try allocationFields(try allocationSlot(a, index: context.indexes), index: context.indexes))
            case .getLot(let l):
                guard let f = lotFields(l) else { throw EngineError(.notFound, "lot \(l) not found in deal \(info.id)") }
                return .fields(f)
            case .inventory: return .fields(inventory().fields)
            case .position(let investor):
                try Validate.id(investor, field: "investor")
                return .fields(positionFields(investor: investor))
            case .people(let r):
                return try executePeople(r, now: now, context: context, principal: principal, changes: &changes)
            case .money(let r):
                return try executeMoney(r, now: now, context: context, principal: principal, changes: &changes)
            case .statement(let r):
                return try executeStatement(r, principal: principal, index: context.indexes)
            }
        } catch {
            return .failure(error)
        }
    }

    private mutating func hold(_ r: HoldRequest, now: Int64, context: EngineContext, user: String?, changes: inout [Change]) throws(EngineError) -> DealReply {
        switch try decideHold(r, now: now, defaultTTL: context.config.defaultHoldTTLMillis, index: context.indexes, user: user) {
        case .existing(let receipt):
            return .hold(receipt)
        case .place(var spec):
            let slot = Int32(holds.count)
            spec.id = try reserveID(r.id, prefix: UInt8(ascii: "h"), slot: slot, index: context.indexes.holds, what: "hold")
            commit(.holdPlaced(deal: info.id, hold: spec), time: now, context: context, changes: &changes)
            return .hold(receipt(of: slot))
        }
    }

    private mutating func allocationStatus(_ allocation: String, _ target: AllocationStatus, now: Int64, context: EngineContext, user: String?, changes: inout [Change]) throws(EngineError) -> DealReply {
        if let change = try decideAllocationStatus(allocation, to: target, index: context.indexes, user: user) {
            commit(change, time: now, context: context, changes: &changes)
        }
        return .ok
    }

    /// Claims an id in the global index for the row about to be created at
    /// `slot`: the caller's id (a conflict if another deal took it meanwhile), or
    /// a generated one, which names its slot and so needs no claim.
    private func reserveID(_ given: String?, prefix: UInt8, slot: Int32, index: IdIndex, what: String) throws(EngineError) -> String {
        let ref = RowRef(deal: self.ref, slot: slot)
        guard let given else { return GeneratedID.make(prefix: prefix, deal: self.ref, slot: slot) }
        guard index.insertIfAbsent(given, ref) == nil else { throw EngineError(.conflict, "\(what) id \(given) is already used") }
        return given
    }

    /// Applies a change this actor has just decided, and what follows from it
    /// (introduction statuses, commissions: `attribution(following:)`), logged
    /// together as one group record so they are durable all or none. It cannot
    /// fail: a failure here means the decision and the state machine disagree,
    /// a bug that must stop the engine before it writes a wrong record.
    mutating func commit(_ change: Change, time: Int64, context: EngineContext, changes: inout [Change]) {
        let pendingBefore = pendingHolds
        do throws(EngineError) {
            try apply(change, time: time, index: context.indexes, indexNew: false)
        } catch {
            preconditionFailure("decided change failed to apply: \(error) for \(change)")
        }
        // Expiries and deal closings, for metrics (one compare on the hold path).
        if pendingHolds < pendingBefore { context.holdEnds.record(change, ended: pendingBefore - pendingHolds) }
        let following = attribution(following: change, context: context)
        guard !following.isEmpty else {
            if context.sink != nil { changes.append(change) }
            return
        }
        var group = [change]
        for f in following {
            let c = Change.money(deal: info.id, f)
            do throws(EngineError) {
                try apply(c, time: time, index: context.indexes, indexNew: false)
            } catch {
                preconditionFailure("a change following \(change) failed to apply: \(error) for \(c)")
            }
            group.append(c)
        }
        if context.sink != nil { changes.append(.group(deal: info.id, group)) }
    }

}
