import AllocationEngine
import Foundation
import Testing
@testable import EngineServer

/// A connection's commands run in arrival order, also when a pipeline mixes
/// deals, protocol switches and re-authentication.
@Suite struct ServerOrderingTests {
    @Test func helloAndQuitMidPipeline() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            _ = await c.call("HOLD", "d1", "inv1", "1", "10", "ID", "x")
            let raw = await c.sendRaw("CLIENT GETNAME\r\nHOLD.GET x\r\nHELLO 3\r\nHOLD.GET x\r\nCLIENT GETNAME\r\n", replies: 5)
            #expect(raw.count == 5)
            if raw.count == 5 {
                #expect(raw[0] == "$-1\r\n")
                #expect(raw[1].hasPrefix("*28\r\n"), "\(raw[1])")
                #expect(raw[2].hasPrefix("%7\r\n"))
                #expect(raw[3].hasPrefix("%14\r\n"), "\(raw[3])")
                #expect(raw[4] == "_\r\n")
            }
            // Engine commands before QUIT are answered (once durable), then the connection closes.
            let q = try h.client()
            await q.write(Array("HOLD d1 inv1 1 10 ID before-quit\r\nQUIT\r\nHOLD d1 inv1 1 10 ID after-quit\r\n".utf8))
            let out = await q.readToEOF() ?? "timeout"
            #expect(out.hasPrefix("*3\r\n$11\r\nbefore-quit\r\n") && out.hasSuffix("+OK\r\n"), "\(out)")
            #expect(await c.call("HOLD.GET", "after-quit").errorCode == "NOTFOUND")
        }
    }

    /// Ids unique across deals (lot ids, caller hold ids): the first command in
    /// arrival order must win, even when a later one targets a deal seen earlier
    /// in the pipeline.
    @Test func crossDealIdsFollowArrivalOrder() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, "d1")
            await srvSetupDeal(c, "d2")
            // Sent one by one: d2 takes "shared-lot", d1's LOT.ADD is EXISTS.
            let serial = try h.client()
            #expect(await serial.call("LOT.ADD", "d2", "serial-lot", "1", "1") == .simple("OK"))
            #expect(await serial.call("LOT.ADD", "d1", "serial-lot", "1", "1").errorCode == "EXISTS")
            // Pipelined: the same expectation.
            let r = await c.send("LOT.ADD d1 own-lot 1 1\r\nLOT.ADD d2 shared-lot 1 1\r\nLOT.ADD d1 shared-lot 1 1\r\n", replies: 3)
            let h2 = await c.send("HOLD d1 inv1 1 10 ID own-hold\r\nHOLD d2 inv1 1 10 ID shared-hold\r\nHOLD d1 inv1 1 10 ID shared-hold\r\n", replies: 3)
            let lotOwner = await c.call("LOT.GET", "shared-lot").fields?["deal"]
            let holdOwner = await c.call("HOLD.GET", "shared-hold").fields?["deal"]
            #expect(r.count == 3 && r[1] == .simple("OK") && r[2].errorCode == "EXISTS", "\(r)")
            #expect(lotOwner == "d2")
            #expect(h2.count == 3 && h2[1].elements?.first == .bulk("shared-hold") && h2[2].errorCode == "CONFLICT", "\(h2)")
            #expect(holdOwner == "d2")
        }
    }

    /// Commands are checked and run as the user who was authenticated when they arrived.
    @Test func reAuthenticationMidPipeline() async throws {
        let adminToken = "order-admin-token-0123456789"
        var options = SrvHarness.Options()
        options.access = .tokens(adminTokenHash: SHA256.hex(adminToken))
        try await withSrv(options) { h in
            let admin = try h.client()
            #expect(await admin.call("AUTH", adminToken) == .simple("OK"))
            await srvSetupDeal(admin)
            let alice = await admin.call("TOKEN.CREATE", "alice", "investor", "INVESTOR", "inv-1").string ?? ""
            // Holding for inv-1 needs its KYC approved and alice a holding member of the deal.
            #expect(await admin.call("INVESTOR.KYC", "inv-1", "approved") == .simple("OK"))
            #expect(await admin.call("MEMBER.ADD", "d1", "alice", "investor", "INVESTOR", "inv-1") == .simple("OK"))
            // As admin: a hold for inv-2, then switch to alice in the same write.
            let c = try h.client()
            let r = await c.send("AUTH \(adminToken)\r\nHOLD d1 inv-2 1 10 ID by-admin\r\nAUTH alice \(alice)\r\nHOLD d1 inv-1 1 10 ID by-alice\r\n", replies: 4)
            // As alice: a hold for inv-2 (refused), then switch to admin in the same write.
            let d = try h.client()
            let s = await d.send("AUTH alice \(alice)\r\nHOLD d1 inv-2 1 10 ID sneaky\r\nAUTH \(adminToken)\r\n", replies: 3)
            #expect(r.count == 4 && s.count == 3)
            #expect(r.first == .simple("OK") && r.last?.elements?.first == .bulk("by-alice"), "\(r)")
            let sneaky = await admin.call("HOLD.GET", "sneaky")
            #expect(r.count == 4 && r[1].elements?.first == .bulk("by-admin"), "admin's hold: \(r)")
            #expect(s.count == 3 && s[1].errorCode == "NOPERM", "alice's hold for inv-2: \(s)")
            #expect(sneaky.errorCode == "NOTFOUND", "\(sneaky)")
        }
    }
}
