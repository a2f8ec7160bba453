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
    /// The LSN of the last record this deal appended (its creation's for a new
    /// deal, 0 for one restored by recovery, whose state is durable). A read
    /// of the deal shows everything up to it, so its reply waits until the log
    /// is durable that far (the read barrier, `BatchResult.observedLSN`).
    private var lastLSN: UInt64

    init(state: DealState, context: EngineContext, lastLSN: UInt64 = 0) {
        self.id = state.info.id
        self.number = state.info.number
        self.state = state
        self.context = context
        self.lastLSN = lastLSN
    }

    /// The result of one batch: a reply per request, and the LSN the caller must
    /// wait for before answering (nil when nothing changed).
    public struct BatchResult: Sendable {
        public var replies: [DealReply]
        public var lsn: UInt64?
        /// Which replies belong to requests that changed state (and so must not be
        /// acknowledged unless `lsn` becomes durable).
        public var changed: [Int]
        /// The deal's last appended LSN when the batch ended (>= `lsn`): every
        /// reply of the batch, reads included, may show state up to it, so none
        /// is sent before the log is durable that far. A reader on another
        /// connection thus never sees a change that a crash could still take
        /// back (usually already durable: then the wait costs one comparison).
        public var observedLSN: UInt64
    }

    /// Runs a batch as `principal` (nil: in process, with every right). A
    /// request the principal may not make here (not a member, a role that only
    /// reads, an investor it does not act for, KYC not approved) is refused and
    /// changes nothing. The principal's user is recorded as the creator or
    /// approver of what the batch makes (the seed's `created_by`, `approved_by`).
    public func execute(_ requests: [DealRequest], as principal: Principal? = nil) -> BatchResult {
        precondition(requests.count <= EngineLimits.maxBatch, "batch larger than EngineLimits.maxBatch")
        let now = context.clock.nowMillis()
        var replies: [DealReply] = []
        replies.reserveCapacity(requests.count)
        var changed: [Int] = []
        let admission = context.sink?.admission ?? .open
        // Whether the access rules apply, decided once per batch (the principal
        // is the same for every request of it): staff skip them unless a deal is KYC-gated.
        let memberRules = principal.map { !$0.isStaff } ?? false
        // Requests are used in place (`requests[i]`), not bound to locals: a
        // request is a large value and copying it per hold shows in profiles.
        for i in requests.indices {
            // After a durability failure memory holds changes the disk may not:
            // nothing is answered from it, reads included (fail-stop).
            if admission != .open && (requests[i].isChange || admission.refusesReads) {
                replies.append(.failure(admission.refusal))
                continue
            }
            let before = changes.count
            // One branch for the staff hold path: only other users and
            // KYC-gated deals need the access rules.
            if memberRules || state.info.kycRequired,
               let refusal = state.refusal(of: requests[i], as: principal, context: context) {
                replies.append(.failure(refusal))
                continue
            }
            replies.append(state.execute(requests[i], now: now, context: context, principal: principal, changes: &changes))
            if changes.count > before { changed.append(i) }
        }
        let lsn = flushChanges(time: now, replies: &replies, changed: changed)
        state.compactExpiryIfMostlyStale()
        registerWake()
        return BatchResult(replies: replies, lsn: lsn, changed: changed, observedLSN: lastLSN)
    }

    /// Expires every pending hold whose time has come, as logged changes.
    /// Returns how many expired and the LSN to wait for.
    public func expireDue() -> (count: Int, lsn: UInt64?) {
        let now = context.clock.nowMillis()
        registeredWake = .max
        if context.sink?.failureReason != nil { return (0, nil) }
        var count = 0
        while let entry = state.expiry.popDue(now: now) {
            // A stale entry may name a hold that ended and left memory since.
            guard state.holds.isInMemory(entry.slot) else { continue }
            let h = state.holds[Int(entry.slot)]
            guard h.status == .pending && h.expiresAt == entry.at else { continue }
            state.commit(.holdExpired(deal: id, hold: h.id), time: now, context: context, changes: &changes)
            count += 1
        }
        // Term sheets past their valid_until expire the same way, as logged changes.
        for slot in state.dueTermSheets(now: now) {
            state.commit(.money(deal: id, .termSheetStatus(sheet: slot, status: .expired, by: nil)), time: now, context: context, changes: &changes)
            count += 1
        }
        state.compactExpiryIfMostlyStale()
        var none: [DealReply] = []
        let lsn = flushChanges(time: now, replies: &none, changed: [])
        registerWake()
        return (count, lsn)
    }

    // MARK: - Rows leaving memory (see HoldTable and RetentionPolicy)

    /// What the retention rule lets leave memory now, at most `limit` parts:
    /// each a chunk (or a set of stragglers) with its rows to write to the
    /// history. The rows are copy-on-write copies; the entry is encoded by the
    /// caller, off this actor. `maxEndedHolds`: this deal's share of the
    /// engine-wide cap on ended holds in memory (`maxEnded` when it has none).
    public func archivePlans(endedBefore: Int64, maxEnded: Int, maxEndedHolds: Int? = nil, limit: Int) -> [ArchivePlan] {
        guard context.sink?.failureReason == nil else { return [] }
        var plans: [ArchivePlan] = []
        let indexes = context.indexes
        for c in Self.candidates(state.holds, endedBefore: endedBefore, maxEnded: min(maxEnded, maxEndedHolds ?? maxEnded), limit: limit) {
            let rows = state.holds.rowsLeaving(c)
            var allocationIDs: [String?] = []
            allocationIDs.reserveCapacity(rows.count)
            for r in rows { allocationIDs.append(r.row.allocation >= 0 ? state.allocationID(r.row.allocation, index: indexes) : nil) }
            plans.append(ArchivePlan(deal: self, candidate: c, rows: .holds(rows, allocationIDs: allocationIDs), investors: state.investors))
        }
        // Rejected allocations, by the same rule (a chunk of them is 64 rows).
        for c in Self.candidates(state.allocations, endedBefore: endedBefore, maxEnded: maxEnded, limit: max(0, limit - plans.count)) {
            plans.append(ArchivePlan(deal: self, candidate: c, rows: .allocations(state.allocations.rowsLeaving(c)), investors: state.investors))
        }
        // Decided approvals, with the ids of their commitments and allocations.
        for c in Self.candidates(state.people.approvals, endedBefore: endedBefore, maxEnded: maxEnded, limit: max(0, limit - plans.count)) {
            let rows = state.people.approvals.rowsLeaving(c)
            let entityIDs = rows.map { state.approvalEntityID($0.row, index: indexes) }
            plans.append(ArchivePlan(deal: self, candidate: c, rows: .approvals(rows, entityIDs: entityIDs), investors: []))
        }
        return plans
    }

    /// Up to `limit` candidates of one table: chunks oldest first, then at most one set of stragglers.
    private static func candidates<Row>(_ table: RowTable<Row>, endedBefore: Int64, maxEnded: Int, limit: Int) -> [ArchiveCandidate] {
        var out: [ArchiveCandidate] = []
        var after: Int32 = -1
        while out.count < limit, let c = table.candidate(endedBefore: endedBefore, maxEnded: maxEnded, after: after) {
            out.append(c)
            guard case .chunk(let chunk, _) = c else { break }
            after = chunk
        }
        return out
    }

    /// Drops what a plan named, now that its rows are durable in the history
    /// at `location`: one logged `holds.archived` (or `allocations.archived`)
    /// change. Returns its LSN (nil when the log has failed: the rows then
    /// simply stay in memory).
    public func commitArchive(_ plan: ArchivePlan, at location: HistoryLocation) -> UInt64? {
        guard context.sink?.failureReason == nil else { return nil }
        let now = context.clock.nowMillis()
        let change: Change = switch plan.rows {
        case .holds: .holdsArchived(deal: id, plan.candidate, location: location)
        case .allocations: .allocationsArchived(deal: id, plan.candidate, location: location)
        case .approvals: .approvalsArchived(deal: id, plan.candidate, location: location)
        }
        state.commit(change, time: now, context: context, changes: &changes)
        var none: [DealReply] = []
        return flushChanges(time: now, replies: &none, changed: [])
    }

    /// The caller ids of holds that left memory and are not yet in an id run
    /// (copy-on-write copy), with the history entry of each row; ids loaded
    /// from a format-5 snapshot get theirs looked up here, once.
    public func archivedCallerIDs(history: HistoryStore?) -> [ArchivedCallerID] {
        if let history, state.holds.archivedCallerIDs.contains(where: { $0.location.file == ArchivedCallerID.unknownFile }) {
            state.holds.resolveCallerIDLocations(deal: number, store: history)
        }
        return state.holds.archivedCallerIDs
    }

    public var archivedCallerIDCount: Int { state.holds.archivedCallerIDs.count }

    /// The first `count` archived caller ids are in the synced run `run`:
    /// one logged `hold_ids.moved` change drops them from memory. Returns its
    /// LSN (nil when the log has failed: the ids then stay in memory too).
    public func commitHoldIDsMoved(count: Int, run: UInt32) -> UInt64? {
        guard context.sink?.failureReason == nil, count > 0, count <= state.holds.archivedCallerIDs.count else { return nil }
        let now = context.clock.nowMillis()
        state.commit(.holdIDsMoved(deal: id, count: count, run: run), time: now, context: context, changes: &changes)
        var none: [DealReply] = []
        return flushChanges(time: now, replies: &none, changed: [])
    }

    /// Ended holds in memory (the retention rule's engine-wide cap counts them).
    public var endedHoldsInMemory: Int { state.holds.endedInMemory }

    /// Rows in memory and in the history, for INFO and metrics.
    public func retentionCounts() -> (holdsInMemory: Int, endedInMemory: Int, archived: Int, pending: Int) {
        (state.holds.inMemory, state.holds.endedInMemory, state.holds.archivedRows, state.pendingHolds)
    }

    /// A copy of the state (copy-on-write: cheap now, paid for by the next
    /// change) and the LSN it is complete up to, for snapshots.
    public func capture() -> (state: DealState, lsn: UInt64) {
        (state, context.sink?.lastAppendedLSN ?? 0)
    }

    public func read<T: Sendable>(_ body: (DealState) -> T) -> T { body(state) }

    /// Applies changes a primary decided and this replica has appended to its
    /// own log (`lsn` each), as replay does: nothing is decided or logged
    /// here. A change that does not apply means the two histories parted;
    /// the error names it and the follower stops.
    public func applyShipped(_ changes: [(change: Change, time: Int64, lsn: UInt64)]) throws(EngineError) {
        for c in changes {
            do throws(EngineError) {
                try state.apply(c.change, time: c.time, index: context.indexes, indexNew: true)
            } catch {
                throw EngineError(error.code, "LSN \(c.lsn) does not apply to deal \(id): \(error.message)")
            }
            lastLSN = c.lsn
        }
        registerWake()
    }

    private func flushChanges(time: Int64, replies: inout [DealReply], changed: [Int]) -> UInt64? {
        guard let sink = context.sink, !changes.isEmpty else { return nil }
        defer { changes.removeAll(keepingCapacity: true) }
        do throws(EngineError) {
            let lsn = try sink.append(changes, time: time)
            lastLSN = lsn
            return lsn
        } catch {
            // The log failed under this batch: none of its changes may be acknowledged.
            for i in changed { replies[i] = .failure(error) }
            return nil
        }
    }

    private func registerWake() {
        if let earliest = state.earliestWake, earliest < registeredWake {
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
        case .people(let r): r.isChange
        case .money(let r): r.isChange
        case .statement: false
        }
    }
}

