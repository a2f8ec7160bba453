// Incremental RESP request parser: RESP arrays of bulk strings and inline
// plain-text lines, with the limits of `NetLimits`. See docs/network.md.

import Glibc

/// Why a request stream was rejected. The server replies
/// `-ERR Protocol error: <message>` and closes the connection.
public struct RESPProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "Protocol error: \(message)" }
}

/// Outcome of one `RESPParser.parse` call.
public struct RESPParseResult: Equatable, Sendable {
    /// Index of the first byte not yet consumed: the start of an incomplete
    /// command, or the end of the buffer. Bytes before it are no longer needed.
    public var consumed: Int
    /// Set when the input is malformed; commands parsed before the bad bytes are
    /// still returned and should be executed, then the connection closed.
    public var error: RESPProtocolError?
    /// Set when the inline line ending just before `consumed` was refused (a
    /// control character in it): the commands returned come before it; answer
    /// them, then `-ERR Protocol error: <message>` for the line, then go on
    /// parsing from `consumed`. Nothing of the line is run; the connection stays.
    public var refusedLine: RESPProtocolError?

    public init(consumed: Int, error: RESPProtocolError? = nil, refusedLine: RESPProtocolError? = nil) {
        self.consumed = consumed
        self.error = error
        self.refusedLine = refusedLine
    }
}

/// Parses requests incrementally from a growing buffer. A multibulk command that
/// is only partly received is remembered, so bytes are scanned once.
///
/// RESP commands reference the buffer passed to `parse` (copy-on-write keeps them
/// valid however the caller later mutates its buffer), so parsing allocates per
/// batch, not per command. Inline lines with quotes build their own storage.
public struct RESPParser: Sendable {
    public let limits: NetLimits

    /// A multibulk command whose header (and maybe some arguments) has been parsed.
    private struct Partial: Sendable {
        var start: Int          // index of its '*'
        var remaining: Int      // arguments still to read
        var position: Int       // index of the next '$'
        var spans: [ArgSpan]    // arguments read so far
    }
    private var partial: Partial?

    public init(limits: NetLimits = NetLimits()) {
        self.limits = limits
    }

    /// Shifts remembered positions after the caller dropped the first `count`
    /// bytes of its buffer (only bytes before `consumed` may be dropped).
    public mutating func rebase(droppingPrefix count: Int) {
        guard count > 0, var p = partial else { return }
        precondition(p.start >= count, "dropped bytes of an incomplete command")
        p.start -= count
        p.position -= count
        for i in p.spans.indices {
            p.spans[i].start -= count
            p.spans[i].end -= count
        }
        partial = p
    }

    /// Forgets any partially parsed command.
    public mutating func reset() { partial = nil }

    private enum Mark {
        case spans(first: Int, count: Int)
        case own(RESPCommand)
    }

    private enum Step {
        case ok
        case incomplete
        case failed(RESPProtocolError)
    }

    private enum InlineStep {
        case ok
        case incomplete
        case failed(RESPProtocolError)
        /// The line was consumed but refused as a whole; the stream goes on after it.
        case refused(RESPProtocolError)
    }

