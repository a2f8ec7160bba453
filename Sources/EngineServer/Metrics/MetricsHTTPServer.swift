// The metrics endpoint's HTTP listener: one thread of its own with a
// listening socket and poll(2); never on the RESP event loops or the
// engine's threads. See docs/metrics.md.

import WAL
import CLinux
import Dispatch
import Foundation
import Glibc
import Synchronization

public struct MetricsHTTPConfig: Sendable {
    public var host: String
    /// 0 picks a free port (see `boundPort`).
    public var port: Int
    /// Largest request head (request line and headers); larger is answered 431.
    public var maxRequestBytes = 8 << 10
    /// A request head must arrive within this many seconds of the accept, else 408.
    public var requestTimeoutSeconds = 5.0
    /// The response must be taken by the client within this many seconds.
    public var writeTimeoutSeconds = 10.0
    /// A scrape that cannot collect within this many seconds is answered 503.
    public var renderTimeoutSeconds = 10.0
    /// Connections served at once; more are closed at accept.
    public var maxConnections = 16
    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }
}

/// A tiny HTTP/1.1 server for `GET /metrics` (HTTPExchange.swift decides the
/// answers). One thread polls the listening socket and up to
/// `maxConnections` connections, each with a deadline: a request head is read
/// (at most `maxRequestBytes`), answered, the write side shut down, what the
/// client still sends read and dropped for a moment (so a request with a body
/// gets its answer instead of a reset), and the connection closed. Nothing a
/// client sends can make it allocate more than `maxRequestBytes` per
/// connection or hold a connection past its deadlines.
///
/// The metrics text is collected by `render` (async: it visits the deal
/// actors), run as a task the listener thread waits for, at most
/// `renderTimeoutSeconds`. One scrape is collected at a time.
public final class MetricsHTTPServer: Sendable {
    public let config: MetricsHTTPConfig
    /// The port bound (the chosen one when `config.port` is 0).
    public let boundPort: Int
    private let listenFD: Int32
    private let wakeFD: Int32
    private let render: @Sendable () async -> String
    private let stopping = Atomic<Bool>(false)
    private let exited = DispatchSemaphore(value: 0)

    /// Binds and starts the listener thread. Throws `NetError.addressInUse`
    /// when the port is taken. Call `stop()` to close it.
    public init(config: MetricsHTTPConfig, render: @escaping @Sendable () async -> String) throws {
        guard config.maxRequestBytes >= 256, config.maxConnections >= 1 else {
            throw NetError.invalidConfig("metrics listener: maxRequestBytes >= 256 and maxConnections >= 1")
        }
        let listener = try makeListener(host: config.host, port: config.port, backlog: 64)
        let wake = eventfd(0, SysFlags.cloexec | SysFlags.nonblock)
        guard wake >= 0 else {
            let e = errno
            close(listener.fd)
            throw NetError.systemCall("eventfd", errno: e)
        }
        self.config = config
        self.boundPort = listener.port
        self.listenFD = listener.fd
        self.wakeFD = wake
        self.render = render
        let thread = Thread { [self] in run() }
        thread.name = "metrics-http"
        thread.start()
    }

    /// `http://host:port/metrics`, for the log.
    public var url: String {
        let host = config.host.contains(":") ? "[\(config.host)]" : config.host
        return "http://\(host):\(boundPort)/metrics"
    }

