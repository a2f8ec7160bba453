// One parsed command: its arguments are byte ranges into a shared storage array
// (usually the connection's input buffer itself, so parsing a RESP command copies
// nothing and allocates nothing per command).

/// Byte range of one argument inside a command's storage.
@usableFromInline
struct ArgSpan: Sendable, Equatable {
    @usableFromInline var start: Int
    @usableFromInline var end: Int
    @inlinable init(start: Int, end: Int) { self.start = start; self.end = end }
}

/// A command: a non-empty list of binary-safe arguments; the first is the name.
public struct RESPCommand: Sendable {
    @usableFromInline let storage: [UInt8]
    @usableFromInline let spans: [ArgSpan]
    @usableFromInline let firstSpan: Int
    /// Number of arguments, the command name included.
    public let count: Int

    @usableFromInline
    init(storage: [UInt8], spans: [ArgSpan], firstSpan: Int, count: Int) {
        self.storage = storage
        self.spans = spans
        self.firstSpan = firstSpan
        self.count = count
    }

    /// Builds a command from byte arguments (tests, internal callers).
    public init(_ args: [[UInt8]]) {
        var storage: [UInt8] = []
        var spans: [ArgSpan] = []
        spans.reserveCapacity(args.count)
        for arg in args {
            let start = storage.count
            storage.append(contentsOf: arg)
            spans.append(ArgSpan(start: start, end: storage.count))
        }
        self.init(storage: storage, spans: spans, firstSpan: 0, count: args.count)
    }

    /// Builds a command from string arguments (UTF-8).
    public init(strings: [String]) {
        self.init(strings.map { Array($0.utf8) })
    }

    /// All arguments as separate arrays (allocates; prefer `bytes(at:)`).
    public var args: [[UInt8]] {
        (0..<count).map { Array(bytes(at: $0)) }
    }

    /// Argument `index` as a slice of the shared storage (no copy).
    @inlinable
    public func bytes(at index: Int) -> ArraySlice<UInt8> {
        precondition(index >= 0 && index < count, "argument index out of range")
        let span = spans[firstSpan + index]
        return storage[span.start..<span.end]
    }

    /// Length in bytes of argument `index`.
    @inlinable
    public func length(at index: Int) -> Int {
        let span = spans[firstSpan + index]
        return span.end - span.start
    }

    /// Argument `index` decoded as UTF-8 (invalid bytes are replaced).
    public func string(at index: Int) -> String {
        let span = spans[firstSpan + index]
        return storage.withUnsafeBufferPointer { buffer in
            String(decoding: UnsafeBufferPointer(rebasing: buffer[span.start..<span.end]), as: UTF8.self)
        }
    }

    /// The command name, ASCII-uppercased. Names up to 15 bytes are small
    /// strings, so this does not allocate.
    public var name: String {
        guard count > 0 else { return "" }
        let span = spans[firstSpan]
        return storage.withUnsafeBufferPointer { buffer in
            let slice = UnsafeBufferPointer(rebasing: buffer[span.start..<span.end])
            return String(unsafeUninitializedCapacity: slice.count) { out in
                for i in 0..<slice.count {
                    let c = slice[i]
                    out[i] = (c >= 0x61 && c <= 0x7A) ? c - 0x20 : c
                }
                return slice.count
            }
        }
    }

    /// True when argument `index` equals `ascii`, ignoring ASCII case. No allocation.
    public func argument(_ index: Int, equalsIgnoringCase ascii: StaticString) -> Bool {
        guard index < count else { return false }
        let span = spans[firstSpan + index]
        guard span.end - span.start == ascii.utf8CodeUnitCount else { return false }
        let expected = ascii.utf8Start
        return storage.withUnsafeBufferPointer { buffer in
            for i in 0..<(span.end - span.start) {
                var c = buffer[span.start + i]
                if c >= 0x61 && c <= 0x7A { c -= 0x20 }
                var e = expected[i]
                if e >= 0x61 && e <= 0x7A { e -= 0x20 }
                if c != e { return false }
            }
            return true
        }
    }

    /// Argument `index` parsed as a decimal Int64 (optional sign, digits only, no
    /// overflow); nil otherwise. No allocation.
    public func int(at index: Int) -> Int? {
        guard index < count else { return nil }
        let span = spans[firstSpan + index]
        return storage.withUnsafeBufferPointer { buffer in
            parseDecimalInt(UnsafeBufferPointer(rebasing: buffer[span.start..<span.end]))
        }
    }

    /// Argument `index` parsed as a finite Double ("28.50", "1e3"); nil otherwise.
    public func double(at index: Int) -> Double? {
        guard index < count else { return nil }
        guard let value = Double(string(at: index)), value.isFinite else { return nil }
        return value
    }
}

extension RESPCommand: CustomStringConvertible {
    public var description: String {
        (0..<count).map { string(at: $0) }.joined(separator: " ")
    }
}

extension RESPCommand: Equatable {
    public static func == (lhs: RESPCommand, rhs: RESPCommand) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for i in 0..<lhs.count where lhs.bytes(at: i) != rhs.bytes(at: i) { return false }
        return true
    }
}

/// Strict decimal parse: optional '-' or '+', 1...19 digits, no overflow.
@usableFromInline
func parseDecimalInt(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
    var i = 0
    var negative = false
    if bytes.count > 0 && (bytes[0] == UInt8(ascii: "-") || bytes[0] == UInt8(ascii: "+")) {
        negative = bytes[0] == UInt8(ascii: "-")
        i = 1
    }
    guard i < bytes.count else { return nil }
    var value = 0
    while i < bytes.count {
        let d = Int(bytes[i]) &- 48
        guard d >= 0 && d <= 9 else { return nil }
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (s, o2) = negative ? m.subtractingReportingOverflow(d) : m.addingReportingOverflow(d)
        if o1 || o2 { return nil }
        value = s
        i += 1
    }
    return value
}
