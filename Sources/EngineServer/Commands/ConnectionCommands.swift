import AllocationEngine
import Foundation

/// Commands about the connection itself, answered on the loop thread at once.
extension EngineRequestHandler {
    /// The encoded reply, or nil when `name` is not a connection command.
    func connectionCommand(_ name: String, _ c: RESPCommand, session: Session, connection: ConnectionState,
                           close: inout Bool) throws(CommandError) -> [UInt8]? {
        // Every engine command passes here first: leave before the encoder
        // (an allocation) unless the name is one answered below.
        guard Self.connectionLevelCommands.contains(name) else { return nil }
        var e = RESPEncoder(protocolVersion: session.protocolVersion)
        switch name {
        case "PING":
            guard c.count <= 2 else { throw CommandError.arity(name, "PING [message]") }
            if connection.subscriptions > 0 && session.protocolVersion == 2 {
                // Subscribed mode (RESP2): Redis answers as a message.
                e.arrayHeader(2)
                e.bulk("pong")
                if c.count == 2 { e.bulk(c.bytes(at: 1)) } else { e.bulk("") }
            } else if c.count == 2 { e.bulk(c.bytes(at: 1)) } else { e.simple("PONG") }
        case "ECHO":
            guard c.count == 2 else { throw CommandError.arity(name, "ECHO <message>") }
            e.bulk(c.bytes(at: 1))
        case "QUIT":
            close = true
            e.simple("OK")
        case "AUTH":
            guard c.count == 2 || c.count == 3 else { throw CommandError.arity(name, "AUTH <token> | AUTH <user> <token>") }
            try authenticate(user: c.count == 3 ? c.string(at: 1) : nil, token: c.string(at: c.count - 1), connection: connection)
            session.user = connection.principal?.user
            let user = session.user
            clients.update(session.id) { $0.user = user }
            e.simple("OK")
        case "HELLO":
            let reply = try hello(c, session: session, connection: connection)
            let user = connection.principal?.user, proto = session.protocolVersion, name = session.name
            clients.update(session.id) { $0.user = user; $0.protocolVersion = proto; $0.name = name }
            return reply
        case "CLIENT":
            guard c.count >= 2 else { throw CommandError.arity(name, "CLIENT <subcommand> ...") }
            switch c.string(at: 1).uppercased() {
            case "SETNAME":
                guard c.count == 3 else { throw CommandError.arity("CLIENT SETNAME", "CLIENT SETNAME <name>") }
                let n = c.string(at: 2)
                guard !n.utf8.contains(where: { $0 <= 0x20 }) else { throw CommandError("ERR", "Client names cannot contain spaces, newlines or special characters.") }
                session.name = n.isEmpty ? nil : n
                e.simple("OK")
            case "GETNAME":
                if let n = session.name { e.bulk(n) } else { e.null() }
            case "SETINFO":
                guard c.count == 4 else { throw CommandError.arity("CLIENT SETINFO", "CLIENT SETINFO <LIB-NAME|LIB-VER> <value>") }
                switch c.string(at: 2).uppercased() {
                case "LIB-NAME": session.libName = c.string(at: 3)
                case "LIB-VER": session.libVersion = c.string(at: 3)
                default: throw CommandError("ERR", "Unrecognized option '\(c.string(at: 2).prefix(32))'")
                }
                e.simple("OK")
            case "ID": e.integer(Int(session.id))
            case "INFO":
                e.bulk("id=\(session.id) addr=\(session.remoteAddress) name=\(session.name ?? "") user=\(connection.principal?.user ?? "") resp=\(session.protocolVersion) lib-name=\(session.libName ?? "") lib-ver=\(session.libVersion ?? "")\n")
            case "LIST":
                try requireAdmin(connection, "CLIENT LIST")
                e.bulk(try clientList(c, session: session))
            case "KILL":
                try requireAdmin(connection, "CLIENT KILL")
                if let n = try clientKill(c, session: session) { e.integer(n) } else { e.simple("OK") }
            default:
                throw CommandError("ERR", "unknown subcommand '\(c.string(at: 1).prefix(32))'. Supported: SETNAME, GETNAME, SETINFO, ID, INFO, LIST, KILL")
            }
            let name = session.name, lib = session.libName, ver = session.libVersion
            clients.update(session.id) { $0.name = name; $0.libName = lib; $0.libVersion = ver }
        case "COMMAND":
            // Clients call COMMAND / COMMAND DOCS for hints; an empty answer is valid.
            if c.count >= 2 && c.string(at: 1).uppercased() == "COUNT" { e.integer(0) } else { e.arrayHeader(0) }
        case "SELECT":
            guard c.count == 2 else { throw CommandError.arity(name, "SELECT <db>") }
            guard c.string(at: 1) == "0" else { throw CommandError("ERR", "DB index is out of range (this server has only database 0)") }
            e.simple("OK")
        case "CONFIG":
            if c.count == 2, c.string(at: 1).uppercased() == "REWRITE" {
                // The only setting changed at run time is the replication role,
                // which every switch already persists (DIR/replicaof).
                try requireAdmin(connection, "CONFIG REWRITE")
                guard settings.dataDir != nil else { throw CommandError("ERR", "The server is running without a config file") }
                e.simple("OK")
                return e.bytes
            }
            if c.count == 2, c.string(at: 1).uppercased() == "RESETSTAT" {
                try requireAdmin(connection, "CONFIG RESETSTAT")
                e.simple("OK")
                return e.bytes
            }
            // redis-benchmark asks for `save` and `appendonly` at start.
            guard c.count == 3, c.string(at: 1).uppercased() == "GET" else {
                throw CommandError("ERR", "only CONFIG GET <parameter>, CONFIG REWRITE and CONFIG RESETSTAT are supported; settings are serve flags")
            }
            let p = c.string(at: 2).lowercased()
            let known: [String: String] = ["save": "", "appendonly": durable == nil ? "no" : "yes",
                                           "appendfsync": settings.durability == "strict" ? "always" : settings.durability == "periodic" ? "everysec" : "no"]
            if let v = known[p] { e.mapHeader(1); e.bulk(p); e.bulk(v) } else { e.mapHeader(0) }
        case "INFO":
            guard connection.principal != nil else { throw CommandError("NOAUTH", "Authentication required.") }
            e.bulk(info(section: c.count >= 2 ? c.string(at: 1).lowercased() : "all"))
        default:
            return try pubsubCommand(name, c, session: session, connection: connection)
        }
        return e.bytes
    }

