import AllocationEngine
import Foundation
import Testing
@testable import EngineServer

/// Pipelining, many clients, bad input, slow readers.
@Suite struct ServerTrafficTests {
    /// 1000 mixed commands (RESP arrays and inline lines) in one send; replies in order.
    @Test func pipelineOfAThousandMixedCommands() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, units: "100000")
            var bytes: [UInt8] = []
            enum Want { case hold(String), ok, pong, held(Int), status(String, String), bulk(String) }
            var wants: [Want] = []
            var held = 0
            func add(_ args: [String], inline: Bool) {
                if inline {
                    bytes += Array((args.map { $0.contains(" ") ? "\"\($0)\"" : $0 }.joined(separator: " ") + "\r\n").utf8)
                } else {
                    bytes += respCommand(args)
                }
            }
            for i in 0..<1000 {
                let inline = i % 2 == 0
                switch i % 8 {
                case 0:
                    // A HOLD with a caller id, released later in the same pipeline.
                    add(["HOLD", "d1", "inv\(i)", "2", "10", "ID", "p\(i)"], inline: inline)
                    wants.append(.hold("p\(i)")); held += 2
                case 1:
                    add(["RELEASE", "p\(i - 1)"], inline: inline)
                    wants.append(.ok); held -= 2
                case 2:
                    add(["PING"], inline: inline); wants.append(.pong)
                case 3:
                    add(["HOLD", "d1", "inv\(i)", "3", "10", "ID", "k\(i)"], inline: inline)
                    wants.append(.hold("k\(i)")); held += 3
                case 4:
                    add(["INVENTORY", "d1"], inline: inline); wants.append(.held(held))
                case 5:
                    add(["HOLD.GET", "p\(i - 5)"], inline: inline); wants.append(.status("p\(i - 5)", "cancelled"))
                case 6:
                    add(["HOLD.GET", "k\(i - 3)"], inline: inline); wants.append(.status("k\(i - 3)", "pending"))
                default:
                    add(["ECHO", "e \(i)"], inline: inline); wants.append(.bulk("e \(i)"))
                }
            }
            let replies = await c.send(bytes, replies: 1000)
            #expect(replies.count == 1000)
            var mismatches = 0
            for (k, (reply, want)) in zip(replies, wants).enumerated() {
                let ok: Bool
                switch want {
                case .hold(let id): ok = reply.elements?.first == .bulk(id)
                case .ok: ok = reply == .simple("OK")
                case .pong: ok = reply == .simple("PONG")
                case .held(let n): ok = reply.fields?["units_held"] == String(n)
                case .status(let id, let s): ok = reply.fields?["id"] == id && reply.fields?["status"] == s
                case .bulk(let s): ok = reply == .bulk(s)
                }
                if !ok {
                    mismatches += 1
                    if mismatches < 5 { Issue.record("reply \(k): \(reply), wanted \(want)") }
                }
            }
            #expect(mismatches == 0)
            #expect(await c.call("INVENTORY", "d1").fields?["units_held"] == String(held))
            #expect(await c.call("INVENTORY", "d1").fields?["holds_pending"] == "125")
        }
    }

    /// More commands than one batch takes (1024): replies stay in order across batches.
    @Test func pipelineLongerThanOneBatch() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, units: "100000")
            var text = ""
            for i in 0..<5000 { text += i % 2 == 0 ? "HOLD d1 i\(i) 1 10 ID q\(i)\r\n" : "*5\r\n$4\r\nHOLD\r\n$2\r\nd1\r\n$\(String(i).count + 1)\r\ni\(i)\r\n$1\r\n1\r\n$2\r\n10\r\n" }
            text += "INVENTORY d1\r\n"
            let r = await c.send(text, replies: 5001)
            #expect(r.count == 5001)
            let wrong = r.prefix(5000).enumerated().filter { i, reply in
                i % 2 == 0 ? reply.elements?.first != .bulk("q\(i)") : reply.elements?.count != 3
            }
            #expect(wrong.isEmpty, "\(wrong.prefix(3))")
            #expect(r.last?.fields?["units_held"] == "5000")
        }
    }

    /// HOLD x then RELEASE x (and ALLOCATE, HOLD.GET) in one write: the later
    /// commands find the hold the earlier one created.
    @Test func holdThenReleaseInOneWrite() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c)
            let r = await c.send("HOLD d1 inv1 5 10 ID x\r\nRELEASE x\r\nHOLD.GET x\r\nHOLD d1 inv1 7 10 ID y\r\nALLOCATE y ID ay\r\nAPPROVE ay\r\nALLOCATION.GET ay\r\nINVENTORY d1\r\n",
                                 replies: 8)
            #expect(r.count == 8)
            guard r.count == 8 else { return }
            #expect(r[0].elements?.first == .bulk("x"))
            #expect(r[1] == .simple("OK"))
            #expect(r[2].fields?["status"] == "cancelled")
            #expect(r[3].elements?.first == .bulk("y"))
            #expect(r[4] == .bulk("ay"))
            #expect(r[5] == .simple("OK"))
            #expect(r[6].fields?["status"] == "approved")
            #expect(r[7].fields?["units_allocated"] == "7" && r[7].fields?["units_held"] == "0", "\(r[7])")
            // The same across two deals interleaved.
            await srvSetupDeal(c, "d2")
            let r2 = await c.send("HOLD d1 i 1 10 ID m1\r\nHOLD d2 i 1 10 ID m2\r\nRELEASE m2\r\nRELEASE m1\r\nHOLD.GET m1\r\nHOLD.GET m2\r\n", replies: 6)
            #expect(r2.count == 6)
            if r2.count == 6 {
                #expect(r2[2] == .simple("OK") && r2[3] == .simple("OK"))
                #expect(r2[4].fields?["status"] == "cancelled" && r2[5].fields?["status"] == "cancelled")
            }
        }
    }

    /// 200 connections hammering one deal: inventory matches the successful holds exactly.
    @Test func twoHundredClientsOnOneHotDeal() async throws {
        try await withSrv { h in
            let admin = try h.client()
            await srvSetupDeal(admin, "hot", units: "3000")
            #expect(await admin.call("LOT.ADD", "hot", "hot-L2", "2000.5", "5") == .simple("OK"))
            let clients = try (0..<200).map { _ in try h.client() }
            let results = await withTaskGroup(of: [Reply].self) { group in
                for (i, c) in clients.enumerated() {
                    group.addTask {
                        var text = ""
                        for k in 0..<10 {
                            let units = (i * 7 + k) % 5 + 1
                            text += k % 3 == 0 ? "HOLD hot inv\(i) \(units).25 10 PARTIAL\r\n" : "HOLD hot inv\(i) \(units) 10\r\n"
                        }
                        return await c.send(text, replies: 10)
                    }
                }
                var all: [[Reply]] = []
                for await r in group { all.append(r) }
                return all
            }
            var heldRaw: Int128 = 0   // in 1e-8 units
            var ok = 0, insufficient = 0, other: [Reply] = []
            for r in results.joined() {
                if let parts = r.elements?[2].elements {
                    ok += 1
                    for k in stride(from: 1, to: parts.count, by: 2) {
                        heldRaw += (try? Units.parse(parts[k].string ?? "x").raw) ?? 0
                    }
                } else if r.errorCode == "INSUFFICIENT" {
                    insufficient += 1
                } else {
                    other.append(r)
                }
            }
            #expect(results.joined().count == 2000)
            #expect(other.isEmpty, "\(other.prefix(5))")
            #expect(insufficient > 0, "the deal should run out")
            let inv = await admin.call("INVENTORY", "hot").fields ?? [:]
            let held = Units(raw: heldRaw).description
            #expect(inv["units_held"] == held, "inventory \(inv) vs replies \(held)")
            #expect(inv["holds_pending"] == String(ok))
            #expect(inv["units_remaining"] == Units(raw: try Units.parse("5000.5").raw - heldRaw).description)
            let net = h.server.stats
            #expect(net.totalConnections == 201)
        }
    }

    /// Malformed input closes only that connection (after answering what came
    /// before it); other clients are served and nothing changes.
    @Test func badInputClosesOnlyThatConnection() async throws {
        var options = SrvHarness.Options()
        options.limits = NetLimits(maxInlineLength: 1024, maxBulkLength: 64 * 1024)
        try await withSrv(options) { h in
            let good = try h.client()
            await srvSetupDeal(good)
            // Commands before the bad bytes are executed and answered first.
            let first = try h.client()
            await first.write(Array("HOLD d1 inv1 5 10 ID before\r\n*1\r\n$-5\r\nHOLD d1 inv1 5 10 ID after\r\n".utf8))
            let out = await first.readToEOF() ?? "timeout"
            #expect(out.hasPrefix("*3\r\n$6\r\nbefore\r\n"), "\(out)")
            #expect(out.hasSuffix("-ERR Protocol error: invalid bulk length\r\n"), "\(out)")
            #expect(await good.call("HOLD.GET", "after").errorCode == "NOTFOUND")
            let digest = await good.call("DIGEST")

            let cases: [(String, [UInt8], String)] = [
                ("binary garbage", [42, 0xFF, 0x00, 0x13, 13, 10], "-ERR Protocol error: invalid multibulk length\r\n"),
                ("huge count", Array("*9223372036854775807\r\n".utf8), "-ERR Protocol error: invalid multibulk length\r\n"),
                ("overflowing count", Array("*99999999999999999999\r\n".utf8), "-ERR Protocol error: invalid multibulk length\r\n"),
                ("negative bulk", Array("*1\r\n$-5\r\n".utf8), "-ERR Protocol error: invalid bulk length\r\n"),
                ("huge bulk", Array("*2\r\n$4\r\nHOLD\r\n$9223372036854775807\r\n".utf8), "-ERR Protocol error: invalid bulk length\r\n"),
                ("bulk over limit", Array("*1\r\n$65537\r\n".utf8), "-ERR Protocol error: invalid bulk length\r\n"),
                ("not a bulk", Array("*2\r\n$4\r\nHOLD\r\n:12\r\n".utf8), "-ERR Protocol error: expected '$', got ':'\r\n"),
                ("unterminated bulk", Array("*1\r\n$4\r\nPINGxx\r\n".utf8), "-ERR Protocol error: bulk string not terminated by CRLF\r\n"),
                ("unbalanced quotes", Array("HOLD d1 \"inv1 5 10\r\n".utf8), "-ERR Protocol error: unbalanced quotes in request\r\n"),
                ("endless header", Array(("*" + String(repeating: "1", count: 40)).utf8), "-ERR Protocol error: too big multibulk length string\r\n"),
            ]
            for (name, bytes, expected) in cases {
                let bad = try h.client()
                await bad.write(bytes)
                let got = await bad.readToEOF()
                #expect(got == expected, "\(name): \(String(describing: got))")
                #expect(await good.call("PING") == .simple("PONG"), "after \(name)")
            }
            // A line that never ends, sent in pieces, beyond the inline limit.
            let endless = try h.client()
            await endless.write(Array(("HOLD d1 inv1 1 10 " + String(repeating: "x", count: 700)).utf8))
            try await Task.sleep(for: .milliseconds(20))
            await endless.write(Array(String(repeating: "y", count: 700).utf8))
            #expect(await endless.readToEOF() == "-ERR Protocol error: too big inline request\r\n")
            // Garbage that parses as an inline line is just an unknown command; the connection stays.
            let odd = try h.client()
            let r = await odd.send([0x01, 0x02, 0xFE, 0x20, 0x41, 10, 80, 73, 78, 71, 13, 10], replies: 2)
            #expect(r.first?.errorCode == "ERR" && r.last == .simple("PONG"), "\(r)")
            // Empty arrays and empty lines are ignored.
            #expect(await odd.send("*0\r\n\r\n*-1\r\nPING\r\n", replies: 1) == [.simple("PONG")])

            #expect(await good.call("DIGEST") == digest)
            #expect(await good.call("INVENTORY", "d1").fields?["units_held"] == "5")
            let info = await good.call("INFO", "clients").string ?? ""
            #expect(info.contains("protocol_errors:\(cases.count + 2)\r\n"), "\(info)")
        }
    }

    /// A client that stops reading is disconnected at the output limit; another keeps being served.
    @Test func clientThatStopsReadingIsDisconnected() async throws {
        var options = SrvHarness.Options()
        options.loops = 1
        options.limits = NetLimits(maxOutputBufferBytes: 128 * 1024)
        try await withSrv(options) { h in
            let fast = try h.client()
            await srvSetupDeal(fast)
            let slow = try h.client(receiveBuffer: 4096)
            let request = Array("INVENTORY d1\r\n".utf8)
            let flood = Array([[UInt8]](repeating: request, count: 60_000).joined())
            // Sending may fail part-way once the server closes the connection.
            let sending = Task { await slow.write(flood) }
            for i in 0..<30 {
                let r = await fast.call("HOLD", "d1", "fast", "1", "10")
                #expect(r.elements?.count == 3, "fast client, hold \(i): \(r)")
            }
            #expect(await srvWait(5) { h.server.stats.outputBufferDisconnects == 1 })
            _ = await sending.value
            #expect(await srvWait { h.server.stats.connectedClients == 1 })
            #expect(await fast.call("INVENTORY", "d1").fields?["units_held"] == "30")
            let info = await fast.call("INFO", "clients").string ?? ""
            #expect(info.contains("output_buffer_disconnects:1\r\n"), "\(info)")
        }
    }
}
