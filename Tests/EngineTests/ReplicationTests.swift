import AllocationEngine
import Foundation
import Testing
import WAL
@testable import EngineServer

/// Replicas over real TCP: a primary and replicas in process, each with its
/// own data directory, following with the server's own follower thread.
@Suite(.serialized) struct ReplicationTests {
    static func digest(_ h: SrvHarness) async -> String { await h.engine.digest() }

    /// Waits until the replica has applied everything the primary's log
    /// holds: the primary has its acknowledgement (a replica asks for the
    /// next LSN only after applying and syncing what came before; its own
    /// log can be durable a moment before its memory has the records).
    static func caughtUp(_ primary: SrvHarness, _ replica: SrvHarness, seconds: Double = 20) async -> Bool {
        await srvWait(seconds) {
            let target = primary.durable.writer.acknowledgedLSN
            return replica.durable.writer.acknowledgedLSN >= target
                && primary.durable.gate.replicas.contains { $0.listeningPort == replica.port && $0.ackLSN >= target }
        }
    }

    /// A primary whose ended holds leave memory at once and whose caller ids
    /// go to an id run as soon as one is asked for.
    static func archivingAtOnce() -> SrvHarness.Options {
        var o = SrvHarness.Options()
        var retention = RetentionPolicy()
        retention.endedMillis = 0
        retention.maxEndedPerDeal = 1024
        retention.callerIDsInMemory = 1
        o.retention = retention
        return o
    }

    @Test func replicaFollowsRefusesChangesAndMatchesTheDigest() async throws {
        let p = try await SrvHarness.start()
        let r = try await SrvHarness.start(SrvHarness.Options(replicaOf: p.port))
        defer { Task { await r.stop(); r.removeData(); await p.stop(); p.removeData() } }
        let c = try p.client()
        await srvSetupDeal(c, "d1", units: "1000")
        var holds: [String] = []
        for i in 0..<50 { holds.append(await c.call("HOLD", "d1", "inv\(i % 7)", "3", "10", "ID", "k\(i)").elements?.first?.string ?? "?") }
        #expect(await c.call("RELEASE", holds[0]) == .simple("OK"))
        let a = await c.call("ALLOCATE", holds[1])
        #expect(!a.isError)
        #expect(await Self.caughtUp(p, r))
        #expect(await Self.digest(p) == Self.digest(r))
        let rc = try r.client()
        // Reads are served; changes refused with Redis' wording.
        #expect(await rc.call("HOLD.GET", "k5").fields?["investor"] == "inv5")
        #expect(await rc.call("HOLD", "d1", "inv9", "1", "10") == .error("READONLY You can't write against a read only replica."))
        #expect(await rc.call("DEAL.CREATE", "d2").errorCode == "READONLY")
        // ROLE and INFO replication on both sides.
        let role = await rc.call("ROLE")
        #expect(role.elements?.first == .bulk("slave"))
        let info = await rc.call("INFO", "replication").string ?? ""
        #expect(info.contains("role:slave") && info.contains("master_link_status:up") && info.contains("master_port:\(p.port)"))
        let pinfo = await c.call("INFO", "replication").string ?? ""
        #expect(pinfo.contains("role:master") && pinfo.contains("connected_slaves:1") && pinfo.contains("slave0:ip=127.0.0.1,port=\(r.port),state=online"))
        #expect(await c.call("WAIT", "1", "2000") == .int(1))
        #expect(await c.call("WAIT", "2", "50") == .int(1))
        #expect(await rc.call("WAIT", "1", "10").errorCode == "INVALID")
    }