    /// Closes the listener and every connection; returns once the thread has
    /// exited (after a scrape being collected, if any). Idempotent.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
        exited.wait()
    }

    // MARK: - The listener thread

    private final class Connection {
        enum Phase { case reading, writing, draining }
        let fd: Int32
        var phase = Phase.reading
        var input: [UInt8] = []
        /// How far `input` was searched for the end of the head.
        var scanned = 0
        var output: [UInt8] = []
        var sent = 0
        var drained = 0
        var deadline: UInt64
        var closed = false
        init(fd: Int32, deadline: UInt64) {
            self.fd = fd
            self.deadline = deadline
        }
    }

    /// Bytes read and dropped after answering (a request body, say) before closing anyway.
    private static let maxDrainBytes = 64 << 10
    private static let drainNanos: UInt64 = 500_000_000

    private func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }

    private func run() {
        var connections: [Connection] = []
        var fds: [pollfd] = []
        var scratch = [UInt8](repeating: 0, count: config.maxRequestBytes)
        var acceptPausedUntil: UInt64 = 0
        while !stopping.load(ordering: .acquiring) {
            let now = monotonicNanos()
            let listening = now >= acceptPausedUntil
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: listening ? listenFD : -1, events: Int16(POLLIN), revents: 0))
            var nearest = listening ? UInt64.max : acceptPausedUntil
            for c in connections {
                fds.append(pollfd(fd: c.fd, events: Int16(c.phase == .writing ? POLLOUT : POLLIN), revents: 0))
                nearest = min(nearest, c.deadline)
            }
            let timeout: Int32 = nearest == .max ? 1000 : Int32(min(1000, (nearest > now ? nearest - now : 0) / 1_000_000 + 1))
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 && errno != EINTR {
                // Should not happen (EFAULT, ENOMEM); do not spin.
                usleep(10_000)
                continue
            }
            if stopping.load(ordering: .acquiring) { break }
            if fds[0].revents != 0 {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
            }
            // Connections first: `fds[k + 2]` is `connections[k]` until accept appends more.
            let after = monotonicNanos()
            for (k, c) in connections.enumerated() {
                if fds[k + 2].revents != 0 { step(c, scratch: &scratch) }
                if !c.closed && after >= c.deadline { expire(c, scratch: &scratch) }
            }
            connections.removeAll { $0.closed }
            if listening && fds[1].revents != 0 {
                acceptPausedUntil = acceptAll(&connections)
            }
        }
        for c in connections where !c.closed { close(c.fd) }
        close(listenFD)
        close(wakeFD)
        exited.signal()
    }

    /// Accepts what is waiting; returns when accepting may resume (0: now).
    private func acceptAll(_ connections: inout [Connection]) -> UInt64 {
        for _ in 0..<64 {
            let fd = accept4(listenFD, nil, nil, SysFlags.nonblock | SysFlags.cloexec)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EAGAIN, EWOULDBLOCK: return 0
                // Out of descriptors or memory: the listener stays readable, so pause instead of spinning.
                default: return monotonicNanos() + 100_000_000
                }
            }
            guard connections.count < config.maxConnections else {
                close(fd)
                continue
            }
            connections.append(Connection(fd: fd, deadline: monotonicNanos() + nanos(config.requestTimeoutSeconds)))
        }
        return 0
    }

    /// Makes progress on a connection poll reported ready.
    private func step(_ c: Connection, scratch: inout [UInt8]) {
        switch c.phase {
        case .reading: readRequest(c, scratch: &scratch)
        case .writing: writeResponse(c)
        case .draining: drain(c, scratch: &scratch)
        }
    }

    /// A deadline passed: a request not yet received is answered 408; a
    /// response not taken, or a drain not finished, is closed.
    private func expire(_ c: Connection, scratch: inout [UInt8]) {
        if c.phase == .reading {
            respond(c, .timeout)
        } else {
            finish(c)
        }
    }

    private func readRequest(_ c: Connection, scratch: inout [UInt8]) {
        while c.phase == .reading {
            let room = config.maxRequestBytes - c.input.count
            if room == 0 {
                respond(c, .tooLarge)
                return
            }
            let n = scratch.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, room, 0) }
            if n > 0 {
                c.input.append(contentsOf: scratch[0..<n])
                if let end = HTTPExchange.headEnd(c.input, from: c.scanned) {
                    answer(c, head: c.input[0..<end])
                    return
                }
                c.scanned = c.input.count
                continue
            }
            if n == 0 { finish(c); return }             // closed before a whole request head
            if errno == EINTR { continue }
            if errno != EAGAIN && errno != EWOULDBLOCK { finish(c) }
            return
        }
    }

    private func answer(_ c: Connection, head: ArraySlice<UInt8>) {
        switch HTTPExchange.route(head) {
        case .respond(let response):
            respond(c, response)
        case .metrics(let headOnly):
            var response = collect().map(HTTPExchange.Response.metrics) ?? .unavailable
            response.headOnly = headOnly
            respond(c, response)
        }
    }

    /// Runs `render` as a task and waits for it (this thread is not one of the
    /// cooperative pool's, so blocking it starves nothing); nil after the timeout.
    private func collect() -> String? {
        let result = CollectedText()
        let done = DispatchSemaphore(value: 0)
        let render = self.render
        Task {
            let text = await render()
            result.set(text)
            done.signal()
        }
        guard done.wait(timeout: .now() + config.renderTimeoutSeconds) == .success else { return nil }
        return result.get()
    }

    private func respond(_ c: Connection, _ response: HTTPExchange.Response) {
        c.input = []
        c.output = response.encoded
        c.sent = 0
        c.phase = .writing
        c.deadline = monotonicNanos() + nanos(config.writeTimeoutSeconds)
        writeResponse(c)
    }

    private func writeResponse(_ c: Connection) {
        while c.sent < c.output.count {
            let n = c.output.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.sent, $0.count - c.sent, SysFlags.msgNoSignal) }
            if n > 0 { c.sent += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            finish(c)                                      // the client went away
            return
        }
        // Answered: no more from us; read and drop what the client still sends, briefly.
        c.output = []
        shutdown(c.fd, Int32(SHUT_WR))
        c.phase = .draining
        c.deadline = min(c.deadline, monotonicNanos() + Self.drainNanos)
    }

    private func drain(_ c: Connection, scratch: inout [UInt8]) {
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                c.drained += n
                if c.drained > Self.maxDrainBytes { finish(c); return }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            finish(c)                                      // EOF or error: done
            return
        }
    }

    private func finish(_ c: Connection) {
        guard !c.closed else { return }
        c.closed = true
        close(c.fd)
    }
}

/// The text a collecting task hands to the listener thread.
private final class CollectedText: Sendable {
    private let text = Locked<String?>(nil)
    func set(_ s: String) { text.withLock { $0 = s } }
    func get() -> String? { text.withLock { $0 } }
}
