import AllocationEngine
import Foundation
import Testing
import WAL
@testable import EngineServer

/// Replicas over real TCP: a primary and replicas in process, each with its
/// own data directory, following with the server's own follower thread.
@Suite(.serialized) struct ReplicationTests {
    static func digest(_ h: SrvHarness) async -> String { await h.engine.digest() }

    /// Waits until the replica's log reaches the primary's.
    static func caughtUp(_ primary: SrvHarness, _ replica: SrvHarness, seconds: Double = 20) async -> Bool {
        await srvWait(seconds) {
            replica.durable.writer.acknowledgedLSN >= primary.durable.writer.acknowledgedLSN
        }
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
        var o = SrvHarness.Options()
        var retention = RetentionPolicy()
        retention.endedMillis = 0
        retention.maxEndedPerDeal = 1024
        retention.callerIDsInMemory = 1
        o.retention = retention
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