    /// Parses complete commands from `buffer[start...]`, appending at most
    /// `maxCommands` to `commands`.
    public mutating func parse(
        _ buffer: [UInt8], from start: Int, maxCommands: Int, into commands: inout [RESPCommand]
    ) -> RESPParseResult {
        precondition(start >= 0 && start <= buffer.count)
        if let p = partial { precondition(p.start == start, "parse must resume at the incomplete command") }
        // Sized once for a typical pipelined read (16 commands of up to 16
        // arguments), not grown by doubling from empty on every read; a
        // larger read grows past it. An argument takes at least 4 bytes.
        var spans: [ArgSpan] = []
        spans.reserveCapacity(min(256, (buffer.count - start) / 4 + 1))
        var marks: [Mark] = []
        marks.reserveCapacity(min(64, maxCommands))
        var consumed = start
        var failure: RESPProtocolError?
        var refusal: RESPProtocolError?
        let limits = self.limits

        buffer.withUnsafeBufferPointer { buf in
            let end = buf.count
            var pos = start
            while marks.count < maxCommands {
                var cmdStart = pos
                var remaining = 0
                var firstSpan = spans.count
                if let p = partial {
                    partial = nil
                    cmdStart = p.start
                    remaining = p.remaining
                    pos = p.position
                    firstSpan = spans.count
                    spans.append(contentsOf: p.spans)
                } else {
                    if pos >= end { break }
                    if buf[pos] == UInt8(ascii: "*") {
                        var n = 0
                        switch readLength(buf, at: &pos, end: end, what: "multibulk length", value: &n) {
                        case .ok: break
                        case .incomplete: pos = cmdStart; break
                        case .failed(let e): failure = e
                        }
                        if failure != nil { break }
                        if pos == cmdStart { break } // incomplete header
                        if n > limits.maxArgsPerCommand || n < -1 {
                            failure = RESPProtocolError("invalid multibulk length")
                            break
                        }
                        if n <= 0 { consumed = pos; continue } // `*0` and `*-1`: nothing to run
                        remaining = n
                    } else {
                        switch parseInline(buf, at: &pos, end: end, limits: limits, spans: &spans, marks: &marks) {
                        case .ok: consumed = pos; continue
                        case .incomplete: break
                        case .failed(let e): failure = e
                        case .refused(let e): consumed = pos; refusal = e
                        }
                        // Stop at a refused line too: its error reply must follow
                        // the replies to the commands before it.
                        break
                    }
                }
                // Arguments of a multibulk command.
                var stalled = false
                while remaining > 0 {
                    let argStart = pos
                    guard pos < end else { stalled = true; break }
                    guard buf[pos] == UInt8(ascii: "$") else {
                        failure = RESPProtocolError("expected '$', got '\(printable(buf[pos]))'")
                        break
                    }
                    var len = 0
                    switch readLength(buf, at: &pos, end: end, what: "bulk length", value: &len) {
                    case .ok: break
                    case .incomplete: stalled = true
                    case .failed(let e): failure = e
                    }
                    if stalled || failure != nil { pos = argStart; break }
                    guard len >= 0 && len <= limits.maxBulkLength else {
                        failure = RESPProtocolError("invalid bulk length")
                        break
                    }
                    guard end - pos >= len + 2 else { pos = argStart; stalled = true; break }
                    guard buf[pos + len] == 13 && buf[pos + len + 1] == 10 else {
                        failure = RESPProtocolError("bulk string not terminated by CRLF")
                        break
                    }
                    spans.append(ArgSpan(start: pos, end: pos + len))
                    pos += len + 2
                    remaining -= 1
                }
                if failure != nil { break }
                if stalled {
                    partial = Partial(start: cmdStart, remaining: remaining, position: pos,
                                      spans: Array(spans[firstSpan...]))
                    spans.removeSubrange(firstSpan...)
                    break
                }
                marks.append(.spans(first: firstSpan, count: spans.count - firstSpan))
                consumed = pos
            }
        }

        if !marks.isEmpty {
            commands.reserveCapacity(commands.count + marks.count)
            for mark in marks {
                switch mark {
                case .spans(let first, let count):
                    commands.append(RESPCommand(storage: buffer, spans: spans, firstSpan: first, count: count))
                case .own(let command):
                    commands.append(command)
                }
            }
        }
        if failure != nil { partial = nil }
        return RESPParseResult(consumed: consumed, error: failure, refusedLine: refusal)
    }

    /// Convenience for tests and tools: parses everything in `bytes`.
    public mutating func parseAll(_ bytes: [UInt8]) -> (commands: [RESPCommand], result: RESPParseResult) {
        var commands: [RESPCommand] = []
        let result = parse(bytes, from: 0, maxCommands: Int.max, into: &commands)
        return (commands, result)
    }

    // MARK: - Pieces

    /// Reads `<sigil><integer>\r\n` at `pos`; on success `pos` is after the CRLF.
    private func readLength(
        _ buf: UnsafeBufferPointer<UInt8>, at pos: inout Int, end: Int, what: String, value: inout Int
    ) -> Step {
        let limit = min(end, pos + NetLimits.maxLengthLineBytes)
        var cr = pos + 1
        while cr < limit && buf[cr] != 13 && buf[cr] != 10 { cr += 1 }
        if cr >= limit {
            if end - pos >= NetLimits.maxLengthLineBytes {
                return .failed(RESPProtocolError("too big \(what) string"))
            }
            return .incomplete
        }
        guard buf[cr] == 13 else { return .failed(RESPProtocolError("invalid \(what)")) }
        guard cr + 1 < end else { return .incomplete }
        guard buf[cr + 1] == 10 else { return .failed(RESPProtocolError("invalid \(what)")) }
        guard let n = parseDecimalInt(UnsafeBufferPointer(rebasing: buf[(pos + 1)..<cr])) else {
            return .failed(RESPProtocolError("invalid \(what)"))
        }
        value = n
        pos = cr + 2
        return .ok
    }

