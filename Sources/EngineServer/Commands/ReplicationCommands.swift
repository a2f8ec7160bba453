import AllocationEngine
import Foundation

/// Replication: `REPLICAOF` / `SLAVEOF`, `ROLE`, `WAIT` (docs/replication.md).
/// They read or change no engine state, so they run as control operations,
/// outside the durability barrier: a primary waiting for replicas still
/// answers them (Sentinel's failover needs that).
enum ReplicationCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("REPLICAOF", "REPLICAOF <host> <port> | REPLICAOF NO ONE", .administer, parseReplicaOf),
        CommandSpec("SLAVEOF", "SLAVEOF <host> <port> | SLAVEOF NO ONE", .administer, parseReplicaOf),
        CommandSpec("ROLE", "ROLE", .read) { a throws(CommandError) in
            try a.end()
            return .control { c in
                guard let r = c.replication else { return .values(["master", "0"]) }
                return .resp(r.roleReply())
            }
        },
        CommandSpec("WAIT", "WAIT <numreplicas> <timeout ms>", .read) { a throws(CommandError) in
            guard let n = Int(try a.req("numreplicas")), n >= 0, n <= 1_000 else {
                throw CommandError("ERR", "numreplicas must be an integer from 0 to 1000")
            }
            guard let timeout = Int(try a.req("timeout")), timeout >= 0 else { throw CommandError("ERR", "timeout is negative") }
            try a.end()
            return .control { c in
                guard let r = c.replication, !r.isReplica, let sink = c.engine.sink else {
                    if c.replication?.isReplica == true { return .failure(EngineError(.invalid, "WAIT cannot be used with replica instances")) }
                    return .count(0)
                }
                let lsn = sink.lastAppendedLSN
                // 0: Redis waits forever; here at most a day, so no connection waits unbounded.
                let deadline = monotonicSeconds() + (timeout == 0 ? 86_400 : Double(timeout) / 1000)
                while true {
                    let k = r.durable.gate.acknowledged(lsn)
                    if k >= n || monotonicSeconds() >= deadline { return .count(k) }
                    try? await Task.sleep(for: .milliseconds(2))
                }
            }
        },
    ]

    static func parseReplicaOf(_ a: inout Arguments) throws(CommandError) -> Operation {
        let host = try a.req("host"), portText = try a.req("port")
        try a.end()
        if host.uppercased() == "NO" && portText.uppercased() == "ONE" {
            return .control { c in
                guard let r = c.replication else { return .ok }
                do { try await r.promote() } catch { return .failure(EngineError(.readOnly, "promotion failed: \(error)")) }
                return .ok
            }
        }
        guard let port = Int(portText), (1...65_535).contains(port) else { throw CommandError("ERR", "Invalid master port") }
        guard !host.isEmpty, host.utf8.count <= 255, host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw CommandError("ERR", "Invalid master host")
        }
        return .control { c in
            guard let r = c.replication else { return .failure(EngineError(.invalid, "replication needs a data directory (serve --data-dir)")) }
            await r.replicate(from: host, port: port)
            return .status("OK")
        }
    }
}

extension EngineRequestHandler {
    /// The replication links' common checks (admin only, a data directory):
    /// the replication, or nil with the refusal encoded into `e`.
    private func replicationFor(_ connection: ConnectionState, _ e: inout RESPEncoder) -> Replication? {
        guard let principal = connection.principal else {
            e.error(code: "NOAUTH", message: "Authentication required.")
            return nil
        }
        guard principal.role.allows(.administer) else {
            e.error(code: "NOPERM", message: "user \(principal.user) may not replicate this server")
            return nil
        }
        guard let replication else {
            e.error(code: "ERR", message: "this server has no data directory to replicate")
            return nil
        }
        return replication
    }

