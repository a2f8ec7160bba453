import Synchronization

/// Where a hold or allocation lives: its deal's number and its slot in that deal.
public struct RowRef: Hashable, Sendable {
    public var deal: UInt32
    public var slot: Int32
    public init(deal: UInt32, slot: Int32) { self.deal = deal; self.slot = slot }
    var packed: UInt64 { UInt64(deal) << 32 | UInt64(UInt32(bitPattern: slot)) }
    init(packed: UInt64) {
        deal = UInt32(truncatingIfNeeded: packed >> 32)
        slot = Int32(bitPattern: UInt32(truncatingIfNeeded: packed))
    }
}

/// A global map from hold (or allocation) id to its deal and slot. Ids are unique
/// across deals, so `RELEASE <hold>` finds its deal without being told. Sharded
/// so that lookups from many deals never queue behind one lock; each lock is
/// held only for one dictionary operation.
public final class IdIndex: Sendable {
    static let shardCount = 64
    private let shards: [Locked<[String: UInt64]>]

    public init() {
        shards = (0..<Self.shardCount).map { _ in Locked([:]) }
    }

    @inline(__always)
    private func shard(_ id: String) -> Int {
        // FNV-1a over the bytes: cheap, and independent of the dictionary's own hash.
        var h: UInt32 = 2_166_136_261
        for b in id.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return Int(h % UInt32(Self.shardCount))
    }

    public func lookup(_ id: String) -> RowRef? {
        shards[shard(id)].withLock { $0[id] }.map(RowRef.init(packed:))
    }

    /// Inserts when absent; returns the existing entry otherwise.
    public func insertIfAbsent(_ id: String, _ ref: RowRef) -> RowRef? {
        shards[shard(id)].withLock { dict -> RowRef? in
            if let existing = dict[id] { return RowRef(packed: existing) }
            dict[id] = ref.packed
            return nil
        }
    }

    public func set(_ id: String, _ ref: RowRef) {
        shards[shard(id)].withLock { $0[id] = ref.packed }
    }

    public func remove(_ id: String) {
        shards[shard(id)].withLock { _ = $0.removeValue(forKey: id) }
    }

    public var count: Int { shards.reduce(0) { $0 + $1.withLock { $0.count } } }

    public func reserveCapacity(_ n: Int) {
        let each = n / Self.shardCount + 1
        for s in shards { s.withLock { $0.reserveCapacity(each) } }
    }
}
