// Append-only RESP2/RESP3 reply encoder writing into one byte buffer.

/// Encodes replies into `bytes`. Use one encoder per batch and pass `bytes` to
/// the `complete` callback. RESP3-only types fall back to their RESP2 shapes
/// when `protocolVersion` is 2.
public struct RESPEncoder: Sendable {
    public var bytes: [UInt8]
    /// 2 or 3. Mutable so a batch can switch after `HELLO 3` mid-batch.
    public var protocolVersion: Int

    public init(protocolVersion: Int = 2, reservingCapacity capacity: Int = 64) {
        self.protocolVersion = protocolVersion
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    @inline(__always)
    private mutating func crlf() {
        bytes.append(13)
        bytes.append(10)
    }

    /// Appends text with CR and LF replaced by spaces (simple strings and errors
    /// must stay on one line).
    private mutating func appendLine(_ s: String) {
        for c in s.utf8 { bytes.append(c == 13 || c == 10 ? 32 : c) }
    }

    @inline(__always)
    private mutating func appendDecimal(_ value: Int) {
        if value >= 0 && value < 10 {
            bytes.append(UInt8(48 + value))
            return
        }
        var v = value.magnitude
        var tmp: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                  UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &tmp) { digits in
            repeat {
                digits[19 - n] = UInt8(48 + v % 10)
                v /= 10
                n += 1
            } while v > 0
        }
        if value < 0 { bytes.append(45) }
        withUnsafeBytes(of: &tmp) { digits in
            bytes.append(contentsOf: digits[(20 - n)...])
        }
    }

    /// `+text` (CR/LF replaced by spaces).
    public mutating func simple(_ s: String) {
        bytes.append(43)
        appendLine(s)
        crlf()
    }

    /// `-CODE message` (CR/LF replaced by spaces). Example: `error(code: "ERR", message: "unknown command")`.
    public mutating func error(code: String, message: String) {
        bytes.append(45)
        appendLine(code)
        if !message.isEmpty {
            bytes.append(32)
            appendLine(message)
        }
        crlf()
    }

    /// `:n`
    public mutating func integer(_ value: Int) {
        bytes.append(58)
        appendDecimal(value)
        crlf()
    }

    /// `$len` + bytes.
    public mutating func bulk<Bytes: Collection>(_ value: Bytes) where Bytes.Element == UInt8 {
        bytes.append(36)
        appendDecimal(value.count)
        crlf()
        bytes.append(contentsOf: value)
        crlf()
    }

    /// `$len` + UTF-8 of `value`.
    public mutating func bulk(_ value: String) {
        bulk(value.utf8)
    }

    /// Null: RESP2 `$-1`, RESP3 `_`.
    public mutating func null() {
        if protocolVersion >= 3 {
            bytes.append(95)
        } else {
            bytes.append(36); bytes.append(45); bytes.append(49)
        }
        crlf()
    }

    /// Null array: RESP2 `*-1`, RESP3 `_`.
    public mutating func nullArray() {
        if protocolVersion >= 3 {
            bytes.append(95)
        } else {
            bytes.append(42); bytes.append(45); bytes.append(49)
        }
        crlf()
    }

    /// `*count`; follow with `count` elements.
    public mutating func arrayHeader(_ count: Int) {
        bytes.append(42)
        appendDecimal(count)
        crlf()
    }

    /// RESP3 `%count` (follow with count key/value pairs); RESP2 `*2count`.
    public mutating func mapHeader(_ count: Int) {
        if protocolVersion >= 3 {
            bytes.append(37)
            appendDecimal(count)
        } else {
            bytes.append(42)
            appendDecimal(2 * count)
        }
        crlf()
    }

    /// RESP3 `~count`; RESP2 `*count`.
    public mutating func setHeader(_ count: Int) {
        bytes.append(protocolVersion >= 3 ? 126 : 42)
        appendDecimal(count)
        crlf()
    }

    /// RESP3 `#t`/`#f`; RESP2 `:1`/`:0`.
    public mutating func bool(_ value: Bool) {
        if protocolVersion >= 3 {
            bytes.append(35)
            bytes.append(value ? 116 : 102)
            crlf()
        } else {
            integer(value ? 1 : 0)
        }
    }

    /// RESP3 `,value`; RESP2 a bulk string. Written without exponent
    /// (`1e-05` becomes `0.00001`); `inf`, `-inf`, `nan` as Redis writes them.
    public mutating func double(_ value: Double) {
        let text = RESPEncoder.formatDouble(value)
        if protocolVersion >= 3 {
            bytes.append(44)
            bytes.append(contentsOf: text.utf8)
            crlf()
        } else {
            bulk(text.utf8)
        }
    }

    /// Appends already-encoded RESP bytes verbatim.
    public mutating func raw<Bytes: Sequence>(_ encoded: Bytes) where Bytes.Element == UInt8 {
        bytes.append(contentsOf: encoded)
    }

    /// Shortest round-trip decimal text of `value`, never in exponent notation;
    /// integral values have no fraction (`3`, not `3.0`).
    public static func formatDouble(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        if value == 0 { return "0" }
        var text = "\(value)"
        var negative = false
        if text.hasPrefix("-") { negative = true; text.removeFirst() }
        var mantissa = text
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = String(text[..<e])
            exponent = Int(text[text.index(after: e)...]) ?? 0
        }
        var digits = mantissa
        var pointPosition = digits.count
        if let dot = mantissa.firstIndex(of: ".") {
            pointPosition = mantissa.distance(from: mantissa.startIndex, to: dot)
            digits.remove(at: dot)
        }
        pointPosition += exponent
        var result: String
        if pointPosition <= 0 {
            result = "0." + String(repeating: "0", count: -pointPosition) + digits
        } else if pointPosition >= digits.count {
            result = digits + String(repeating: "0", count: pointPosition - digits.count)
        } else {
            let i = digits.index(digits.startIndex, offsetBy: pointPosition)
            result = String(digits[..<i]) + "." + String(digits[i...])
        }
        if result.contains(".") {
            while result.hasSuffix("0") { result.removeLast() }
            if result.hasSuffix(".") { result.removeLast() }
        }
        // Strip leading zeros of the integer part ("03" -> "3"), keep "0.x".
        while result.count > 1 && result.hasPrefix("0") && !result.hasPrefix("0.") { result.removeFirst() }
        return negative ? "-" + result : result
    }
}
