import Snapshot
import WAL

/// Reading the audit chain from a data directory: verifying it (the verify
/// tool, `AUDIT.VERIFY`) and listing its entries (`AUDIT.LIST`). History lives
/// on disk, in the retained log: nothing of it is kept in memory but the head.
public enum AuditLog {
    public struct Report: Sendable {
        public var entries = 0
        public var seals = 0
        public var head: AuditHead = .genesis
        /// Entries after the last seal (the live batch, or a torn one).
        public var unsealed = 0
        /// Snapshot heads the chain was checked against.
        public var anchorsChecked = 0
        public var firstLSN: UInt64?
    }

    /// The heads recorded by the snapshots in `dir` (LSN-ordered), to check the chain against.
    public static func snapshotAnchors(_ dir: DataDirectory, io: any FileIO) -> [AuditHead] {
        let store = SnapshotStore(directory: dir.snapshots, io: io)
        return ((try? store.list()) ?? []).compactMap { info in
            guard let bytes = try? io.readAll(info.path), let decoded = try? SnapshotFormat.decode(bytes, path: info.path),
                  let image = try? StateCodec.decode(decoded.payload) else { return nil }
            return image.audit
        }.sorted { $0.seq < $1.seq }
    }

    /// Checks every entry of the retained log against its seal, each seal's link
    /// to the one before, and the snapshots' heads. Throws CORRUPT naming the
    /// first entry that breaks.
    public static func verify(_ dir: DataDirectory, io: any FileIO) throws -> Report {
        let anchors = Dictionary(snapshotAnchors(dir, io: io).map { ($0.seq, $0.hash) }, uniquingKeysWith: { a, _ in a })
        var report = Report()
        var verifier: AuditVerifier?
        var failure: EngineError?
        struct Stop: Error {}
        do {
            _ = try LogReader.scan(directory: dir.wal, io: io) { record in
                if verifier == nil {
                    // From LSN 1 the chain starts at the genesis; a log whose first
                    // segments were deleted after a snapshot anchors at its first seal.
                    report.firstLSN = record.lsn
                    verifier = AuditVerifier(from: .genesis, anchored: record.lsn == 1)
                }
                do throws(EngineError) {
                    if record.type == AuditSeal.recordType {
                        let seal: AuditSeal
                        do { seal = try AuditSeal.decode(record.payload) } catch {
                            throw EngineError(.corrupt, "audit seal at LSN \(record.lsn) is undecodable: \(error)")
                        }
                        try verifier!.seal(seal, lsn: record.lsn)
                        let head = verifier!.head
                        if let expected = anchors[head.seq] {
                            guard expected == head.hash else {
                                throw EngineError(.corrupt, "entry \(head.seq): the chain ends in \(head.hash), the snapshot recorded \(expected): history was rewritten")
                            }
                            report.anchorsChecked += 1
                        }
                    } else {
                        let change: Change
                        do { change = try ChangeCodec.decode(type: record.type, payload: record.payload) } catch {
                            throw EngineError(.corrupt, "entry \(record.lsn) is undecodable: \(error)")
                        }
                        verifier!.change(AuditEntry(seq: record.lsn, time: record.time, type: record.type, change: change, payload: record.payload))
                    }
                } catch {
                    failure = error
                    throw Stop()
                }
            }
        } catch is Stop {
            throw failure!
        }
        guard let v = verifier else { return report }
        report.entries = v.entries
        report.seals = v.seals
        report.head = v.pending.last.map { AuditHead(seq: $0.entry.seq, hash: $0.hash) } ?? v.head
        report.unsealed = v.unsealed
        return report
    }

    public struct Filter: Sendable {
        public var entity: (String, String)?
        public var actor: String?
        public init(entity: (String, String)? = nil, actor: String? = nil) {
            self.entity = entity
            self.actor = actor
        }
    }

    /// A page of entries from LSN `from` on: whole sealed batches, so every row
    /// carries its stored hash and the one before it; the cursor is the LSN to
    /// go on from ("0" at the end of the retained log).
    public static func list(_ dir: DataDirectory, io: any FileIO, from: UInt64, count: Int, filter: Filter, maxScan: Int = 10_000) throws -> (cursor: String, rows: [[Field]]) {
        var rows: [[Field]] = []
        var batch: [AuditEntry] = []
        var next: UInt64 = 0
        var scanned = 0
        struct Full: Error {}
        do {
            _ = try LogReader.scan(directory: dir.wal, io: io, fromLSN: from) { record in
                if record.type == AuditSeal.recordType {
                    guard let seal = try? AuditSeal.decode(record.payload) else { batch.removeAll(); return }
                    for entry in batch {
                        let i = Int(entry.seq - seal.firstSeq)
                        guard i >= 0 && i < seal.hashes.count else { continue }
                        let (entity, entityID, actor) = entry.change.auditSubject
                        if let (e, id) = filter.entity, entity != e || entityID != id { continue }
                        if let a = filter.actor, actor != a { continue }
                        rows.append([
                            Field("seq", String(entry.seq)), Field("ts", String(entry.time)), Field("actor_user_id", actor.isEmpty ? nil : actor),
                            Field("action", entry.action), Field("type", String(entry.type)), Field("entity", entity), Field("entity_id", entityID),
                            Field("change_sha256", entry.changeDigest.description), Field("prev_hash", (i == 0 ? seal.prev : seal.hashes[i - 1]).description),
                            Field("hash", seal.hashes[i].description),
                        ])
                    }
                    batch.removeAll(keepingCapacity: true)
                    next = record.lsn + 1
                    if rows.count >= count || scanned >= maxScan { throw Full() }
                    return
                }
                scanned += 1
                guard let change = try? ChangeCodec.decode(type: record.type, payload: record.payload) else { return }
                batch.append(AuditEntry(seq: record.lsn, time: record.time, type: record.type, change: change, payload: record.payload))
            }
            next = 0
        } catch is Full {}
        return (next == 0 ? "0" : String(next), rows)
    }
}
