import AllocationEngine
import Foundation
import Testing
@testable import EngineServer

/// Hostile input over a real socket, both framings (issue 11): a byte that is
/// not an argument separator must never become one, an id that is not the one
/// sent must never reach a row, and a refused line leaves the connection usable.
@Suite struct ServerHostileInputTests {
    /// The id kinds named in usage strings (`<deal>`, `<hold id>`, ...): every
    /// positional argument of these kinds goes through the id check.
    static let idPlaceholders: Set<String> = [
        "deal", "lot", "investor", "user", "vehicle", "hold", "allocation", "hold id", "allocation id",
        "invoice", "introducer", "txn", "plan", "approval", "subscription", "commitment", "call",
        "term sheet", "source", "payment", "invite id", "introduction", "distribution", "account ref",
        "entity id", "statement", "component", "commission", "event",
    ]

    /// Every command of the table with its required positional placeholders.
    static func positionalSlots() -> [(name: String, slots: [String])] {
        CommandTable.byName.values.sorted { $0.name < $1.name }.map { spec in
            // The placeholders right after the name, up to the first keyword or option.
            var slots: [String] = []
            var rest = Substring(spec.usage.dropFirst(spec.name.count))
            while true {
                rest = rest.drop { $0 == " " }
                guard rest.first == "<", let close = rest.firstIndex(of: ">") else { break }
                slots.append(String(rest[rest.index(after: rest.startIndex)..<close]))
                rest = rest[rest.index(after: close)...]
            }
            return (spec.name, slots)
        }
    }

