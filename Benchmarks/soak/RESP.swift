import EngineServer
// RESP over raw sockets: command encoding into a byte buffer, a scanner that
// finds where one reply ends (and its first string), and a small blocking
// client for the soak's own reads (INVENTORY, INFO, HOLD.GET).

import Foundation
import TestSupport
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

    /// Index just after one complete reply starting at `pos`: the load generator's own parser's.
    static func skipReply(_ buf: UnsafeBufferPointer<UInt8>, from pos: Int) -> Int? { NetBench.skipReply(buf, from: pos) }

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

/// The soak's own reads (INVENTORY, INFO, HOLD.GET) use the blocking client the
/// process tests use; only the load generator speaks RESP by hand.
typealias AdminClient = RESPClient
