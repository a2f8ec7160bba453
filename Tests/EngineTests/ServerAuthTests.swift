import AllocationEngine
import Foundation
import Glibc
import Testing
@testable import EngineServer

/// Token access: NOAUTH, WRONGPASS, roles, investor scope, tokens across restarts.
@Suite struct ServerAuthTests {
    static let adminToken = "admin-token-0123456789abcdef"

    static func options() -> SrvHarness.Options {
        var o = SrvHarness.Options()
        o.access = .tokens(adminTokenHash: SHA256.hex(adminToken))
        return o
    }

    @Test func tokensRolesAndScope() async throws {
        let h = try await SrvHarness.start(Self.options())
        var tokens: [String] = []
        do {
            let anon = try h.client()
            // Before AUTH: engine commands, INFO and HELLO are refused.
            #expect(await anon.call("DEAL.CREATE", "d1").errorCode == "NOAUTH")
            #expect(await anon.call("INVENTORY", "d1").errorCode == "NOAUTH")
            #expect(await anon.call("DIGEST").errorCode == "NOAUTH")
            #expect(await anon.call("NOSUCHCOMMAND").errorCode == "NOAUTH")
            #expect(await anon.call("INFO").errorCode == "NOAUTH")
            #expect(await anon.call("HELLO", "3").errorCode == "NOAUTH")
            #expect(await anon.call("PING") == .simple("PONG"))
            // Wrong tokens.
            #expect(await anon.call("AUTH", "wrong") == .error("WRONGPASS invalid username-password pair or user is disabled."))
            #expect(await anon.call("AUTH", "admin", "wrong").errorCode == "WRONGPASS")
            #expect(await anon.call("AUTH", "someoneelse", Self.adminToken).errorCode == "WRONGPASS")
            #expect(await anon.call("HELLO", "3", "AUTH", "default", "wrong").errorCode == "WRONGPASS")
            #expect(await anon.call("DEAL.CREATE", "d1").errorCode == "NOAUTH")

            // The admin token, in all three forms.
            let admin = try h.client()
            #expect(await admin.call("AUTH", Self.adminToken) == .simple("OK"))
            let viaHello = try h.client()
            #expect(await viaHello.call("HELLO", "3", "AUTH", "default", Self.adminToken).value("proto") == .int(3))
            #expect(await viaHello.call("CLIENT", "INFO").string?.contains("user=admin") == true)
            #expect(await anon.call("AUTH", "admin", Self.adminToken) == .simple("OK"))
            #expect(await anon.call("INFO", "server").string?.hasPrefix("# Server") == true)

            await srvSetupDeal(admin)
            #expect(await admin.call("LOT.ADD", "d1", "L-extra", "50", "5") == .simple("OK"))
            let inv2Hold = await admin.call("HOLD", "d1", "inv-2", "3", "10", "ID", "inv2-hold").elements?.first?.string
            #expect(inv2Hold == "inv2-hold")

            // TOKEN.CREATE
            let aliceTok = await admin.call("TOKEN.CREATE", "alice", "investor", "INVESTOR", "inv-1")
            let alice = aliceTok.string ?? ""
            #expect(alice.wholeMatch(of: #/[0-9a-f]{64}/#) != nil, "\(aliceTok)")
            #expect(await admin.call("TOKEN.CREATE", "bob", "superuser").errorCode == "INVALID")
            #expect(await admin.call("TOKEN.CREATE", "carol", "investor").errorCode == "INVALID")
            #expect(await admin.call("TOKEN.CREATE", "carol", "investor", "INVESTOR").errorCode == "ERR")
            #expect(await admin.call("TOKEN.CREATE", "carol").errorCode == "NOTFOUND")  // TOKEN.CREATE <user> needs the user
            #expect(await admin.call("TOKEN.CREATE").errorCode == "ERR")
            let ops = await admin.call("TOKEN.CREATE", "olga", "staff_ops").string ?? ""
            let rm = await admin.call("TOKEN.CREATE", "rita", "STAFF_RM").string ?? ""
            let viewer = await admin.call("TOKEN.CREATE", "vic", "viewer").string ?? ""
            let spouse = await admin.call("TOKEN.CREATE", "sam", "spouse", "INVESTOR", "inv-1").string ?? ""
            let co = await admin.call("TOKEN.CREATE", "cora", "co_investor", "INVESTOR", "inv-1", "INVESTOR", "inv-3").string ?? ""
            tokens = [alice, ops, rm, viewer, spouse, co]
            #expect(Set(tokens).count == 6 && tokens.allSatisfy { $0.count == 64 })
            // Users who are not staff act in a deal through a membership, for
            // investors whose KYC is approved (TOKEN.CREATE registered them pending).
            #expect(await admin.call("INVESTOR.GET", "inv-1").fields?["kyc_status"] == "pending")
            #expect(await admin.call("INVESTOR.KYC", "inv-1", "approved") == .simple("OK"))
            #expect(await admin.call("INVESTOR.KYC", "inv-3", "approved") == .simple("OK"))
            for (user, role) in [("alice", "investor"), ("vic", "viewer"), ("sam", "spouse"), ("cora", "co_investor")] {
                #expect(await admin.call("MEMBER.ADD", "d1", user, role) == .simple("OK"))
            }

            // alice: investor for inv-1.
            let a = try h.client()
            #expect(await a.call("AUTH", "bob", alice).errorCode == "WRONGPASS")
            #expect(await a.call("AUTH", "alice", alice) == .simple("OK"))
            let digest = await admin.call("DIGEST")
            #expect(await a.call("HOLD", "d1", "inv-2", "1", "10").errorCode == "NOPERM")
            #expect(await a.call("HOLD", "d1", "inv-2", "1", "10", "ID", "sneaky").errorCode == "NOPERM")
            #expect(await admin.call("DIGEST") == digest)
            #expect(await admin.call("HOLD.GET", "sneaky").errorCode == "NOTFOUND")
            let mine = await a.call("HOLD", "d1", "inv-1", "4", "10")
            let mineID = mine.elements?.first?.string ?? ""
            #expect(mine.elements?.count == 3, "\(mine)")
            #expect(await a.call("HOLD.GET", mineID).fields?["investor"] == "inv-1")
            #expect(await a.call("HOLD.GET", "inv2-hold").errorCode == "NOPERM")
            #expect(await a.call("RELEASE", "inv2-hold").errorCode == "NOPERM")
            #expect(await a.call("ALLOCATE", "inv2-hold").errorCode == "NOPERM")
            #expect(await a.call("POSITION.GET", "inv-2", "d1").errorCode == "NOPERM")
            #expect(await a.call("POSITION.GET", "inv-1", "d1").fields?["units"] == "0")
            #expect(await admin.call("HOLD.GET", "inv2-hold").fields?["status"] == "pending")
            // Deal-wide reads are open to every role.
            #expect(await a.call("INVENTORY", "d1").fields?["units_held"] == "7")
            #expect(await a.call("DEAL.GET", "d1").fields?["id"] == "d1")
            #expect(await a.call("LOT.GET", "L-extra").fields?["units_total"] == "50")
            let adminDigest = await admin.call("DIGEST")
            #expect(await a.call("DIGEST") == adminDigest)
            // alice may allocate her own hold but not decide it, nor administer.
            let alloc = await a.call("ALLOCATE", mineID).string ?? ""
            #expect(!alloc.isEmpty)
            #expect(await a.call("ALLOCATION.GET", alloc).fields?["status"] == "pending_review")
            for cmd in [["APPROVE", alloc], ["REJECT", alloc], ["SETTLE", alloc], ["DEAL.CREATE", "d9"],
                        ["DEAL.STATUS", "d1", "cancelled"], ["LOT.ADD", "d1", "L9", "1", "1"], ["LOT.RESIZE", "d1", "L-extra", "60"],
                        ["TOKEN.CREATE", "mallory", "staff_admin"], ["SNAPSHOT"], ["SWEEP"]] {
                #expect(await a.call(cmd).errorCode == "NOPERM", "alice \(cmd)")
            }
            #expect(await admin.call("DEAL.GET", "d1").fields?["status"] == "open")
            #expect(await admin.call("DEAL.GET", "d9").errorCode == "NOTFOUND")
            #expect(await admin.call("ALLOCATION.GET", alloc).fields?["status"] == "pending_review")

            // staff_ops approves; may not manage users.
            let o = try h.client()
            #expect(await o.call("AUTH", ops) == .simple("OK"))
            #expect(await o.call("APPROVE", alloc) == .simple("OK"))
            // The rows say who made them (the seed's created_by / approved_by).
            let row = await o.call("ALLOCATION.GET", alloc).fields
            #expect(row?["created_by"] == "alice" && row?["approved_by"] == "olga", "\(String(describing: row))")
            #expect(await o.call("HOLD.GET", mineID).fields?["created_by"] == "alice")
            #expect(await o.call("HOLD.GET", "inv2-hold").fields?["investor"] == "inv-2")
            #expect(await o.call("DEAL.CREATE", "ops-deal") == .simple("OK"))
            #expect(await o.call("TOKEN.CREATE", "x", "viewer").errorCode == "NOPERM")
            #expect(await a.call("POSITION.GET", "inv-1", "d1").fields?["units"] == "4")

            // staff_rm: reads and holds for anyone, no decisions.
            let r = try h.client()
            #expect(await r.call("AUTH", rm) == .simple("OK"))
            #expect(await r.call("HOLD", "d1", "inv-7", "1", "10").elements?.count == 3)
            #expect(await r.call("HOLD.GET", "inv2-hold").fields?["status"] == "pending")
            #expect(await r.call("APPROVE", alloc).errorCode == "NOPERM")
            #expect(await r.call("DEAL.CREATE", "rm-deal").errorCode == "NOPERM")

            // Read-only deal-member roles.
            let v = try h.client()
            #expect(await v.call("AUTH", viewer) == .simple("OK"))
            #expect(await v.call("INVENTORY", "d1").fields?["deal"] == "d1")
            #expect(await v.call("HOLD", "d1", "inv-1", "1", "10").errorCode == "NOPERM")
            #expect(await v.call("HOLD.GET", mineID).errorCode == "NOPERM")
            let s = try h.client()
            #expect(await s.call("AUTH", spouse) == .simple("OK"))
            #expect(await s.call("HOLD.GET", mineID).fields?["investor"] == "inv-1")
            #expect(await s.call("HOLD.GET", "inv2-hold").errorCode == "NOPERM")
            #expect(await s.call("HOLD", "d1", "inv-1", "1", "10").errorCode == "NOPERM")
            #expect(await s.call("RELEASE", mineID).errorCode == "NOPERM")
            // co_investor acts for its investors.
            let ci = try h.client()
            #expect(await ci.call("AUTH", co) == .simple("OK"))
            #expect(await ci.call("HOLD", "d1", "inv-3", "1", "10").elements?.count == 3)
            #expect(await ci.call("HOLD", "d1", "inv-2", "1", "10").errorCode == "NOPERM")

            // A pipeline mixing allowed and refused commands answers each in order.
            let mixed = await a.send("HOLD d1 inv-1 1 10 ID pipe-a\r\nHOLD d1 inv-2 1 10 ID pipe-b\r\nAPPROVE x\r\nHOLD.GET pipe-a\r\n", replies: 4)
            #expect(mixed.count == 4)
            if mixed.count == 4 {
                #expect(mixed[0].elements?.first == .bulk("pipe-a"))
                #expect(mixed[1].errorCode == "NOPERM" && mixed[2].errorCode == "NOPERM")
                #expect(mixed[3].fields?["id"] == "pipe-a")
            }
            // Re-AUTH switches the user on the same connection.
            #expect(await a.call("AUTH", ops) == .simple("OK"))
            #expect(await a.call("HOLD.GET", "inv2-hold").fields?["id"] == "inv2-hold")
            #expect(await a.call("CLIENT", "INFO").string?.contains("user=olga") == true)
        } catch {
            await h.stop(); h.removeData(); throw error
        }
        await h.stop()

        // Tokens survive a restart.
        let h2 = try await SrvHarness.start(dataDir: h.dataDir, Self.options())
        do {
            let a = try h2.client()
            #expect(await a.call("DEAL.CREATE", "x").errorCode == "NOAUTH")
            #expect(await a.call("AUTH", "alice", tokens[0]) == .simple("OK"))
            #expect(await a.call("HOLD", "d1", "inv-1", "1", "10").elements?.count == 3)
            #expect(await a.call("HOLD", "d1", "inv-2", "1", "10").errorCode == "NOPERM")
            #expect(await a.call("HOLD.GET", "inv2-hold").errorCode == "NOPERM")
            let o = try h2.client()
            #expect(await o.call("AUTH", "olga", tokens[1]) == .simple("OK"))
            #expect(await o.call("TOKEN.CREATE", "y", "viewer").errorCode == "NOPERM")
            let adm = try h2.client()
            #expect(await adm.call("AUTH", Self.adminToken) == .simple("OK"))
            // A snapshot must not hold tokens in plain text either.
            #expect(await adm.call("SNAPSHOT") == .simple("OK"))
        } catch {
            await h2.stop(); h.removeData(); throw error
        }
        await h2.stop()

        // No token appears in plain text (nor as hex-decoded bytes) in any file of the data directory.
        var files: [String] = []
        let e = FileManager.default.enumerator(atPath: h.dataDir)
        while let f = e?.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: h.dataDir + "/" + f, isDirectory: &isDir), !isDir.boolValue { files.append(f) }
        }
        var all: [UInt8] = []
        for f in files { all += (FileManager.default.contents(atPath: h.dataDir + "/" + f).map { [UInt8]($0) } ?? []) }
        #expect(files.contains { $0.hasPrefix("snapshots/") } && files.contains { $0.hasPrefix("wal/") }, "\(files)")
        #expect(contains(all, Array("alice".utf8)), "the scan must see the user records")
        for t in tokens + [Self.adminToken] {
            #expect(!contains(all, Array(t.utf8)), "token \(t.prefix(8))... stored in plain text")
            #expect(!contains(all, Array(t.uppercased().utf8)))
            if let raw = hexBytes(t) { #expect(!contains(all, raw), "token \(t.prefix(8))... stored as raw bytes") }
        }
        h.removeData()
    }

    @Test func loopbackAdminModeNeedsNoAuth() async throws {
        try await withSrv { h in
            let c = try h.client()
            #expect(await c.call("DEAL.CREATE", "d1") == .simple("OK"))
            let tok = await c.call("TOKEN.CREATE", "alice", "investor", "INVESTOR", "inv-1").string ?? ""
            // A token user on a loopback-admin server is scoped like anywhere else.
            #expect(await c.call("LOT.ADD", "d1", "L1", "10", "1") == .simple("OK"))
            let a = try h.client()
            #expect(await a.call("AUTH", tok) == .simple("OK"))
            #expect(await a.call("HOLD", "d1", "inv-2", "1", "10").errorCode == "NOPERM")
            #expect(await a.call("DEAL.CREATE", "d2").errorCode == "NOPERM")
        }
    }
}

