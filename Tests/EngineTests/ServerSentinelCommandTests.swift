import AllocationEngine
import Foundation
import Testing
@testable import EngineServer

/// What Redis Sentinel asks of a monitored server: pub/sub, MULTI/EXEC,
/// CLIENT KILL / LIST, CONFIG REWRITE, SCRIPT KILL, INFO's run_id.
@Suite struct ServerSentinelCommandTests {
    @Test func pubSubDeliversToChannelsAndPatterns() async throws {
        try await withSrv { h in
            let sub = try h.client(), psub = try h.client(), pub = try h.client()
            #expect(await sub.send(respCommand(["SUBSCRIBE", "__sentinel__:hello", "other"]), replies: 2)
                    == [.array([.bulk("subscribe"), .bulk("__sentinel__:hello"), .int(1)]), .array([.bulk("subscribe"), .bulk("other"), .int(2)])])
            _ = await psub.send("HELLO 3\r\n", replies: 1)
            #expect(await psub.send(respCommand(["PSUBSCRIBE", "__sentinel__:*"]), replies: 1) == [.array([.bulk("psubscribe"), .bulk("__sentinel__:*"), .int(1)])])
            #expect(await pub.call("PUBLISH", "__sentinel__:hello", "127.0.0.1,26379,abc,0") == .int(2))
            #expect(await srvBlocking { sub.readSync(1) } == [.array([.bulk("message"), .bulk("__sentinel__:hello"), .bulk("127.0.0.1,26379,abc,0")])])
            let raw = await srvBlocking { psub.readRawSync(1) }
            #expect(raw.first?.hasPrefix(">4\r\n$8\r\npmessage\r\n") == true, "RESP3 push: \(raw)")
            #expect(await pub.call("PUBLISH", "nobody", "x") == .int(0))
            #expect(await pub.call("PUBSUB", "NUMSUB", "other") == .array([.bulk("other"), .int(1)]))
            // Subscribed mode (RESP2): only the pub/sub commands, PING and QUIT.
            #expect(await sub.call("HOLD", "d1", "i", "1", "1").errorCode == "ERR")
            #expect(await sub.call("PING") == .array([.bulk("pong"), .bulk("")]))
            #expect(await sub.send(respCommand(["UNSUBSCRIBE"]), replies: 2).count == 2)
            #expect(await sub.call("PING") == .simple("PONG"))
            #expect(await pub.call("PUBLISH", "other", "x") == .int(0))
            #expect(GlobPattern.matches(Array("h[ae]llo*".utf8), Array("hallo world".utf8)))
            #expect(!GlobPattern.matches(Array("h[^ae]llo".utf8), Array("hallo".utf8)))
            #expect(GlobPattern.matches(Array("a\\*b?".utf8), Array("a*bc".utf8)))
            #expect(!GlobPattern.matches(Array(String(repeating: "*a", count: 200).utf8), Array(String(repeating: "a", count: 100).utf8) + [0x62]))
            #expect(GlobPattern.matches(Array(String(repeating: "*a", count: 50).utf8), Array(String(repeating: "a", count: 5000).utf8)))
            #expect(GlobPattern.matches(Array("*".utf8), []) && GlobPattern.matches(Array("a**".utf8), Array("a".utf8)))
            #expect(!GlobPattern.matches(Array("a?".utf8), Array("a".utf8)) && !GlobPattern.matches([], Array("a".utf8)))
            #expect(GlobPattern.matches(Array("*.b?[0-9]".utf8), Array("x.y.bc7".utf8)))
            #expect(GlobPattern.matches(Array("__sentinel__:*".utf8), Array("__sentinel__:hello".utf8)))
        }
    }

    /// The documented bounds: 1,024 subscriptions per connection (a refused
    /// SUBSCRIBE takes none), 4,096 commands per transaction.
    @Test func subscriptionsAndTransactionsAreBounded() async throws {
        try await withSrv { h in
            let c = try h.client()
            let many = (0..<1020).map { "ch\($0)" }
            #expect(await c.send(respCommand(["SUBSCRIBE"] + many), replies: 1020).count == 1020)
            #expect(await c.call(["SUBSCRIBE"] + (1015..<1030).map { "ch\($0)" }).errorCode == "LIMIT")
            let other = try h.client()
            #expect(await other.call("PUBSUB", "NUMSUB", "ch1020") == .array([.bulk("ch1020"), .int(0)]))
            #expect(await c.send(respCommand(["SUBSCRIBE", "ch0", "ch1020", "ch1021", "ch1022", "ch1023"]), replies: 5).last
                    == .array([.bulk("subscribe"), .bulk("ch1023"), .int(1024)]))
            let t = try h.client()
            let queued = await t.send(respCommand(["MULTI"]) + (0..<4097).flatMap { _ in respCommand(["PING"]) } + respCommand(["EXEC"]), replies: 4099)
            #expect(queued[4096] == .simple("QUEUED") && queued[4097].errorCode == "LIMIT")
            #expect(queued[4098].errorCode == "EXECABORT")
        }
    }

    @Test func multiExecRunsTheQueueAsOneReplyAndAbortsOnErrors() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, "d1", units: "10")
            let replies = await c.send(respCommand(["MULTI"]) + respCommand(["HOLD", "d1", "inv1", "4", "10", "ID", "m1"])
                                       + respCommand(["PING"]) + respCommand(["HOLD", "d1", "inv2", "7", "10"])
                                       + respCommand(["INVENTORY", "d1"]) + respCommand(["EXEC"]), replies: 6)
            #expect(replies[0] == .simple("OK"))
            #expect(replies[1...4].allSatisfy { $0 == .simple("QUEUED") })
            guard let results = replies[5].elements, results.count == 4 else { Issue.record("EXEC: \(replies[5])"); return }
            #expect(results[0].elements?.first == .bulk("m1"))
            #expect(results[1] == .simple("PONG"))
            #expect(results[2].errorCode == "INSUFFICIENT")
            #expect(results[3].fields?["units_remaining"] == "6")
            // A refused command at queue time discards the whole transaction.
            let aborted = await c.send(respCommand(["MULTI"]) + respCommand(["HOLD", "d1", "inv1", "1", "10"])
                                       + respCommand(["NOSUCH"]) + respCommand(["EXEC"]), replies: 4)
            #expect(aborted[2].errorCode == "ERR")
            #expect(aborted[3] == .error("EXECABORT Transaction discarded because of previous errors."))
            #expect(await c.call("INVENTORY", "d1").fields?["units_remaining"] == "6")
            #expect(await c.call("EXEC") == .error("ERR EXEC without MULTI"))
            #expect(await c.send(respCommand(["MULTI"]) + respCommand(["HOLD", "d1", "inv1", "1", "10"]) + respCommand(["DISCARD"]), replies: 3)[2] == .simple("OK"))
            #expect(await c.call("INVENTORY", "d1").fields?["units_remaining"] == "6")
            #expect(await c.send(respCommand(["MULTI"]) + respCommand(["MULTI"]) + respCommand(["DISCARD"]), replies: 3)[1] == .error("ERR MULTI calls can not be nested"))
        }
    }

    @Test func clientKillByTypeAndIdAndClientList() async throws {
        try await withSrv { h in
            let admin = try h.client(), normal = try h.client(), sub = try h.client()
            _ = await normal.call("CLIENT", "SETNAME", "app-1")
            _ = await sub.send(respCommand(["SUBSCRIBE", "ch"]), replies: 1)
            let list = await admin.call("CLIENT", "LIST").string ?? ""
            #expect(list.contains("name=app-1") && list.contains("flags=P") && list.contains("sub=1"))
            #expect(list.split(separator: "\n").count == 3)
            // TYPE normal spares the caller (SKIPME yes) and the subscriber.
            #expect(await admin.call("CLIENT", "KILL", "TYPE", "normal") == .int(1))
            #expect(await normal.readToEOF() != nil)
            #expect(await admin.call("PING") == .simple("PONG"))
            #expect(await admin.call("CLIENT", "KILL", "TYPE", "pubsub") == .int(1))
            #expect(await sub.readToEOF() != nil)
            #expect(await admin.call("CLIENT", "KILL", "TYPE", "bogus").errorCode == "ERR")
            #expect(await admin.call("CLIENT", "KILL", "127.0.0.1:1") == .error("ERR No such client"))
            let myID = await admin.call("CLIENT", "ID").intValue ?? -1
            #expect(await admin.call("CLIENT", "KILL", "ID", String(myID), "SKIPME", "no") == .int(1))
            #expect(await admin.readToEOF() != nil)
        }
    }

    /// The names the connection layer answers (checked before anything is
    /// allocated for an engine command) are none of the command table's, and
    /// each is answered, not refused as unknown.
    @Test func connectionLevelCommandsAreAnsweredByTheConnectionLayer() async throws {
        for name in EngineRequestHandler.connectionLevelCommands { #expect(CommandTable.byName[name] == nil, "\(name)") }
        try await withSrv { h in
            let c = try h.client()
            for name in EngineRequestHandler.connectionLevelCommands.sorted() where name != "QUIT" && !name.hasSuffix("SUBSCRIBE") && name != "RESET" {
                let r = await c.call(name)
                #expect(!(r.string ?? "").contains("unknown command") && !("\(r)".contains("unknown command")), "\(name): \(r)")
            }
        }
    }

    @Test func configRewriteScriptKillAndRunID() async throws {
        try await withSrv { h in
            let c = try h.client()
            #expect(await c.call("CONFIG", "REWRITE") == .simple("OK"))
            #expect(await c.call("SCRIPT", "KILL") == .error("NOTBUSY No scripts in execution right now."))
            let info = await c.call("INFO", "server").string ?? ""
            let runID = info.split(separator: "\r\n").first { $0.hasPrefix("run_id:") }.map { String($0.dropFirst(7)) } ?? ""
            #expect(runID.count == 40 && runID.allSatisfy { $0.isHexDigit })
            // Sentinel's failover transaction, on a primary (SLAVEOF NO ONE is a no-op here).
            let tx = await c.send(respCommand(["MULTI"]) + respCommand(["SLAVEOF", "NO", "ONE"]) + respCommand(["CONFIG", "REWRITE"])
                                  + respCommand(["CLIENT", "KILL", "TYPE", "normal"]) + respCommand(["EXEC"]), replies: 5)
            #expect(tx[4] == .array([.simple("OK"), .simple("OK"), .int(0)]), "\(tx)")
        }
    }
}
