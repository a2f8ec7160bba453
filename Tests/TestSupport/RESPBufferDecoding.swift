// Decoding a whole buffer of replies at once: what an in-process test receives
// from `EngineRequestHandler` (one buffer per batch), where `RESPClient` reads
// the same values from a socket.
extension RESPValue {
    /// Every reply in `bytes`, in order (stops at the first incomplete one).
    public static func decodeAll(_ bytes: [UInt8]) -> [RESPValue] {
        var out: [RESPValue] = []
        var position = 0
        while position < bytes.count, let (value, next) = decode(bytes, at: position) {
            out.append(value)
            position = next
        }
        return out
    }

    static func decode(_ b: [UInt8], at start: Int) -> (RESPValue, Int)? {
        var end = start
        while end + 1 < b.count && !(b[end] == 13 && b[end + 1] == 10) { end += 1 }
        guard end + 1 < b.count, end > start else { return nil }
        let rest = String(decoding: b[(start + 1)..<end], as: UTF8.self)
        let next = end + 2
        switch b[start] {
        case UInt8(ascii: "+"), UInt8(ascii: "#"), UInt8(ascii: ","): return (.simple(rest), next)
        case UInt8(ascii: "-"): return (.error(rest), next)
        case UInt8(ascii: ":"): return Int(rest).map { (.integer($0), next) }
        case UInt8(ascii: "_"): return (.bulk(nil), next)
        case UInt8(ascii: "$"), UInt8(ascii: "="):
            guard let n = Int(rest) else { return nil }
            if n < 0 { return (.bulk(nil), next) }
            guard next + n + 2 <= b.count else { return nil }
            return (.bulk(String(decoding: b[next..<(next + n)], as: UTF8.self)), next + n + 2)
        case UInt8(ascii: "*"), UInt8(ascii: "%"), UInt8(ascii: "~"):
            guard let n = Int(rest) else { return nil }
            if n < 0 { return (.array(nil), next) }
            var items: [RESPValue] = []
            var p = next
            for _ in 0..<(b[start] == UInt8(ascii: "%") ? 2 * n : n) {
                guard let (v, q) = decode(b, at: p) else { return nil }
                items.append(v)
                p = q
            }
            return (.array(items), p)
        default: return nil
        }
    }
}
