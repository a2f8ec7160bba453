import Testing
@testable import EngineServer

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private func parseAll(_ input: [UInt8], limits: NetLimits = NetLimits()) -> ([[String]], RESPParseResult) {
    var parser = RESPParser(limits: limits)
    let (commands, result) = parser.parseAll(input)
    return (commands.map { c in (0..<c.count).map { c.string(at: $0) } }, result)
}

/// Feeds `input` as a connection would: appending chunks to one buffer, parsing
/// after each, dropping consumed bytes now and then.
private func parseChunked(_ input: [UInt8], splits: [Int], limits: NetLimits = NetLimits()) -> ([[UInt8]], RESPProtocolError?) {
    var parser = RESPParser(limits: limits)
    var buffer: [UInt8] = []
    var start = 0
    var out: [[UInt8]] = []
    var cuts = splits + [input.count]
    cuts.sort()
    var previous = 0
    for (k, cut) in cuts.enumerated() {
        buffer.append(contentsOf: input[previous..<cut])
        previous = cut
        var commands: [RESPCommand] = []
        let r = parser.parse(buffer, from: start, maxCommands: 1024, into: &commands)
        for c in commands { out.append(Array(c.args.joined(separator: [0x7C]))) }
        start = r.consumed
        if let e = r.error { return (out, e) }
        if k % 2 == 0 && start > 0 {
            buffer.removeSubrange(0..<start)
            parser.rebase(droppingPrefix: start)
            start = 0
        }
    }
    return (out, nil)
}

@Suite struct NetParserTests {
    @Test func respArray() {
        let (cmds, r) = parseAll(bytes("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n"))
        #expect(cmds == [["SET", "k", "hello"], ["PING"]])
        #expect(r.error == nil)
        #expect(r.consumed == 45)
    }

    @Test func inlineLines() {
        let (cmds, r) = parseAll(bytes("HOLD deal-1 inv-7 100 28.50\r\n\r\n\n  PING\t x \nECHO y\n"))
        #expect(cmds == [["HOLD", "deal-1", "inv-7", "100", "28.50"], ["PING", "x"], ["ECHO", "y"]])
        #expect(r.error == nil)
    }

    @Test func inlineQuotesAndEscapes() {
        let line = #"SET "a b" "c\"d\n" 'it\'s' "\x41\x7a" "" x"# + "\r\n"
        let (cmds, r) = parseAll(bytes(line))
        #expect(r.error == nil)
        #expect(cmds == [["SET", "a b", "c\"d\n", "it's", "Az", "", "x"]])
    }

    @Test func inlineUnbalancedQuotes() {
        for bad in ["SET \"abc\r\n", "SET \"a\"b\r\n", "SET 'abc\r\n"] {
            let (cmds, r) = parseAll(bytes(bad))
            #expect(cmds.isEmpty)
            #expect(r.error == RESPProtocolError("unbalanced quotes in request"), "\(bad)")
        }
    }

    // MARK: - Control characters on inline lines (issue 11)

    /// Parses everything as a connection does after a refused line: answer it,
    /// go on from `consumed`. Returns each command, or `!<message>` for a refused line.
    private func parseGoingOn(_ input: [UInt8]) -> ([String], RESPProtocolError?) {
        var parser = RESPParser()
        var out: [String] = []
        var start = 0
        while start < input.count {
            var commands: [RESPCommand] = []
            let r = parser.parse(input, from: start, maxCommands: 1024, into: &commands)
            out += commands.map { c in (0..<c.count).map { c.string(at: $0) }.joined(separator: "|") }
            if let e = r.error { return (out, e) }
            if let refused = r.refusedLine { out.append("!" + refused.message) }
            if r.consumed == start && r.refusedLine == nil { break }
            start = r.consumed
        }
        return (out, nil)
    }

    @Test func aNulInsideAnInlineArgumentRefusesTheWholeLine() {
        // The issue's line: `launch`, NUL, space. It used to split into `HOLD launch inv 10 28.5`.
        let line = bytes("HOLD launch") + [0] + bytes(" inv 10 28.5\r\nPING\r\n")
        let (out, error) = parseGoingOn(line)
        #expect(error == nil)
        #expect(out == ["!control character \\x00 at byte 12 of an inline request; only space and tab separate arguments (send binary data as a RESP bulk string)", "PING"])
    }

