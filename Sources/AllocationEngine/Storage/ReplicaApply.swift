import Foundation
import WAL

/// A history's identity, as Redis' `master_replid` / `master_replid2` and
/// PostgreSQL's timelines: `id` names the history this server's log follows;
/// `previousID` the one it followed before its last promotion, valid for LSNs
/// before `previousUntil`. A replica may continue a primary's stream only
/// from a point both histories share (docs/replication.md).
public struct ReplicationIDs: Sendable, Equatable {
    public var id: String
    public var previousID: String
    /// The first LSN that `previousID`'s history and this one may not share.
    public var previousUntil: UInt64

    public static let none = String(repeating: "0", count: 40)

    public init(id: String, previousID: String, previousUntil: UInt64) {
        self.id = id
        self.previousID = previousID
        self.previousUntil = previousUntil
    }

    public static func random() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<20).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// Whether a replica that followed `replicaID` and asks for records from
    /// `fromLSN` continues this history without a gap or a fork.
    public func continues(_ replicaID: String, from fromLSN: UInt64) -> Bool {
        if replicaID == id { return true }
        if replicaID == previousID && previousID != Self.none && fromLSN <= previousUntil { return true }
        return false
    }

    public func encoded() -> [UInt8] { Array("replid \(id)\nreplid2 \(previousID)\nreplid2_until \(previousUntil)\n".utf8) }

    public static func decode(_ bytes: [UInt8]) -> ReplicationIDs? {
        var fields: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let id = fields["replid"], id.count == 40, let p = fields["replid2"], p.count == 40,
              let until = fields["replid2_until"].flatMap({ UInt64($0) }) else { return nil }
        return ReplicationIDs(id: id, previousID: p, previousUntil: until)
    }
}

extension DurableEngine {
    var replicationIDsPath: String { FilePath.join(directory.path, "replication") }

    /// The ids of this data directory's history, created on first use.
    public func replicationIDs() throws -> ReplicationIDs {
        if io.fileExists(replicationIDsPath), let ids = ReplicationIDs.decode(try io.readAll(replicationIDsPath)) { return ids }
        let ids = ReplicationIDs(id: ReplicationIDs.random(), previousID: ReplicationIDs.none, previousUntil: 0)
        try saveReplicationIDs(ids)
        return ids
    }

    /// Written whole (temp file, fsync, rename, directory fsync).
    public func saveReplicationIDs(_ ids: ReplicationIDs) throws {
        try Self.saveReplicationIDs(ids, dataDir: directory.path, io: io)
    }

    /// `DIR/replication`, written whole, before the engine opens (a replica
    /// installing its primary's snapshot adopts the primary's history ids).
    public static func saveReplicationIDs(_ ids: ReplicationIDs, dataDir: String, io: any FileIO) throws {
        try io.writeWhole(ids.encoded(), to: FilePath.join(dataDir, "replication"))
    }

    /// Appends and applies one batch a primary shipped. History bytes first
    /// (records name them; each is synced before its record is applied),
    /// then the records: appended to this log with their LSNs, then applied
    /// as replay applies them. Returns the last LSN appended (the caller
    /// waits for it to be durable before it acknowledges). Any failure here
    /// leaves memory and the log possibly apart: the caller stops following
    /// and the server must restart from disk (as after a failed fsync).
    public func applyShipped(history shipped: [(HistoryLocation, [UInt8])], records: [ShippedRecord]) async throws -> UInt64? {
        for (location, bytes) in shipped where !bytes.isEmpty { try history.replicate(at: location, bytes) }
        guard let sink = engine.sink as? WALChangeSink else { throw EngineError(.invalid, "this engine has no log") }
        let last = try sink.appendShipped(records)
        var run: [(change: Change, time: Int64, lsn: UInt64)] = []
        var runDeal: DealActor?
        func flush() async throws {
            if let deal = runDeal, !run.isEmpty { try await deal.applyShipped(run) }
            run.removeAll(keepingCapacity: true)
            runDeal = nil
        }
        for r in records where r.type != AuditSeal.recordType {
            let change: Change
            do {
                change = try r.payload.withUnsafeBytes { b in try ChangeCodec.decode(type: r.type, payload: b) }
            } catch {
                throw EngineError(.corrupt, "shipped LSN \(r.lsn): undecodable record: \(error)")
            }
            switch change {
            case .directory(let dc):
                try await flush()
                try engine.applyShippedDirectory(dc, time: r.time, lsn: r.lsn)
            case .dealCreated(let info):
                try await flush()
                try engine.adoptShippedDeal(info, lsn: r.lsn)
            default:
                guard let deal = engine.deal(change.deal) else {
                    throw EngineError(.corrupt, "shipped LSN \(r.lsn): change to unknown deal \(change.deal)")
                }
                if case .holdIDsMoved(_, let count, _) = change {
                    // The primary's id run is its own index; this replica writes
                    // its own run of the same ids before the deal forgets them.
                    try await flush()
                    try await writeOwnIDRun(deal, count: count, lsn: r.lsn)
                }
                if let current = runDeal, current !== deal { try await flush() }
                runDeal = deal
                run.append((change, r.time, r.lsn))
            }
        }
        try await flush()
        return last
    }

    private func writeOwnIDRun(_ deal: DealActor, count: Int, lsn: UInt64) async throws {
        let ids = await deal.archivedCallerIDs(history: history)
        guard count <= ids.count else {
            throw EngineError(.corrupt, "shipped LSN \(lsn): \(count) hold ids moved but deal \(deal.id) keeps \(ids.count)")
        }
        let entries = ids.prefix(count).map { CallerIDRuns.Entry(id: $0.id, deal: deal.number, slot: $0.slot, location: $0.location) }
        guard !entries.isEmpty else { return }
        try holdIDRuns.add(entries)
    }
}
