import AllocationEngine
import Foundation
import Testing
import WAL
@testable import EngineServer

/// Restarts on the same data directory, and a failing disk.
@Suite struct ServerDurabilityTests {
    /// Everything a client can read, for comparing before and after a restart.
    static func observe(_ c: SrvClient, holds: [String], allocations: [String]) async -> [String: Reply] {
        var seen: [String: Reply] = [:]
        seen["digest"] = await c.call("DIGEST")
        for d in ["d1", "d2"] {
            seen["inv \(d)"] = await c.call("INVENTORY", d)
            seen["deal \(d)"] = await c.call("DEAL.GET", d)
        }
        for l in ["L1", "L2", "M1"] { seen["lot \(l)"] = await c.call("LOT.GET", l) }
        for h in holds { seen["hold \(h)"] = await c.call("HOLD.GET", h) }
        for a in allocations { seen["alloc \(a)"] = await c.call("ALLOCATION.GET", a) }
        for i in ["inv1", "inv2", "inv3"] { seen["pos \(i)"] = await c.call("POSITION.GET", i, "d1") }
        return seen
    }

    @Test(arguments: [false, true])
    func restartShowsTheSameState(snapshotFirst: Bool) async throws {
        let h = try await SrvHarness.start()
        var holds: [String] = [], allocations: [String] = []
        var before: [String: Reply] = [:]
        var retryReply = Reply.null
        do {
            let c = try h.client()
            _ = await c.send("HELLO 3\r\n", replies: 1)
            #expect(await c.call("DEAL.CREATE", "d1", "NAME", "Deal one", "PRICE", "10.5", "CLOSE_AT", "99999999999") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "d1", "L1", "100", "5", "ACQUIRED", "2024-01-02") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "d1", "L2", "50.5", "6") == .simple("OK"))
            #expect(await c.call("DEAL.CREATE", "d2", "STATUS", "draft") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "d2", "M1", "10", "1") == .simple("OK"))
            retryReply = await c.call("HOLD", "d1", "inv1", "30", "10", "ID", "order-1")
            holds.append("order-1")
            for (inv, units) in [("inv2", "80"), ("inv3", "12.345"), ("inv1", "3")] {
                holds.append(await c.call("HOLD", "d1", inv, units, "11").elements?.first?.string ?? "?")
            }
            if snapshotFirst { #expect(await c.call("SNAPSHOT") == .simple("OK")) }
            allocations.append(await c.call("ALLOCATE", "order-1", "ID", "alloc-1").string ?? "?")
            allocations.append(await c.call("ALLOCATE", holds[1]).string ?? "?")
            #expect(await c.call("APPROVE", "alloc-1") == .simple("OK"))
            #expect(await c.call("SETTLE", "alloc-1") == .simple("OK"))
            #expect(await c.call("REJECT", allocations[1]) == .simple("OK"))
            #expect(await c.call("RELEASE", holds[3]) == .simple("OK"))
            #expect(await c.call("LOT.RESIZE", "d1", "L2", "60") == .simple("OK"))
            #expect(await c.call("DEAL.STATUS", "d2", "open") == .simple("OK"))
            holds.append(await c.call("HOLD", "d2", "inv1", "10", "1", "PARTIAL").elements?.first?.string ?? "?")
            before = await Self.observe(c, holds: holds, allocations: allocations)
            #expect(before.values.allSatisfy { !$0.isError }, "\(before.filter { $0.value.isError })")
        } catch {
            await h.stop(); h.removeData(); throw error
        }
        await h.stop()

        let h2 = try await SrvHarness.start(dataDir: h.dataDir)
        defer { h.removeData() }
        do {
            let c = try h2.client()
            _ = await c.send("HELLO 3\r\n", replies: 1)
            let after = await Self.observe(c, holds: holds, allocations: allocations)
            for key in before.keys.sorted() {
                #expect(after[key] == before[key], "\(key): before \(before[key]!), after \(String(describing: after[key]))")
            }
            #expect(h2.durable.recovery.recordsReplayed > 0)
            // The idempotent retry answers the same after the restart.
            #expect(await c.call("HOLD", "d1", "inv1", "30", "10", "ID", "order-1") == retryReply)
            // New generated ids do not reuse old ones.
            let next = await c.call("HOLD", "d1", "inv9", "1", "10").elements?.first?.string ?? ""
            #expect(!holds.contains(next) && next.hasPrefix("h"), "\(next)")
            #expect(await c.call("HOLD.GET", next).fields?["investor"] == "inv9")
            #expect(await c.call("DEAL.CREATE", "d1").errorCode == "EXISTS")
        } catch {
            await h2.stop(); throw error
        }
        await h2.stop()
    }

    /// fdatasync fails: the change is refused with READONLY, every later
    /// command too, reads included (they would show the refused hold).
    @Test func fdatasyncFailureMakesTheEngineReadOnly() async throws {
        let io = SimulatedFileIO(seed: 7)
        var options = SrvHarness.Options()
        options.io = io
        options.mode = .strict
        let h = try await SrvHarness.start(dataDir: "/data", options)
        do {
            let c = try h.client()
            await srvSetupDeal(c)
            let hold = await c.call("HOLD", "d1", "inv1", "5", "10", "ID", "ok-hold")
            #expect(hold.elements?.first == .bulk("ok-hold"))
            let inventoryBefore = await c.call("INVENTORY", "d1")

            io.inject(.failFdatasync(nth: 1))
            let failed = await c.call("HOLD", "d1", "inv1", "7", "10", "ID", "doomed")
            #expect(failed.errorCode == "READONLY", "\(failed)")
            // Later changes: READONLY, whatever their kind.
            for cmd in [["HOLD", "d1", "inv2", "1", "10"], ["RELEASE", "ok-hold"], ["ALLOCATE", "ok-hold"],
                        ["DEAL.CREATE", "d2"], ["LOT.ADD", "d1", "L2", "1", "1"], ["LOT.RESIZE", "d1", "d1-L1", "200"],
                        ["DEAL.STATUS", "d1", "cancelled"], ["TOKEN.CREATE", "bob", "viewer"]] {
                let r = await c.call(cmd)
                #expect(r.errorCode == "READONLY", "\(cmd): \(r)")
            }
            // Connection commands still answer; nothing is answered from memory,
            // which holds the refused hold the disk may not (fail-stop: the
            // server exits for its supervisor to restart it from disk).
            #expect(await c.call("PING") == .simple("PONG"))
            for cmd in [["HOLD.GET", "ok-hold"], ["HOLD.GET", "doomed"], ["DEAL.GET", "d1"], ["LOT.GET", "d1-L1"],
                        ["POSITION.GET", "inv1", "d1"], ["INVENTORY", "d1"], ["DIGEST"]] {
                let r = await c.call(cmd)
                #expect(r.errorCode == "READONLY", "\(cmd) after the failed fdatasync: \(r)")
            }
            _ = inventoryBefore
            let info = await c.call("INFO").string ?? ""
            #expect(info.contains("read_only:1\r\n"), "\(info)")
            #expect(!info.contains("read_only_reason:\r\n"))
            // A second client sees the same.
            let other = try h.client()
            #expect(await other.call("HOLD", "d1", "inv3", "1", "10").errorCode == "READONLY")
            #expect(await other.call("INVENTORY", "d1").errorCode == "READONLY")
        } catch {
            await h.stop(); throw error
        }
        await h.stop()
    }
}
