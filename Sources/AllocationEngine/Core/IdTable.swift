/// An open-addressing hash table from id strings to 64-bit values: linear
/// probing over one contiguous array, keys hashed once with FNV-1a (`IdKey`),
/// no per-probe SipHash. Ids are removed only when they move to the on-disk
/// runs (`CallerIDRuns`); removal shifts the probe chain back (no tombstones),
/// so a table that keeps a bounded set stays that size.
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

    func find(_ key: IdKey) -> UInt64? {
        var i = Self.start(key.hash, mask)
        while slots[i].used {
            if slots[i].hash == key.hash && slots[i].key == key.string { return slots[i].value }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Inserts when absent and returns nil; returns the existing value otherwise.
    mutating func insertIfAbsent(_ key: IdKey, _ value: UInt64) -> UInt64? {
        if (count + 1) * 10 > slots.count * 7 { grow() }
        var i = Self.start(key.hash, mask)
        while slots[i].used {
            if slots[i].hash == key.hash && slots[i].key == key.string { return slots[i].value }
            i = (i + 1) & mask
        }
        slots[i] = Slot(hash: key.hash, key: key.string, value: value, used: true)
        count += 1
        return nil
    }

    /// Removes `key` if it maps to `value`; returns whether it did.
    /// Backward-shift deletion for linear probing: every entry after the hole
    /// whose home is not between the hole and itself moves into the hole.
    mutating func remove(_ key: IdKey, ifValue value: UInt64) -> Bool {
        var i = Self.start(key.hash, mask)
        while slots[i].used {
            if slots[i].hash == key.hash && slots[i].key == key.string {
                guard slots[i].value == value else { return false }
                var hole = i
                var j = (i + 1) & mask
                while slots[j].used {
                    let home = Self.start(slots[j].hash, mask)
                    // Does j's home lie cyclically in (hole, j]? Then it stays.
                    let stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j)
                    if !stays {
                        slots[hole] = slots[j]
                        hole = j
                    }
                    j = (j + 1) & mask
                }
                slots[hole] = Slot(hash: 0, key: "", value: 0, used: false)
                count -= 1
                return true
            }
            i = (i + 1) & mask
        }
        return false
    }

    private mutating func grow() {
        var fresh = IdTable(capacity: count * 2 + 16)
        for s in slots where s.used {
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
