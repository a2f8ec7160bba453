// Thin wrappers over the socket and epoll system calls used by the event loops.

import CLinux
import Glibc

enum SysFlags {
    static let epollIn: UInt32 = 0x001
    static let epollOut: UInt32 = 0x004
    static let epollErr: UInt32 = 0x008
    static let epollHup: UInt32 = 0x010
    static let cloexec: Int32 = 0o2000000       // O_CLOEXEC == SOCK_CLOEXEC == EPOLL_CLOEXEC == EFD_CLOEXEC
    static let nonblock: Int32 = 0o4000         // O_NONBLOCK == SOCK_NONBLOCK == EFD_NONBLOCK
    static let msgNoSignal: Int32 = 0x4000      // MSG_NOSIGNAL: EPIPE instead of SIGPIPE
}

/// Monotonic clock in nanoseconds.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

@discardableResult
func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
    var v = value
    return setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
}

func epollControl(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, token: UInt64) -> Int32 {
    var ev = epoll_event()
    ev.events = events
    ev.data.u64 = token
    return epoll_ctl(epfd, op, fd, &ev)
}

/// Text form and loopback-ness of a peer address.
func describePeer(_ storage: sockaddr_storage) -> (address: String, isLoopback: Bool) {
    var storage = storage
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) { raw in
            raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var addr = sin.pointee.sin_addr
                inet_ntop(AF_INET, &addr, &text, socklen_t(text.count))
                let port = UInt16(bigEndian: sin.pointee.sin_port)
                let firstOctet = UInt32(bigEndian: addr.s_addr) >> 24
                return ("\(cStringText(text)):\(port)", firstOctet == 127)
            }
        }
    case AF_INET6:
        return withUnsafePointer(to: &storage) { raw in
            raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var addr = sin6.pointee.sin6_addr
                inet_ntop(AF_INET6, &addr, &text, socklen_t(text.count))
                let port = UInt16(bigEndian: sin6.pointee.sin6_port)
                let bytes = withUnsafeBytes(of: &addr) { Array($0) }
                let isV6Loopback = bytes[0..<15].allSatisfy { $0 == 0 } && bytes[15] == 1
                let isMapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
                let isMappedLoopback = isMapped && bytes[12] == 127
                return ("[\(cStringText(text))]:\(port)", isV6Loopback || isMappedLoopback)
            }
        }
    default:
        return ("unknown", false)
    }
}

/// Creates a non-blocking listening socket bound to host:port.
/// Returns the fd and the bound port.
func makeListener(host: String, port: Int, backlog: Int32) throws(NetError) -> (fd: Int32, port: Int) {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
    var result: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &result)
    guard rc == 0, let first = result else {
        throw NetError.cannotResolve(host: host, detail: String(cString: gai_strerror(rc)))
    }
    defer { freeaddrinfo(first) }
    var lastError: NetError = .cannotResolve(host: host, detail: "no usable address")
    var current: UnsafeMutablePointer<addrinfo>? = first
    while let ai = current {
        current = ai.pointee.ai_next
        let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | SysFlags.nonblock | SysFlags.cloexec, 0)
        if fd < 0 { lastError = .systemCall("socket", errno: errno); continue }
        setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        if bind(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 {
            let e = errno
            close(fd)
            lastError = e == EADDRINUSE ? .addressInUse(host: host, port: port) : .systemCall("bind \(host):\(port)", errno: e)
            continue
        }
        if listen(fd, backlog) != 0 {
            let e = errno
            close(fd)
            lastError = e == EADDRINUSE ? .addressInUse(host: host, port: port) : .systemCall("listen", errno: e)
            continue
        }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let boundPort: Int = withUnsafeMutablePointer(to: &storage) { raw in
            _ = raw.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            if Int32(raw.pointee.ss_family) == AF_INET6 {
                return raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        return (fd, boundPort)
    }
    throw lastError
}

private func cStringText(_ chars: [CChar]) -> String {
    let bytes = chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
