import AllocationEngine
import Foundation
import Glibc
import Synchronization
import WAL

/// This server's place in replication (docs/replication.md): a primary that
/// answers replicas' `REPLSYNC`, or a replica whose follower thread takes
/// the primary's records into its own log and state. `REPLICAOF` / `SLAVEOF`
/// switch between the two at run time.
public final class Replication: Sendable {
    public struct Settings: Sendable {
        /// The port replicas announce to their primary (INFO's `slaveN:port=`).
        public var listeningPort = 7379
        /// The token a replica authenticates with at its primary (`--masterauth`).
        public var masterAuth: String?
        /// Recent log kept in memory for replicas (`--repl-backlog-bytes`).
        public var backlogBytes = 16 << 20
        /// Sentinel's `slave_priority` (`--replica-priority`; 0 = never promoted).
        public var priority = 100
        public init() {}
    }

    struct Following {
        var host: String
        var port: Int
        /// Bumped on every switch: a follower of an older generation stops.
        var generation: UInt64
        var linkUp = false
        var lastIO: Double = 0
        var linkDownSince: Double = monotonicSeconds()
        var primaryLSN: UInt64 = 0
        var lastError: String?
        /// The follower stopped for good (state and log may differ): restart needed.
        var stopped: String?
    }

    let durable: DurableEngine
    let source: ReplicationSource
    private let settingsBox: Mutex<Settings>
    var settings: Settings { settingsBox.withLock { $0 } }
    let log: @Sendable (String) -> Void
    private let following = Mutex<Following?>(nil)
    private let generation = Atomic<UInt64>(0)
    /// Held by the follower while it applies a message, and by a role switch,
    /// so no shipped record is applied after the switch returns.
    private let applying = DispatchSemaphore(value: 1)

    public init(durable: DurableEngine, settings: Settings, log: @escaping @Sendable (String) -> Void) {
        self.durable = durable
        self.settingsBox = Mutex(settings)
        self.log = log
        self.source = ReplicationSource(durable: durable, backlogBytes: settings.backlogBytes)
    }

    public var isReplica: Bool { durable.gate.isReplica }

    /// The port this server listens on (announced to its primary).
    public func setListeningPort(_ port: Int) { settingsBox.withLock { $0.listeningPort = port } }

    // MARK: The role across restarts

    /// `DIR/replicaof`: the primary this data directory follows. Written at
    /// every switch (temp file, fsync, rename), so a replica restarted
    /// without `--replicaof` stays one and never takes changes that would
    /// fork its history; removed on promotion.
    static func rolePath(_ dataDir: String) -> String { FilePath.join(dataDir, "replicaof") }

