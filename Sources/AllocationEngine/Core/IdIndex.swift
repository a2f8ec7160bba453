import WAL
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
///
/// Ids the engine generates (`h<deal>.<n>` for holds, `a<deal>.<n>` for
/// allocations) are never stored: they name their deal and slot themselves, so
/// the hot path of a hold without a caller's id touches no shared table at all.
/// Callers may not choose ids of that form (`isReserved`).
public final class IdIndex: Sendable {
    static let shardCount = 64
    private let shards: [Locked<IdTable>]
    /// `h` or `a`: the first byte of this index's generated ids.
    public let generatedPrefix: UInt8

    /// Where caller ids of rows that left memory are kept on disk (holds
    /// only): consulted when the memory tables miss.
    public let spill: CallerIDRuns?

    public init(generatedPrefix: UInt8, spill: CallerIDRuns? = nil) {
        self.generatedPrefix = generatedPrefix
        self.spill = spill
        shards = (0..<Self.shardCount).map { _ in Locked(IdTable()) }
    }

    /// Parses `<prefix><deal>.<sequence>` into the deal number and slot.
    @inline(__always)
    public func generatedRef(_ id: String) -> RowRef? {
        generatedPrefix == 0 ? nil : GeneratedID.parse(id, prefix: generatedPrefix)
    }

    @inline(__always)
    private func shard(_ key: IdKey) -> Int {
        // The high bits pick the shard; the dictionary mixes all of them again.
        Int((key.hash >> 40) % UInt64(Self.shardCount))
    }

    /// The row of an id: generated ids parse, caller ids are looked up in
    /// memory and then, for holds, in the on-disk runs. An id moves to the runs
    /// only after it was in memory and only once its run is readable, so a
    /// miss in memory followed by a miss on disk means the id was never used.
    public func lookup(_ id: String) -> RowRef? {
        if let ref = generatedRef(id) { return ref }
        let key = IdKey(id)
        if let found = shards[shard(key)].withLock({ $0.find(key) }) { return RowRef(packed: found) }
        return spill?.find(key)
    }

    /// Replay's claim of an id for a row: a generated id must name exactly
    /// that row (a damaged record may not), any other id must be unused, or
    /// already in the on-disk runs for this very row (replay of a hold whose id
    /// moved to disk after the snapshot). Never traps, whatever the record says.
    public func claim(_ id: String, _ ref: RowRef) -> Bool {
        if let generated = generatedRef(id) { return generated == ref }
        let key = IdKey(id)
        // A damaged run cannot say (`unreadable`): the log's own order stands.
        if let spill, let onDisk = spill.find(key), onDisk != CallerIDRuns.unreadable { guard onDisk == ref else { return false } }
        return shards[shard(key)].withLock { $0.insertIfAbsent(key, ref.packed) } == nil
    }

    /// Forgets a caller id in memory once its run on disk answers for it
    /// (only if it still names `ref`).
    @discardableResult
    public func removeFromMemory(_ id: String, _ ref: RowRef) -> Bool {
        guard generatedRef(id) == nil else { return false }
        let key = IdKey(id)
        return shards[shard(key)].withLock { $0.remove(key, ifValue: ref.packed) }
    }

    /// Caller ids held in memory.
    public var countInMemory: Int {
        var n = 0
        for s in shards { n += s.withLock { $0.count } }
        return n
    }

    /// Inserts when absent *in memory*; returns the existing entry otherwise.
    /// The caller has just missed `lookup` with no suspension since (the deal
    /// actor's decide-then-apply), so the on-disk runs need no second look:
    /// nothing reaches them without passing through memory first.
    public func insertIfAbsent(_ id: String, _ ref: RowRef) -> RowRef? {
        if let generated = generatedRef(id) {
            precondition(generated == ref, "generated id \(id) does not name its own slot")
            return nil
        }
        let key = IdKey(id)
        return shards[shard(key)].withLock { $0.insertIfAbsent(key, ref.packed) }.map(RowRef.init(packed:))
    }

}

/// The shape of generated ids: one prefix byte, the deal number, a dot, and the
/// row's sequence (slot + 1), in plain decimal without leading zeros.
public enum GeneratedID {
    public static func make(prefix: UInt8, deal: UInt32, slot: Int32) -> String {
        // Built in a stack buffer, then decoded: an id of up to 15 bytes becomes
        // a small (inline) string with no heap allocation of its own, which
        // matters when millions of holds each keep one.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { buffer in
            var n = 0
            func putNumber(_ value: Int) {
                var v = value, start = n
                repeat { buffer[n] = UInt8(48 + v % 10); v /= 10; n += 1 } while v > 0
                var end = n - 1
                while start < end { buffer.swapAt(start, end); start += 1; end -= 1 }
            }
            buffer[n] = prefix; n += 1
            putNumber(Int(deal))
            buffer[n] = UInt8(ascii: "."); n += 1
            putNumber(Int(slot) + 1)
            return String(decoding: UnsafeBufferPointer(rebasing: buffer[0..<n]), as: UTF8.self)
        }
    }

    public static func parse(_ id: String, prefix: UInt8) -> RowRef? {
        var s = id
        return s.withUTF8 { b -> RowRef? in
            guard b.count >= 4, b.count <= 22, b[0] == prefix else { return nil }
            var i = 1
            func number(limit: UInt64) -> UInt64? {
                let start = i
                var v: UInt64 = 0
                while i < b.count, b[i] >= 48, b[i] <= 57 {
                    v = v * 10 + UInt64(b[i] - 48)
                    i += 1
                    if v > limit { return nil }
                }
                if i == start || (b[start] == 48 && i - start > 1) { return nil }
                return v
            }
            guard let deal = number(limit: UInt64(UInt32.max)), i < b.count, b[i] == UInt8(ascii: ".") else { return nil }
            i += 1
            guard let seq = number(limit: UInt64(Int32.max)), i == b.count, seq >= 1 else { return nil }
            return RowRef(deal: UInt32(deal), slot: Int32(seq - 1))
        }
    }

    /// Whether a caller-chosen id has the reserved generated form.
    public static func isReserved(_ id: String) -> Bool {
        parse(id, prefix: UInt8(ascii: "h")) != nil || parse(id, prefix: UInt8(ascii: "a")) != nil
            || parse(id, prefix: UInt8(ascii: "c")) != nil
    }
}
