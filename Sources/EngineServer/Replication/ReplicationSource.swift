import AllocationEngine
import Dispatch
import Synchronization
import WAL

/// The primary's side of replication: answers each replica's `REPLSYNC`
/// with the records after the LSN it asks for (from the backlog in memory,
/// else from the log segments) and the history bytes those records name.
/// A replica with nothing to take waits here (up to `pollSeconds`) until the
/// log is durable past its LSN, so a replica that keeps up gets each group
/// commit about as soon as it is durable, one answer per group.
///
/// Only durable records are shipped: a replica never holds a record that a
/// crash of the primary could take back.
final class ReplicationSource: Sendable {
    let durable: DurableEngine
    let backlog: ReplicationBacklog
    let pollSeconds: Double
    private let ids: Mutex<ReplicationIDs?> = Mutex(nil)

    private struct Parked {
        var lsn: UInt64
        var resume: @Sendable () -> Void
    }
    private struct Waiting {
        var parked: [UInt64: Parked] = [:]
        var nextToken: UInt64 = 1
        var armedFor: UInt64 = .max
    }
    private let waiting = Mutex(Waiting())

    init(durable: DurableEngine, backlogBytes: Int, pollSeconds: Double = 1) {
        self.durable = durable
        self.backlog = ReplicationBacklog(capacity: backlogBytes)
        self.pollSeconds = pollSeconds
    }

    private let tapped = Atomic<Bool>(false)

    /// The backlog fills from the first replica's first request on (a primary
    /// without replicas keeps none); earlier records come from the segments.
    private func tapOnce() {
        guard tapped.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        let backlog = self.backlog
        durable.writer.setChunkTap { bytes, salt in backlog.add(bytes, salt: salt) }
    }

    /// This history's ids (read from the data directory once, then kept).
    func replicationIDs() throws -> ReplicationIDs {
        if let cached = ids.withLock({ $0 }) { return cached }
        let loaded = try durable.replicationIDs()
        ids.withLock { $0 = loaded }
        return loaded
    }

    func setReplicationIDs(_ new: ReplicationIDs) throws {
        try durable.saveReplicationIDs(new)
        ids.withLock { $0 = new }
    }

    struct Refusal: Error {
        let code: String
        let message: String
    }

    /// One answer to `REPLSYNC replid from-lsn history-file history-offset`.
    func answer(replicaID: String, from: UInt64, history at: HistoryLocation) async throws(Refusal) -> SyncMessage {
        let current: ReplicationIDs
        do { current = try replicationIDs() } catch { throw Refusal(code: "ERR", message: "replication ids unreadable: \(error)") }
        guard from >= 1 else { throw Refusal(code: "ERR", message: "records start at LSN 1") }
        let fresh = replicaID == ReplicationIDs.none && from == 1
        guard fresh || current.continues(replicaID, from: from) else {
            throw Refusal(code: "FULLRESYNC", message: "the replica's history \(replicaID) at LSN \(from) is not this primary's (\(current.id), before it \(current.previousID) until LSN \(current.previousUntil)): the replica must be rebuilt from this primary (docs/replication.md)")
        }
        tapOnce()
        let writer = durable.writer
        var acknowledged = writer.acknowledgedLSN
        guard from <= acknowledged + 1 else {
            throw Refusal(code: "FULLRESYNC", message: "the replica asks for LSN \(from) but this primary's log ends at \(acknowledged): the replica holds records this primary never had")
        }
        if from > acknowledged {
            await park(until: from)
            acknowledged = writer.acknowledgedLSN
        }
        var records: [UInt8] = []
        if from <= acknowledged {
            switch backlog.collect(from: from, upTo: acknowledged, maxBytes: SyncMessage.maxRecordBytes) {
            case .records(let bytes, _): records = bytes
            case .tooOld: records = try fromSegments(from: from, upTo: acknowledged)
            }
        }
        // After the records: every history byte they name was synced before they were appended.
        var history: [(HistoryLocation, [UInt8])] = []
        var loc = at
        var total = 0
        while total < SyncMessage.maxHistoryBytes {
            let piece: (HistoryLocation, [UInt8])
            do { piece = try durable.history.shippable(from: loc, maxBytes: SyncMessage.maxHistoryBytes - total) } catch {
                throw Refusal(code: "FULLRESYNC", message: "\(error.message)")
            }
            guard !piece.1.isEmpty else { break }
            history.append(piece)
            total += piece.1.count
            loc = HistoryLocation(file: piece.0.file, offset: piece.0.offset + UInt64(piece.1.count))
        }
        // History the records may name did not all fit: send it alone first.
        if total >= SyncMessage.maxHistoryBytes { records = [] }
        return SyncMessage(ids: current, primaryLSN: acknowledged, firstLSN: from, history: history, records: records)
    }

