// One event-loop thread: an epoll fd, an eventfd for cross-thread wake-ups, and
// the connections it owns. Level-triggered epoll; never blocks except in
// epoll_wait.

import WAL
import CLinux
import Dispatch
import Glibc
import Synchronization

/// Bytes read per read(2) call into the loop's scratch buffer.
let readChunkBytes = 64 * 1024
/// Most bytes read from one connection per readiness event, so one busy client
/// cannot starve the others on the same loop.
let maxReadBytesPerWakeup = 256 * 1024
/// Most connections accepted per listener readiness event.
let maxAcceptsPerWakeup = 64
/// How long accepting pauses after EMFILE/ENFILE (no busy loop on a readable listener).
let acceptPauseNanos: UInt64 = 100_000_000
/// epoll_wait batch size.
let maxEventsPerWait = 256
/// An output buffer with more spare capacity than this is released once drained.
let maxRetainedBufferCapacity = 256 * 1024

private let wakeToken = UInt64.max
private let listenToken = UInt64.max - 1

/// Counters shared by all loops and the acceptor.
final class ServerShared: Sendable {
    let config: ServerConfig
    let handler: any RequestHandler
    let connected = Atomic<Int>(0)
    let totalConnections = Atomic<Int>(0)
    let rejected = Atomic<Int>(0)
    let nextSessionID = Atomic<UInt64>(0)

    init(config: ServerConfig, handler: any RequestHandler) {
        self.config = config
        self.handler = handler
    }
}

/// A batch's replies, delivered to the loop that owns the connection.
struct Completion: Sendable {
    var fd: Int32
    var connectionID: UInt64
    var bytes: [UInt8]
    var close: Bool
}

enum LoopMessage: Sendable {
    case completion(Completion)
    /// Bytes the handler sends outside any batch (pub/sub messages).
    case push(fd: Int32, connectionID: UInt64, bytes: [UInt8])
    /// Close the connection once its batch in flight, if any, is answered (CLIENT KILL).
    case kill(fd: Int32, connectionID: UInt64)
    case adopt(fd: Int32, id: UInt64, remote: String, isLoopback: Bool)
    case stopAccepting(DispatchSemaphore)
    case shutdown(deadline: UInt64)
}

/// Loop-confined connection state.
final class Connection {
    let fd: Int32
    let session: Session
    var parser: RESPParser
    var input: [UInt8] = []
    var inputStart = 0
    var output: [UInt8] = []
    var outputHead = 0
    var outstanding = false
    var inDispatch = false
    var closeAfterWrite = false
    var peerEOF = false
    var closed = false
    var pendingProtocolError: RESPProtocolError?
    /// An inline line the parser refused, answered once the replies to the
    /// commands before it are out; the connection then goes on.
    var pendingRefusedLine: RESPProtocolError?
    var registeredEvents: UInt32 = 0
    var lastActive: UInt64

    init(fd: Int32, session: Session, limits: NetLimits, now: UInt64) {
        self.fd = fd
        self.session = session
        self.parser = RESPParser(limits: limits)
        self.lastActive = now
    }

    var pendingInput: Int { input.count - inputStart }
    var pendingOutput: Int { output.count - outputHead }
}

/// `@unchecked Sendable` is safe here because the class has two kinds of state:
/// (1) state shared across threads, which is only `let` constants, `Atomic`s and
/// the `Locked` inbox; (2) everything declared `var` below the
/// "loop-confined" mark, which is read and written only on this loop's thread:
/// inside `run()` and in functions it calls, or in the completion callback
/// after it checked `isOnLoopThread` (the other threads only use `enqueue`).
/// `assertOnLoopThread()` checks this in debug builds.
final class EventLoop: @unchecked Sendable {
    let index: Int
    let epfd: Int32
    let wakeFD: Int32
    let shared: ServerShared
    let limits: NetLimits
    private let inbox = Locked<[LoopMessage]>([])
    private let threadID = Atomic<UInt>(0)
    let exited = DispatchSemaphore(value: 0)

