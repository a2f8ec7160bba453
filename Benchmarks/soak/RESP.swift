// RESP over raw sockets: command encoding into a byte buffer, a scanner that
// finds where one reply ends (and its first string), and a small blocking
// client for the soak's own reads (INVENTORY, INFO, HOLD.GET).

import Foundation
import Glibc

enum RESP {
    static let crlf: [UInt8] = [13, 10]

    /// Appends a non-negative integer in decimal.
    @inline(__always)
    static func appendDecimal(_ buf: inout [UInt8], _ value: Int) {
        var divisor = 1
        while divisor <= value / 10 { divisor *= 10 }
        var n = value
        while divisor > 0 {
            buf.append(UInt8(48 + n / divisor))
            n %= divisor
            divisor /= 10
        }
    }

    @inline(__always)
    static func decimalDigits(_ value: Int) -> Int {
        var d = 1
        var n = value
        while n >= 10 { n /= 10; d += 1 }
        return d
    }

    @inline(__always)
    static func appendArrayHeader(_ buf: inout [UInt8], _ count: Int) {
        buf.append(UInt8(ascii: "*"))
        appendDecimal(&buf, count)
        buf.append(contentsOf: crlf)
    }

    @inline(__always)
    static func appendBulk(_ buf: inout [UInt8], _ bytes: some Collection<UInt8>) {
        buf.append(UInt8(ascii: "$"))
        appendDecimal(&buf, bytes.count)
        buf.append(contentsOf: crlf)
        buf.append(contentsOf: bytes)
        buf.append(contentsOf: crlf)
    }

    static func appendBulk(_ buf: inout [UInt8], _ text: String) { appendBulk(&buf, Array(text.utf8)) }

    /// A bulk string of a prefix and a number, e.g. `inv-17`, without building a String.
    @inline(__always)
    static func appendBulk(_ buf: inout [UInt8], prefix: [UInt8], number: Int) {
        buf.append(UInt8(ascii: "$"))
        appendDecimal(&buf, prefix.count + decimalDigits(number))
        buf.append(contentsOf: crlf)
        buf.append(contentsOf: prefix)
        appendDecimal(&buf, number)
        buf.append(contentsOf: crlf)
    }

    static func command(_ args: [String]) -> [UInt8] {
        var out: [UInt8] = []
        appendArrayHeader(&out, args.count)
        for a in args { appendBulk(&out, a) }
        return out
    }

    /// Index just after one complete reply starting at `pos`, or nil if the buffer does not hold it yet.
    static func skipReply(_ buf: UnsafeBufferPointer<UInt8>, from pos: Int) -> Int? {
        guard pos < buf.count else { return nil }
        var lineEnd = pos
        while lineEnd + 1 < buf.count && !(buf[lineEnd] == 13 && buf[lineEnd + 1] == 10) { lineEnd += 1 }
        guard lineEnd + 1 < buf.count else { return nil }
        let after = lineEnd + 2
        switch buf[pos] {
        case UInt8(ascii: "$"), UInt8(ascii: "="), UInt8(ascii: "!"):
            guard let n = decimal(buf, pos + 1, lineEnd) else { return nil }
            if n < 0 { return after }
            return after + n + 2 <= buf.count ? after + n + 2 : nil
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            guard var n = decimal(buf, pos + 1, lineEnd) else { return nil }
            if buf[pos] == UInt8(ascii: "%") || buf[pos] == UInt8(ascii: "|") { n *= 2 }
            var p = after
            if n > 0 {
                for _ in 0..<n {
                    guard let next = skipReply(buf, from: p) else { return nil }
                    p = next
                }
            }
            return p
        default:
            return after
        }
    }

    /// The bytes of the bulk string at `pos` (or of the first element, when `pos` starts an array).
    static func firstBulk(_ buf: UnsafeBufferPointer<UInt8>, at pos: Int) -> Range<Int>? {
        var p = pos
        if buf[p] == UInt8(ascii: "*") {
            while p + 1 < buf.count && !(buf[p] == 13 && buf[p + 1] == 10) { p += 1 }
            p += 2
            guard p < buf.count else { return nil }
        }
        guard buf[p] == UInt8(ascii: "$") else { return nil }
        var lineEnd = p
        while lineEnd + 1 < buf.count && !(buf[lineEnd] == 13 && buf[lineEnd + 1] == 10) { lineEnd += 1 }
        guard let n = decimal(buf, p + 1, lineEnd), n >= 0, lineEnd + 2 + n <= buf.count else { return nil }
        return (lineEnd + 2)..<(lineEnd + 2 + n)
    }

