import AllocationEngine
import Foundation
import Glibc
import Testing
@testable import EngineServer

/// The loop's round (`EngineRequestHandler.roundEnded`): single-deal batches
/// of many connections run as one actor call. What it could break: a reply
/// reaching the wrong connection or in the wrong order, units sold twice
/// under a crowd, a batch left waiting for a round that never ends, and
/// batches in flight at shutdown.
@Suite(.serialized) struct ServerRoundTests {
    /// Raises the open-file limit to what the test needs, if the hard limit allows.
    static func allowDescriptors(_ n: Int) -> Bool {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return false }
        if limit.rlim_cur >= rlim_t(n) { return true }
        guard limit.rlim_max >= rlim_t(n) else { return false }
        limit.rlim_cur = rlim_t(n)
        return setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0
    }

    /// 2,000 clients, each pipelining 4 holds against one deal that sells out:
    /// every reply belongs to its own client (the hold names that client's
    /// investor, in the order sent), no unit is sold twice, and the inventory
    /// invariant holds.
    @Test func twoThousandClientsSellOutOneDeal() async throws {
        let clients = Self.allowDescriptors(4_500) ? 2_000 : 400
        var options = SrvHarness.Options()
        options.limits.maxConnections = clients + 16
        try await withSrv(options) { h in
            let admin = try h.client()
            await srvSetupDeal(admin, "crowd", units: "5000")
            let conns = try (0..<clients).map { _ in try h.client() }
            let results = await withTaskGroup(of: (Int, [Reply]).self) { group in
                for (i, c) in conns.enumerated() {
                    group.addTask {
                        var text = ""
                        for k in 0..<4 { text += "HOLD crowd inv\(i) \(k + 1) 10\r\n" }
                        return (i, await c.send(text, replies: 4))
                    }
                }
                var all: [(Int, [Reply])] = []
                for await r in group { all.append(r) }
                return all
            }
            var soldRaw: Int128 = 0
            var ok = 0, insufficient = 0
            var problems: [String] = []
            var sample: [(String, String, String)] = []   // hold id, investor, units expected
            for (i, replies) in results {
                #expect(replies.count == 4)
                for (k, r) in replies.enumerated() {
                    if let e = r.elements, let id = e.first?.string {
                        ok += 1
                        soldRaw += Int128(k + 1) * 100_000_000
                        if sample.count < 400 || i % 97 == 0 { sample.append((id, "inv\(i)", Units.whole(k + 1).description)) }
                    } else if r.errorCode == "INSUFFICIENT" {
                        insufficient += 1
                    } else {
                        problems.append("client \(i) reply \(k): \(r)")
                    }
                }
            }
            #expect(problems.isEmpty, "\(problems.prefix(5))")
            #expect(insufficient > 0, "the deal should sell out")
            // Each sampled hold is the one its client asked for: its investor, its units.
            for (id, investor, units) in sample {
                let f = await admin.call("HOLD.GET", id).fields ?? [:]
                if f["investor"] != investor || f["units"] != units {
                    problems.append("hold \(id): \(f["investor"] ?? "-") \(f["units"] ?? "-"), expected \(investor) \(units)")
                }
            }
            #expect(problems.isEmpty, "\(problems.prefix(5))")
            let inv = await admin.call("INVENTORY", "crowd").fields ?? [:]
            #expect(inv["units_held"] == Units(raw: soldRaw).description, "\(inv)")
            #expect(inv["holds_pending"] == String(ok))
            #expect(inv["units_remaining"] == Units(raw: 5000 * 100_000_000 - soldRaw).description)
            #expect(await h.engine.invariantViolations().isEmpty)
        }
    }

    /// In one round: single-deal pipelines, a pipeline across two deals, one
    /// with an engine-wide command, and retries of one client id from several
    /// connections at once. Each gets its own answers; the id is booked once.
    @Test func mixedBatchesInOneRound() async throws {
        try await withSrv { h in
            let admin = try h.client()
            await srvSetupDeal(admin, "ra", units: "1000")
            await srvSetupDeal(admin, "rb", units: "1000")
            let conns = try (0..<60).map { _ in try h.client() }
            let results = await withTaskGroup(of: (Int, [Reply]).self) { group in
                for (i, c) in conns.enumerated() {
                    group.addTask {
                        let text: String
                        switch i % 4 {
                        case 0: text = "HOLD ra a\(i) 1 10\r\nHOLD ra a\(i) 2 10\r\nINVENTORY ra\r\n"
                        case 1: text = "HOLD ra b\(i) 1 10\r\nHOLD rb b\(i) 1 10\r\nINVENTORY rb\r\n"
                        case 2: text = "HOLD rb c\(i) 1 10\r\nDEAL.LIST\r\nHOLD rb c\(i) 1 10\r\n"
                        default: text = "HOLD ra same 3 10 ID shared-1\r\nPING\r\nHOLD ra same 3 10 ID shared-1\r\n"
                        }
                        return (i, await c.send(text, replies: 3))
                    }
                }
                var all: [(Int, [Reply])] = []
                for await r in group { all.append(r) }
                return all
            }
            var shared: Set<String> = []
            for (i, r) in results {
                #expect(r.count == 3)
                switch i % 4 {
                case 0:
                    #expect(r[0].elements?.first?.string != nil && r[1].elements?.first?.string != nil, "\(r)")
                    #expect(r[2].fields?["units_total"] != nil, "\(r)")
                case 1:
                    #expect(r[0].elements != nil && r[1].elements != nil && r[2].fields != nil, "\(r)")
                case 2:
                    #expect(r[0].elements != nil && r[1].elements != nil && r[2].elements != nil, "\(r)")
                default:
                    #expect(r[1] == .simple("PONG"), "\(r)")
                    for k in [0, 2] {
                        if let id = r[k].elements?.first?.string { shared.insert(id) } else { Issue.record("client \(i): \(r[k])") }
                    }
                }
            }
            #expect(shared == ["shared-1"])
            let inv = await admin.call("INVENTORY", "ra").fields ?? [:]
            // 15 clients x 3 units, 15 x 1 unit, and the shared hold once.
            #expect(inv["units_held"] == Units.whole(15 * 3 + 15 + 3).description, "\(inv)")
            #expect(await h.engine.invariantViolations().isEmpty)
        }
    }

    /// Shutdown while pipelines are in flight: every client gets all of its
    /// replies or loses its connection; every hold it saw acknowledged is
    /// there after a restart on the same data directory.
    @Test func shutdownWithBatchesInFlight() async throws {
        let dir = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let h = try await SrvHarness.start(dataDir: dir)
        let admin = try h.client()
        await srvSetupDeal(admin, "sd", units: "100000")
        let conns = try (0..<40).map { _ in try h.client() }
        let acknowledged = await withTaskGroup(of: [String].self) { group in
            for (i, c) in conns.enumerated() {
                group.addTask {
                    var ids: [String] = []
                    for round in 0..<50 {
                        var text = ""
                        for k in 0..<16 { text += "HOLD sd s\(i) 1 10 ID s\(i)-\(round)-\(k)\r\n" }
                        let replies = await c.send(text, replies: 16)
                        guard replies.count == 16 else { break }
                        for r in replies { if let id = r.elements?.first?.string { ids.append(id) } }
                    }
                    return ids
                }
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(150))
                await h.stop()
                return []
            }
            var all: [String] = []
            for await ids in group { all += ids }
            return all
        }
        await h.stop()
        let r = try await SrvHarness.start(dataDir: dir)
        var missing = 0
        for id in acknowledged where (try? await r.engine.holdStatus(id)) == nil { missing += 1 }
        #expect(acknowledged.count > 0, "no hold was acknowledged before the shutdown")
        #expect(missing == 0, "\(missing) of \(acknowledged.count) acknowledged holds missing after the restart")
        #expect(await r.engine.invariantViolations().isEmpty)
        await r.stop()
    }
}