    @Test func everyControlByteButTabRefusesItsLineAndTheStreamGoesOn() {
        for c in [UInt8](0..<32) + [127] where c != 10 && c != 9 {
            for template in ["HOLD launch%c inv 10 28.5", "%cHOLD launch inv 10 28.5", "HOLD launch inv 10 28.5%c", "HOLD launch %c inv", "SET \"a%cb\" x", "SET 'a%cb' x"] {
                let parts = template.components(separatedBy: "%c")
                let input = bytes("PING 1\r\n") + bytes(parts[0]) + [c] + bytes(parts[1]) + bytes("\r\nPING 2\n")
                let (out, error) = parseGoingOn(input)
                let shown = template.replacingOccurrences(of: "%c", with: "\\x\(c)")
                #expect(error == nil, "\(shown)")
                #expect(out.count == 3 && out[0] == "PING|1" && out[1].hasPrefix("!control character ") && out[2] == "PING|2", "\(shown): \(out)")
            }
        }
        // A CR is a line end only right before the LF.
        #expect(parseGoingOn(bytes("PING a\rb\r\n")).0.first?.hasPrefix("!control character \\x0d") == true)
        #expect(parseGoingOn(bytes("PING a\r\r\n")).0.first?.hasPrefix("!control character \\x0d") == true)
        #expect(parseGoingOn(bytes("PING a\r\n")).0 == ["PING|a"])
    }

    @Test func onlySpaceAndTabSeparateInlineArguments() {
        #expect(parseAll(bytes("HOLD\td1 \t inv\t\t10 28.5\n")).0 == [["HOLD", "d1", "inv", "10", "28.5"]])
        // Vertical tab and form feed were separators (Redis' isspace); now they refuse the line.
        for c: UInt8 in [11, 12] {
            let (cmds, r) = parseAll(bytes("HOLD d1") + [c] + bytes("inv 10 28.5\n"))
            #expect(cmds.isEmpty)
            #expect(r.error == nil && r.refusedLine != nil)
        }
        // Bytes above 0x7F are text a person can type (UTF-8); they stay inside their argument.
        #expect(parseAll(bytes("DEAL.CREATE caf\u{e9} NAME \"Caf\u{e9} \u{212A}\"\n")).0 == [["DEAL.CREATE", "caf\u{e9}", "NAME", "Caf\u{e9} \u{212A}"]])
    }

    @Test func quotedEscapesStillSpellControlBytesLikeARESPBulk() {
        // `"\x00"` is typed text: the argument holds a NUL, as a RESP bulk string may;
        // the command layer refuses it (ArgumentText), the same for both framings.
        var parser = RESPParser()
        let (inline, r1) = parser.parseAll(bytes("HOLD \"launch\\x00\" inv 10 28.5\n"))
        let (resp, r2) = parser.parseAll(bytes("*5\r\n$4\r\nHOLD\r\n$7\r\nlaunch") + [0] + bytes("\r\n$3\r\ninv\r\n$2\r\n10\r\n$4\r\n28.5\r\n"))
        #expect(r1.error == nil && r1.refusedLine == nil && r2.error == nil)
        #expect(inline.count == 1 && inline == resp)
        #expect(Array(inline[0].bytes(at: 1)) == bytes("launch") + [0])
    }

    @Test func aRefusedLineSplitAtEveryByteGivesTheSameAnswers() {
        let stream = bytes("PING a\r\nHOLD launch") + [0] + bytes(" inv 10 28.5\r\n*1\r\n$4\r\nPING\r\nECHO \"b\" \u{1}\nPING c\n")
        let whole = parseGoingOn(stream).0
        #expect(whole.count == 5 && whole.filter { $0.hasPrefix("!") }.count == 2, "\(whole)")
        for cut in 0...stream.count {
            var parser = RESPParser()
            var buffer: [UInt8] = []
            var start = 0
            var out: [String] = []
            for chunk in [stream[0..<cut], stream[cut...]] {
                buffer += chunk
                while true {
                    var commands: [RESPCommand] = []
                    let r = parser.parse(buffer, from: start, maxCommands: 1024, into: &commands)
                    out += commands.map { c in (0..<c.count).map { c.string(at: $0) }.joined(separator: "|") }
                    #expect(r.error == nil)
                    let progressed = r.consumed != start
                    start = r.consumed
                    if let refused = r.refusedLine { out.append("!" + refused.message); continue }
                    if !progressed || commands.isEmpty { break }
                }
            }
            #expect(out == whole, "split at \(cut)")
        }
    }

