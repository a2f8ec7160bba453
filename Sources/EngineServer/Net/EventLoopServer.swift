// The RESP server: a listener plus N event-loop threads. See docs/network.md.

import WAL
import Dispatch
import Foundation
import Glibc
import Synchronization

/// Epoll-based RESP server. Thread-safe: every method may be called from any
/// thread except an event-loop thread (`stopAccepting` and `shutdown` wait for
/// the loops).
public final class EventLoopServer: Sendable {
    public let config: ServerConfig
    private let shared: ServerShared

    private struct State {
        var loops: [EventLoop] = []
        var started = false
        var stopped = false
    }
    private let state = Locked<State>(State())
    private let port = Atomic<Int>(0)

    public init(config: ServerConfig, handler: any RequestHandler) throws {
        try config.limits.validate()
        self.config = config
        self.shared = ServerShared(config: config, handler: handler)
    }

    /// The port actually bound (useful with `port: 0`); 0 before `start()`.
    public var boundPort: Int { port.load(ordering: .acquiring) }

    /// Binds, listens and starts the loop threads. Throws `NetError.addressInUse`
    /// when the port is taken.
    public func start() throws {
        try state.withLock { state throws in
            guard !state.started else { throw NetError.alreadyStarted }
            let loopCount = max(1, config.loops)
            var loops: [EventLoop] = []
            for i in 0..<loopCount { loops.append(try EventLoop(index: i, shared: shared)) }
            let listener = try makeListener(host: config.host, port: config.port, backlog: config.backlog)
            do {
                try loops[0].setListener(listener.fd)
            } catch {
                close(listener.fd)
                throw error
            }
            loops[0].peers = loops
            port.store(listener.port, ordering: .releasing)
            for loop in loops {
                let thread = Thread { loop.run() }
                thread.name = "resp-loop-\(loop.index)"
                thread.start()
            }
            state.loops = loops
            state.started = true
        }
    }

    /// Closes the listening socket; existing connections keep being served.
    /// Returns once the port is released.
    public func stopAccepting() {
        guard let acceptor = state.withLock({ $0.loops.first }) else { return }
        if acceptor.isOnLoopThread {
            preconditionFailure("stopAccepting must not be called on an event-loop thread")
        }
        let done = DispatchSemaphore(value: 0)
        acceptor.enqueue(.stopAccepting(done))
        done.wait()
    }

    /// Stops accepting, lets every in-flight batch complete and its replies
    /// flush (reading no new commands), then closes all connections and stops
    /// the loop threads. Connections still busy after `gracefulTimeoutSeconds`
    /// are closed anyway. Idempotent; returns when all loop threads have exited.
    public func shutdown(gracefulTimeoutSeconds: Double = 5) {
        let loops: [EventLoop] = state.withLock { state in
            guard state.started && !state.stopped else { return [] }
            state.stopped = true
            return state.loops
        }
        guard !loops.isEmpty else { return }
        precondition(!loops.contains { $0.isOnLoopThread }, "shutdown must not be called on an event-loop thread")
        stopAccepting()
        let deadline = monotonicNanos() + UInt64(max(0, gracefulTimeoutSeconds) * 1e9)
        for loop in loops { loop.enqueue(.shutdown(deadline: deadline)) }
        for loop in loops { loop.exited.wait() }
    }

    /// Counters, summed over all loops.
    public var stats: ServerStats {
        let loops = state.withLock { $0.loops }
        var s = ServerStats()
        s.connectedClients = shared.connected.load(ordering: .relaxed)
        s.totalConnections = shared.totalConnections.load(ordering: .relaxed)
        s.rejectedConnections = shared.rejected.load(ordering: .relaxed)
        for loop in loops {
            s.commandsProcessed += loop.commands.load(ordering: .relaxed)
            s.protocolErrors += loop.protocolErrors.load(ordering: .relaxed)
            s.refusedInlineLines += loop.refusedInlineLines.load(ordering: .relaxed)
            s.outputBufferDisconnects += loop.outputDisconnects.load(ordering: .relaxed)
            s.idleDisconnects += loop.idleDisconnects.load(ordering: .relaxed)
            s.bytesIn += loop.bytesIn.load(ordering: .relaxed)
            s.bytesOut += loop.bytesOut.load(ordering: .relaxed)
        }
        return s
    }

    deinit {
        shutdown(gracefulTimeoutSeconds: 0)
    }
}
