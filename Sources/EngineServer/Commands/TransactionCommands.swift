import AllocationEngine

/// `MULTI` / `EXEC` / `DISCARD`. Commands after `MULTI` are checked (known,
/// arguments parse, permission) and queued (`+QUEUED`); a refused one makes
/// `EXEC` answer `EXECABORT`. `EXEC` puts the queued commands into the
/// batch, in order, after one array header, so their replies come back as
/// one array and no other command of this connection runs between them. Each
/// engine command is atomic on its own and the batch keeps their order;
/// other connections' commands may run between them (there are no keys to
/// `WATCH`). Connection commands among them (`CLIENT KILL`, `CONFIG
/// REWRITE`, ...) are answered when `EXEC` is taken, engine commands when
/// the batch runs, each kind in order (docs/protocol.md).
extension EngineRequestHandler {
    static let transactionCommands: Set<String> = ["MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"]
    static let subscribedModeCommands: Set<String> = ["SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE", "PUNSUBSCRIBE", "PING", "QUIT", "RESET"]
    /// Commands answered by the connection layer, which may be queued as they are.
    static let queueableConnectionCommands: Set<String> = ["PING", "ECHO", "CLIENT", "COMMAND", "SELECT", "CONFIG", "INFO", "SCRIPT",
                                                           "PUBLISH", "PUBSUB", "TIME"]
    /// The most commands one transaction queues.
    static let maxQueuedCommands = 4096

    enum TransactionStep {
        case reply([UInt8])
        case run([RESPCommand])
    }

    func transaction(_ name: String, _ c: RESPCommand, session: Session, connection conn: ConnectionState) throws(CommandError) -> TransactionStep {
        var e = RESPEncoder(protocolVersion: session.protocolVersion)
        switch name {
        case "MULTI":
            guard c.count == 1 else { throw CommandError.arity(name, "MULTI") }
            guard conn.queued == nil else { throw CommandError("ERR", "MULTI calls can not be nested") }
            guard conn.subscriptions == 0 || session.protocolVersion > 2 else {
                throw CommandError("ERR", "Can't execute 'multi': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
            }
            conn.queued = []
            conn.queueFailed = false
            e.simple("OK")
        case "EXEC":
            guard c.count == 1 else { throw CommandError.arity(name, "EXEC") }
            guard let queued = conn.queued else { throw CommandError("ERR", "EXEC without MULTI") }
            conn.queued = nil
            if conn.queueFailed {
                conn.queueFailed = false
                throw CommandError("EXECABORT", "Transaction discarded because of previous errors.")
            }
            return .run(queued)
        case "DISCARD":
            guard c.count == 1 else { throw CommandError.arity(name, "DISCARD") }
            guard conn.queued != nil else { throw CommandError("ERR", "DISCARD without MULTI") }
            conn.queued = nil
            conn.queueFailed = false
            e.simple("OK")
        case "WATCH":
            if conn.queued != nil { throw CommandError("ERR", "WATCH inside MULTI is not allowed") }
            throw CommandError("ERR", "WATCH is not supported: this server has no keys; each engine command is atomic and ID makes retries safe")
        case "UNWATCH":
            if conn.queued != nil { try queue(c, name, conn); e.simple("QUEUED") } else { e.simple("OK") }
        default:
            try queue(c, name, conn)
            e.simple("QUEUED")
        }
        return .reply(e.bytes)
    }

    /// Checks a command as the batch would (without running it) and queues it.
    private func queue(_ c: RESPCommand, _ name: String, _ conn: ConnectionState) throws(CommandError) {
        do throws(CommandError) {
            guard (conn.queued?.count ?? 0) < Self.maxQueuedCommands else {
                throw CommandError("LIMIT", "a transaction queues at most \(Self.maxQueuedCommands) commands")
            }
            if Self.subscribedModeCommands.contains(name) && name != "PING" {
                throw CommandError("ERR", "Command \(name.lowercased()) is not allowed inside MULTI here")
            }
            if !Self.queueableConnectionCommands.contains(name) && name != "UNWATCH" {
                guard let principal = conn.principal else { throw CommandError("NOAUTH", "Authentication required.") }
                guard let spec = CommandTable.byName[name] else {
                    throw CommandError("ERR", "unknown command '\(name.prefix(40).lowercased())', with args beginning with: \(Self.preview(c))")
                }
                var arguments = Arguments(c, name: name, usage: spec.usage)
                _ = try spec.parse(&arguments)
                guard principal.role.allows(spec.permission) else {
                    throw CommandError("NOPERM", "user \(principal.user) (\(principal.role.rawValue)) may not run this command")
                }
            }
            conn.queued?.append(c)
        } catch {
            conn.queueFailed = true
            throw error
        }
    }
}