    @Test func incompleteWaits() {
        for partial in ["*2\r\n$3\r\nGET\r\n$1\r", "*2\r\n$3\r\nGE", "*2", "PING", "*2\r\n$3\r\nGET\r\n$"] {
            let (cmds, r) = parseAll(bytes(partial))
            #expect(cmds.isEmpty)
            #expect(r.error == nil)
            #expect(r.consumed == 0)
        }
    }

    @Test func splitAtEveryByteBoundary() {
        let stream = bytes("*3\r\n$3\r\nSET\r\n$4\r\nk\r\nv\r\n$0\r\n\r\nPING\r\n*1\r\n$4\r\nPING\r\nECHO \"a b\"\n*2\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\n")
        let expected = parseChunked(stream, splits: [])
        #expect(expected.1 == nil)
        #expect(expected.0.count == 5)
        for cut in 0...stream.count {
            let got = parseChunked(stream, splits: [cut])
            #expect(got.0 == expected.0, "split at \(cut)")
            #expect(got.1 == nil)
        }
        // One byte at a time.
        let single = parseChunked(stream, splits: Array(0...stream.count))
        #expect(single.0 == expected.0)
        // Two cuts everywhere (a sample to keep the test fast).
        for a in stride(from: 0, to: stream.count, by: 3) {
            for b in stride(from: a, to: stream.count, by: 5) {
                #expect(parseChunked(stream, splits: [a, b]).0 == expected.0)
            }
        }
    }

    @Test func hostileLengths() {
        let cases: [(String, String)] = [
            ("*9223372036854775807\r\n", "invalid multibulk length"),
            ("*99999999999999999999\r\n", "invalid multibulk length"),
            ("*-5\r\n", "invalid multibulk length"),
            ("*1\r\n$-5\r\n", "invalid bulk length"),
            ("*1\r\n$9223372036854775807\r\n", "invalid bulk length"),
            ("*1\r\n$9223372036854775808\r\n", "invalid bulk length"),
            ("*1\r\n$abc\r\n", "invalid bulk length"),
            ("*x\r\n", "invalid multibulk length"),
            ("*1\r\nPING\r\n", "expected '$', got 'P'"),
            ("*1\r\n\u{01}", "expected '$', got '\\x01'"),
            ("*1\r\n$3\r\nabcXY", "bulk string not terminated by CRLF"),
            ("*1\n", "invalid multibulk length"),
            ("*" + String(repeating: "1", count: 40), "too big multibulk length string"),
        ]
        for (input, message) in cases {
            let (cmds, r) = parseAll(bytes(input))
            #expect(cmds.isEmpty, "\(input)")
            #expect(r.error?.message == message, "\(input.debugDescription): \(String(describing: r.error))")
        }
    }

    @Test func binaryGarbage() {
        var garbage: [UInt8] = [42, 0xFF, 0x00, 0x13, 0x80, 13, 10]
        var (_, r) = parseAll(garbage)
        #expect(r.error != nil)
        garbage = [42, 50, 13, 10, 36, 50, 13, 10, 0, 0, 13, 10, 0xFE, 0xFF]
        (_, r) = parseAll(garbage)
        #expect(r.error != nil)
        // Binary-safe bulk content is fine.
        let ok: [UInt8] = bytes("*1\r\n$4\r\n") + [0, 13, 10, 0xFF] + bytes("\r\n")
        var parser = RESPParser()
        let (commands, result) = parser.parseAll(ok)
        #expect(result.error == nil)
        #expect(Array(commands[0].bytes(at: 0)) == [0, 13, 10, 0xFF])
    }

