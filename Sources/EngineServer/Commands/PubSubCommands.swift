import AllocationEngine
import Foundation

/// Pub/sub and the client commands Sentinel sends (`CLIENT KILL`, `CLIENT
/// LIST`), `SCRIPT KILL`, `CONFIG REWRITE`. Pub/sub needs the `administer`
/// permission (the topology Sentinel announces is an operator's business).
extension EngineRequestHandler {
    func pubsubCommand(_ name: String, _ c: RESPCommand, session: Session, connection conn: ConnectionState) throws(CommandError) -> [UInt8]? {
        let proto = session.protocolVersion
        switch name {
        case "SUBSCRIBE", "PSUBSCRIBE":
            let pattern = name == "PSUBSCRIBE"
            guard c.count >= 2 else { throw CommandError.arity(name, "\(name) <channel> [channel ...]") }
            try requireStaff(conn)
            guard let outbox = session.outbox else { throw CommandError("ERR", "this connection cannot receive messages") }
            let names = (1..<c.count).map { c.string(at: $0) }
            let held = pattern ? conn.patterns : conn.channels
            // Checked before any is taken: a refused command subscribes to nothing.
            guard conn.subscriptions + Set(names).subtracting(held).count <= PubSub.maxPerConnection else {
                throw CommandError("LIMIT", "at most \(PubSub.maxPerConnection) subscriptions per connection")
            }
            var out: [UInt8] = []
            for ch in names {
                let isNew = pattern ? conn.patterns.insert(ch).inserted : conn.channels.insert(ch).inserted
                if isNew { pubsub.subscribe(ch, pattern: pattern, session: session.id, PubSub.Listener(outbox: outbox, protocolVersion: proto)) }
                out += PubSub.confirmation(pattern ? "psubscribe" : "subscribe", ch, count: conn.subscriptions, proto: proto)
            }
            clients.update(session.id) { $0.subscriptions = conn.channels.count; $0.patterns = conn.patterns.count }
            return out
        case "UNSUBSCRIBE", "PUNSUBSCRIBE":
            let pattern = name == "PUNSUBSCRIBE"
            let kind = pattern ? "punsubscribe" : "unsubscribe"
            var targets = (1..<max(1, c.count)).map { c.string(at: $0) }
            if c.count < 2 { targets = Array(pattern ? conn.patterns : conn.channels).sorted() }
            var out: [UInt8] = []
            if targets.isEmpty { out += PubSub.confirmation(kind, nil, count: conn.subscriptions, proto: proto) }
            for ch in targets {
                if pattern { conn.patterns.remove(ch) } else { conn.channels.remove(ch) }
                pubsub.unsubscribe(ch, pattern: pattern, session: session.id)
                out += PubSub.confirmation(kind, ch, count: conn.subscriptions, proto: proto)
            }
            clients.update(session.id) { $0.subscriptions = conn.channels.count; $0.patterns = conn.patterns.count }
            return out
        case "PUBLISH":
            guard c.count == 3 else { throw CommandError.arity(name, "PUBLISH <channel> <message>") }
            try requireStaff(conn)
            var e = RESPEncoder(protocolVersion: proto)
            e.integer(pubsub.publish(c.string(at: 1), Array(c.bytes(at: 2))))
            return e.bytes
        case "PUBSUB":
            guard c.count >= 2 else { throw CommandError.arity(name, "PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT") }
            try requireStaff(conn)
            var e = RESPEncoder(protocolVersion: proto)
            switch c.string(at: 1).uppercased() {
            case "CHANNELS":
                let list = pubsub.channels(matching: c.count >= 3 ? c.string(at: 2) : nil)
                e.arrayHeader(list.count)
                for ch in list { e.bulk(ch) }
            case "NUMSUB":
                e.arrayHeader(2 * (c.count - 2))
                for i in 2..<max(2, c.count) { e.bulk(c.string(at: i)); e.integer(pubsub.subscriberCount(c.string(at: i))) }
            case "NUMPAT": e.integer(pubsub.patternCount)
            default: throw CommandError("ERR", "unknown subcommand '\(c.string(at: 1).prefix(32))'. Try PUBSUB CHANNELS, NUMSUB, NUMPAT")
            }
            return e.bytes
        case "SCRIPT":
            guard c.count >= 2 else { throw CommandError.arity(name, "SCRIPT KILL") }
            if c.string(at: 1).uppercased() == "KILL" { throw CommandError("NOTBUSY", "No scripts in execution right now.") }
            throw CommandError("ERR", "scripting is not supported (no EVAL); only SCRIPT KILL is answered")
        case "RESET":
            guard c.count == 1 else { throw CommandError.arity(name, "RESET") }
            for ch in conn.channels { pubsub.unsubscribe(ch, pattern: false, session: session.id) }
            for p in conn.patterns { pubsub.unsubscribe(p, pattern: true, session: session.id) }
            conn.channels = []
            conn.patterns = []
            conn.queued = nil
            conn.queueFailed = false
            session.name = nil
            clients.update(session.id) { $0.subscriptions = 0; $0.patterns = 0; $0.name = nil }
            var e = RESPEncoder(protocolVersion: proto)
            e.simple("RESET")
            return e.bytes
        default:
            return nil
        }
    }