    public static func savedPrimary(dataDir: String) -> (host: String, port: Int)? {
        guard let text = try? String(contentsOfFile: rolePath(dataDir), encoding: .utf8) else { return nil }
        return parseAddress(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// `host:port`, `host port` or `[v6]:port`.
    public static func parseAddress(_ text: String) -> (host: String, port: Int)? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let host: Substring, port: Substring
        if let space = t.lastIndex(of: " ") {
            host = t[..<space]; port = t[t.index(after: space)...]
        } else if let colon = t.lastIndex(of: ":") {
            host = t[..<colon]; port = t[t.index(after: colon)...]
        } else { return nil }
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? host.dropFirst().dropLast() : host
        guard !h.isEmpty, let p = Int(port.trimmingCharacters(in: .whitespaces)), (1...65_535).contains(p) else { return nil }
        return (String(h.trimmingCharacters(in: .whitespaces)), p)
    }

    private func saveRole(_ primary: (host: String, port: Int)?) {
        let path = Self.rolePath(durable.config.dataDir)
        do {
            if let primary {
                try PosixFileIO().writeWhole(Array("\(primary.host) \(primary.port)\n".utf8), to: path)
            } else if FileManager.default.fileExists(atPath: path) {
                try FileManager.default.removeItem(atPath: path)
                try PosixFileIO().fsyncDirectory(durable.config.dataDir)
            }
        } catch {
            log("ERROR: cannot record the replication role in \(path): \(error)")
        }
    }

    // MARK: Switching

    /// Follows `host:port` (a primary that becomes a replica stops deciding
    /// changes first). Returns at once; the follower connects in the background.
    public func replicate(from host: String, port: Int) async {
        if !durable.gate.isReplica {
            await durable.becomeReplica()
            log("replication: this server is now a replica of \(host):\(port); changes are refused (READONLY)")
        } else {
            log("replication: following \(host):\(port) instead")
        }
        // The bodies without `try` cannot fail: `try?` discards nothing.
        try? await withoutFollower { [self] in
            let g = generation.add(1, ordering: .relaxed).newValue
            following.withLock { $0 = Following(host: host, port: port, generation: g) }
        }
        saveRole((host, port))
        startFollower()
    }

    /// Stops following (at shutdown, before the engine closes): a message
    /// being applied finishes first; the role on disk stays as it is.
    public func stop() async {
        try? await withoutFollower { [self] in
            generation.add(1, ordering: .relaxed)
            following.withLock { $0 = nil }
        }
    }

    /// Called when `serve` starts as a primary: whatever it writes from now
    /// on is a history of its own (a new id; the old one valid up to its
    /// last LSN), so a server that was a replica, or a primary that lost a
    /// failover while down, can never hand a replica records under an id
    /// that another primary also continued.
    public func startAsPrimary() throws { try takeNewHistoryID() }

    /// A new id for what this server writes from now on; the one before stays
    /// valid up to its last LSN (`master_replid2`, `second_repl_offset`).
    private func takeNewHistoryID() throws {
        let old = try source.replicationIDs()
        try source.setReplicationIDs(ReplicationIDs(id: ReplicationIDs.random(), previousID: old.id,
                                                    previousUntil: durable.writer.lastAppendedLSN + 1))
    }

    /// `REPLICAOF NO ONE`: stops following and becomes a primary with a new
    /// history id; the one it followed stays valid up to its last LSN, so the
    /// other replicas of the old primary can follow this one.
    public func promote() async throws {
        guard durable.gate.isReplica else { return }
        try await withoutFollower { [self] in
            generation.add(1, ordering: .relaxed)
            following.withLock { $0 = nil }
            try takeNewHistoryID()
        }
        saveRole(nil)
        await durable.becomePrimary()
        log("replication: promoted to primary at LSN \(durable.writer.lastAppendedLSN); history \(try source.replicationIDs().id)")
    }

    /// Runs `body` while no shipped message is being applied (off the
    /// cooperative threads: it waits for the follower's semaphore).
    private func withoutFollower(_ body: @escaping @Sendable () throws -> Void) async throws {
        let sem = applying
        try await withCheckedThrowingContinuation { (k: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                sem.wait()
                defer { sem.signal() }
                do { try body(); k.resume() } catch { k.resume(throwing: error) }
            }
        }
    }

    private func startFollower() {
        guard let g = following.withLock({ $0?.generation }) else { return }
        let thread = Thread { [self] in self.follow(generation: g) }
        thread.name = "replica-follower"
        thread.start()
    }

    // MARK: The follower

    private func current(_ g: UInt64) -> Following? {
        following.withLock { f in f?.generation == g ? f : nil }
    }

    private func update(_ g: UInt64, _ body: (inout Following) -> Void) {
        following.withLock { f in
            guard f?.generation == g else { return }
            body(&f!)
        }
    }

    private func follow(generation g: UInt64) {
        var reported: String?
        while let f = current(g), f.stopped == nil {
            do {
                let link = try PrimaryLink(host: f.host, port: f.port, timeoutSeconds: 5)
                if let auth = settings.masterAuth {
                    if case .error(let e) = try link.call(["AUTH", auth]) { throw PrimaryLink.Failure(message: "AUTH refused: \(e)") }
                }
                log("replication: connected to primary \(f.host):\(f.port)")
                reported = nil
                while current(g) != nil {
                    try step(link, g)
                }
            } catch let e as FollowStop {
                update(g) { $0.stopped = e.message; $0.linkUp = false; $0.lastError = e.message }
                log("ERROR: replication stopped: \(e.message)")
                if e.resync {
                    let kind = e.fromSnapshot ? Self.snapshotResync : Self.divergedResync
                    do {
                        try PosixFileIO().writeWhole(Array("\(kind)\n\(e.message)\n".utf8), to: Self.resyncMarker(durable.config.dataDir))
                    } catch {
                        log("ERROR: cannot write \(Self.resyncMarker(durable.config.dataDir)): \(error); the next start follows this log as it is")
                    }
                }
                restartNeeded.withLock { $0 }?(e.message)
                return
            } catch {
                let message = "\(error)"
                update(g) { s in
                    if s.linkUp { s.linkDownSince = monotonicSeconds() }
                    s.linkUp = false
                    s.lastError = message
                }
                if reported != message { log("replication: link to \(f.host):\(f.port) down: \(message)"); reported = message }
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    struct FollowStop: Error {
        let message: String
        var resync = false
        /// The primary no longer has the log this replica needs: the
        /// restart copies the primary's snapshot (SnapshotTransfer).
        var fromSnapshot = false
    }

    /// The first line of `DIR/resync`: why the data is set aside.
    static let divergedResync = "diverged"
    static let snapshotResync = "snapshot"

    /// `DIR/resync`: set by a replica whose log parted from its primary's.
    /// The next start moves the data aside (`DIR/diverged-<unix seconds>/`)
    /// and follows from the primary's first record.
    public static func resyncMarker(_ dataDir: String) -> String { FilePath.join(dataDir, "resync") }

    /// The process exit status that asks the supervisor for a restart into
    /// a full resync (sysexits' EX_TEMPFAIL).
    public static let resyncExitCode: Int32 = 75

    /// Called when the follower stopped for good and needs a restart (resync).
    private let restartNeeded = Mutex<(@Sendable (String) -> Void)?>(nil)
    public func onRestartNeeded(_ body: @escaping @Sendable (String) -> Void) { restartNeeded.withLock { $0 = body } }

    public struct SetAside: Sendable {
        /// Where the data went.
        public var folder: String
        /// Whether the replica must copy its primary's snapshot (the
        /// primary's log no longer reaches back to it) rather than follow
        /// the primary's log from LSN 1.
        public var fromSnapshot: Bool
    }

    /// At start, before recovery: moves a diverged (or too far behind)
    /// replica's data aside, into `DIR/diverged-<unix>/` (or `stale-<unix>/`).
    /// Returns where it went (nil without a marker).
    public static func setAsideDiverged(dataDir: String) throws -> SetAside? {
        let fm = FileManager.default
        guard fm.fileExists(atPath: resyncMarker(dataDir)) else { return nil }
        let reason = (try? String(contentsOfFile: resyncMarker(dataDir), encoding: .utf8)) ?? ""
        let fromSnapshot = reason.hasPrefix(snapshotResync + "\n")
        let base = FilePath.join(dataDir, "\(fromSnapshot ? "stale" : "diverged")-\(Int(Date().timeIntervalSince1970))")
        var aside = base
        var n = 1
        while fm.fileExists(atPath: aside) { aside = "\(base).\(n)"; n += 1 }
        try fm.createDirectory(atPath: aside, withIntermediateDirectories: true)
        for name in ["wal", "snapshots", "history", "replication"] where fm.fileExists(atPath: FilePath.join(dataDir, name)) {
            try fm.moveItem(atPath: FilePath.join(dataDir, name), toPath: FilePath.join(aside, name))
        }
        if fromSnapshot { try SnapshotTransfer.markBootstrap(dataDir: dataDir) }
        try fm.removeItem(atPath: resyncMarker(dataDir))
        try PosixFileIO().fsyncDirectory(dataDir)
        return SetAside(folder: aside, fromSnapshot: fromSnapshot)
    }

    /// At start, after `setAsideDiverged` and before recovery: a replica
    /// marked for a copy of its primary's snapshot (`DIR/bootstrap`) makes
    /// it, retrying until the primary answers. Returns the copied log's end,
    /// or nil when there was nothing to do.
    public static func bootstrapIfMarked(dataDir: String, primary: (host: String, port: Int)?, settings: Settings,
                                         segmentBytes: Int, log: @escaping @Sendable (String) -> Void,
                                         shouldStop: @escaping @Sendable () -> Bool = { false }) throws -> UInt64? {
        guard SnapshotTransfer.needsBootstrap(dataDir: dataDir) else { return nil }
        guard let primary else {
            throw PrimaryLink.Failure(message: "\(SnapshotTransfer.bootstrapMarker(dataDir)) asks for a copy of the primary's snapshot, but no primary is known (start with --replicaof HOST:PORT)")
        }
        return SnapshotTransfer.bootstrap(dataDir: dataDir, host: primary.host, port: primary.port, auth: settings.masterAuth,
                                          listeningPort: settings.listeningPort, segmentBytes: segmentBytes, log: log, shouldStop: shouldStop)
    }

    /// One request and what it brought: appended, applied, durable. The next
    /// request acknowledges it (it asks for the LSN after).
    private func step(_ link: PrimaryLink, _ g: UInt64) throws {
        let writer = durable.writer
        let last = writer.lastAppendedLSN
        let ids = try source.replicationIDs()
        // A log whose every record predates the current id's start belongs
        // wholly to the previous history (a primary restarted or promoted
        // that wrote nothing since): it continues as that one.
        let asID = last == 0 ? ReplicationIDs.none
            : (ids.previousID != ReplicationIDs.none && last + 1 <= ids.previousUntil ? ids.previousID : ids.id)
        let end = durable.history.end
        let reply = try link.call(["REPLSYNC", asID, String(last + 1), String(end.file), String(end.offset), String(settings.listeningPort)])
        let bytes: [UInt8]
        switch reply {
        case .bulk(let b?): bytes = b
        case .error(let e):
            if e.hasPrefix("NEEDSNAPSHOT") {
                throw FollowStop(message: "the primary's log no longer reaches back to LSN \(last + 1) (\(e)); at the next start this replica sets its data aside and copies the primary's snapshot", resync: true, fromSnapshot: true)
            }
            if e.hasPrefix("FULLRESYNC") {
                // This log holds records the primary's history does not (a
                // primary that lost them in a failover), or the primary's log
                // no longer reaches back to it: start over from the primary's
                // log, keeping this data aside.
                if last > 0 {
                    throw FollowStop(message: "the primary refused to continue this log (\(e)); this data directory is set aside at the next start and the replica syncs from the primary's log", resync: true)
                }
                throw PrimaryLink.Failure(message: e)
            }
            throw PrimaryLink.Failure(message: "the primary refused REPLSYNC: \(e)")
        default: throw PrimaryLink.Failure(message: "unexpected reply to REPLSYNC")
        }
        let message: SyncMessage
        do { message = try SyncMessage.decode(bytes) } catch { throw PrimaryLink.Failure(message: "bad REPLSYNC reply: \(error)") }
        let records: [ShippedRecord]
        do { records = try ShippedRecords.parse(message.records, firstLSN: last + 1) } catch {
            throw PrimaryLink.Failure(message: "damaged records from the primary: \(error)")
        }
        applying.wait()
        defer { applying.signal() }
        guard current(g) != nil else { return }
        if message.ids != ids { try source.setReplicationIDs(message.ids) }
        if !records.isEmpty || !message.history.isEmpty {
            let durable = self.durable
            let history = message.history
            let appended: UInt64?
            do {
                appended = try blocking { try await durable.applyShipped(history: history, records: records) }
            } catch {
                throw FollowStop(message: "applying the primary's records failed (this replica's memory may differ from its log; it syncs again from the primary's log at the next start): \(error)", resync: true)
            }
            if let appended { try waitDurable(appended) }
        }
        update(g) { s in
            if !s.linkUp { s.linkUp = true }
            s.lastIO = monotonicSeconds()
            s.primaryLSN = message.primaryLSN
            s.lastError = nil
        }
    }

    private func waitDurable(_ lsn: UInt64) throws {
        if let e = durable.writer.waitDurable(lsn) { throw FollowStop(message: "this replica's log failed: \(e)") }
    }

    /// Runs async engine work from the follower's own thread.
    private func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let sem = DispatchSemaphore(value: 0)
        let box = Mutex<Result<T, any Error>?>(nil)
        Task {
            let r: Result<T, any Error>
            do { r = .success(try await body()) } catch { r = .failure(error) }
            box.withLock { $0 = r }
            sem.signal()
        }
        sem.wait()
        return try box.withLock { $0! }.get()
    }

    // MARK: The primary's side

    func answer(replicaID: String, from: UInt64, history: HistoryLocation, session: UInt64, address: String,
                listeningPort: Int) async throws(ReplicationSource.Refusal) -> [UInt8] {
        guard !durable.gate.isReplica else {
            throw ReplicationSource.Refusal(code: "ERR", message: "this server is a replica; chained replication is not supported: follow its primary")
        }
        durable.gate.replicaSeen(id: session, address: address, listeningPort: listeningPort, ackLSN: from - 1)
        let m = try await source.answer(replicaID: replicaID, from: from, history: history)
        return m.encoded()
    }

    func replicaGone(session: UInt64) { durable.gate.replicaGone(id: session) }

    // MARK: Views

    public struct Status: Sendable {
        public var role: String
        public var host = ""
        public var port = 0
        public var linkUp = false
        public var lastIOSecondsAgo = -1
        public var linkDownSeconds = -1
        public var offset: UInt64 = 0
        public var primaryLSN: UInt64 = 0
        public var lastError: String?
    }

    public var status: Status {
        let f = following.withLock { $0 }
        let offset = durable.writer.acknowledgedLSN
        guard durable.gate.isReplica else { return Status(role: "master", offset: offset) }
        var s = Status(role: "slave", offset: offset)
        if let f {
            s.host = f.host
            s.port = f.port
            s.linkUp = f.linkUp && f.stopped == nil
            s.lastIOSecondsAgo = f.lastIO == 0 ? -1 : Int(monotonicSeconds() - f.lastIO)
            s.linkDownSeconds = s.linkUp ? -1 : Int(monotonicSeconds() - f.linkDownSince)
            s.primaryLSN = f.primaryLSN
            s.lastError = f.stopped ?? f.lastError
        }
        return s
    }

    /// INFO's `# Replication` lines (the fields Redis Sentinel reads).
    public func infoLines() -> [(String, String)] {
        let s = status
        let ids = (try? source.replicationIDs()) ?? ReplicationIDs(id: ReplicationIDs.none, previousID: ReplicationIDs.none, previousUntil: 0)
        var lines: [(String, String)] = [("role", s.role)]
        if s.role == "slave" {
            lines += [("master_host", s.host), ("master_port", String(s.port)),
                      ("master_link_status", s.linkUp ? "up" : "down"),
                      ("master_last_io_seconds_ago", String(s.lastIOSecondsAgo)),
                      ("master_sync_in_progress", "0"),
                      ("slave_read_repl_offset", String(durable.writer.lastAppendedLSN)),
                      ("slave_repl_offset", String(s.offset))]
            if !s.linkUp { lines.append(("master_link_down_since_seconds", String(s.linkDownSeconds))) }
            if let e = s.lastError { lines.append(("master_link_last_error", e.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " "))) }
            lines += [("slave_priority", String(settings.priority)), ("slave_read_only", "1"), ("replica_announced", "1")]
        }
        let replicas = s.role == "master" ? durable.gate.replicas : []
        lines.append(("connected_slaves", String(replicas.count)))
        let now = monotonicSeconds()
        for (i, r) in replicas.enumerated() {
            lines.append(("slave\(i)", "ip=\(Self.host(of: r.address)),port=\(r.listeningPort),state=online,offset=\(r.ackLSN),lag=\(Int(now - r.lastSeen))"))
        }
        if s.role == "master" && durable.gate.minReplicas > 0 {
            lines.append(("min_slaves_good_slaves", String(replicas.count)))
        }
        lines += [("master_failover_state", "no-failover"),
                  ("master_replid", ids.id), ("master_replid2", ids.previousID),
                  ("master_repl_offset", String(s.offset)),
                  ("second_repl_offset", ids.previousID == ReplicationIDs.none ? "-1" : String(ids.previousUntil)),
                  ("repl_backlog_active", "1"), ("repl_backlog_size", String(source.backlog.capacity)),
                  ("repl_backlog_first_byte_offset", String(source.backlog.firstLSN ?? 0)),
                  ("repl_backlog_histlen", String(source.backlog.bytes))]
        return lines
    }

    /// `ROLE`: `[master, offset, [[ip, port, offset], ...]]` or
    /// `[slave, host, port, state, offset]`, as Redis answers it.
    func roleReply() -> [UInt8] {
        let s = status
        var e = RESPEncoder(protocolVersion: 2)
        if s.role == "master" {
            let replicas = durable.gate.replicas
            e.arrayHeader(3)
            e.bulk("master")
            e.integer(Int(s.offset))
            e.arrayHeader(replicas.count)
            for r in replicas {
                e.arrayHeader(3)
                e.bulk(Self.host(of: r.address))
                e.bulk(String(r.listeningPort))
                e.bulk(String(r.ackLSN))
            }
        } else {
            e.arrayHeader(5)
            e.bulk("slave")
            e.bulk(s.host)
            e.integer(s.port)
            e.bulk(s.linkUp ? "connected" : "connect")
            e.integer(Int(s.offset))
        }
        return e.bytes
    }

    /// The peer's host part of `ip:port` / `[v6]:port`.
    static func host(of address: String) -> String {
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            return String(address[address.index(after: address.startIndex)..<close])
        }
        guard let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon])
    }
}
