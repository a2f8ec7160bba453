/// A string key that hashes with one cheap pass (FNV-1a over its UTF-8 bytes)
/// computed once, instead of SipHash on every dictionary probe. Ids here are
/// short tokens chosen by clients; a hostile client picking colliding ids only
/// slows its own deal's lookups, and the tables stay correct (equality compares
/// the full string).
public struct IdKey: Hashable, Sendable {
    public var string: String
    public var hash: UInt64

    @inline(__always)
    public init(_ string: String) {
        self.string = string
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        var s = string
        s.withUTF8 { bytes in
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        }
        hash = h
    }

    @inline(__always)
    public static func == (a: IdKey, b: IdKey) -> Bool { a.hash == b.hash && a.string == b.string }
    @inline(__always)
    public func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}
