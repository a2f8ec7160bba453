/// One deal, owned by one actor: every change to the deal runs here, one batch
/// at a time, with no locks on the path. Inside `execute` there is no `await`:
/// checking that units are available and taking them happen in one synchronous
/// stretch, so actor re-entrancy can never let two holds take the same units.
/// Waiting for the disk happens after the batch returns, in the caller.
public actor DealActor {
    public nonisolated let id: String
    public nonisolated let number: UInt32
    private var state: DealState
    private let context: EngineContext
    /// The earliest expiry this deal has registered with the shared scheduler.
    private var registeredWake: Int64 = .max
    /// Changes decided in the current batch, appended to the log at its end
    /// (kept between batches only for its capacity).
    private var changes: [Change] = []

    init(state: DealState, context: EngineContext) {
        self.id = state.info.id
        self.number = state.info.number
        self.state = state
        self.context = context
    }

    /// The result of one batch: a reply per request, and the LSN the caller must
    /// wait for before answering (nil when nothing changed).
    public struct BatchResult: Sendable {
        public var replies: [DealReply]
        public var lsn: UInt64?
        /// Which replies belong to requests that changed state (and so must not be
        /// acknowledged unless `lsn` becomes durable).
        public var changed: [Int]
    }

    public func execute(_ requests: [DealRequest]) -> BatchResult {
        precondition(requests.count <= EngineLimits.maxBatch, "batch larger than EngineLimits.maxBatch")
        let now = context.clock.nowMillis()
        var replies: [DealReply] = []
        replies.reserveCapacity(requests.count)
        var changed: [Int] = []
        let readOnly = context.sink?.failureReason
        for (i, request) in requests.enumerated() {
            if let reason = readOnly, request.isChange {
                replies.append(.failure(EngineError(.readOnly, "the engine refuses changes after a durability failure: \(reason)")))
                continue
            }
            let before = changes.count
            replies.append(run(request, now: now))
            if changes.count > before { changed.append(i) }
        }
        let lsn = flushChanges(time: now, replies: &replies, changed: changed)
        state.compactExpiryIfMostlyStale()
        registerWake()
        return BatchResult(replies: replies, lsn: lsn, changed: changed)
    }

    /// Expires every pending hold whose time has come, as logged changes.
    /// Returns how many expired and the LSN to wait for.
    public func expireDue() -> (count: Int, lsn: UInt64?) {
        let now = context.clock.nowMillis()
        registeredWake = .max
        if context.sink?.failureReason != nil { return (0, nil) }
        var count = 0
        while let entry = state.expiry.popDue(now: now) {
            let h = state.holds[Int(entry.slot)]
            guard h.status == .pending && h.expiresAt == entry.at else { continue }
            commit(.holdExpired(deal: id, hold: h.id), time: now)
            count += 1
        }
        state.compactExpiryIfMostlyStale()
        var none: [DealReply] = []
        let lsn = flushChanges(time: now, replies: &none, changed: [])
        registerWake()
        return (count, lsn)
    }

    /// A copy of the state (copy-on-write: cheap now, paid for by the next
    /// change) and the LSN it is complete up to, for snapshots.
    public func capture() -> (state: DealState, lsn: UInt64) {
        (state, context.sink?.lastAppendedLSN ?? 0)
    }

    public func read<T: Sendable>(_ body: (DealState) -> T) -> T { body(state) }

    // MARK: - One request

    private func run(_ request: DealRequest, now: Int64) -> DealReply {
        do throws(EngineError) {
            switch request {
            case .hold(let r): return try hold(r, now: now)
            case .release(let holdID):
                let (change, error) = try state.decideRelease(holdID, now: now, index: context.indexes)
                if let change { commit(change, time: now) }
                if let error { return .failure(error) }
                return .ok
            case .allocate(let holdID, let allocationID):
                switch try state.decideAllocate(hold: holdID, allocationID: allocationID, now: now, index: context.indexes) {
                case .existing(let existing): return .id(existing)
                case .expire(let change, let error):
                    commit(change, time: now)
                    return .failure(error)
                case .create(_, let given):
                    let slot = Int32(state.allocations.count)
                    let allocationID = try reserveID(given.isEmpty ? nil : given, prefix: "a", slot: slot,
                                                     index: context.indexes.allocations, what: "allocation")
                    commit(.allocationCreated(deal: id, hold: holdID, allocation: allocationID), time: now)
                    return .id(allocationID)
                }
            case .approve(let a): return try allocationStatus(a, .approved, now: now)
            case .reject(let a): return try allocationStatus(a, .rejected, now: now)
            case .settle(let a): return try allocationStatus(a, .settled, now: now)
            case .setStatus(let s):
                if let change = try state.decideStatus(s) { commit(change, time: now) }
                return .ok
            case .addLot(let spec):
                commit(try state.decideAddLot(spec), time: now)
                return .ok
            case .resizeLot(let lot, let units):
                commit(try state.decideResizeLot(lot, to: units), time: now)
                return .ok
            case .getDeal: return .fields(state.dealFields())
            case .getHold(let h): return .fields(state.holdFields(try state.holdSlot(h, index: context.indexes)))
            case .getAllocation(let a):
                guard let r = context.indexes.allocations.lookup(a), r.deal == number else {
                    throw EngineError(.notFound, "allocation \(a) not found")
                }
                return .fields(state.allocationFields(r.slot))
            case .getLot(let l):
                guard let f = state.lotFields(l) else { throw EngineError(.notFound, "lot \(l) not found in deal \(id)") }
                return .fields(f)
            case .inventory: return .fields(state.inventory().fields)
            case .position(let investor): return .fields(state.positionFields(investor: investor))
            }
        } catch {
            return .failure(error)
        }
    }

    private func hold(_ r: HoldRequest, now: Int64) throws(EngineError) -> DealReply {
        switch try state.decideHold(r, now: now, defaultTTL: context.config.defaultHoldTTLMillis, index: context.indexes) {
        case .existing(let receipt):
            return .hold(receipt)
        case .place(var spec):
            let slot = Int32(state.holds.count)
            spec.id = try reserveID(r.id, prefix: "h", slot: slot, index: context.indexes.holds, what: "hold")
            commit(.holdPlaced(deal: id, hold: spec), time: now)
            return .hold(state.receipt(of: slot))
        }
    }

    private func allocationStatus(_ allocation: String, _ target: AllocationStatus, now: Int64) throws(EngineError) -> DealReply {
        if let change = try state.decideAllocationStatus(allocation, to: target, index: context.indexes) {
            commit(change, time: now)
        }
        return .ok
    }

    /// Claims an id in the global index for the row about to be created at `slot`:
    /// the caller's id (a conflict if another deal took it meanwhile) or a
    /// generated one (skipping any a caller already chose).
    private func reserveID(_ given: String?, prefix: String, slot: Int32, index: IdIndex, what: String) throws(EngineError) -> String {
        let ref = RowRef(deal: number, slot: slot)
        if let given {
            guard index.insertIfAbsent(given, ref) == nil else { throw EngineError(.conflict, "\(what) id \(given) is already used") }
            return given
        }
        var attempt = 0
        while true {
            let candidate = state.generatedID(prefix: prefix, sequence: Int(slot) + 1, attempt: attempt)
            if index.insertIfAbsent(candidate, ref) == nil { return candidate }
            attempt += 1
        }
    }

    /// Applies a change this actor has just decided. It cannot fail: a failure
    /// here means the decision and the state machine disagree, a bug that must
    /// stop the engine before it writes a wrong record.
    private func commit(_ change: Change, time: Int64) {
        do throws(EngineError) {
            try state.apply(change, time: time, index: context.indexes, indexNew: false)
        } catch {
            preconditionFailure("decided change failed to apply: \(error) for \(change)")
        }
        if context.sink != nil { changes.append(change) }
    }

    private func flushChanges(time: Int64, replies: inout [DealReply], changed: [Int]) -> UInt64? {
        guard let sink = context.sink, !changes.isEmpty else { return nil }
        defer { changes.removeAll(keepingCapacity: true) }
        do throws(EngineError) {
            return try sink.append(changes, time: time)
        } catch {
            // The log failed under this batch: none of its changes may be acknowledged.
            for i in changed { replies[i] = .failure(error) }
            return nil
        }
    }

    private func registerWake() {
        if let earliest = state.expiry.earliest, earliest < registeredWake {
            registeredWake = earliest
            context.scheduler.register(at: earliest, deal: number)
        }
    }
}

extension DealRequest {
    /// Whether the request may change state (refused once the log has failed).
    public var isChange: Bool {
        switch self {
        case .hold, .release, .allocate, .approve, .reject, .settle, .setStatus, .addLot, .resizeLot: true
        case .getDeal, .getHold, .getAllocation, .getLot, .inventory, .position: false
        }
    }
}

extension DealState {
    mutating func compactExpiryIfMostlyStale() {
        guard expiry.count > 2 * pendingHolds + 1024 else { return }
        // Filter the heap's own entries: cost proportional to the heap, not to
        // every hold the deal ever had.
        let live = expiry.entries.filter { e in
            let h = holds[Int(e.slot)]
            return h.status == .pending && h.expiresAt == e.at
        }
        expiry.rebuild(from: live)
    }
}