    @Test func limits() {
        let limits = NetLimits(maxInlineLength: 16, maxBulkLength: 8, maxArgsPerCommand: 3)
        #expect(parseAll(bytes(String(repeating: "a", count: 40)), limits: limits).1.error?.message == "too big inline request")
        #expect(parseAll(bytes(String(repeating: "a", count: 17) + "\n"), limits: limits).1.error?.message == "too big inline request")
        #expect(parseAll(bytes(String(repeating: "a", count: 16) + "\r\n"), limits: limits).1.error == nil)
        #expect(parseAll(bytes("*1\r\n$9\r\n"), limits: limits).1.error?.message == "invalid bulk length")
        #expect(parseAll(bytes("*1\r\n$8\r\n12345678\r\n"), limits: limits).0 == [["12345678"]])
        #expect(parseAll(bytes("*4\r\n"), limits: limits).1.error?.message == "invalid multibulk length")
        #expect(parseAll(bytes("a b c d\n"), limits: limits).1.error?.message == "too many arguments in inline request")
    }

    @Test func commandsBeforeAnErrorAreReturned() {
        let (cmds, r) = parseAll(bytes("PING\r\n*1\r\n$4\r\nECHO\r\n*zz\r\n"))
        #expect(cmds == [["PING"], ["ECHO"]])
        #expect(r.error?.message == "invalid multibulk length")
    }

    @Test func emptyMultibulkIsSkipped() {
        let (cmds, r) = parseAll(bytes("*0\r\n*-1\r\nPING\r\n"))
        #expect(cmds == [["PING"]])
        #expect(r.error == nil)
    }

    @Test func maxCommandsPerCall() {
        var parser = RESPParser()
        let input = bytes(String(repeating: "PING\r\n", count: 10))
        var commands: [RESPCommand] = []
        let r = parser.parse(input, from: 0, maxCommands: 4, into: &commands)
        #expect(commands.count == 4)
        #expect(r.consumed == 24)
    }

    @Test func commandAccessors() {
        let c = RESPCommand(strings: ["hold", "deal-1", "-42", "28.50", "x"])
        #expect(c.name == "HOLD")
        #expect(c.count == 5)
        #expect(c.int(at: 2) == -42)
        #expect(c.int(at: 3) == nil)
        #expect(c.double(at: 3) == 28.5)
        #expect(c.argument(0, equalsIgnoringCase: "HoLd"))
        #expect(!c.argument(1, equalsIgnoringCase: "deal"))
        #expect(c.args[1] == bytes("deal-1"))
        #expect(RESPCommand(strings: ["x", "9223372036854775808"]).int(at: 1) == nil)
    }
}

@Suite struct NetEncoderTests {
    @Test func shapes() {
        var e = RESPEncoder(protocolVersion: 2)
        e.simple("OK")
        e.error(code: "ERR", message: "bad\r\nthing")
        e.integer(-42)
        e.integer(Int.min)
        e.bulk("hé")
        e.bulk([UInt8]())
        e.null()
        e.arrayHeader(2)
        e.mapHeader(2)
        e.bool(true)
        e.double(28.5)
        #expect(String(decoding: e.bytes, as: UTF8.self) ==
            "+OK\r\n-ERR bad  thing\r\n:-42\r\n:-9223372036854775808\r\n$3\r\nhé\r\n$0\r\n\r\n$-1\r\n*2\r\n*4\r\n:1\r\n$4\r\n28.5\r\n")
        var e3 = RESPEncoder(protocolVersion: 3)
        e3.null()
        e3.mapHeader(2)
        e3.bool(false)
        e3.double(-0.5)
        #expect(String(decoding: e3.bytes, as: UTF8.self) == "_\r\n%2\r\n#f\r\n,-0.5\r\n")
    }

    @Test func doublesWithoutExponent() {
        #expect(RESPEncoder.formatDouble(1e-05) == "0.00001")
        #expect(RESPEncoder.formatDouble(1.5e20) == "150000000000000000000")
        #expect(RESPEncoder.formatDouble(3.0) == "3")
        #expect(RESPEncoder.formatDouble(28.5) == "28.5")
        #expect(RESPEncoder.formatDouble(0.1) == "0.1")
        #expect(RESPEncoder.formatDouble(-1.25e-7) == "-0.000000125")
        #expect(RESPEncoder.formatDouble(.infinity) == "inf")
        #expect(RESPEncoder.formatDouble(0) == "0")
    }
}
