import AllocationEngine

/// The handler's state for one connection (kept in `Session.attachment`, so
/// confined to the connection's loop thread like the session itself).
final class ConnectionState {
    var principal: Principal? {
        didSet { epoch += 1 }
    }
    /// Bumped at every (re)authentication.
    private(set) var epoch = 0
    /// The hash of the user token the connection authenticated with (nil: the
    /// admin token or protected mode), and the directory generation its
    /// principal was resolved at: when the directory changes (links, KYC, a
    /// revoked token), the principal is resolved again before the next batch.
    var tokenHash: String?
    var generation: UInt64 = 0
    /// Between MULTI and EXEC/DISCARD: the commands queued (nil outside).
    var queued: [RESPCommand]?
    /// A queued command was refused: EXEC answers EXECABORT.
    var queueFailed = false
    /// Pub/sub: channels and patterns this connection is subscribed to.
    var channels: Set<String> = []
    var patterns: Set<String> = []
    var subscriptions: Int { channels.count + patterns.count }
    init(principal: Principal?) { self.principal = principal }
}

/// How clients prove who they are.
public enum AccessMode: Sendable {
    /// No token file: only loopback clients, each treated as the staff admin;
    /// any other client is answered `-DENIED` and disconnected (Redis'
    /// protected mode).
    case loopbackAdmin
    /// Every connection must AUTH; `adminTokenHash` is the staff admin's token.
    case tokens(adminTokenHash: String)
}
