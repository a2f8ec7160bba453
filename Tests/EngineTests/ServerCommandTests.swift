import AllocationEngine
import Foundation
import Testing
@testable import EngineServer

/// Every command over a real socket, with its reply shapes and its errors.
@Suite struct ServerCommandTests {
    @Test func connectionCommands() async throws {
        try await withSrv { h in
            let c = try h.client()
            #expect(await c.sendRaw("PING\r\n", replies: 1) == ["+PONG\r\n"])
            #expect(await c.call("PING", "hi") == .bulk("hi"))
            #expect(await c.call("ECHO", "hé llo") == .bulk("hé llo"))
            #expect(await c.call("PING", "a", "b").errorCode == "ERR")
            #expect(await c.call("ECHO").errorCode == "ERR")
            // Commands are case-insensitive.
            #expect(await c.sendRaw("ping\r\n", replies: 1) == ["+PONG\r\n"])

            // CLIENT
            #expect(await c.sendRaw("CLIENT GETNAME\r\n", replies: 1) == ["$-1\r\n"])
            #expect(await c.call("CLIENT", "SETNAME", "tester") == .simple("OK"))
            #expect(await c.call("CLIENT", "GETNAME") == .bulk("tester"))
            #expect(await c.call("CLIENT", "SETNAME", "has space").errorCode == "ERR")
            #expect(await c.call("CLIENT", "GETNAME") == .bulk("tester"))
            #expect(await c.call("CLIENT", "SETINFO", "LIB-NAME", "mylib") == .simple("OK"))
            #expect(await c.call("CLIENT", "SETINFO", "lib-ver", "1.2.3") == .simple("OK"))
            #expect(await c.call("CLIENT", "SETINFO", "COLOR", "red").errorCode == "ERR")
            #expect(await c.call("CLIENT", "SETINFO", "LIB-NAME").errorCode == "ERR")
            #expect(await c.call("CLIENT").errorCode == "ERR")
            #expect(await c.call("CLIENT", "KILL", "x").errorCode == "ERR")
            let id = await c.call("CLIENT", "ID")
            #expect(id.intValue.map { $0 >= 1 } == true, "\(id)")
            let info = await c.call("CLIENT", "INFO").string ?? ""
            #expect(info.contains("name=tester") && info.contains("lib-name=mylib") && info.contains("lib-ver=1.2.3"), "\(info)")
            #expect(info.contains("resp=2") && info.contains("user=admin"), "\(info)")
            #expect(await c.call("CLIENT", "SETNAME", "") == .simple("OK"))
            #expect(await c.call("CLIENT", "GETNAME") == .null)

            // COMMAND: an empty answer clients accept.
            #expect(await c.sendRaw("COMMAND\r\n", replies: 1) == ["*0\r\n"])
            #expect(await c.sendRaw("COMMAND DOCS\r\n", replies: 1) == ["*0\r\n"])
            #expect(await c.sendRaw("COMMAND COUNT\r\n", replies: 1) == [":0\r\n"])

            // SELECT / CONFIG GET (what redis-benchmark and clients ask at start)
            #expect(await c.call("SELECT", "0") == .simple("OK"))
            #expect(await c.call("SELECT", "1").errorCode == "ERR")
            #expect(await c.call("CONFIG", "GET", "appendonly") == .array([.bulk("appendonly"), .bulk("yes")]))
            #expect(await c.call("CONFIG", "GET", "maxmemory") == .array([]))
            #expect(await c.call("CONFIG", "SET", "x", "y").errorCode == "ERR")

            // AUTH with a wrong token in loopback-admin mode.
            #expect(await c.call("AUTH", "nope").errorCode == "WRONGPASS")
            #expect(await c.call("AUTH").errorCode == "ERR")
            // Still admin after a failed AUTH.
            #expect(await c.call("DEAL.CREATE", "d0") == .simple("OK"))

            // QUIT answers +OK, then the connection closes; later commands are not run.
            let q = try h.client()
            await q.write(Array("PING\r\nQUIT\r\nDEAL.CREATE after-quit\r\n".utf8))
            #expect(await q.readToEOF() == "+PONG\r\n+OK\r\n")
            #expect(await c.call("DEAL.GET", "after-quit").errorCode == "NOTFOUND")
        }
    }