    /// `REPLSYNC <replid> <from-lsn> <history-file> <history-offset> <listening-port>`:
    /// a replica asks for what follows its log (and acknowledges everything
    /// before `from-lsn` as durable). Sent alone in its batch; answered
    /// outside the batch path, since a primary waiting for this replica's
    /// acknowledgement must still answer it. Admin only.
    func replicationSync(_ c: RESPCommand, session: Session, connection: ConnectionState,
                         complete: @escaping @Sendable ([UInt8], Bool) -> Void) {
        var e = RESPEncoder(protocolVersion: session.protocolVersion)
        guard let replication = replicationFor(connection, &e) else { return complete(e.bytes, false) }
        guard c.count == 6, let from = UInt64(c.string(at: 2)), let file = UInt32(c.string(at: 3)),
              let offset = UInt64(c.string(at: 4)), let port = Int(c.string(at: 5)), (0...65_535).contains(port),
              c.string(at: 1).utf8.count == 40 else {
            e.error(code: "ERR", message: "usage: REPLSYNC <replid> <from-lsn> <history-file> <history-offset> <listening-port>")
            return complete(e.bytes, false)
        }
        let replid = c.string(at: 1)
        clients.update(session.id) { $0.isReplica = true }
        let id = session.id, address = session.remoteAddress, proto = session.protocolVersion
        Task {
            var e = RESPEncoder(protocolVersion: proto)
            do {
                let bytes = try await replication.answer(replicaID: replid, from: from, history: HistoryLocation(file: file, offset: offset),
                                                         session: id, address: address, listeningPort: port)
                e.bulk(bytes)
            } catch let refusal as ReplicationSource.Refusal {
                e.error(code: refusal.code, message: refusal.message)
            } catch {
                e.error(code: "ERR", message: "\(error)")
            }
            complete(e.bytes, false)
        }
    }

    /// `REPLSNAPSHOT LIST` / `REPLSNAPSHOT READ snapshot|run <name> <offset>`:
    /// what a replica copies for a full resync (SnapshotTransfer). Admin
    /// only, alone in its batch, like `REPLSYNC`; the file reads run off the
    /// event loop.
    func replicationSnapshot(_ c: RESPCommand, session: Session, connection: ConnectionState,
                             complete: @escaping @Sendable ([UInt8], Bool) -> Void) {
        var e = RESPEncoder(protocolVersion: session.protocolVersion)
        guard let replication = replicationFor(connection, &e) else { return complete(e.bytes, false) }
        guard !replication.isReplica else {
            e.error(code: "ERR", message: "this server is a replica; chained replication is not supported: follow its primary")
            return complete(e.bytes, false)
        }
        let sub = c.count >= 2 ? c.string(at: 1).uppercased() : ""
        let list = sub == "LIST" && c.count == 2
        let read = sub == "READ" && c.count == 5
        guard list || read else {
            e.error(code: "ERR", message: "usage: REPLSNAPSHOT LIST | REPLSNAPSHOT READ snapshot|run <name> <offset>")
            return complete(e.bytes, false)
        }
        let kind = read ? c.string(at: 2) : "", name = read ? c.string(at: 3) : "", offsetText = read ? c.string(at: 4) : "0"
        let proto = session.protocolVersion
        let dataDir = replication.durable.config.dataDir
        DispatchQueue.global().async {
            var e = RESPEncoder(protocolVersion: proto)
            if list {
                do {
                    let ids = try replication.source.replicationIDs()
                    e.bulk(SnapshotTransfer.listing(dataDir: dataDir, ids: ids, acknowledged: replication.durable.writer.acknowledgedLSN).encoded())
                } catch {
                    e.error(code: "ERR", message: "replication ids unreadable: \(error)")
                }
            } else if let offset = Int(offsetText) {
                do throws(SnapshotTransfer.Refusal) {
                    e.bulk(try SnapshotTransfer.piece(dataDir: dataDir, kind: kind, name: name, offset: offset))
                } catch {
                    e.error(code: error.code, message: error.message)
                }
            } else {
                e.error(code: "ERR", message: "offset is not an integer")
            }
            complete(e.bytes, false)
        }
    }
}