    /// The commands `connectionCommand` and `pubsubCommand` answer (a test
    /// checks each is answered here and none is in the command table).
    static let connectionLevelCommands: Set<String> = [
        "PING", "ECHO", "QUIT", "AUTH", "HELLO", "CLIENT", "COMMAND", "SELECT", "CONFIG", "INFO",
        "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "PUBLISH", "PUBSUB", "SCRIPT", "RESET",
    ]

    func requireAdmin(_ connection: ConnectionState, _ what: String) throws(CommandError) {
        guard let p = connection.principal else { throw CommandError("NOAUTH", "Authentication required.") }
        guard p.role.allows(.administer) else { throw CommandError("NOPERM", "user \(p.user) (\(p.role.rawValue)) may not run \(what)") }
    }

    func authenticate(user: String?, token: String, connection: ConnectionState) throws(CommandError) {
        let principal: Principal?
        let hash = SHA256.hex(token)
        var userToken: String?
        let generation = engine.directoryGeneration
        switch settings.access {
        case .tokens(let adminHash) where hash == adminHash:
            principal = .admin
        default:
            principal = engine.principal(forTokenHash: hash)
            userToken = hash
        }
        guard let principal, user == nil || user == "default" || user == principal.user else {
            throw CommandError("WRONGPASS", "invalid username-password pair or user is disabled.")
        }
        connection.principal = principal
        connection.tokenHash = userToken
        connection.generation = generation
    }

    func hello(_ c: RESPCommand, session: Session, connection: ConnectionState) throws(CommandError) -> [UInt8] {
        var proto = session.protocolVersion
        var k = 1
        if c.count >= 2 {
            guard let v = Int(c.string(at: 1)), v == 2 || v == 3 else {
                throw CommandError("NOPROTO", "unsupported protocol version; this server speaks RESP 2 and 3")
            }
            proto = v
            k = 2
        }
        var setName: String?
        while k < c.count {
            switch c.string(at: k).uppercased() {
            case "AUTH" where k + 2 < c.count:
                try authenticate(user: c.string(at: k + 1), token: c.string(at: k + 2), connection: connection)
                session.user = connection.principal?.user
                k += 3
            case "SETNAME" where k + 1 < c.count:
                setName = c.string(at: k + 1)
                guard !setName!.utf8.contains(where: { $0 <= 0x20 }) else {
                    throw CommandError("ERR", "Client names cannot contain spaces, newlines or special characters.")
                }
                k += 2
            default:
                throw CommandError("ERR", "syntax error in HELLO: HELLO [2|3] [AUTH <user> <token>] [SETNAME <name>]")
            }
        }
        guard connection.principal != nil else {
            throw CommandError("NOAUTH", "HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
        }
        if let setName { session.name = setName }
        session.protocolVersion = proto
        var e = RESPEncoder(protocolVersion: proto)
        e.mapHeader(7)
        e.bulk("server"); e.bulk("allocation-engine")
        e.bulk("version"); e.bulk(settings.version)
        e.bulk("proto"); e.integer(proto)
        e.bulk("id"); e.integer(Int(session.id))
        e.bulk("mode"); e.bulk("standalone")
        e.bulk("role"); e.bulk("master")
        e.bulk("modules"); e.arrayHeader(0)
        return e.bytes
    }
}