    @Test func helloRESP2AndRESP3() async throws {
        try await withSrv { h in
            let c = try h.client()
            // HELLO 2: a flat array of 7 field/value pairs.
            let r2 = await c.call("HELLO", "2")
            guard case .array(let flat) = r2 else { Issue.record("HELLO 2: \(r2)"); return }
            #expect(flat.count == 14)
            #expect(r2.fieldNames == ["server", "version", "proto", "id", "mode", "role", "modules"])
            #expect(r2.value("server") == .bulk("allocation-engine"))
            #expect(r2.value("proto") == .int(2))
            #expect(r2.value("modules") == .array([]))
            #expect(await c.call("HELLO", "4").errorCode == "NOPROTO")
            #expect(await c.call("HELLO", "x").errorCode == "NOPROTO")
            #expect(await c.call("HELLO", "3", "BOGUS").errorCode == "ERR")

            // RESP2 replies before HELLO 3: rows are flat arrays, nulls $-1.
            await srvSetupDeal(c)
            let hold = await c.call("HOLD", "d1", "inv1", "5", "10")
            let holdID = hold.elements?.first?.string ?? ""
            let raw2 = await c.sendRaw("HOLD.GET \(holdID)\r\n", replies: 1).first ?? ""
            #expect(raw2.hasPrefix("*28\r\n"), "\(raw2)")
            #expect(raw2.contains("$10\r\nallocation\r\n$-1\r\n"), "\(raw2)")

            // HELLO 3 SETNAME: a %7 map.
            let raw = await c.sendRaw("HELLO 3 SETNAME viahello\r\n", replies: 1).first ?? ""
            #expect(raw.hasPrefix("%7\r\n$6\r\nserver\r\n$17\r\nallocation-engine\r\n$7\r\nversion\r\n"), "\(raw)")
            #expect(raw.contains("$5\r\nproto\r\n:3\r\n"))
            #expect(raw.contains("$2\r\nid\r\n:"))
            #expect(raw.contains("$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"))
            #expect(await c.call("CLIENT", "GETNAME") == .bulk("viahello"))

            // After HELLO 3: field/value replies are maps and nulls are `_`.
            let raw3 = await c.sendRaw("HOLD.GET \(holdID)\r\n", replies: 1).first ?? ""
            #expect(raw3.hasPrefix("%14\r\n$2\r\nid\r\n"), "\(raw3)")
            #expect(raw3.contains("$10\r\nallocation\r\n_\r\n"), "\(raw3)")
            let inv = await c.call("INVENTORY", "d1")
            guard case .map = inv else { Issue.record("INVENTORY under RESP3: \(inv)"); return }
            #expect(inv.fields?["units_held"] == "5")
            #expect(await c.sendRaw("CLIENT GETNAME\r\nCLIENT SETNAME x\r\nCLIENT GETNAME\r\n", replies: 3)
                    == ["$8\r\nviahello\r\n", "+OK\r\n", "$1\r\nx\r\n"])
            let r = await c.call("CLIENT", "SETNAME", "")
            #expect(r == .simple("OK"))
            #expect(await c.sendRaw("CLIENT GETNAME\r\n", replies: 1) == ["_\r\n"])
            // Errors and simple replies do not change shape; the hold reply stays an array.
            #expect(await c.sendRaw("DEAL.GET nope\r\n", replies: 1) == ["-NOTFOUND deal nope not found\r\n"])
            let hold3 = await c.call("HOLD", "d1", "inv1", "1", "10")
            #expect(hold3.elements?.count == 3, "\(hold3)")
            // HELLO without a version keeps the current one.
            let again = await c.call("HELLO")
            #expect(again.value("proto") == .int(3))
            // Back to RESP2.
            #expect(await c.call("HELLO", "2").value("proto") == .int(2))
            #expect(await c.sendRaw("CLIENT GETNAME\r\n", replies: 1) == ["$-1\r\n"])
        }
    }

    @Test func infoSections() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            _ = await c.call("HOLD", "d1", "inv1", "1", "10")
            let all = await c.call("INFO").string ?? ""
            var sections: [String] = []
            var keys: [String: String] = [:]
            for line in all.split(separator: "\r\n", omittingEmptySubsequences: true) {
                if line.hasPrefix("# ") { sections.append(String(line.dropFirst(2))); continue }
                let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                #expect(parts.count == 2, "not key:value: \(line)")
                if parts.count == 2 { keys[String(parts[0])] = String(parts[1]) }
            }
            #expect(sections == ["Server", "Memory", "Clients", "Replication", "Engine", "WAL", "Snapshot", "History", "Latency"])
            #expect(Int(keys["used_memory_rss"] ?? "") ?? 0 > 0)
            #expect(keys["server"] == "allocation-engine")
            #expect(keys["deals"] == "1")
            #expect(keys["durability"] == "strict")
            #expect(keys["read_only"] == "0")
            #expect(Int(keys["connected_clients"] ?? "") ?? 0 >= 1)
            #expect(Int(keys["records_appended"] ?? "") ?? 0 >= 3)
            #expect(Int(keys["hold_samples"] ?? "") == 1)
            #expect(keys["hold_p99_usec"] != nil && keys["last_snapshot_lsn"] != nil && keys["total_commands_processed"] != nil)
            let engineOnly = await c.call("INFO", "engine").string ?? ""
            #expect(engineOnly.hasPrefix("# Engine\r\n") && !engineOnly.contains("# Server"), "\(engineOnly)")
            #expect(await c.call("INFO", "nosuchsection") == .bulk(""))
            // A SNAPSHOT shows up in the Snapshot section.
            #expect(await c.call("SNAPSHOT") == .simple("OK"))
            let snap = await c.call("INFO", "snapshot").string ?? ""
            #expect(snap.contains("snapshots_taken:1\r\n"), "\(snap)")
        }
    }

    @Test func dealAndLotCommands() async throws {
        try await withSrv { h in
            let c = try h.client()
            #expect(await c.sendRaw("DEAL.CREATE d1 NAME \"Big Co secondary\" CURRENCY usd PRICE 12.5\r\n", replies: 1) == ["+OK\r\n"])
            #expect(await c.call("DEAL.CREATE", "d1").errorCode == "EXISTS")
            #expect(await c.call("DEAL.CREATE").errorCode == "ERR")
            #expect(await c.call("DEAL.CREATE", "d0", "STATUS", "draft") == .simple("OK"))
            let list = await c.call("DEAL.LIST").page
            #expect(list?.cursor == "0" && list?.rows.map { $0["id"] ?? "" } == ["d1", "d0"] && list?.rows.map { $0["status"] ?? "" } == ["open", "draft"])
            #expect(await c.call("DEAL.LIST", "extra").errorCode == "ERR")
            let first = await c.call("DEAL.LIST", "COUNT", "1").page
            #expect(first?.rows.map { $0["id"] ?? "" } == ["d1"] && first?.cursor != "0")
            #expect(await c.call("DEAL.LIST", "CURSOR", first?.cursor ?? "", "COUNT", "1").page?.rows.map { $0["id"] ?? "" } == ["d0"])
            #expect(await c.call("DEAL.LIST", "COUNT", "0").errorCode == "INVALID")
            #expect(await c.call("DEAL.LIST", "CURSOR", "x").errorCode == "INVALID")
            #expect(await c.call("DEAL.CREATE", "d2", "COLOR", "red").errorCode == "ERR")
            #expect(await c.call("DEAL.CREATE", "d2", "NAME").errorCode == "ERR")
            #expect(await c.call("DEAL.CREATE", "d2", "STATUS", "closed").errorCode == "INVALID")
            #expect(await c.call("DEAL.CREATE", "d2", "OPEN_AT", "yesterday").errorCode == "INVALID")
            #expect(await c.call("DEAL.CREATE", "bad id").errorCode == "INVALID")
            #expect(await c.call("DEAL.GET", "d2").errorCode == "NOTFOUND")
            let deal = await c.call("DEAL.GET", "d1")
            let f = deal.fields ?? [:]
            #expect(f["id"] == "d1" && f["name"] == "Big Co secondary" && f["currency"] == "USD")
            #expect(f["offer_unit_price"] == "12.5" && f["status"] == "open" && f["lots"] == "0", "\(deal)")
            #expect(deal.fieldNames.contains("close_at") && deal.value("close_at") == .null)
            #expect(await c.call("DEAL.GET").errorCode == "ERR")
            #expect(await c.call("DEAL.GET", "d1", "extra").errorCode == "ERR")

            // DEAL.STATUS: the seed's state machine.
            #expect(await c.call("DEAL.CREATE", "d3", "STATUS", "draft") == .simple("OK"))
            #expect(await c.call("DEAL.STATUS", "d3", "closed").errorCode == "CONFLICT")
            #expect(await c.call("DEAL.STATUS", "d3", "draft") == .simple("OK"))   // same state: no-op
            #expect(await c.call("DEAL.STATUS", "d3", "open") == .simple("OK"))
            #expect(await c.call("DEAL.STATUS", "d3", "draft").errorCode == "CONFLICT")
            #expect(await c.call("DEAL.STATUS", "d3", "allocation_pending") == .simple("OK"))
            #expect(await c.call("DEAL.STATUS", "d3", "closed") == .simple("OK"))
            #expect(await c.call("DEAL.STATUS", "d3", "cancelled").errorCode == "CONFLICT")
            #expect(await c.call("DEAL.STATUS", "d3", "bogus").errorCode == "INVALID")
            #expect(await c.call("DEAL.STATUS", "nope", "open").errorCode == "NOTFOUND")
            #expect(await c.call("DEAL.STATUS", "d3").errorCode == "ERR")
            #expect(await c.call("DEAL.GET", "d3").fields?["status"] == "closed")
            #expect(await c.call("LOT.ADD", "d3", "L3", "10", "1").errorCode == "CLOSED")

            // LOT.ADD / LOT.GET / LOT.RESIZE
            #expect(await c.call("LOT.ADD", "d1", "L1", "100", "5", "SOURCE", "fund A").errorCode == "NOTFOUND")
            #expect(await c.call("SOURCE.CREATE", "fund A", "fund") .errorCode == "INVALID")  // ids have no spaces
            #expect(await c.call("SOURCE.CREATE", "fund-A", "fund", "COUNTERPARTY", "Fund A LP") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "d1", "L1", "100", "5", "ACQUIRED", "2024-03-01", "SOURCE", "fund-A") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "d1", "L1", "100", "5").errorCode == "EXISTS")
            #expect(await c.call("LOT.ADD", "nope", "L9", "100", "5").errorCode == "NOTFOUND")
            #expect(await c.call("LOT.ADD", "d1", "L2", "100").errorCode == "ERR")
            #expect(await c.call("LOT.ADD", "d1", "L2", "100", "5", "ACQUIRED", "2024-13-01").errorCode == "INVALID")
            #expect(await c.call("LOT.ADD", "d1", "L2", "100", "5", "CURRENCY", "dollars").errorCode == "INVALID")
            #expect(await c.call("LOT.ADD", "d1", "L2", "100", "5", "WHAT", "x").errorCode == "ERR")
            #expect(await c.call("LOT.ADD", "d1", "L2", "50", "6", "CURRENCY", "usd") == .simple("OK"))
            let lot = await c.call("LOT.GET", "L1")
            let lf = lot.fields ?? [:]
            #expect(lf["id"] == "L1" && lf["deal"] == "d1" && lf["units_total"] == "100" && lf["units_remaining"] == "100")
            #expect(lf["unit_cost"] == "5" && lf["acquired_at"] == "2024-03-01" && lf["source"] == "fund-A" && lf["status"] == "available", "\(lot)")
            #expect(await c.call("LOT.GET", "d1", "L2").fields?["units_total"] == "50")
            #expect(await c.call("LOT.GET", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("LOT.GET", "d1", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("LOT.GET").errorCode == "ERR")
            #expect(await c.call("LOT.RESIZE", "d1", "L2", "80") == .simple("OK"))
            #expect(await c.call("LOT.GET", "L2").fields?["units_total"] == "80")
            let hold = await c.call("HOLD", "d1", "inv1", "120", "10")
            #expect(hold.elements?[2] == .array([.bulk("L1"), .bulk("100"), .bulk("L2"), .bulk("20")]), "\(hold)")
            #expect(await c.call("LOT.RESIZE", "d1", "L2", "10").errorCode == "CONFLICT")
            #expect(await c.call("LOT.RESIZE", "d1", "L9", "10").errorCode == "NOTFOUND")
            #expect(await c.call("LOT.RESIZE", "d1", "L2").errorCode == "ERR")
            #expect(await c.call("LOT.RESIZE", "d1", "L2", "1e2").errorCode == "INVALID")
            #expect(await c.call("DEAL.GET", "d1").fields?["lots"] == "2")
        }
    }

    @Test func holdReplyAndErrors() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            let before = Int64(Date().timeIntervalSince1970 * 1000)
            let raw = await c.sendRaw("HOLD d1 inv1 10 9.5\r\n", replies: 1).first ?? ""
            // *3, the id as a bulk string, expires-at as an integer, the split as [lot, units].
            let pattern = #/^\*3\r\n\$\d+\r\nh\d+\.1\r\n:(\d+)\r\n\*2\r\n\$5\r\nd1-L1\r\n\$2\r\n10\r\n$/#
            let match = raw.wholeMatch(of: pattern)
            #expect(match != nil, "\(raw)")
            if let m = match, let expires = Int64(m.1) {
                // The default TTL is 30 minutes.
                #expect(expires >= before + 1_800_000 - 1000 && expires <= before + 1_800_000 + 5000, "\(expires) vs \(before)")
            }
            // TTL in seconds.
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let t = await c.call("HOLD", "d1", "inv1", "1", "10", "TTL", "60")
            if let exp = t.elements?[1].intValue {
                #expect(abs(Int64(exp) - (now + 60_000)) < 5_000, "\(t)")
            } else { Issue.record("TTL hold: \(t)") }
            for bad in ["0", "-1", "1.5", "x", "604801"] {
                #expect(await c.call("HOLD", "d1", "inv1", "1", "10", "TTL", bad).errorCode == "INVALID", "TTL \(bad)")
            }
            #expect(await c.call("HOLD", "d1", "inv1", "1", "10", "TTL").errorCode == "ERR")
            #expect(await c.call("HOLD", "d1", "inv1", "1", "10", "FAST").errorCode == "ERR")

            // INSUFFICIENT names both numbers; nothing is held.
            #expect(await c.call("HOLD", "d1", "inv2", "1000", "10") == .error("INSUFFICIENT requested 1000, available 89"))
            #expect(await c.call("INVENTORY", "d1").fields?["units_remaining"] == "89")
            // PARTIAL fills what is there.
            let p = await c.call("HOLD", "d1", "inv2", "1000", "10", "PARTIAL")
            #expect(p.elements?[2] == .array([.bulk("d1-L1"), .bulk("89")]), "\(p)")
            let pid = p.elements?.first?.string ?? ""
            let pf = await c.call("HOLD.GET", pid).fields ?? [:]
            #expect(pf["units"] == "89" && pf["requested_units"] == "1000" && pf["partial"] == "1", "\(pf)")
            #expect(await c.call("HOLD", "d1", "inv2", "1", "10", "PARTIAL") == .error("INSUFFICIENT requested 1, available 0"))

            // CLOSED when the deal is not open.
            #expect(await c.call("DEAL.CREATE", "draft1", "STATUS", "draft") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "draft1", "DL1", "10", "1") == .simple("OK"))
            #expect(await c.call("HOLD", "draft1", "inv1", "1", "10").errorCode == "CLOSED")
            #expect(await c.call("DEAL.CREATE", "future", "OPEN_AT", "99999999999") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "future", "FL1", "10", "1") == .simple("OK"))
            #expect(await c.call("HOLD", "future", "inv1", "1", "10").errorCode == "CLOSED")
            #expect(await c.call("HOLD", "nodeal", "inv1", "1", "10").errorCode == "NOTFOUND")

            // Arity and bad ids.
            #expect(await c.call("HOLD", "d1", "inv1", "1").errorCode == "ERR")
            #expect(await c.call("HOLD", "d1", "in v", "1", "10").errorCode == "INVALID")
        }
    }

    @Test func holdIdempotentRetryAndReservedIds() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            let first = await c.call("HOLD", "d1", "inv1", "10", "10", "ID", "order-77")
            #expect(first.elements?.first == .bulk("order-77"), "\(first)")
            let retry = await c.call("HOLD", "d1", "inv1", "10", "10", "ID", "order-77")
            #expect(retry == first)
            #expect(await c.call("INVENTORY", "d1").fields?["units_held"] == "10")
            // Same id, different parameters.
            #expect(await c.call("HOLD", "d1", "inv1", "11", "10", "ID", "order-77").errorCode == "CONFLICT")
            #expect(await c.call("HOLD", "d1", "inv2", "10", "10", "ID", "order-77").errorCode == "CONFLICT")
            // Ids of the generated form are refused for holds and allocations.
            for reserved in ["h1.1", "h12.345", "a1.1", "a7.2"] {
                #expect(await c.call("HOLD", "d1", "inv1", "1", "10", "ID", reserved).errorCode == "INVALID", "\(reserved)")
            }
            let gen = await c.call("HOLD", "d1", "inv1", "1", "10")
            let genID = gen.elements?.first?.string ?? ""
            #expect(genID.wholeMatch(of: #/h\d+\.\d+/#) != nil, "\(genID)")
            #expect(await c.call("ALLOCATE", genID, "ID", "a1.1").errorCode == "INVALID")
            // Not-quite-generated forms are fine.
            #expect(await c.call("HOLD", "d1", "inv1", "1", "10", "ID", "h1x").elements?.first == .bulk("h1x"))
            #expect(await c.call("INVENTORY", "d1").fields?["units_held"] == "12")
            // ALLOCATE with ID is idempotent too.
            let a = await c.call("ALLOCATE", "order-77", "ID", "alloc-9")
            #expect(a == .bulk("alloc-9"))
            #expect(await c.call("ALLOCATE", "order-77", "ID", "alloc-9") == .bulk("alloc-9"))
            #expect(await c.call("ALLOCATE", "order-77") == .bulk("alloc-9"))
            #expect(await c.call("ALLOCATE", "order-77", "ID", "alloc-10").errorCode == "CONFLICT")
            #expect(await c.call("ALLOCATE", "h1x", "ID", "alloc-9").errorCode == "CONFLICT")
            // The hold retried after allocation still answers the same receipt.
            #expect(await c.call("HOLD", "d1", "inv1", "10", "10", "ID", "order-77") == first)
        }
    }

    @Test func holdLifecycle() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, units: "100", cost: "5")
            let hold = await c.call("HOLD", "d1", "inv1", "10", "12.5")
            let hid = hold.elements?.first?.string ?? ""
            let hf = await c.call("HOLD.GET", hid)
            let f = hf.fields ?? [:]
            #expect(f["id"] == hid && f["deal"] == "d1" && f["investor"] == "inv1" && f["units"] == "10")
            #expect(f["price"] == "12.5" && f["status"] == "pending", "\(hf)")
            #expect(Int64(f["expires_at"] ?? "") == hold.elements?[1].intValue.map(Int64.init))
            #expect(await c.call("HOLD.GET", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("HOLD.GET").errorCode == "ERR")

            // ALLOCATE returns the allocation id.
            let alloc = await c.call("ALLOCATE", hid)
            let aid = alloc.string ?? ""
            #expect(aid.wholeMatch(of: #/a\d+\.1/#) != nil, "\(alloc)")
            #expect(await c.call("HOLD.GET", hid).fields?["status"] == "approved")
            #expect(await c.call("HOLD.GET", hid).fields?["allocation"] == aid)
            let af = await c.call("ALLOCATION.GET", aid)
            let a = af.fields ?? [:]
            #expect(a["id"] == aid && a["hold"] == hid && a["units"] == "10" && a["unit_price"] == "12.5", "\(af)")
            #expect(a["status"] == "pending_review" && a["amount"] == "125.00")
            #expect(await c.call("ALLOCATION.GET", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("RELEASE", hid).errorCode == "CONFLICT")
            #expect(await c.call("SETTLE", aid).errorCode == "CONFLICT")
            #expect(await c.call("POSITION.GET", "inv1", "d1").fields?["units"] == "0")
            #expect(await c.call("APPROVE", aid) == .simple("OK"))
            #expect(await c.call("APPROVE", aid) == .simple("OK"))   // retry: no-op
            #expect(await c.call("REJECT", aid).errorCode == "CONFLICT")
            let pos = await c.call("POSITION.GET", "inv1", "d1").fields ?? [:]
            #expect(pos["units"] == "10" && pos["cost_basis"] == "125.00", "\(pos)")
            #expect(await c.call("POSITION.GET", "nobody", "d1").fields?["units"] == "0")
            #expect(await c.call("POSITION.GET", "inv1", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("POSITION.GET", "inv1").errorCode == "ERR")
            #expect(await c.call("SETTLE", aid) == .simple("OK"))
            #expect(await c.call("ALLOCATION.GET", aid).fields?["status"] == "settled")
            #expect(await c.call("APPROVE", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("APPROVE").errorCode == "ERR")
            #expect(await c.call("APPROVE", aid, "x").errorCode == "ERR")

            // REJECT gives the units back.
            let h2 = await c.call("HOLD", "d1", "inv2", "20", "10").elements?.first?.string ?? ""
            let a2 = await c.call("ALLOCATE", h2).string ?? ""
            #expect(await c.call("INVENTORY", "d1").fields?["units_allocated"] == "30")
            #expect(await c.call("REJECT", a2) == .simple("OK"))
            #expect(await c.call("APPROVE", a2).errorCode == "CONFLICT")

            // RELEASE: OK, again OK (already released), then ALLOCATE is a conflict.
            let h3 = await c.call("HOLD", "d1", "inv3", "5", "10").elements?.first?.string ?? ""
            #expect(await c.call("RELEASE", h3) == .simple("OK"))
            #expect(await c.call("RELEASE", h3) == .simple("OK"))
            #expect(await c.call("HOLD.GET", h3).fields?["status"] == "cancelled")
            #expect(await c.call("ALLOCATE", h3).errorCode == "CONFLICT")
            #expect(await c.call("RELEASE", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("RELEASE").errorCode == "ERR")
            #expect(await c.call("ALLOCATE", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("ALLOCATE", h3, "WHAT").errorCode == "ERR")

            // INVENTORY fields.
            let inv = await c.call("INVENTORY", "d1")
            let i = inv.fields ?? [:]
            #expect(i["units_total"] == "100" && i["units_allocated"] == "10" && i["units_held"] == "0", "\(inv)")
            #expect(i["units_remaining"] == "90" && i["holds_pending"] == "0" && i["utilization_percent"] == "10.00")
            #expect(i["lot:d1-L1"] == "total=100 remaining=90 held=0 allocated=10 status=available", "\(inv)")
            #expect(await c.call("INVENTORY", "nope").errorCode == "NOTFOUND")
            #expect(await c.call("INVENTORY").errorCode == "ERR")
        }
    }

    @Test func expiryAndSweep() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            let hid = await c.call("HOLD", "d1", "inv1", "10", "10", "TTL", "1").elements?.first?.string ?? ""
            #expect(await c.call("SWEEP") == .int(0))
            try await Task.sleep(for: .milliseconds(1100))
            // The background ticker is not started by the harness: SWEEP does the work.
            #expect(await c.call("SWEEP") == .int(1))
            #expect(await c.call("HOLD.GET", hid).fields?["status"] == "expired")
            #expect(await c.call("ALLOCATE", hid).errorCode == "EXPIRED")
            #expect(await c.call("RELEASE", hid).errorCode == "EXPIRED")
            #expect(await c.call("INVENTORY", "d1").fields?["units_held"] == "0")
            #expect(await c.call("SWEEP", "x").errorCode == "ERR")
        }
    }

    @Test func snapshotDigestAndUnknown() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            let d1 = await c.call("DIGEST")
            #expect(d1.string?.isEmpty == false, "\(d1)")
            #expect(await c.call("DIGEST") == d1)
            _ = await c.call("HOLD", "d1", "inv1", "1", "10")
            #expect(await c.call("DIGEST") != d1)
            #expect(await c.call("SNAPSHOT") == .simple("OK"))
            #expect(await c.call("SNAPSHOT", "now").errorCode == "ERR")
            #expect(await c.call("DIGEST", "x").errorCode == "ERR")
            let files = try FileManager.default.contentsOfDirectory(atPath: h.dataDir + "/snapshots")
            #expect(!files.isEmpty)

            let unknown = await c.call("FLUSHALL")
            #expect(unknown.errorCode == "ERR")
            #expect(unknown.string == nil && "\(unknown)".contains("unknown command 'flushall'"), "\(unknown)")
            #expect(await c.call("GET", "k").errorCode == "ERR")
            #expect(await c.call("HOLDS").errorCode == "ERR")
        }
    }

    /// Bad numbers are INVALID and change nothing.
    @Test func badNumbersChangeNothing() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            _ = await c.call("HOLD", "d1", "inv1", "1.5", "10")
            let digest = await c.call("DIGEST")
            let badUnits = ["1.123456789", "-5", "0", "1e3", "1E3", "abc", "", " 1", "1.2.3", "0x10", "1,5", "NaN", "inf",
                            "+", ".", "99999999999999999999999999999999999", "1000000000001"]
            for u in badUnits {
                let r = await c.call("HOLD", "d1", "inv1", u, "10")
                #expect(r.errorCode == "INVALID", "units '\(u)': \(r)")
            }
            let badPrices = ["10.1234567", "-1", "1e2", "ten", "", "1000000001"]
            for p in badPrices {
                let r = await c.call("HOLD", "d1", "inv1", "1", p)
                #expect(r.errorCode == "INVALID", "price '\(p)': \(r)")
            }
            for u in ["1.123456789", "-5", "1e2", "x"] {
                #expect(await c.call("LOT.ADD", "d1", "Lx", u, "5").errorCode == "INVALID", "lot units \(u)")
                #expect(await c.call("LOT.RESIZE", "d1", "d1-L1", u).errorCode == "INVALID", "resize \(u)")
            }
            #expect(await c.call("LOT.ADD", "d1", "Lx", "5", "1.1234567").errorCode == "INVALID")
            #expect(await c.call("DEAL.CREATE", "dx", "PRICE", "-1").errorCode == "INVALID")
            #expect(await c.call("DEAL.CREATE", "dx", "PRICE", "1e1").errorCode == "INVALID")
            #expect(await c.call("DIGEST") == digest)
            #expect(await c.call("DEAL.GET", "dx").errorCode == "NOTFOUND")
            let inv = await c.call("INVENTORY", "d1").fields ?? [:]
            #expect(inv["units_held"] == "1.5" && inv["lots"] == "1", "\(inv)")
            // Exact decimals round-trip: 8 unit decimals, 6 price decimals.
            let fine = await c.call("HOLD", "d1", "inv1", "0.00000001", "0.000001")
            let fid = fine.elements?.first?.string ?? ""
            let ff = await c.call("HOLD.GET", fid).fields ?? [:]
            #expect(ff["units"] == "0.00000001" && ff["price"] == "0.000001", "\(fine) \(ff)")
            #expect(await c.call("HOLD", "d1", "inv1", "+2", "10.000000").elements?[2] == .array([.bulk("d1-L1"), .bulk("2")]))
        }
    }

    @Test func edgeCases() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, units: "1000")
            // Command names are case-insensitive over RESP too; options as well.
            #expect(await c.call("hold", "d1", "inv1", "1", "10", "id", "lower-1", "ttl", "60").elements?.first == .bulk("lower-1"))
            #expect(await c.call("Inventory", "d1").fields?["units_held"] == "1")
            // Accepted number forms: leading point, trailing point, leading zeros, plus sign.
            for (text, shown) in [(".5", "0.5"), ("5.", "5"), ("007", "7"), ("+0.5", "0.5"), ("1.10000000", "1.1")] {
                let r = await c.call("HOLD", "d1", "inv1", text, "10")
                #expect(r.elements?[2] == .array([.bulk("d1-L1"), .bulk(shown)]), "\(text): \(r)")
            }
            #expect(await c.call("HOLD", "d1", "inv1", "1", "-0").elements?.count == 3)   // price zero is allowed
            #expect(await c.call("HOLD", "d1", "inv1", "-0", "10").errorCode == "INVALID")
            #expect(await c.call("HOLD", "d1", "inv1", "0.00000000", "10").errorCode == "INVALID")
            #expect(await c.call("HOLD", "d1", "inv1", "1", "1.0000000").errorCode == "INVALID")   // 7 price decimals, even zeros
            // The longest TTL is 7 days.
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let week = await c.call("HOLD", "d1", "inv1", "1", "10", "TTL", "604800").elements?[1].intValue ?? 0
            #expect(abs(Int64(week) - now - 604_800_000) < 5000)
            // Ids: 128 bytes at most, printable, no spaces.
            #expect(await c.call("HOLD", "d1", String(repeating: "i", count: 128), "1", "10").elements?.count == 3)
            #expect(await c.call("HOLD", "d1", String(repeating: "i", count: 129), "1", "10").errorCode == "INVALID")
            #expect(await c.call("HOLD", "d1", "inv\"1", "1", "10").errorCode == "INVALID")
            #expect(await c.call("DEAL.CREATE", "d2", "NAME", "two\nlines").errorCode == "INVALID")
            // A deal whose CLOSE_AT passed takes no holds.
            #expect(await c.call("DEAL.CREATE", "past", "CLOSE_AT", "1") == .simple("OK"))
            #expect(await c.call("LOT.ADD", "past", "PL", "1", "1") == .simple("OK"))
            #expect(await c.call("HOLD", "past", "i", "1", "1").errorCode == "CLOSED")
            // Repeated options: the last one wins.
            #expect(await c.call("HOLD", "d1", "inv1", "1", "10", "ID", "x1", "ID", "x2").elements?.first == .bulk("x2"))
            // Binary-safe ECHO.
            #expect(await c.send(Array("*2\r\n$4\r\nECHO\r\n$3\r\na\r\n\r\n".utf8), replies: 1) == [.bulk("a\r\n")])
            // HELLO SETNAME checks names like CLIENT SETNAME.
            let hello = await c.call("HELLO", "2", "SETNAME", "has space")
            #expect(hello.errorCode == "ERR", "\(hello)")
        }
    }

    /// What each deal status allows, over the protocol.
    @Test func dealStatusRules() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            let h1 = await c.call("HOLD", "d1", "inv1", "10", "10", "ID", "s1").elements?.first?.string ?? ""
            let h2 = await c.call("HOLD", "d1", "inv1", "10", "10", "ID", "s2").elements?.first?.string ?? ""
            let a1 = await c.call("ALLOCATE", h1).string ?? ""
            #expect(await c.call("DEAL.STATUS", "d1", "allocation_pending") == .simple("OK"))
            // allocation_pending: no new holds, allocations and decisions go on.
            #expect(await c.call("HOLD", "d1", "inv1", "1", "10").errorCode == "CLOSED")
            let a2 = await c.call("ALLOCATE", h2).string ?? ""
            #expect(!a2.isEmpty)
            #expect(await c.call("APPROVE", a1) == .simple("OK"))
            #expect(await c.call("LOT.ADD", "d1", "late", "5", "1") == .simple("OK"))
            #expect(await c.call("DEAL.STATUS", "d1", "closed") == .simple("OK"))
            // closed: no lots; settling goes on.
            #expect(await c.call("LOT.ADD", "d1", "later", "5", "1").errorCode == "CLOSED")
            #expect(await c.call("SETTLE", a1) == .simple("OK"))
            #expect(await c.call("REJECT", a2) == .simple("OK"))
            #expect(await c.call("LOT.GET", "d1-L1").fields?["units_allocated"] == "10")
            // cancelled: no decisions, no allocations.
            await srvSetupDeal(c, "d2")
            let h3 = await c.call("HOLD", "d2", "inv1", "1", "10").elements?.first?.string ?? ""
            let h4 = await c.call("HOLD", "d2", "inv1", "1", "10").elements?.first?.string ?? ""
            let a3 = await c.call("ALLOCATE", h3).string ?? ""
            #expect(await c.call("DEAL.STATUS", "d2", "cancelled") == .simple("OK"))
            #expect(await c.call("APPROVE", a3).errorCode == "CLOSED")
            // Cancelling releases pending holds and rejects allocations under review.
            #expect(await c.call("HOLD.GET", h4).fields?["status"] == "cancelled")
            #expect(await c.call("ALLOCATION.GET", a3).fields?["status"] == "rejected")
            #expect(await c.call("ALLOCATE", h4).errorCode == "CONFLICT")
            #expect(await c.call("INVENTORY", "d2").fields?["units_remaining"] == "100")
            #expect(await c.call("HOLD", "d2", "inv1", "1", "10").errorCode == "CLOSED")
            #expect(await c.call("DEAL.STATUS", "d2", "open").errorCode == "CONFLICT")
            // A lot can shrink to what is committed, not below; to zero when nothing is committed.
            await srvSetupDeal(c, "d3")
            _ = await c.call("HOLD", "d3", "inv1", "4", "10")
            #expect(await c.call("LOT.RESIZE", "d3", "d3-L1", "4") == .simple("OK"))
            #expect(await c.call("LOT.GET", "d3-L1").fields?["status"] == "held")
            #expect(await c.call("LOT.RESIZE", "d3", "d3-L1", "3.99999999").errorCode == "CONFLICT")
            #expect(await c.call("HOLD", "d3", "inv1", "1", "10") == .error("INSUFFICIENT requested 1, available 0"))
            await srvSetupDeal(c, "d4")
            let zero = await c.call("LOT.RESIZE", "d4", "d4-L1", "0")
            #expect(zero == .simple("OK"), "\(zero)")
            #expect(await c.call("LOT.GET", "d4-L1").fields?["status"] == "exhausted")
            #expect(await c.call("LOT.RESIZE", "d4", "d4-L1", "-1").errorCode == "INVALID")
        }
    }
}