    /// Records older than the backlog, read back from the log's segments.
    private func fromSegments(from: UInt64, upTo: UInt64) throws(Refusal) -> [UInt8] {
        struct Enough: Error {}
        var w = ByteWriter(capacity: 1 << 16)
        var first: UInt64?
        let dir = durable.config.dataDir
        // The segments before `from` were deleted (--prune-log): only a copy
        // of a snapshot brings the replica back (SnapshotTransfer).
        let oldest = ((try? PosixFileIO().listDirectory(DataDirectory(dir).wal)) ?? []).compactMap(LogFormat.parseSegmentName).min()
        if let oldest, oldest > from {
            throw Refusal(code: "NEEDSNAPSHOT", message: "LSN \(from) is no longer in this primary's log (it starts at \(oldest)): the replica must copy a snapshot (REPLSNAPSHOT; docs/replication.md)")
        }
        do {
            _ = try LogReader.scan(directory: DataDirectory(dir).wal, io: PosixFileIO(), fromLSN: from) { r in
                if r.lsn > upTo || w.count >= SyncMessage.maxRecordBytes { throw Enough() }
                if first == nil { first = r.lsn }
                ShippedRecords.frame(lsn: r.lsn, type: r.type, time: r.time, payload: r.payload, into: &w)
            }
        } catch is Enough {
        } catch {
            throw Refusal(code: "FULLRESYNC", message: "the log after LSN \(from - 1) cannot be read: \(error)")
        }
        guard first == from else {
            throw Refusal(code: "NEEDSNAPSHOT", message: "LSN \(from) is no longer in this primary's log (the segments before it were removed): the replica must copy a snapshot (REPLSNAPSHOT; docs/replication.md)")
        }
        var out: [UInt8] = []
        w.bytes.withUnsafeBytes { ShippedRecords.appendGroup($0, salt: 0, to: &out) }
        return out
    }

    /// Waits until the log is durable through `lsn`, or `pollSeconds`.
    private func park(until lsn: UInt64) async {
        await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
            let (token, shouldArm) = waiting.withLock { w -> (UInt64, Bool) in
                let t = w.nextToken
                w.nextToken += 1
                w.parked[t] = Parked(lsn: lsn, resume: { k.resume() })
                let lower = lsn < w.armedFor
                if lower { w.armedFor = lsn }
                return (t, lower)
            }
            if shouldArm { arm(lsn) }
            DispatchQueue.global().asyncAfter(deadline: .now() + pollSeconds) { [self] in
                let p = waiting.withLock { $0.parked.removeValue(forKey: token) }
                p?.resume()
            }
        }
    }

    /// One waiter on the log for the lowest parked LSN (not one per poll,
    /// which would pile up while the log is idle).
    private func arm(_ lsn: UInt64) {
        durable.writer.whenDurable(lsn) { [self] result in
            // A failed log never gets durable: answer everyone (empty) and stop.
            let failed: Bool
            if case .failure = result { failed = true } else { failed = false }
            let acknowledged = failed ? UInt64.max : durable.writer.acknowledgedLSN
            let (ready, next) = waiting.withLock { w -> ([Parked], UInt64?) in
                var ready: [Parked] = []
                for (t, p) in w.parked where p.lsn <= acknowledged {
                    ready.append(p)
                    w.parked.removeValue(forKey: t)
                }
                let lowest = w.parked.values.map(\.lsn).min()
                w.armedFor = lowest ?? .max
                return (ready, lowest)
            }
            for p in ready { p.resume() }
            if let next, !failed { arm(next) }
        }
    }
}