private func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, hay.count >= needle.count else { return false }
    return hay.withUnsafeBufferPointer { h in
        needle.withUnsafeBufferPointer { n in
            let first = n[0], last = h.count - n.count
            var i = 0
            outer: while i <= last {
                if h[i] == first {
                    for k in 1..<n.count where h[i + k] != n[k] { i += 1; continue outer }
                    return true
                }
                i += 1
            }
            return false
        }
    }
}

private func hexBytes(_ s: String) -> [UInt8]? {
    guard s.count % 2 == 0, s.allSatisfy(\.isHexDigit) else { return nil }
    var out: [UInt8] = []
    var it = s.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

/// Loopback-admin mode (no token file): a client from a non-loopback address is
/// not the admin; it must AUTH with a token.
@Suite struct ServerProtectedModeTests {
    /// The first non-loopback IPv4 address of this host, if any.
    static func externalIPv4() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let a = p {
            defer { p = a.pointee.ifa_next }
            guard let sa = a.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            var sin = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
            var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &sin.sin_addr, &buf, socklen_t(INET_ADDRSTRLEN))
            let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !s.hasPrefix("127.") { return s }
        }
        return nil
    }

    /// Protected mode: without a token file a non-loopback client is refused.
    @Test func nonLoopbackClientIsDeniedWithoutTokenFile() async throws {
        guard let ip = Self.externalIPv4() else { return }
        let dir = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = DurableConfig(dataDir: dir)
        config.segmentBytes = 1 << 20
        let durable = try await DurableEngine.open(config)
        let handler = EngineRequestHandler(engine: durable.engine, durable: durable)
        let server = try EventLoopServer(config: ServerConfig(host: "0.0.0.0", port: 0, loops: 1), handler: handler)
        do { try server.start() } catch { try? await durable.close(); return }
        let local = try SrvClient(port: server.boundPort)
        #expect(await local.call("DEAL.CREATE", "d1") == .simple("OK"))
        let token = await local.call("TOKEN.CREATE", "alice", "investor", "INVESTOR", "inv-1").string ?? ""
        let fd = try #require(NetBench.connectBlocking(host: ip, port: server.boundPort), "connect to \(ip)")
        // Even with a valid token and a changing command: refused, nothing changed.
        let remote = SrvClient(adopting: fd)
        let replies = await remote.send("AUTH \(token)\r\nDEAL.CREATE d2\r\n", replies: 2)
        #expect(replies.first?.errorCode == "DENIED", "\(replies)")
        #expect(replies.count == 1, "the connection is closed after DENIED: \(replies)")
        #expect(await local.call("DEAL.GET", "d2").errorCode == "NOTFOUND")
        await srvBlocking { server.shutdown(gracefulTimeoutSeconds: 1) }
        try? await durable.close()
    }
}