    @Test func archivedRowsAndHoldIDRunsReachTheReplica() async throws {
        let o = Self.archivingAtOnce()
        let p = try await SrvHarness.start(o)
        let r = try await SrvHarness.start(SrvHarness.Options(replicaOf: p.port))
        defer { Task { await r.stop(); r.removeData(); await p.stop(); p.removeData() } }
        let c = try p.client()
        await srvSetupDeal(c, "d1", units: "100000")
        var pipeline: [UInt8] = []
        for i in 0..<3000 { pipeline += respCommand(["HOLD", "d1", "inv\(i % 50)", "1", "10", "ID", "c\(i)"]) }
        _ = await c.send(pipeline, replies: 3000)
        pipeline = []
        for i in 0..<3000 { pipeline += respCommand(["RELEASE", "c\(i)"]) }
        _ = await c.send(pipeline, replies: 3000)
        #expect(await p.durable.archiveDue() > 0)
        #expect(await p.durable.moveHoldIDsDue(force: true) > 0)
        _ = await c.call("HOLD", "d1", "inv1", "1", "10")
        #expect(await Self.caughtUp(p, r))
        #expect(await Self.digest(p) == Self.digest(r))
        #expect(r.durable.history.end == p.durable.history.end)
        let rc = try r.client()
        // An archived hold, found by its caller id through the replica's own id run.
        let g = await rc.call("HOLD.GET", "c10")
        #expect(g.fields?["status"] == "cancelled", "\(g)")
        #expect(r.durable.holdIDRuns.stats.runs >= 1)
    }

    @Test func minReplicasToWriteRefusesWithoutReplicasAndWaitsForTheAcknowledgement() async throws {
        let p = try await SrvHarness.start(SrvHarness.Options(minReplicas: 1, replicaAckTimeoutSeconds: 1))
        defer { Task { await p.stop(); p.removeData() } }
        let c = try p.client()
        #expect(await c.call("DEAL.CREATE", "d1").errorCode == "NOREPLICAS")
        let r = try await SrvHarness.start(SrvHarness.Options(replicaOf: p.port))
        #expect(await srvWait(10) { p.durable.gate.refusal == nil })
        await srvSetupDeal(c, "d1", units: "100")
        let h = await c.call("HOLD", "d1", "inv1", "5", "10")
        #expect(!h.isError, "\(h)")
        // Acknowledged means the replica has it durable.
        #expect(r.durable.writer.acknowledgedLSN >= p.durable.writer.lastAppendedLSN - 1)
        await r.stop()
        // The replica is gone: changes are refused once it times out.
        #expect(await srvWait(10) { p.durable.gate.refusal != nil })
        #expect(await c.call("HOLD", "d1", "inv1", "5", "10").errorCode == "NOREPLICAS")
        // Reads still answer.
        #expect(await c.call("DEAL.GET", "d1").fields?["id"] == "d1")
        r.removeData()
    }

    @Test func promotionAndTheOldPrimaryRejoining() async throws {
        let p = try await SrvHarness.start()
        let r = try await SrvHarness.start(SrvHarness.Options(replicaOf: p.port))
        let c = try p.client()
        await srvSetupDeal(c, "d1", units: "1000")
        for i in 0..<20 { _ = await c.call("HOLD", "d1", "inv\(i)", "2", "10") }
        #expect(await Self.caughtUp(p, r))
        let pDir = p.dataDir
        await p.stop()
        let rc = try r.client()
        #expect(await rc.call("REPLICAOF", "NO", "ONE") == .simple("OK"))
        #expect(!(await rc.call("HOLD", "d1", "invNew", "2", "10")).isError)
        let info = await rc.call("INFO", "replication").string ?? ""
        #expect(info.contains("role:master") && !info.contains("master_replid2:0000000000000000000000000000000000000000"))
        // The old primary restarts as a replica of the new one: it wrote nothing since, so it continues.
        let old = try await SrvHarness.start(dataDir: pDir, SrvHarness.Options(replicaOf: r.port))
        #expect(await Self.caughtUp(r, old))
        #expect(await Self.digest(old) == Self.digest(r))
        #expect(!FileManager.default.fileExists(atPath: Replication.resyncMarker(pDir)))
        await old.stop(); old.removeData()
        try? FileManager.default.removeItem(atPath: pDir)
        await r.stop(); r.removeData()
    }