    @inline(__always)
    static func decimal(_ buf: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> Int? {
        var i = from
        var negative = false
        if i < to && buf[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard i < to else { return nil }
        var v = 0
        while i < to {
            let d = Int(buf[i]) - 48
            guard d >= 0 && d <= 9 else { return nil }
            v = v * 10 + d
            i += 1
        }
        return negative ? -v : v
    }
}

/// A parsed reply, for the soak's own (slow path) reads.
indirect enum Reply: CustomStringConvertible {
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk(String?)
    case array([Reply])

    var isError: Bool { if case .error = self { return true } else { return false } }
    var string: String? {
        switch self {
        case .simple(let s), .error(let s): s
        case .bulk(let s): s
        case .integer(let i): String(i)
        case .array: nil
        }
    }
    /// A flat field/value array as a dictionary.
    var fields: [String: String] {
        guard case .array(let a) = self else { return [:] }
        var out: [String: String] = [:]
        var i = 0
        while i + 1 < a.count {
            if let k = a[i].string { out[k] = a[i + 1].string }
            i += 2
        }
        return out
    }
    var description: String {
        switch self {
        case .simple(let s): "+\(s)"
        case .error(let s): "-\(s)"
        case .integer(let i): ":\(i)"
        case .bulk(let s): s.map { "\"\($0)\"" } ?? "(nil)"
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

struct SoakError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Connects to 127.0.0.1:port (blocking), TCP_NODELAY; nil if refused.
func connectLoopback(port: Int, receiveTimeoutSeconds: Int = 0) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { close(fd); return nil }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    if receiveTimeoutSeconds > 0 {
        var tv = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    return fd
}

/// Sends all of `bytes` on a blocking socket.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
        if n > 0 { off += n; continue }
        if n < 0 && errno == EINTR { continue }
        return false
    }
    return true
}

/// A blocking RESP client (one thread at a time) for the soak's own reads.
final class AdminClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var position = 0

    init(port: Int, timeoutSeconds: Int = 30) throws {
        guard let fd = connectLoopback(port: port, receiveTimeoutSeconds: timeoutSeconds) else {
            throw SoakError("cannot connect to 127.0.0.1:\(port): errno \(errno)")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    func command(_ args: String...) throws -> Reply { try pipeline([args])[0] }

    /// Sends the commands in rounds of `round` and reads every reply.
    func pipeline(_ commands: [[String]], round: Int = 512) throws -> [Reply] {
        var replies: [Reply] = []
        replies.reserveCapacity(commands.count)
        var start = 0
        while start < commands.count {
            let batch = commands[start..<min(commands.count, start + round)]
            var out: [UInt8] = []
            for args in batch {
                RESP.appendArrayHeader(&out, args.count)
                for a in args { RESP.appendBulk(&out, a) }
            }
            guard sendAll(fd, out) else { throw SoakError("send failed: errno \(errno)") }
            for _ in batch { replies.append(try readValue()) }
            start += batch.count
        }
        return replies
    }

    private func fill() throws {
        if position > 0 && position == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            position = 0
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { throw SoakError("connection closed by the server") }
            guard n > 0 else { throw SoakError("recv failed: errno \(errno)") }
            buffer += chunk[0..<n]
            return
        }
    }

    private func line() throws -> String {
        while true {
            if let end = buffer[position...].firstIndex(of: 10), end > position, buffer[end - 1] == 13 {
                let text = String(decoding: buffer[position..<(end - 1)], as: UTF8.self)
                position = end + 1
                return text
            }
            try fill()
        }
    }

    private func readValue() throws -> Reply {
        let l = try line()
        guard let kind = l.first else { throw SoakError("empty reply line") }
        let rest = String(l.dropFirst())
        switch kind {
        case "+": return .simple(rest)
        case "-": return .error(rest)
        case ":": return .integer(Int(rest) ?? 0)
        case "$", "=":
            guard let n = Int(rest) else { throw SoakError("bad bulk length \(rest)") }
            if n < 0 { return .bulk(nil) }
            while buffer.count - position < n + 2 { try fill() }
            let text = String(decoding: buffer[position..<(position + n)], as: UTF8.self)
            position += n + 2
            return .bulk(text)
        case "_": return .bulk(nil)
        case "*", "%", "~":
            guard let n = Int(rest) else { throw SoakError("bad array length \(rest)") }
            if n < 0 { return .array([]) }
            var items: [Reply] = []
            for _ in 0..<(kind == "%" ? 2 * n : n) { items.append(try readValue()) }
            return .array(items)
        default: return .simple(rest)
        }
    }
}
