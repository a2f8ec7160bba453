// Per-connection state visible to the request handler.

/// One client connection, as the handler sees it.
///
/// Confined to the event-loop thread that owns the connection: read and write it
/// only inside `RequestHandler.handle` (or `sessionOpened`/`sessionClosed`),
/// which the server always calls on that thread. It is deliberately not
/// `Sendable`: do not capture it in the `complete` callback or hand it to
/// another thread; copy the values you need instead.
public final class Session {
    /// Unique for the life of the server process, starting at 1.
    public let id: UInt64
    /// `ip:port` of the peer (`[v6addr]:port` for IPv6).
    public let remoteAddress: String
    /// True for IPv4 127.0.0.0/8, IPv6 ::1 and IPv4-mapped ::ffff:127.x.x.x.
    public let isLoopback: Bool
    public let connectedAt: ContinuousClock.Instant
    /// Index of the event loop that owns this connection.
    public let loopIndex: Int
    /// RESP version for replies: 2 by default; the handler sets 3 after `HELLO 3`.
    public var protocolVersion: Int = 2
    /// `CLIENT SETNAME` value.
    public var name: String?
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER` values.
    public var libName: String?
    public var libVersion: String?
    /// Authenticated user, if the handler implements AUTH.
    public var user: String?
    /// The handler's own per-connection state.
    public var attachment: AnyObject?
    /// Sends to this connection from any thread, outside any batch.
    public let outbox: SessionOutbox?

    init(id: UInt64, remoteAddress: String, isLoopback: Bool, loopIndex: Int, outbox: SessionOutbox? = nil) {
        self.outbox = outbox
        self.id = id
        self.remoteAddress = remoteAddress
        self.isLoopback = isLoopback
        self.loopIndex = loopIndex
        self.connectedAt = ContinuousClock.now
    }
}

/// A connection's way in from other threads: bytes pushed outside any batch
/// (pub/sub messages), or a kill. Both go through the owning loop's inbox,
/// so the connection's state stays confined to its loop; a push to a closed
/// connection is dropped, and pushed bytes count against the connection's
/// output-buffer limit like replies (a subscriber that does not read is
/// disconnected, as Redis' `client-output-buffer-limit pubsub` does).
public struct SessionOutbox: Sendable {
    weak var loop: EventLoop?
    let fd: Int32
    let id: UInt64

    public func push(_ bytes: [UInt8]) {
        loop?.enqueue(.push(fd: fd, connectionID: id, bytes: bytes))
    }

    /// Closes the connection after the batch it has in flight, if any, is answered.
    public func kill() {
        loop?.enqueue(.kill(fd: fd, connectionID: id))
    }
}

/// Executes batches of commands for the server.
public protocol RequestHandler: Sendable {
    /// Called on the connection's loop thread with every complete command parsed
    /// so far (at most `NetLimits.maxPendingCommands`), in arrival order.
    ///
    /// Call `complete` exactly once, synchronously before returning or later from
    /// any thread, with the encoded replies of every command of the batch in
    /// order (encode with `RESPEncoder(protocolVersion: session.protocolVersion)`).
    /// `close: true` closes the connection once the replies are written (QUIT).
    /// The server does not call `handle` again for this connection until
    /// `complete` has been called.
    func handle(_ commands: [RESPCommand], session: Session,
                complete: @escaping @Sendable (_ replyBytes: [UInt8], _ close: Bool) -> Void)

    /// A connection was accepted (loop thread). Default: nothing.
    func sessionOpened(_ session: Session)
    /// A connection was closed for any reason (loop thread). An outstanding
    /// batch may still complete later; its replies are dropped. Default: nothing.
    func sessionClosed(_ session: Session)
    /// The loop `loop` served every connection of one `epoll_wait` (loop
    /// thread): a handler that held batches back to run them together starts
    /// them now. Default: nothing.
    func roundEnded(loop: Int)
}

extension RequestHandler {
    public func sessionOpened(_ session: Session) {}
    public func sessionClosed(_ session: Session) {}
    public func roundEnded(loop: Int) {}
}