    /// Parses one inline line at `pos`. Empty lines are consumed without a command.
    private func parseInline(
        _ buf: UnsafeBufferPointer<UInt8>, at pos: inout Int, end: Int, limits: NetLimits,
        spans: inout [ArgSpan], marks: inout [Mark]
    ) -> InlineStep {
        let searchEnd = min(end, pos + limits.maxInlineLength + 2)
        guard let base = buf.baseAddress,
              let found = memchr(base + pos, 10, searchEnd - pos) else {
            if end - pos > limits.maxInlineLength + 1 {
                return .failed(RESPProtocolError("too big inline request"))
            }
            return .incomplete
        }
        let newline = UnsafePointer<UInt8>(found.assumingMemoryBound(to: UInt8.self)) - base
        var lineEnd = newline
        if lineEnd > pos && buf[lineEnd - 1] == 13 { lineEnd -= 1 }
        if lineEnd - pos > limits.maxInlineLength {
            return .failed(RESPProtocolError("too big inline request"))
        }
        let line = UnsafeBufferPointer(rebasing: buf[pos..<lineEnd])
        let lineStart = pos
        pos = newline + 1
        guard let lineBase = line.baseAddress, line.count > 0 else { return .ok }
        // A line is what a person types: a byte a person cannot type (NUL and
        // the other control characters but the tab, and DEL) refuses the whole
        // line, so such a byte can never become an argument separator and
        // change which command runs. Quotes do not exempt raw control bytes
        // (`"\x00"` spells one, and reaches the command like a RESP bulk would).
        for i in 0..<line.count where isInlineControl(line[i]) {
            return .refused(RESPProtocolError("control character \(printable(line[i])) at byte \(i + 1) of an inline request; only space and tab separate arguments (send binary data as a RESP bulk string)"))
        }
        if memchr(lineBase, 34, line.count) == nil && memchr(lineBase, 39, line.count) == nil {
            // Fast path, no quotes: arguments are spans of the buffer.
            let first = spans.count
            var i = 0
            while i < line.count {
                while i < line.count && isInlineSpace(line[i]) { i += 1 }
                if i >= line.count { break }
                let s = i
                while i < line.count && !isInlineSpace(line[i]) { i += 1 }
                spans.append(ArgSpan(start: lineStart + s, end: lineStart + i))
            }
            let count = spans.count - first
            if count == 0 { return .ok }
            if count > limits.maxArgsPerCommand {
                return .failed(RESPProtocolError("too many arguments in inline request"))
            }
            marks.append(.spans(first: first, count: count))
            return .ok
        }
        guard let args = splitInlineArguments(line) else {
            return .failed(RESPProtocolError("unbalanced quotes in request"))
        }
        if args.isEmpty { return .ok }
        if args.count > limits.maxArgsPerCommand {
            return .failed(RESPProtocolError("too many arguments in inline request"))
        }
        marks.append(.own(RESPCommand(args)))
        return .ok
    }
}

/// The only argument separators of an inline line: space and tab (Redis'
/// `sdssplitargs` also splits at the other `isspace` bytes, `\n \r \v \f`;
/// here those are control characters and refuse the line).
@inline(__always)
private func isInlineSpace(_ c: UInt8) -> Bool {
    c == 32 || c == 9
}

/// Bytes a person cannot type on an inline line: C0 controls except the tab, and DEL.
@inline(__always)
private func isInlineControl(_ c: UInt8) -> Bool {
    (c < 32 && c != 9) || c == 127
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 48...57: return c - 48
    case 97...102: return c - 87
    case 65...70: return c - 55
    default: return nil
    }
}

private func printable(_ c: UInt8) -> String {
    if c >= 32 && c < 127 { return String(UnicodeScalar(c)) }
    let hex = String(c, radix: 16)
    return "\\x" + (hex.count == 1 ? "0" + hex : hex)
}

/// Splits an inline line the way Redis' `sdssplitargs` does: whitespace
/// separates arguments; "double quotes" allow `\n \r \t \b \a \\ \" \xHH`;
/// 'single quotes' allow `\'`; a closing quote must be followed by whitespace or
/// the end of the line. Returns nil for unbalanced quotes.
func splitInlineArguments(_ line: UnsafeBufferPointer<UInt8>) -> [[UInt8]]? {
    var args: [[UInt8]] = []
    var i = 0
    let n = line.count
    while true {
        while i < n && isInlineSpace(line[i]) { i += 1 }
        if i >= n { return args }
        var current: [UInt8] = []
        var inDouble = false
        var inSingle = false
        var done = false
        while !done {
            if inDouble {
                guard i < n else { return nil }
                let c = line[i]
                if c == 92 && i + 3 < n && line[i + 1] == UInt8(ascii: "x"),
                   let h = hexValue(line[i + 2]), let l = hexValue(line[i + 3]) {
                    current.append(h << 4 | l)
                    i += 3
                } else if c == 92 && i + 1 < n {
                    i += 1
                    switch line[i] {
                    case UInt8(ascii: "n"): current.append(10)
                    case UInt8(ascii: "r"): current.append(13)
                    case UInt8(ascii: "t"): current.append(9)
                    case UInt8(ascii: "b"): current.append(8)
                    case UInt8(ascii: "a"): current.append(7)
                    default: current.append(line[i])
                    }
                } else if c == 34 {
                    if i + 1 < n && !isInlineSpace(line[i + 1]) { return nil }
                    done = true
                } else {
                    current.append(c)
                }
            } else if inSingle {
                guard i < n else { return nil }
                let c = line[i]
                if c == 92 && i + 1 < n && line[i + 1] == 39 {
                    i += 1
                    current.append(39)
                } else if c == 39 {
                    if i + 1 < n && !isInlineSpace(line[i + 1]) { return nil }
                    done = true
                } else {
                    current.append(c)
                }
            } else {
                if i >= n { break }
                let c = line[i]
                switch c {
                case 32, 9: done = true
                case 34: inDouble = true
                case 39: inSingle = true
                default: current.append(c)
                }
            }
            if i < n { i += 1 }
        }
        args.append(current)
    }
}
