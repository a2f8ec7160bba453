// A small RESP load generator (like redis-benchmark) usable against any RESP
// server: N connections on one epoll thread, each sending `pipeline` copies of
// a command and waiting for all replies before sending again.

import CLinux
import Glibc

public struct NetBenchResult: Sendable {
    public var requestsPerSecond: Double
    public var p50Micros: Double
    public var p99Micros: Double
    public var p999Micros: Double
    /// Replies that were errors (`-...`).
    public var errors: Int
    public var completed: Int
}

public enum NetBench {
    /// Runs the load for `seconds` and reports throughput and the latency of each
    /// round trip (one pipeline batch: send to last reply), in microseconds.
    /// Returns zeros if no connection could be made.
    public static func runPingLoad(
        port: Int, connections: Int, pipeline: Int, seconds: Double,
        command: [String] = ["PING"], host: String = "127.0.0.1"
    ) -> (requestsPerSecond: Double, p50Micros: Double, p99Micros: Double, p999Micros: Double) {
        let r = runLoad(port: port, connections: connections, pipeline: pipeline, seconds: seconds, commands: [command], host: host)
        return (r.requestsPerSecond, r.p50Micros, r.p99Micros, r.p999Micros)
    }

    /// Like `runPingLoad`, with several command variants: each round trip of a
    /// connection sends the next variant (connection `i` starts at variant `i`),
    /// so e.g. 1,000 deals can be spread over 50 connections.
    public static func runLoad(
        port: Int, connections: Int, pipeline: Int, seconds: Double,
        commands: [[String]], host: String = "127.0.0.1"
    ) -> NetBenchResult {
        let pipeline = max(1, pipeline)
        let requests: [[UInt8]] = commands.map { command in
            var one: [UInt8] = Array("*\(command.count)\r\n".utf8)
            for arg in command {
                one.append(contentsOf: Array("$\(arg.utf8.count)\r\n".utf8))
                one.append(contentsOf: Array(arg.utf8))
                one.append(contentsOf: [13, 10])
            }
            var request: [UInt8] = []
            for _ in 0..<pipeline { request.append(contentsOf: one) }
            return request
        }
        var errors = 0

        struct Client {
            var fd: Int32
            var input: [UInt8] = []
            var awaiting = 0
            var sentAt: UInt64 = 0
            var variant = 0
        }
        let epfd = epoll_create1(SysFlags.cloexec)
        guard epfd >= 0 else { return NetBenchResult(requestsPerSecond: 0, p50Micros: 0, p99Micros: 0, p999Micros: 0, errors: 0, completed: 0) }
        defer { close(epfd) }
        var clients: [Client] = []
        defer { for c in clients { close(c.fd) } }
        for i in 0..<max(1, connections) {
            guard let fd = connectBlocking(host: host, port: port) else { continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | SysFlags.nonblock)
            setIntOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            _ = epollControl(epfd, EPOLL_CTL_ADD, fd, events: SysFlags.epollIn, token: UInt64(i))
            clients.append(Client(fd: fd, variant: i % requests.count))
        }
        guard !clients.isEmpty else { return NetBenchResult(requestsPerSecond: 0, p50Micros: 0, p99Micros: 0, p999Micros: 0, errors: 0, completed: 0) }
        var latencies: [UInt32] = []
        latencies.reserveCapacity(1 << 20)
        var completed = 0

        func send(_ index: Int) -> Bool {
            clients[index].sentAt = monotonicNanos()
            clients[index].awaiting = pipeline
            let request = requests[clients[index].variant]
            clients[index].variant = (clients[index].variant + 1) % requests.count
            var off = 0
            while off < request.count {
                let n = request.withUnsafeBytes { Glibc.send(clients[index].fd, $0.baseAddress! + off, $0.count - off, SysFlags.msgNoSignal) }
                if n > 0 { off += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) {
                    var p = pollfd(fd: clients[index].fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 100)
                    continue
                }
                return false
            }
            return true
        }

        let start = monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        for i in clients.indices { _ = send(i) }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { scratch.deallocate() }
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var live = clients.count
        var stopping = false
        while live > 0 {
            let nowNanos = monotonicNanos()
            if nowNanos >= end { stopping = true }
            if stopping && !clients.contains(where: { $0.awaiting > 0 && $0.fd >= 0 }) { break }
            let n = epoll_wait(epfd, &events, 256, 100)
            if n < 0 { if errno == EINTR { continue }; break }
            if stopping && monotonicNanos() > end + 2_000_000_000 { break }
            for e in 0..<Int(n) {
                let i = Int(events[e].data.u64)
                let fd = clients[i].fd
                let r = read(fd, scratch.baseAddress, scratch.count)
                if r <= 0 {
                    if r < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                    _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
                    clients[i].awaiting = 0
                    live -= 1
                    continue
                }
                clients[i].input.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<r]))
                var pos = 0
                let got: Int = clients[i].input.withUnsafeBufferPointer { buf in
                    var count = 0
                    while count < clients[i].awaiting, let next = skipReply(buf, from: pos) {
                        if buf[pos] == UInt8(ascii: "-") { errors += 1 }
                        pos = next
                        count += 1
                    }
                    return count
                }
                if pos > 0 { clients[i].input.removeSubrange(0..<pos) }
                clients[i].awaiting -= got
                completed += got
                if clients[i].awaiting == 0 {
                    let t = monotonicNanos()
                    latencies.append(UInt32(min((t - clients[i].sentAt) / 1000, UInt64(UInt32.max))))
                    if t < end { _ = send(i) }
                }
            }
        }
        let elapsed = Double(monotonicNanos() - start) / 1e9
        latencies.sort()
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            let idx = min(latencies.count - 1, Int(Double(latencies.count) * p))
            return Double(latencies[idx])
        }
        return NetBenchResult(requestsPerSecond: Double(completed) / max(elapsed, 1e-9), p50Micros: percentile(0.50),
                              p99Micros: percentile(0.99), p999Micros: percentile(0.999), errors: errors, completed: completed)
    }

    /// Index just after one complete RESP reply starting at `pos`, or nil if the
    /// buffer does not hold it yet (also the soak benchmark's).
    public static func skipReply(_ buf: UnsafeBufferPointer<UInt8>, from pos: Int) -> Int? {
        guard pos < buf.count else { return nil }
        var lineEnd = pos
        while lineEnd + 1 < buf.count && !(buf[lineEnd] == 13 && buf[lineEnd + 1] == 10) { lineEnd += 1 }
        guard lineEnd + 1 < buf.count else { return nil }
        let after = lineEnd + 2
        switch buf[pos] {
        case UInt8(ascii: "$"), UInt8(ascii: "="), UInt8(ascii: "!"):
            guard let n = parseDecimalInt(UnsafeBufferPointer(rebasing: buf[(pos + 1)..<lineEnd])) else { return nil }
            if n < 0 { return after }
            return after + n + 2 <= buf.count ? after + n + 2 : nil
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            guard var n = parseDecimalInt(UnsafeBufferPointer(rebasing: buf[(pos + 1)..<lineEnd])) else { return nil }
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

    static func connectBlocking(host: String, port: Int) -> Int32? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(first) }
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let ai = current {
            current = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | SysFlags.cloexec, 0)
            if fd < 0 { continue }
            if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
            close(fd)
        }
        return nil
    }
}