    /// A replica stopped while the primary goes on takes up where its log
    /// ends when it comes back (from the primary's backlog or segments).
    @Test func aStoppedReplicaCatchesUpAfterItsRestart() async throws {
        let p = try await SrvHarness.start()
        let r = try await SrvHarness.start(SrvHarness.Options(replicaOf: p.port))
        let c = try p.client()
        await srvSetupDeal(c, "d1", units: "100000")
        var pipeline: [UInt8] = []
        for i in 0..<500 { pipeline += respCommand(["HOLD", "d1", "inv\(i % 9)", "2", "10", "ID", "a\(i)"]) }
        _ = await c.send(pipeline, replies: 500)
        #expect(await Self.caughtUp(p, r))
        let rDir = r.dataDir
        let stoppedAt = r.durable.writer.acknowledgedLSN
        await r.stop()
        pipeline = []
        for i in 500..<3000 { pipeline += respCommand(["HOLD", "d1", "inv\(i % 9)", "2", "10", "ID", "a\(i)"]) }
        _ = await c.send(pipeline, replies: 2500)
        #expect(p.durable.writer.acknowledgedLSN > stoppedAt + 2000)
        let back = try await SrvHarness.start(dataDir: rDir, SrvHarness.Options(replicaOf: p.port))
        #expect(back.durable.writer.acknowledgedLSN == stoppedAt)
        #expect(await Self.caughtUp(p, back))
        #expect(await Self.digest(p) == Self.digest(back))
        #expect(!FileManager.default.fileExists(atPath: Replication.resyncMarker(rDir)))
        #expect(await (try back.client()).call("HOLD.GET", "a2999").fields?["investor"] == "inv2")
        await back.stop()
        try? FileManager.default.removeItem(atPath: rDir)
        await p.stop(); p.removeData()
    }