    @Test func theIssuesLineIsRefusedAndPlacesNothingInlineNorOverRESP() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, "launch", units: "100")
            // Inline: `launch`, NUL, space. It used to place a hold of 10 on `launch`.
            let line = Array("HOLD launch".utf8) + [0] + Array(" inv 10 28.5\r\nPING\r\n".utf8)
            let replies = await c.send(line, replies: 2)
            #expect(replies.count == 2)
            #expect(replies.first?.errorCode == "ERR", "\(replies)")
            #expect(replies.first.map { "\($0)".contains("Protocol error: control character \\x00") } == true, "\(replies)")
            #expect(replies.last == .simple("PONG"), "the connection stays usable: \(replies)")
            // RESP: the same id as a bulk string is refused by the id check.
            let resp = await c.send(respBytes([Array("HOLD".utf8), Array("launch".utf8) + [0], Array("inv".utf8), Array("10".utf8), Array("28.5".utf8)]), replies: 1)
            #expect(resp.first?.errorCode == "INVALID", "\(resp)")
            // Inline with the escape spelled out: the same answer as RESP.
            let quoted = await c.send("HOLD \"launch\\x00\" inv 10 28.5\r\n", replies: 1)
            #expect(quoted.first?.errorCode == "INVALID", "\(quoted)")
            let inventory = await c.call("INVENTORY", "launch")
            #expect(inventory.value("units_held")?.string == "0", "\(inventory)")
            #expect(inventory.value("units_remaining")?.string == "100", "\(inventory)")
        }
    }

    @Test func everyControlByteInAnInlineLineGetsErrAndNothingRuns() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, "launch", units: "100")
            for b in [UInt8](0..<32) + [127] where b != 9 && b != 10 {
                for line in [Array("HOLD launch".utf8) + [b] + Array(" inv 10 28.5".utf8),
                             Array("HOLD launch inv".utf8) + [b] + Array(" 10 28.5".utf8),
                             Array("HOLD launch inv 10 28.5 ID \"x".utf8) + [b] + Array("y\"".utf8),
                             [b] + Array("HOLD launch inv 10 28.5".utf8)] {
                    let replies = await c.send(line + Array("\r\nPING ok\r\n".utf8), replies: 2)
                    #expect(replies.first?.errorCode == "ERR", "byte \(b): \(replies)")
                    #expect(replies.last == .bulk("ok"), "byte \(b): \(replies)")
                }
            }
            #expect(await c.call("INVENTORY", "launch").value("units_held")?.string == "0")
            // The refusals are counted, and none closed the connection.
            let info = await c.call("INFO").string ?? ""
            #expect(info.contains("refused_inline_lines:\(31 * 4)"), "\(info.prefix(2000))")
            #expect(info.contains("protocol_errors:0"))
        }
    }

    /// Every command, every required positional argument: a control byte or
    /// invalid UTF-8 in it is `INVALID` over RESP, and the raw byte on an inline
    /// line is `-ERR Protocol error`. Nothing changes.
    @Test func everyCommandRefusesControlBytesAndInvalidUTF8InEveryArgument() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, "x1", units: "100")
            let before = await c.call("INVENTORY", "x1")
            var checked = 0
            for (name, slots) in Self.positionalSlots() where !slots.isEmpty {
                for k in slots.indices {
                    for bad: [UInt8] in [Array("x1".utf8) + [0], [0x78, 0x0A, 0x31], Array("x1".utf8) + [0x7F], [0x78, 0xFF, 0x31], [0x78, 0xC3]] {
                        var args = [Array(name.utf8)] + slots.map { _ in Array("x1".utf8) }
                        args[k + 1] = bad
                        let r = await c.send(respBytes(args), replies: 1)
                        #expect(r.first?.errorCode == "INVALID", "\(name) <\(slots[k])> = \(bad): \(r)")
                        checked += 1
                    }
                    var line = Array(name.utf8)
                    for (j, _) in slots.enumerated() { line += [32] + (j == k ? [0x78, 0x00, 0x31] : Array("x1".utf8)) }
                    let r = await c.send(line + [13, 10], replies: 1)
                    #expect(r.first?.errorCode == "ERR", "\(name) inline: \(r)")
                }
            }
            #expect(checked > 300, "only \(checked) cases: the usage strings were not read")
            #expect(await c.call("INVENTORY", "x1") == before)
            #expect(await c.call("PING") == .simple("PONG"))
        }
    }

    /// Swift Strings compare by canonical equivalence: KELVIN SIGN (E2 84 AA)
    /// equals `K`, GREEK QUESTION MARK (CD BE) equals `;`. Such an id used to
    /// reach the row named with the ASCII letter; every id argument is refused.
    @Test func idsThatAreCanonicallyEquivalentToAnotherIdAreInvalidForEveryIdKind() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, "K1", lot: "K1-L1", units: "100")
            #expect(await c.call("HOLD", "K1", "K1", "10", "28.5", "ID", "K1.h") .elements?.count == 3)
            let kelvin = "\u{212A}1"
            #expect(kelvin == "K1", "the premise: Swift says they are equal")
            #expect(await c.call("HOLD", kelvin, "inv", "10", "28.5").errorCode == "INVALID")
            #expect(await c.call("DEAL.GET", kelvin).errorCode == "INVALID")
            #expect(await c.call("RELEASE", "\u{212A}1.h").errorCode == "INVALID")
            #expect(await c.call("LOT.GET", "\u{212A}1-L1").errorCode == "INVALID")
            #expect(await c.call("POSITION.GET", kelvin, "K1").errorCode == "INVALID")
            // Every command and id slot, RESP and (the same bytes) inline.
            var checked = 0
            for (name, slots) in Self.positionalSlots() {
                for (k, slot) in slots.enumerated() where Self.idPlaceholders.contains(slot) {
                    var args = [name] + slots.map { _ in "K1" }
                    args[k + 1] = kelvin
                    let r = await c.call(args)
                    #expect(r.errorCode == "INVALID" && "\(r)".contains("may hold only printable"), "\(name) <\(slot)>: \(r)")
                    let inline = await c.send(args.joined(separator: " ") + "\r\n", replies: 1)
                    #expect(inline.first == r, "\(name) <\(slot)> inline: \(inline) vs RESP \(r)")
                    checked += 1
                }
            }
            #expect(checked > 80, "only \(checked) id slots found")
            let inventory = await c.call("INVENTORY", "K1")
            #expect(inventory.value("units_held")?.string == "10", "\(inventory)")
        }
    }

    @Test func optionValuesThatNameRowsAreCheckedToo() async throws {
        try await withSrv { h in
            let c = try h.client()
            await srvSetupDeal(c, "K1", units: "100")
            #expect(await c.call("HOLD", "K1", "inv", "1", "28.5", "ID", "h\u{212A}").errorCode == "INVALID")
            #expect(await c.call("INVOICE.LIST", "DEAL", "\u{212A}1").errorCode == "INVALID")
            #expect(await c.call("LOT.GET", "K1", "\u{212A}1-L1").errorCode == "INVALID")
            #expect(await c.call("INVENTORY", "K1").value("units_held")?.string == "0")
        }
    }

    @Test func authAndClientNamesWithControlBytesAreInvalidButPingStaysBinarySafe() async throws {
        try await withSrv { h in
            let c = try h.client()
            #expect(await c.send(respBytes([Array("AUTH".utf8), [0x61, 0x00]]), replies: 1).first?.errorCode == "INVALID")
            #expect(await c.send(respBytes([Array("CLIENT".utf8), Array("SETNAME".utf8), [0x61, 0x00]]), replies: 1).first?.errorCode == "INVALID")
            let echoed = await c.send(respBytes([Array("ECHO".utf8), [0x61, 0x00, 0xFF]]), replies: 1)
            #expect(echoed.count == 1 && echoed.first?.errorCode == nil, "\(echoed)")
            #expect(await c.call("PING") == .simple("PONG"))
        }
    }
}

/// A RESP array of binary bulk strings.
private func respBytes(_ args: [[UInt8]]) -> [UInt8] {
    var out = Array("*\(args.count)\r\n".utf8)
    for a in args { out += Array("$\(a.count)\r\n".utf8) + a + [13, 10] }
    return out
}
