import Foundation
import CLinux
import Glibc

/// A replica's connection to its primary: one blocking socket on the
/// follower's own thread (never an event loop), RESP2 requests out, one reply
/// at a time back. Every read and write has a timeout, and replies are
/// bounded, so a stalled or hostile primary cannot hang or flood the replica.
final class PrimaryLink {
    struct Failure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    enum Reply {
        case simple(String)
        case error(String)
        case integer(Int)
        case bulk([UInt8]?)
        case array([Reply])
    }

    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    /// The largest bulk reply taken (a REPLSYNC reply is at most a few MiB).
    static let maxBulk = 64 << 20

    init(host: String, port: Int, timeoutSeconds: Int) throws(Failure) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else { throw Failure(message: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(result) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        var connected: Int32 = -1
        while let a = ai {
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s >= 0 {
                var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
                setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var one: Int32 = 1
                setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                if connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { connected = s; break }
                lastError = String(cString: strerror(errno))
                close(s)
            }
            ai = a.pointee.ai_next
        }
        guard connected >= 0 else { throw Failure(message: "cannot connect to \(host):\(port): \(lastError)") }
        fd = connected
    }

    deinit { close(fd) }

    /// Sends one command and reads its reply.
    func call(_ args: [String]) throws(Failure) -> Reply {
        var out = Array("*\(args.count)\r\n".utf8)
        for a in args {
            out += Array("$\(a.utf8.count)\r\n".utf8)
            out += Array(a.utf8)
            out += [13, 10]
        }
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                throw Failure(message: "send to the primary failed: \(n == 0 ? "closed" : String(cString: strerror(errno)))")
            }
            sent += n
        }
        return try reply(depth: 0)
    }

    private func fill() throws(Failure) {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { buffer += chunk[0..<n]; return }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw Failure(message: "the primary did not answer in time") }
            throw Failure(message: n == 0 ? "the primary closed the connection" : "read from the primary failed: \(String(cString: strerror(errno)))")
        }
    }

    private func line() throws(Failure) -> String {
        while true {
            if let i = buffer[start...].firstIndex(of: 10), i > start, buffer[i - 1] == 13 {
                let s = String(decoding: buffer[start..<(i - 1)], as: UTF8.self)
                start = i + 1
                return s
            }
            guard buffer.count - start < 1 << 16 else { throw Failure(message: "a reply line longer than 64 KiB") }
            try fill()
        }
    }

    private func reply(depth: Int) throws(Failure) -> Reply {
        guard depth < 4 else { throw Failure(message: "reply nested too deep") }
        let l = try line()
        guard let kind = l.first else { throw Failure(message: "an empty reply line") }
        let rest = String(l.dropFirst())
        switch kind {
        case "+": return .simple(rest)
        case "-": return .error(rest)
        case ":":
            guard let n = Int(rest) else { throw Failure(message: "bad integer reply \(rest.prefix(32))") }
            return .integer(n)
        case "$":
            guard let n = Int(rest), n >= -1, n <= Self.maxBulk else { throw Failure(message: "bad bulk length \(rest.prefix(32))") }
            if n == -1 { return .bulk(nil) }
            while buffer.count - start < n + 2 { try fill() }
            let bytes = Array(buffer[start..<(start + n)])
            start += n + 2
            return .bulk(bytes)
        case "*":
            guard let n = Int(rest), n >= -1, n <= 1024 else { throw Failure(message: "bad array length \(rest.prefix(32))") }
            var items: [Reply] = []
            for _ in 0..<max(0, n) { items.append(try reply(depth: depth + 1)) }
            return .array(items)
        default:
            throw Failure(message: "unexpected reply type \(kind)")
        }
    }
}