    /// A replica whose place in the log the primary deleted (`--prune-log`)
    /// copies the primary's snapshot, the log after it and the history,
    /// then follows: same digest, archived rows and caller ids answered.
    @Test func aReplicaBehindAPrunedLogCopiesTheSnapshot() async throws {
        var o = Self.archivingAtOnce()
        o.pruneLog = true
        o.segmentBytes = 64 << 10
        // Smaller than the log written while the early replica is away: it
        // cannot catch up from the backlog either.
        o.replBacklogBytes = 64 << 10
        let p = try await SrvHarness.start(o)
        let c = try p.client()
        await srvSetupDeal(c, "d1", units: "1000000")
        var n = 0
        func holds(_ count: Int, release: Bool) async {
            var pipeline: [UInt8] = []
            for i in n..<(n + count) { pipeline += respCommand(["HOLD", "d1", "inv\(i % 50)", "1", "10", "ID", "c\(i)"]) }
            _ = await c.send(pipeline, replies: count)
            if release {
                pipeline = []
                for i in n..<(n + count) { pipeline += respCommand(["RELEASE", "c\(i)"]) }
                _ = await c.send(pipeline, replies: count)
            }
            n += count
        }
        // A replica that follows the first round, then is stopped for longer than the primary keeps its log.
        let early = try await SrvHarness.start(SrvHarness.Options(replicaOf: p.port))
        let earlyDir = early.dataDir
        defer { try? FileManager.default.removeItem(atPath: earlyDir) }
        for round in 0..<5 {
            await holds(1500, release: round < 4)
            _ = await p.durable.archiveDue()
            _ = await p.durable.moveHoldIDsDue(force: true)
            #expect(await c.call("SNAPSHOT") == .simple("OK"))
            if round == 0 {
                #expect(await Self.caughtUp(p, early))
                await early.stop()
            }
        }
        let segments = try FileManager.default.contentsOfDirectory(atPath: DataDirectory(p.dataDir).wal).compactMap(LogFormat.parseSegmentName)
        #expect((segments.min() ?? 1) > 1, "the primary's log still starts at LSN 1: \(segments.sorted())")
        #expect(p.durable.holdIDRuns.stats.runs >= 1)

        // An empty replica asks for LSN 1: refused, marked for a copy.
        let rdir = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: rdir) }
        let r = try await SrvHarness.start(dataDir: rdir, SrvHarness.Options(replicaOf: p.port))
        #expect(await srvWait(10) { FileManager.default.fileExists(atPath: Replication.resyncMarker(rdir)) })
        await r.stop()
        // What `serve` does at the next start, before recovery.
        let aside = try Replication.setAsideDiverged(dataDir: rdir)
        #expect(aside?.fromSnapshot == true && aside?.folder.contains("/stale-") == true)
        #expect(SnapshotTransfer.needsBootstrap(dataDir: rdir))
        let copied = try Replication.bootstrapIfMarked(dataDir: rdir, primary: ("127.0.0.1", p.port), settings: Replication.Settings(),
                                                       segmentBytes: 1 << 20, log: { _ in })
        #expect(copied != nil && copied! >= p.durable.writer.acknowledgedLSN)
        #expect(!SnapshotTransfer.needsBootstrap(dataDir: rdir))
        let r2 = try await SrvHarness.start(dataDir: rdir, SrvHarness.Options(replicaOf: p.port))
        defer { Task { await r2.stop() } }
        await holds(200, release: false)
        #expect(await Self.caughtUp(p, r2))
        #expect(await Self.digest(p) == Self.digest(r2))
        #expect(r2.durable.history.end == p.durable.history.end)
        let rc = try r2.client()
        // A hold archived before the snapshot, found by its caller id; a live one; one after the copy.
        #expect(await rc.call("HOLD.GET", "c10").fields?["status"] == "cancelled")
        #expect(await rc.call("HOLD.GET", "c\(6000 + 5)").fields?["status"] == "pending")
        #expect(await rc.call("HOLD.GET", "c\(n - 1)").fields?["status"] == "pending")
        #expect((await rc.call("INFO", "replication").string ?? "").contains("master_link_status:up"))
        await r2.stop()

        // The replica stopped after the first round: its log ends before the
        // primary's first segment, so it is marked, set aside and copied too.
        let stale = try await SrvHarness.start(dataDir: earlyDir, SrvHarness.Options(replicaOf: p.port))
        #expect(stale.durable.writer.lastAppendedLSN > 0)
        #expect(await srvWait(10) { FileManager.default.fileExists(atPath: Replication.resyncMarker(earlyDir)) })
        await stale.stop()
        let staleAside = try Replication.setAsideDiverged(dataDir: earlyDir)
        #expect(staleAside?.fromSnapshot == true)
        #expect(FileManager.default.fileExists(atPath: FilePath.join(staleAside?.folder ?? "/nonexistent", "wal")))
        #expect(try Replication.bootstrapIfMarked(dataDir: earlyDir, primary: ("127.0.0.1", p.port), settings: Replication.Settings(),
                                                  segmentBytes: 1 << 20, log: { _ in }) != nil)
        let back = try await SrvHarness.start(dataDir: earlyDir, SrvHarness.Options(replicaOf: p.port))
        await holds(10, release: false)
        #expect(await Self.caughtUp(p, back))
        #expect(await Self.digest(p) == Self.digest(back))
        await back.stop()
        await p.stop(); p.removeData()
    }

    /// The listing and the file reads refuse names outside the two kinds.
    @Test func snapshotTransferNamesAreChecked() throws {
        #expect(SnapshotTransfer.isRunName("ids-00000001.run"))
        #expect(!SnapshotTransfer.isRunName("ids-../../etc.run") && !SnapshotTransfer.isRunName("ids-.run") && !SnapshotTransfer.isRunName("x.run"))
        let dir = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (kind, name) in [("snapshot", "../replication"), ("run", "../../etc/passwd"), ("wal", "x"), ("snapshot", "snap-x")] {
            #expect(throws: SnapshotTransfer.Refusal.self) { try SnapshotTransfer.piece(dataDir: dir, kind: kind, name: name, offset: 0) }
        }
        let ids = ReplicationIDs(id: ReplicationIDs.random(), previousID: ReplicationIDs.none, previousUntil: 0)
        let listing = SnapshotTransfer.Listing(ids: ids, lsn: 42, snapshot: nil, runs: [SnapshotTransfer.File(name: "ids-00000002.run", size: 77)])
        #expect(SnapshotTransfer.Listing.decode(listing.encoded()) == listing)
        #expect(SnapshotTransfer.Listing.decode(Array("lsn 1\n".utf8)) == nil)
    }

    @Test func aForkedLogIsRefusedAndMarkedForResync() async throws {
        let p = try await SrvHarness.start()
        let r = try await SrvHarness.start(SrvHarness.Options(replicaOf: p.port))
        let c = try p.client()
        await srvSetupDeal(c, "d1", units: "1000")
        #expect(await Self.caughtUp(p, r))
        // The replica is restarted as a primary by mistake and takes a change of its own.
        let rDir = r.dataDir
        await r.stop()
        let forked = try await SrvHarness.start(dataDir: rDir)
        #expect(!(await (try forked.client()).call("HOLD", "d1", "invFork", "1", "10")).isError)
        _ = await c.call("HOLD", "d1", "invMain", "1", "10")
        await forked.stop()
        let back = try await SrvHarness.start(dataDir: rDir, SrvHarness.Options(replicaOf: p.port))
        // The primary refuses this log; the follower stops and marks the directory.
        #expect(await srvWait(10) { FileManager.default.fileExists(atPath: Replication.resyncMarker(rDir)) })
        #expect(back.replication.status.linkUp == false)
        await back.stop()
        // The next start sets the data aside and syncs from the primary's first record.
        let aside = try Replication.setAsideDiverged(dataDir: rDir)
        #expect(aside != nil)
        let fresh = try await SrvHarness.start(dataDir: rDir, SrvHarness.Options(replicaOf: p.port))
        #expect(await Self.caughtUp(p, fresh))
        #expect(await Self.digest(fresh) == Self.digest(p))
        await fresh.stop()
        try? FileManager.default.removeItem(atPath: rDir)
        await p.stop(); p.removeData()
    }

    @Test func shippedRecordsAreCheckedAndTheBacklogIsBounded() throws {
        let backlog = ReplicationBacklog(capacity: 1 << 16)
        var w = ByteWriter()
        for lsn in UInt64(1)...400 {
            let payload = [UInt8](repeating: UInt8(lsn & 0xff), count: 300)
            payload.withUnsafeBytes { ShippedRecords.frame(lsn: lsn, type: 7, time: Int64(lsn), payload: $0, into: &w) }
            if lsn % 10 == 0 { backlog.add(w.bytes, salt: 0); w = ByteWriter() }
        }
        #expect(backlog.bytes <= (1 << 16) + 4000)
        guard case .tooOld = backlog.collect(from: 1, upTo: 400, maxBytes: 1 << 20) else { Issue.record("LSN 1 should be gone"); return }
        let first = backlog.firstLSN!
        guard case .records(let bytes, let last) = backlog.collect(from: first + 3, upTo: 395, maxBytes: 1 << 20) else { Issue.record("expected records"); return }
        #expect(last == 395)
        let records = try ShippedRecords.parse(bytes, firstLSN: first + 3)
        #expect(records.count == Int(395 - first - 2) && records.last?.lsn == 395 && records[0].payload.count == 300)
        // A flipped byte, or a gap in LSNs, is refused.
        var damaged = bytes
        damaged[40] ^= 1
        #expect(throws: ShippedRecordsError.self) { try ShippedRecords.parse(damaged, firstLSN: first + 3) }
        #expect(throws: ShippedRecordsError.self) { try ShippedRecords.parse(bytes, firstLSN: first + 4) }
        // A size limit cuts at a record boundary but always gives one record.
        guard case .records(let small, _) = backlog.collect(from: first, upTo: 400, maxBytes: 10) else { Issue.record("expected records"); return }
        #expect(try ShippedRecords.parse(small, firstLSN: first).count == 1)
    }

    @Test func replicationIDsDecideWhoMayContinue() {
        let ids = ReplicationIDs(id: String(repeating: "b", count: 40), previousID: String(repeating: "a", count: 40), previousUntil: 101)
        #expect(ids.continues(ids.id, from: 5000))
        #expect(ids.continues(ids.previousID, from: 101))
        #expect(!ids.continues(ids.previousID, from: 102))
        #expect(!ids.continues(String(repeating: "c", count: 40), from: 1))
        #expect(Replication.parseAddress("10.0.0.1:6379")! == ("10.0.0.1", 6379))
        #expect(Replication.parseAddress("host 7000")! == ("host", 7000))
        #expect(Replication.parseAddress("[::1]:7000")! == ("::1", 7000))
        #expect(Replication.parseAddress("host:0") == nil)
        #expect(Replication.parseAddress("nohost") == nil)
    }
}