    let commands = Atomic<Int>(0)
    let protocolErrors = Atomic<Int>(0)
    let refusedInlineLines = Atomic<Int>(0)
    let outputDisconnects = Atomic<Int>(0)
    let idleDisconnects = Atomic<Int>(0)
    let bytesIn = Atomic<Int>(0)
    let bytesOut = Atomic<Int>(0)

    // MARK: loop-confined
    private var connections: [Connection?] = []
    private var liveConnections = 0
    private var spareInbox: [LoopMessage] = []
    private var localCompletions: [Completion] = []
    private var listenFD: Int32 = -1
    private var acceptPausedUntil: UInt64 = 0
    private var roundRobin = 0
    /// All loops, including this one; set before the thread starts (loop 0 only uses it).
    var peers: [EventLoop] = []
    private var shuttingDown = false
    private var shutdownDeadline: UInt64 = 0
    private var now: UInt64 = monotonicNanos()
    private var nextIdleScan: UInt64 = 0
    private var batch: [RESPCommand] = []

    init(index: Int, shared: ServerShared) throws(NetError) {
        self.index = index
        self.shared = shared
        self.limits = shared.config.limits
        let ep = epoll_create1(SysFlags.cloexec)
        guard ep >= 0 else { throw NetError.systemCall("epoll_create1", errno: errno) }
        let ev = eventfd(0, SysFlags.cloexec | SysFlags.nonblock)
        guard ev >= 0 else {
            let e = errno
            close(ep)
            throw NetError.systemCall("eventfd", errno: e)
        }
        epfd = ep
        wakeFD = ev
        guard epollControl(epfd, EPOLL_CTL_ADD, wakeFD, events: SysFlags.epollIn, token: wakeToken) == 0 else {
            let e = errno
            close(ep); close(ev)
            throw NetError.systemCall("epoll_ctl(eventfd)", errno: e)
        }
    }

    /// The fds are closed only when no completion callback can reach this loop
    /// any more, so a late `enqueue` never writes to a reused fd number.
    deinit {
        close(epfd)
        close(wakeFD)
    }

    /// Hands the listening socket to this loop (before its thread starts).
    func setListener(_ fd: Int32) throws(NetError) {
        listenFD = fd
        guard epollControl(epfd, EPOLL_CTL_ADD, fd, events: SysFlags.epollIn, token: listenToken) == 0 else {
            throw NetError.systemCall("epoll_ctl(listener)", errno: errno)
        }
    }

    var isOnLoopThread: Bool {
        pthread_equal(pthread_self(), threadID.load(ordering: .acquiring)) != 0
    }

    @inline(__always)
    private func assertOnLoopThread() {
        assert(isOnLoopThread, "loop-confined state touched off the loop thread")
    }

    /// Queues a message from any thread and wakes the loop if needed.
    func enqueue(_ message: LoopMessage) {
        let wasEmpty = inbox.withLock { queue in
            let empty = queue.isEmpty
            queue.append(message)
            return empty
        }
        if wasEmpty {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    // MARK: - Run loop

    func run() {
        threadID.store(pthread_self(), ordering: .releasing)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: readChunkBytes, alignment: 16)
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: maxEventsPerWait)
        defer {
            scratch.deallocate()
            events.deallocate()
            exited.signal()
        }
        while true {
            let n = epoll_wait(epfd, events, Int32(maxEventsPerWait), waitTimeoutMillis())
            now = monotonicNanos()
            if n < 0 {
                if errno == EINTR { continue }
                shared.config.logger("net: epoll_wait failed on loop \(index): errno \(errno); loop stops")
                break
            }
            for i in 0..<Int(n) {
                let event = events[i]
                let token = event.data.u64
                if token == wakeToken {
                    drainInbox()
                } else if token == listenToken {
                    acceptConnections()
                } else {
                    handleConnectionEvent(fd: Int32(truncatingIfNeeded: token), events: event.events, scratch: scratch)
                }
            }
            runLocalCompletions()
            // Batches held back for the round start now, together (after the
            // local completions, whose connections may have dispatched more).
            shared.handler.roundEnded(loop: index)
            periodicChecks()
            if shuttingDown && (liveConnections == 0 || now >= shutdownDeadline) {
                for case let conn? in connections { closeConnection(conn) }
                closeListener()
                break
            }
        }
    }