extension DealState {
    mutating func compactExpiryIfMostlyStale() {
        guard expiry.count > 2 * pendingHolds + 1024 else { return }
        // Filter the heap's own entries: cost proportional to the heap, not to
        // every hold the deal ever had.
        let live = expiry.entries.filter { e in
            guard holds.isInMemory(e.slot) else { return false }
            let h = holds[Int(e.slot)]
            return h.status == .pending && h.expiresAt == e.at
        }
        expiry.rebuild(from: live)
    }
}

/// Rows of one deal on their way to the history: written and synced by the
/// durable engine, then dropped from the deal by `commitArchive`.
public struct ArchivePlan: Sendable {
    public let deal: DealActor
    public let candidate: ArchiveCandidate
    enum Rows: Sendable {
        case holds([(slot: Int32, row: Hold)], allocationIDs: [String?])
        case allocations([(slot: Int32, row: Allocation)])
        case approvals([(slot: Int32, row: Approval)], entityIDs: [String])
    }
    let rows: Rows
    let investors: [String]

    public var rowCount: Int {
        switch rows {
        case .holds(let r, _): r.count
        case .allocations(let r): r.count
        case .approvals(let r, _): r.count
        }
    }

    /// The history entry (encoded off the actor: about 70 bytes a row).
    public func entry() -> [UInt8] {
        switch rows {
        case .holds(let rows, let allocationIDs):
            var archived: [(slot: Int32, hold: ArchivedHold)] = []
            archived.reserveCapacity(rows.count)
            for (i, r) in rows.enumerated() {
                archived.append((r.slot, ArchivedHold(hold: r.row, investorID: investors[Int(r.row.investor)], allocationID: allocationIDs[i])))
            }
            return HistoryStore.entry(deal: deal.number, rows: archived)
        case .allocations(let rows):
            let archived = rows.map { (slot: $0.slot, hold: ArchivedAllocation(allocation: $0.row, investorID: investors[Int($0.row.investor)])) }
            return HistoryStore.entry(deal: deal.number, rows: archived)
        case .approvals(let rows, let entityIDs):
            var archived: [(slot: Int32, hold: ArchivedApproval)] = []
            archived.reserveCapacity(rows.count)
            for (i, r) in rows.enumerated() { archived.append((r.slot, ArchivedApproval(approval: r.row, entityID: entityIDs[i]))) }
            return HistoryStore.entry(deal: deal.number, rows: archived)
        }
    }
}