    private func requireStaff(_ conn: ConnectionState) throws(CommandError) {
        guard let p = conn.principal else { throw CommandError("NOAUTH", "Authentication required.") }
        guard p.role.allows(.administer) else { throw CommandError("NOPERM", "user \(p.user) (\(p.role.rawValue)) may not use pub/sub") }
    }

    /// A connection left: its subscriptions go with it.
    func dropSubscriptions(_ session: Session) {
        guard let conn = session.attachment as? ConnectionState else { return }
        for ch in conn.channels { pubsub.unsubscribe(ch, pattern: false, session: session.id) }
        for p in conn.patterns { pubsub.unsubscribe(p, pattern: true, session: session.id) }
    }

    // MARK: CLIENT LIST / KILL

    func clientList(_ c: RESPCommand, session: Session) throws(CommandError) -> String {
        var ids: Set<UInt64>?
        var type: String?
        var i = 2
        while i < c.count {
            let opt = c.string(at: i).uppercased()
            if opt == "TYPE", i + 1 < c.count { type = Self.clientType(c.string(at: i + 1)); i += 2; continue }
            if opt == "ID", i + 1 < c.count {
                ids = Set((i + 1..<c.count).compactMap { UInt64(c.string(at: $0)) })
                break
            }
            throw CommandError("ERR", "syntax error: CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]")
        }
        let now = monotonicSeconds()
        var out = ""
        for e in clients.all where (ids == nil || ids!.contains(e.id)) && (type == nil || e.type == type) {
            let flags = e.isReplica ? "S" : (e.subscriptions + e.patterns > 0 ? "P" : "N")
            out += "id=\(e.id) addr=\(e.address) name=\(e.name ?? "") age=\(Int(now - e.openedAt)) flags=\(flags) db=0 sub=\(e.subscriptions) psub=\(e.patterns) user=\(e.user ?? "") resp=\(e.protocolVersion) lib-name=\(e.libName ?? "") lib-ver=\(e.libVersion ?? "")\n"
        }
        return out
    }

    static func clientType(_ t: String) -> String? {
        switch t.lowercased() {
        case "normal": "normal"
        case "replica", "slave": "replica"
        case "pubsub": "pubsub"
        case "master": "master"
        default: nil
        }
    }

    /// `CLIENT KILL ip:port` (old form: `+OK` or an error) or filters
    /// `ID`, `ADDR`, `TYPE`, `USER`, `SKIPME` (the number killed).
    func clientKill(_ c: RESPCommand, session: Session) throws(CommandError) -> Int? {
        guard c.count >= 3 else { throw CommandError.arity("CLIENT KILL", "CLIENT KILL <ip:port> | CLIENT KILL [ID id] [ADDR ip:port] [TYPE type] [USER user] [SKIPME yes|no]") }
        if c.count == 3 {
            let addr = c.string(at: 2)
            guard let e = clients.all.first(where: { $0.address == addr }) else { throw CommandError("ERR", "No such client") }
            e.outbox?.kill()
            return nil
        }
        var id: UInt64?, addr: String?, type: String?, user: String?, skipMe = true
        var i = 2
        while i + 1 < c.count {
            let opt = c.string(at: i).uppercased(), v = c.string(at: i + 1)
            switch opt {
            case "ID": guard let n = UInt64(v) else { throw CommandError("ERR", "client-id should be greater than 0") }; id = n
            case "ADDR": addr = v
            case "LADDR": throw CommandError("ERR", "LADDR is not supported")
            case "TYPE": guard let t = Self.clientType(v) else { throw CommandError("ERR", "Unknown client type '\(v.prefix(32))'") }; type = t
            case "USER": user = v
            case "SKIPME":
                switch v.lowercased() {
                case "yes": skipMe = true
                case "no": skipMe = false
                default: throw CommandError("ERR", "syntax error")
                }
            default: throw CommandError("ERR", "syntax error")
            }
            i += 2
        }
        guard i == c.count else { throw CommandError("ERR", "syntax error") }
        var killed = 0
        for e in clients.all {
            if let id, e.id != id { continue }
            if let addr, e.address != addr { continue }
            if let type, e.type != type { continue }
            if let user, e.user != user { continue }
            if skipMe && e.id == session.id { continue }
            e.outbox?.kill()
            killed += 1
        }
        return killed
    }
}