    private func waitTimeoutMillis() -> Int32 {
        var deadline = UInt64.max
        if !localCompletions.isEmpty { return 0 }
        if acceptPausedUntil != 0 { deadline = min(deadline, acceptPausedUntil) }
        if limits.idleTimeoutSeconds > 0 { deadline = min(deadline, nextIdleScan) }
        if shuttingDown { deadline = min(deadline, shutdownDeadline) }
        if deadline == UInt64.max { return -1 }
        let current = monotonicNanos()
        if deadline <= current { return 0 }
        return Int32(min((deadline - current + 999_999) / 1_000_000, 60_000))
    }

    private func periodicChecks() {
        if acceptPausedUntil != 0 && now >= acceptPausedUntil {
            acceptPausedUntil = 0
            if listenFD >= 0 {
                _ = epollControl(epfd, EPOLL_CTL_ADD, listenFD, events: SysFlags.epollIn, token: listenToken)
            }
        }
        if limits.idleTimeoutSeconds > 0 && now >= nextIdleScan {
            let timeout = UInt64(limits.idleTimeoutSeconds * 1e9)
            nextIdleScan = now + min(max(timeout / 4, 10_000_000), 1_000_000_000)
            for case let conn? in connections where !conn.outstanding && now &- conn.lastActive >= timeout {
                idleDisconnects.add(1, ordering: .relaxed)
                closeConnection(conn)
            }
        }
    }

    private func drainInbox() {
        var counter: UInt64 = 0
        _ = read(wakeFD, &counter, 8)
        inbox.withLock { queue in swap(&queue, &spareInbox) }
        for message in spareInbox {
            switch message {
            case .completion(let completion):
                guard let conn = lookup(completion.fd, completion.connectionID) else { continue }
                apply(completion, to: conn)
                resume(conn)
            case .push(let fd, let id, let bytes):
                guard let conn = lookup(fd, id), !conn.closeAfterWrite else { continue }
                appendOutput(conn, bytes)
                flush(conn)
            case .kill(let fd, let id):
                guard let conn = lookup(fd, id) else { continue }
                if conn.outstanding {
                    conn.closeAfterWrite = true
                } else {
                    closeConnection(conn)
                }
            case .adopt(let fd, let id, let remote, let isLoopback):
                adopt(fd: fd, id: id, remote: remote, isLoopback: isLoopback)
            case .stopAccepting(let done):
                closeListener()
                done.signal()
            case .shutdown(let deadline):
                beginShutdown(deadline: deadline)
            }
        }
        spareInbox.removeAll(keepingCapacity: true)
    }

    // MARK: - Accept (the loop that owns the listener)

    private func closeListener() {
        guard listenFD >= 0 else { return }
        close(listenFD)   // also removes it from the epoll set
        listenFD = -1
        acceptPausedUntil = 0
    }

