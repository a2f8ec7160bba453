// libFuzzer target `resp`: the RESP and inline request parser (RESPParser).
// Compiled into one module with the parser's own sources (Fuzz/run.sh), so it
// needs no build of the engine. Checks, on any input:
// - no crash, no hang, no allocation beyond the limits (libFuzzer's -malloc_limit_mb);
// - `consumed` only moves forward and stays inside the buffer;
// - every command has at least one argument, each inside its limits;
// - the same bytes fed in chunks (with dropped prefixes, as a connection does)
//   give exactly the same commands, refused lines and error as fed at once;
// - every command, whichever framing it came in, sent again as a RESP array of
//   bulk strings parses to exactly the same arguments (a byte of an inline line
//   never becomes a separator, nor a separator part of an argument, in one
//   framing and not the other), and an inline line whose arguments hold no
//   control character comes out of the raw line unchanged when it has no quotes.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESPParser(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data!, count: size)) : []
    // Small limits half of the time, so the limit paths are reached with small inputs.
    let small = (bytes.first ?? 0) & 1 == 1
    let limits = small ? NetLimits(maxInlineLength: 64, maxBulkLength: 32, maxArgsPerCommand: 8) : NetLimits()
    let whole = FuzzFeed.run(bytes, step: bytes.count + 1, limits: limits)
    let step = Int(bytes.count > 1 ? bytes[1] : 1) % 23 + 1
    let chunked = FuzzFeed.run(bytes, step: step, limits: limits)
    if whole != chunked {
        fatalError("chunked parse differs (step \(step)): \(whole) vs \(chunked)")
    }
    if let expected = FuzzFeed.firstInlineLine(bytes, limits: limits) {
        switch expected {
        case .refused:
            precondition(whole.first?.first == UInt8(ascii: "!"), "a first inline line with a control character was not refused: \(String(describing: whole.first))")
        case .command(let joined):
            precondition(whole.first == joined, "the first inline line parsed as \(String(describing: whole.first)), expected \(joined)")
        }
    }
    var parser = RESPParser(limits: limits)
    for command in parser.parseAll(bytes).commands { FuzzFeed.checkAsRESP(command) }
    return 0
}

enum FuzzFeed {
    /// What a person's first line must give, by a model independent of the
    /// parser, when the input starts with a complete inline line without
    /// quotes: its arguments split at spaces and tabs only, or a refusal (`!`)
    /// when it holds a control character. Nil where the model does not apply.
    enum Line { case refused, command([UInt8]) }

    static func firstInlineLine(_ bytes: [UInt8], limits: NetLimits) -> Line? {
        guard let first = bytes.first, first != UInt8(ascii: "*"), let newline = bytes.firstIndex(of: 10) else { return nil }
        var line = bytes[..<newline]
        if line.last == 13 { line = line.dropLast() }
        guard line.count <= limits.maxInlineLength else { return nil }
        if line.contains(where: { ($0 < 32 && $0 != 9) || $0 == 127 }) { return .refused }
        if line.contains(34) || line.contains(39) { return nil }
        let args = line.split(whereSeparator: { $0 == 32 || $0 == 9 })
        guard !args.isEmpty, args.count <= limits.maxArgsPerCommand else { return nil }
        var joined: [UInt8] = []
        for (i, a) in args.enumerated() {
            if i > 0 { joined += [0xFF, 0x00] }
            joined += a
        }
        return .command(joined)
    }

    /// `command` re-sent as a RESP array parses to the same arguments.
    static func checkAsRESP(_ command: RESPCommand) {
        var wire = Array("*\(command.count)\r\n".utf8)
        for i in 0..<command.count {
            wire += Array("$\(command.length(at: i))\r\n".utf8)
            wire += command.bytes(at: i)
            wire += [13, 10]
        }
        var parser = RESPParser()
        let (commands, result) = parser.parseAll(wire)
        precondition(result.error == nil && result.refusedLine == nil, "a parsed command re-sent as RESP is refused: \(String(describing: result))")
        precondition(result.consumed == wire.count && commands.count == 1, "a parsed command re-sent as RESP is not one command")
        precondition(commands[0] == command, "a parsed command re-sent as RESP has other arguments")
    }

    /// Feeds `bytes` `step` bytes at a time and returns what a connection would
    /// see: commands (arguments joined by 0xFF 0x00), `!` + message per refused
    /// line, then `#` + the closing error.
    static func run(_ bytes: [UInt8], step: Int, limits: NetLimits) -> [[UInt8]] {
        var parser = RESPParser(limits: limits)
        var buffer: [UInt8] = []
        var start = 0
        var out: [[UInt8]] = []
        var fed = 0
        while fed < bytes.count || fed == 0 {
            let next = min(bytes.count, fed + step)
            buffer += bytes[fed..<next]
            fed = next
            while true {
                var commands: [RESPCommand] = []
                let r = parser.parse(buffer, from: start, maxCommands: 7, into: &commands)
                precondition(r.consumed >= start && r.consumed <= buffer.count, "consumed out of range")
                for c in commands {
                    precondition(c.count >= 1 && c.count <= limits.maxArgsPerCommand, "argument count")
                    var joined: [UInt8] = []
                    for i in 0..<c.count {
                        precondition(c.length(at: i) <= max(limits.maxBulkLength, limits.maxInlineLength), "argument length")
                        if i > 0 { joined += [0xFF, 0x00] }
                        joined += c.bytes(at: i)
                    }
                    out.append(joined)
                }
                if let e = r.error { out.append(Array(("#" + e.message).utf8)); return out }
                let progressed = r.consumed != start
                start = r.consumed
                if let refused = r.refusedLine { out.append(Array(("!" + refused.message).utf8)); continue }
                if !progressed || commands.isEmpty { break }
            }
            // Drop consumed bytes now and then, as the event loop compacts its buffer.
            if start > 0 && fed % 2 == 0 {
                buffer.removeSubrange(0..<start)
                parser.rebase(droppingPrefix: start)
                start = 0
            }
            if bytes.isEmpty { break }
        }
        return out
    }
}
