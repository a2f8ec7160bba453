import Synchronization

/// Channels and patterns, and who listens: Redis' pub/sub, which Sentinel uses
/// to find the other sentinels (`__sentinel__:hello`). Messages go straight to
/// each subscriber's connection (`SessionOutbox`), bounded by its output
/// buffer limit; nothing is stored.
final class PubSub: Sendable {
    struct Listener: Sendable {
        var outbox: SessionOutbox
        var protocolVersion: Int
    }
    struct State {
        var channels: [String: [UInt64: Listener]] = [:]
        var patterns: [String: [UInt64: Listener]] = [:]
    }
    private let state = Mutex(State())
    /// Subscriptions one connection may hold.
    static let maxPerConnection = 1024

    func subscribe(_ channel: String, pattern: Bool, session: UInt64, _ listener: Listener) {
        state.withLock { s in
            if pattern { s.patterns[channel, default: [:]][session] = listener } else { s.channels[channel, default: [:]][session] = listener }
        }
    }

    func unsubscribe(_ channel: String, pattern: Bool, session: UInt64) {
        state.withLock { s in
            if pattern {
                s.patterns[channel]?.removeValue(forKey: session)
                if s.patterns[channel]?.isEmpty == true { s.patterns.removeValue(forKey: channel) }
            } else {
                s.channels[channel]?.removeValue(forKey: session)
                if s.channels[channel]?.isEmpty == true { s.channels.removeValue(forKey: channel) }
            }
        }
    }

    /// Sends `message` to every listener of `channel` and of a matching
    /// pattern; returns how many received it (Redis' count).
    func publish(_ channel: String, _ message: [UInt8]) -> Int {
        let (direct, matched) = state.withLock { s -> ([Listener], [(String, Listener)]) in
            let direct = s.channels[channel].map { Array($0.values) } ?? []
            var matched: [(String, Listener)] = []
            for (p, listeners) in s.patterns where GlobPattern.matches(Array(p.utf8), Array(channel.utf8)) {
                for l in listeners.values { matched.append((p, l)) }
            }
            return (direct, matched)
        }
        for l in direct { l.outbox.push(Self.message(channel, message, proto: l.protocolVersion)) }
        for (p, l) in matched { l.outbox.push(Self.patternMessage(p, channel, message, proto: l.protocolVersion)) }
        return direct.count + matched.count
    }

    func channels(matching pattern: String?) -> [String] {
        state.withLock { s in
            s.channels.keys.filter { pattern == nil || GlobPattern.matches(Array(pattern!.utf8), Array($0.utf8)) }.sorted()
        }
    }

    func subscriberCount(_ channel: String) -> Int { state.withLock { $0.channels[channel]?.count ?? 0 } }
    var patternCount: Int { state.withLock { s in s.patterns.values.reduce(0) { $0 + $1.count } } }

    /// `>3`/`*3` header: push frames under RESP3, arrays under RESP2.
    static func header(_ n: Int, proto: Int) -> [UInt8] { Array("\(proto >= 3 ? ">" : "*")\(n)\r\n".utf8) }

    static func message(_ channel: String, _ payload: [UInt8], proto: Int) -> [UInt8] {
        var e = RESPEncoder(protocolVersion: proto)
        e.raw(header(3, proto: proto))
        e.bulk("message")
        e.bulk(channel)
        e.bulk(payload)
        return e.bytes
    }

    static func patternMessage(_ pattern: String, _ channel: String, _ payload: [UInt8], proto: Int) -> [UInt8] {
        var e = RESPEncoder(protocolVersion: proto)
        e.raw(header(4, proto: proto))
        e.bulk("pmessage")
        e.bulk(pattern)
        e.bulk(channel)
        e.bulk(payload)
        return e.bytes
    }

    /// A (un)subscribe confirmation: `[kind, channel or nil, count]`.
    static func confirmation(_ kind: String, _ channel: String?, count: Int, proto: Int) -> [UInt8] {
        var e = RESPEncoder(protocolVersion: proto)
        e.raw(header(3, proto: proto))
        e.bulk(kind)
        if let channel { e.bulk(channel) } else { e.null() }
        e.integer(count)
        return e.bytes
    }
}

/// Redis' glob (`stringmatch`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
enum GlobPattern {
    static func matches(_ p: [UInt8], _ s: [UInt8]) -> Bool { match(p[...], s[...], depth: 0) }

    private static func match(_ pattern: ArraySlice<UInt8>, _ string: ArraySlice<UInt8>, depth: Int) -> Bool {
        // Depth bounds the recursion a hostile pattern of many stars could cause.
        guard depth < 64 else { return false }
        var p = pattern, s = string
        while let c = p.first {
            switch c {
            case UInt8(ascii: "*"):
                while p.first == UInt8(ascii: "*") { p = p.dropFirst() }
                if p.isEmpty { return true }
                var rest = s
                while true {
                    if match(p, rest, depth: depth + 1) { return true }
                    guard !rest.isEmpty else { return false }
                    rest = rest.dropFirst()
                }
            case UInt8(ascii: "?"):
                guard !s.isEmpty else { return false }
                s = s.dropFirst(); p = p.dropFirst()
            case UInt8(ascii: "["):
                guard let ch = s.first else { return false }
                p = p.dropFirst()
                var negate = false
                if p.first == UInt8(ascii: "^") { negate = true; p = p.dropFirst() }
                var found = false
                while let x = p.first, x != UInt8(ascii: "]") {
                    if x == UInt8(ascii: "\\"), p.count >= 2 {
                        p = p.dropFirst()
                        if p.first == ch { found = true }
                        p = p.dropFirst()
                    } else if p.count >= 3, p[p.startIndex + 1] == UInt8(ascii: "-"), p[p.startIndex + 2] != UInt8(ascii: "]") {
                        let lo = min(x, p[p.startIndex + 2]), hi = max(x, p[p.startIndex + 2])
                        if ch >= lo && ch <= hi { found = true }
                        p = p.dropFirst(3)
                    } else {
                        if x == ch { found = true }
                        p = p.dropFirst()
                    }
                }
                if !p.isEmpty { p = p.dropFirst() }   // the ']'
                if found == negate { return false }
                s = s.dropFirst()
            case UInt8(ascii: "\\") where p.count >= 2:
                p = p.dropFirst()
                guard s.first == p.first else { return false }
                s = s.dropFirst(); p = p.dropFirst()
            default:
                guard s.first == c else { return false }
                s = s.dropFirst(); p = p.dropFirst()
            }
        }
        return s.isEmpty
    }
}
