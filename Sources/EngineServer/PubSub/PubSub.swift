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
///
/// Every token but `*` matches exactly one byte, so the classic two-pointer
/// match with one backtrack point (the last star seen) is exact and takes
/// O(pattern × string) steps: a hostile pattern of many stars (`*a*a*a…`
/// against `aaa…b`) cannot make it exponential, which a recursive match would.
enum GlobPattern {
    static func matches(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        var pi = 0, si = 0
        var star = -1, starString = 0   // pattern index after the last star, and where it began in s
        while si < s.count {
            if pi < p.count, p[pi] == UInt8(ascii: "*") {
                while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
                if pi == p.count { return true }
                star = pi; starString = si
                continue
            }
            if pi < p.count, let next = single(p, pi, s[si]) {
                pi = next; si += 1
                continue
            }
            // Mismatch: let the last star take one more byte, or fail.
            guard star >= 0 else { return false }
            starString += 1
            si = starString; pi = star
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// Matches the one-byte token at `p[i]` (not a star) against `ch`:
    /// the index after the token when it matches, nil when it does not.
    private static func single(_ p: [UInt8], _ start: Int, _ ch: UInt8) -> Int? {
        var i = start
        switch p[i] {
        case UInt8(ascii: "?"):
            return i + 1
        case UInt8(ascii: "["):
            i += 1
            var negate = false
            if i < p.count, p[i] == UInt8(ascii: "^") { negate = true; i += 1 }
            var found = false
            while i < p.count, p[i] != UInt8(ascii: "]") {
                let x = p[i]
                if x == UInt8(ascii: "\\"), i + 1 < p.count {
                    if p[i + 1] == ch { found = true }
                    i += 2
                } else if i + 2 < p.count, p[i + 1] == UInt8(ascii: "-"), p[i + 2] != UInt8(ascii: "]") {
                    let lo = min(x, p[i + 2]), hi = max(x, p[i + 2])
                    if ch >= lo && ch <= hi { found = true }
                    i += 3
                } else {
                    if x == ch { found = true }
                    i += 1
                }
            }
            if i < p.count { i += 1 }   // the ']'
            return found != negate ? i : nil
        case UInt8(ascii: "\\") where i + 1 < p.count:
            return p[i + 1] == ch ? i + 2 : nil
        default:
            return p[i] == ch ? i + 1 : nil
        }
    }
}