    private func acceptConnections() {
        for _ in 0..<maxAcceptsPerWakeup {
            guard listenFD >= 0 else { return }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) { raw in
                raw.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(listenFD, $0, &length, SysFlags.nonblock | SysFlags.cloexec)
                }
            }
            if fd < 0 {
                let e = errno
                switch e {
                case EINTR, ECONNABORTED, EPROTO:
                    continue
                case EAGAIN, EWOULDBLOCK:
                    return
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // The pending connection stays readable; stop watching the
                    // listener for a while instead of spinning on it.
                    shared.config.logger("net: accept failed (errno \(e): out of descriptors or memory); pausing accepts for \(acceptPauseNanos / 1_000_000) ms")
                    _ = epoll_ctl(epfd, EPOLL_CTL_DEL, listenFD, nil)
                    acceptPausedUntil = monotonicNanos() + acceptPauseNanos
                    return
                default:
                    shared.config.logger("net: accept failed: errno \(e)")
                    return
                }
            }
            shared.totalConnections.add(1, ordering: .relaxed)
            if shared.connected.load(ordering: .relaxed) >= limits.maxConnections {
                shared.rejected.add(1, ordering: .relaxed)
                shared.config.logger("net: connection rejected: maxConnections (\(limits.maxConnections)) reached")
                let message: StaticString = "-ERR max number of clients reached\r\n"
                _ = send(fd, message.utf8Start, message.utf8CodeUnitCount, SysFlags.msgNoSignal)
                close(fd)
                continue
            }
            shared.connected.add(1, ordering: .relaxed)
            setIntOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            let peer = describePeer(storage)
            let id = shared.nextSessionID.add(1, ordering: .relaxed).newValue
            let target = peers.isEmpty ? self : peers[roundRobin % peers.count]
            roundRobin &+= 1
            if target === self {
                adopt(fd: fd, id: id, remote: peer.address, isLoopback: peer.isLoopback)
            } else {
                target.enqueue(.adopt(fd: fd, id: id, remote: peer.address, isLoopback: peer.isLoopback))
            }
        }
    }

    private func adopt(fd: Int32, id: UInt64, remote: String, isLoopback: Bool) {
        let session = Session(id: id, remoteAddress: remote, isLoopback: isLoopback, loopIndex: index,
                              outbox: SessionOutbox(loop: self, fd: fd, id: id))
        let conn = Connection(fd: fd, session: session, limits: limits, now: now)
        if Int(fd) >= connections.count {
            connections.append(contentsOf: repeatElement(nil, count: Int(fd) + 1 - connections.count + 64))
        }
        precondition(connections[Int(fd)] == nil, "fd reused while still registered")
        connections[Int(fd)] = conn
        liveConnections += 1
        conn.registeredEvents = SysFlags.epollIn
        if epollControl(epfd, EPOLL_CTL_ADD, fd, events: SysFlags.epollIn, token: UInt64(fd)) != 0 {
            shared.config.logger("net: epoll_ctl(ADD) failed for \(remote): errno \(errno)")
            closeConnection(conn)
            return
        }
        shared.handler.sessionOpened(session)
        if shuttingDown { closeConnection(conn) }
    }

    // MARK: - Connections

    @inline(__always)
    private func lookup(_ fd: Int32, _ id: UInt64) -> Connection? {
        guard fd >= 0 && Int(fd) < connections.count, let conn = connections[Int(fd)],
              conn.session.id == id, !conn.closed else { return nil }
        return conn
    }

    private func closeConnection(_ conn: Connection) {
        guard !conn.closed else { return }
        conn.closed = true
        close(conn.fd)   // also removes it from the epoll set
        connections[Int(conn.fd)] = nil
        liveConnections -= 1
        shared.connected.subtract(1, ordering: .relaxed)
        shared.handler.sessionClosed(conn.session)
    }

    private func handleConnectionEvent(fd: Int32, events: UInt32, scratch: UnsafeMutableRawBufferPointer) {
        guard fd >= 0 && Int(fd) < connections.count, let conn = connections[Int(fd)] else { return }
        if events & SysFlags.epollIn != 0 {
            readInput(conn, scratch: scratch)
        } else if events & (SysFlags.epollErr | SysFlags.epollHup) != 0 {
            // Peer reset or both directions shut down: nothing more can be delivered.
            closeConnection(conn)
            return
        }
        if !conn.closed && events & SysFlags.epollOut != 0 {
            flush(conn)
        }
    }

    private func compactInput(_ conn: Connection) {
        let start = conn.inputStart
        guard start > 0 else { return }
        if start == conn.input.count {
            if conn.input.capacity > maxRetainedBufferCapacity {
                conn.input = []
            } else {
                conn.input.removeAll(keepingCapacity: true)
            }
        } else if start >= 16 * 1024 && start * 2 >= conn.input.count {
            conn.input.removeSubrange(0..<start)
        } else {
            return
        }
        conn.parser.rebase(droppingPrefix: start)
        conn.inputStart = 0
    }

    private func readInput(_ conn: Connection, scratch: UnsafeMutableRawBufferPointer) {
        var total = 0
        compactInput(conn)
        while true {
            if conn.pendingInput >= limits.maxInputBufferBytes { break }
            if conn.outstanding && conn.pendingInput >= limits.maxPendingInputBytes { break }
            let n = read(conn.fd, scratch.baseAddress, scratch.count)
            if n > 0 {
                conn.input.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
                total += n
                if n < scratch.count || total >= maxReadBytesPerWakeup { break }
            } else if n == 0 {
                conn.peerEOF = true
                break
            } else {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { break }
                closeConnection(conn)   // ECONNRESET and friends
                return
            }
        }
        if total > 0 {
            bytesIn.add(total, ordering: .relaxed)
            conn.lastActive = now
        }
        dispatch(conn)
    }

    /// Parses and hands batches to the handler until one is outstanding or the
    /// input holds no complete command, then writes what is ready.
    private func dispatch(_ conn: Connection) {
        let handler = shared.handler
        while !conn.closed && !conn.outstanding && !conn.closeAfterWrite && !shuttingDown {
            if let refused = conn.pendingRefusedLine {
                var encoder = RESPEncoder(protocolVersion: conn.session.protocolVersion)
                encoder.error(code: "ERR", message: "Protocol error: \(refused.message)")
                appendOutput(conn, encoder.bytes)
                conn.pendingRefusedLine = nil
                continue
            }
            if let error = conn.pendingProtocolError {
                var encoder = RESPEncoder(protocolVersion: conn.session.protocolVersion)
                encoder.error(code: "ERR", message: "Protocol error: \(error.message)")
                appendOutput(conn, encoder.bytes)
                conn.closeAfterWrite = true
                break
            }
            guard conn.pendingInput > 0 else { break }
            let result = conn.parser.parse(conn.input, from: conn.inputStart,
                                           maxCommands: limits.maxPendingCommands, into: &batch)
            conn.inputStart = result.consumed
            if let refused = result.refusedLine {
                // Counted, not logged: the connection stays, so a client could
                // otherwise fill the log one line at a time.
                refusedInlineLines.add(1, ordering: .relaxed)
                conn.pendingRefusedLine = refused
            }
            if let error = result.error {
                protocolErrors.add(1, ordering: .relaxed)
                shared.config.logger("net: protocol error from \(conn.session.remoteAddress) (client \(conn.session.id)): \(error.message); closing")
                conn.pendingProtocolError = error
            } else if batch.isEmpty && conn.pendingInput >= limits.maxInputBufferBytes {
                protocolErrors.add(1, ordering: .relaxed)
                shared.config.logger("net: client \(conn.session.id) \(conn.session.remoteAddress) exceeded the input buffer limit; closing")
                conn.pendingProtocolError = RESPProtocolError("query buffer limit exceeded")
            }
            if batch.isEmpty {
                if conn.pendingProtocolError != nil || conn.pendingRefusedLine != nil { continue }
                break
            }
            commands.add(batch.count, ordering: .relaxed)
            conn.outstanding = true
            conn.inDispatch = true
            handler.handle(batch, session: conn.session, complete: makeCompletion(conn))
            conn.inDispatch = false
            batch.removeAll(keepingCapacity: true)
            if conn.pendingOutput > limits.maxOutputBufferBytes {
                flush(conn)
            }
        }
        if !conn.closed { flush(conn) }
    }

    private func makeCompletion(_ conn: Connection) -> @Sendable ([UInt8], Bool) -> Void {
        let fd = conn.fd
        let id = conn.session.id
        return { [self] bytes, close in
            let completion = Completion(fd: fd, connectionID: id, bytes: bytes, close: close)
            if self.isOnLoopThread {
                self.completeOnLoop(completion)
            } else {
                self.enqueue(.completion(completion))
            }
        }
    }

    /// A completion called on this loop's thread: applied at once if its batch is
    /// the one being dispatched, otherwise after the current event is handled (no
    /// re-entrant dispatch).
    private func completeOnLoop(_ completion: Completion) {
        assertOnLoopThread()
        guard let conn = lookup(completion.fd, completion.connectionID) else { return }
        if conn.inDispatch {
            apply(completion, to: conn)
        } else {
            localCompletions.append(completion)
        }
    }

    private func runLocalCompletions() {
        while !localCompletions.isEmpty {
            let pending = localCompletions
            localCompletions.removeAll()
            for completion in pending {
                guard let conn = lookup(completion.fd, completion.connectionID) else { continue }
                apply(completion, to: conn)
                resume(conn)
            }
        }
    }

    private func apply(_ completion: Completion, to conn: Connection) {
        guard conn.outstanding else {
            shared.config.logger("net: complete called twice for client \(conn.session.id); extra replies dropped")
            return
        }
        conn.outstanding = false
        appendOutput(conn, completion.bytes)
        if completion.close { conn.closeAfterWrite = true }
    }

    private func resume(_ conn: Connection) {
        guard !conn.closed else { return }
        dispatch(conn)
    }

    @inline(__always)
    private func appendOutput(_ conn: Connection, _ bytes: [UInt8]) {
        if bytes.isEmpty { return }
        if conn.outputHead == conn.output.count {
            conn.output = bytes
            conn.outputHead = 0
        } else {
            conn.output.append(contentsOf: bytes)
        }
    }

    /// Writes pending output (one send for all replies), then closes the
    /// connection if it is finished, then updates the epoll interest.
    private func flush(_ conn: Connection) {
        var written = 0
        while conn.outputHead < conn.output.count {
            let n = conn.output.withUnsafeBytes { raw in
                send(conn.fd, raw.baseAddress! + conn.outputHead, raw.count - conn.outputHead, SysFlags.msgNoSignal)
            }
            if n > 0 {
                conn.outputHead += n
                written += n
            } else {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { break }
                if written > 0 { bytesOut.add(written, ordering: .relaxed) }
                closeConnection(conn)   // EPIPE, ECONNRESET
                return
            }
        }
        if written > 0 { bytesOut.add(written, ordering: .relaxed) }
        if conn.outputHead == conn.output.count && conn.outputHead > 0 {
            if conn.output.capacity > maxRetainedBufferCapacity {
                conn.output = []
            } else {
                conn.output.removeAll(keepingCapacity: true)
            }
            conn.outputHead = 0
        } else if conn.pendingOutput > limits.maxOutputBufferBytes {
            outputDisconnects.add(1, ordering: .relaxed)
            shared.config.logger("net: client \(conn.session.id) \(conn.session.remoteAddress) closed: output buffer \(conn.pendingOutput) bytes exceeds limit \(limits.maxOutputBufferBytes)")
            closeConnection(conn)
            return
        } else if conn.outputHead >= maxRetainedBufferCapacity && conn.outputHead * 2 >= conn.output.count {
            conn.output.removeSubrange(0..<conn.outputHead)
            conn.outputHead = 0
        }
        if conn.pendingOutput == 0 && !conn.outstanding && (conn.closeAfterWrite || conn.peerEOF || shuttingDown) {
            closeConnection(conn)
            return
        }
        updateInterest(conn)
    }

    private func updateInterest(_ conn: Connection) {
        var wanted: UInt32 = 0
        if !conn.peerEOF && !conn.closeAfterWrite && conn.pendingProtocolError == nil && !shuttingDown
            && conn.pendingInput < limits.maxInputBufferBytes
            && !(conn.outstanding && conn.pendingInput >= limits.maxPendingInputBytes) {
            wanted |= SysFlags.epollIn
        }
        if conn.pendingOutput > 0 { wanted |= SysFlags.epollOut }
        if wanted != conn.registeredEvents {
            conn.registeredEvents = wanted
            _ = epollControl(epfd, EPOLL_CTL_MOD, conn.fd, events: wanted, token: UInt64(conn.fd))
        }
    }

    // MARK: - Shutdown

    private func beginShutdown(deadline: UInt64) {
        shuttingDown = true
        shutdownDeadline = deadline
        closeListener()
        for case let conn? in connections {
            flush(conn)   // closes it when nothing is in flight, else stops reading
        }
    }
}
