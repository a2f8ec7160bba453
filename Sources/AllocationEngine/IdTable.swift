/// An open-addressing hash table from id strings to 64-bit values: linear
/// probing over one contiguous array, keys hashed once with FNV-1a (`IdKey`),
/// no per-probe SipHash and no tombstone-free deletes needed on the hot path.
/// Used by `IdIndex` shards, which own it under a lock.
struct IdTable: Sendable {
    struct Slot: Sendable {
        var hash: UInt64
        var key: String
        var value: UInt64
        var used: Bool
    }
    private var slots: ContiguousArray<Slot>
    private(set) var count = 0
    private var tombstones = 0
    private var mask: Int

    init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = ContiguousArray(repeating: Slot(hash: 0, key: "", value: 0, used: false), count: n)
        mask = n - 1
    }

    /// Mixes the FNV hash so that linear probing spreads well.
    @inline(__always)
    private static func start(_ h: UInt64, _ mask: Int) -> Int {
        var x = h
        x ^= x >> 33
        x &*= 0xff51_afd7_ed55_8ccd
        x ^= x >> 33
        return Int(truncatingIfNeeded: x) & mask
    }

    /// Deleted slots keep `used` with this value so probes continue past them.
    private static let deleted: UInt64 = .max

    func find(_ key: IdKey) -> UInt64? {
        var i = Self.start(key.hash, mask)
        while true {
            let s = slots[i]
            if !s.used { return nil }
            if s.hash == key.hash && s.value != Self.deleted && s.key == key.string { return s.value }
            i = (i + 1) & mask
        }
    }

    /// Inserts when absent and returns nil; returns the existing value otherwise.
    mutating func insertIfAbsent(_ key: IdKey, _ value: UInt64) -> UInt64? {
        precondition(value != Self.deleted, "reserved value")
        if (count + tombstones + 1) * 10 > slots.count * 7 { grow() }
        var i = Self.start(key.hash, mask)
        while true {
            if !slots[i].used {
                slots[i] = Slot(hash: key.hash, key: key.string, value: value, used: true)
                count += 1
                return nil
            }
            if slots[i].hash == key.hash && slots[i].value != Self.deleted && slots[i].key == key.string {
                return slots[i].value
            }
            i = (i + 1) & mask
        }
    }

    mutating func set(_ key: IdKey, _ value: UInt64) {
        if let _ = insertIfAbsent(key, value) {
            var i = Self.start(key.hash, mask)
            while !(slots[i].hash == key.hash && slots[i].value != Self.deleted && slots[i].key == key.string) {
                i = (i + 1) & mask
            }
            slots[i].value = value
        }
    }

    mutating func remove(_ key: IdKey) {
        var i = Self.start(key.hash, mask)
        while slots[i].used {
            if slots[i].hash == key.hash && slots[i].value != Self.deleted && slots[i].key == key.string {
                slots[i].value = Self.deleted
                slots[i].key = ""
                count -= 1
                tombstones += 1
                return
            }
            i = (i + 1) & mask
        }
    }

    mutating func reserve(_ n: Int) {
        if n * 10 > slots.count * 7 { rehash(minimum: n) }
    }

    private mutating func grow() { rehash(minimum: count * 2 + 16) }

    private mutating func rehash(minimum: Int) {
        var fresh = IdTable(capacity: minimum)
        for s in slots where s.used && s.value != Self.deleted {
            _ = fresh.insertIfAbsent(IdKey(precomputed: s.hash, s.key), s.value)
        }
        self = fresh
    }
}

extension IdKey {
    init(precomputed hash: UInt64, _ string: String) {
        self.string = string
        self.hash = hash
    }
}
