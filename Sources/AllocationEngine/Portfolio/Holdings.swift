import WAL
import Synchronization

/// Which deals each investor has rows in (from its first hold there) and
/// which deals each introducer has introductions in, and the deals of each
/// vehicle, so statements, `PORTFOLIO` and distributions visit only the deals
/// that matter, never every deal. Entries are never removed.
///
/// The introducer and vehicle entries are derived from the deals on load. The
/// investor entries cannot be: a deal forgets an investor whose rows all left
/// memory for the history (DealState+Investors.swift), so the snapshot keeps
/// them (format 7, after the directory: `encodeInvestors`). It writes them
/// after every deal is captured, so they may name a deal whose only row for
/// the investor was never durable (lost with the log's tail at a crash, never
/// acknowledged); a statement then lists that deal with nothing in it.
///
/// Sharded by investor: a hold of an investor new to its deal takes one short
/// lock of one of 16 shards (the hot path pays this once per investor and deal).
///
/// Memory: per investor and per introducer a dictionary entry and a
/// `DealSet` of its deals, at most 4 B per deal plus a constant, 1 bit per
/// deal of its span when its deals are dense (`engine-bench --only invmem`:
/// 2.4 MB, 0.2 B per pair, for 10,000 investors x deals 0..<1000; a
/// `Set<UInt32>` took 8.6 B); per vehicle 4 B a deal.
public final class Holdings: Sendable {
    private static let shardCount = 16
    private let byInvestor: [Locked<[String: DealSet]>] = (0..<Holdings.shardCount).map { _ in Locked([:]) }
    private let byIntroducer = Locked<[String: DealSet]>([:])
    private let byVehicle = Locked<[String: [UInt32]]>([:])
    public init() {}

    private func shard(_ id: String) -> Int { Self.shard(id) }

    private static func shard(_ id: String) -> Int {
        var h: UInt32 = 2_166_136_261
        for b in id.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return Int(h % UInt32(Self.shardCount))
    }

    func add(_ investor: String, deal: UInt32) {
        byInvestor[shard(investor)].withLock { m in _ = m[investor, default: DealSet()].insert(deal) }
    }

    func add(introducer: String, deal: UInt32) {
        byIntroducer.withLock { m in _ = m[introducer, default: DealSet()].insert(deal) }
    }

    func addDeal(_ deal: UInt32, vehicle: String) {
        byVehicle.withLock { m in if !(m[vehicle]?.contains(deal) ?? false) { m[vehicle, default: []].append(deal) } }
    }

    /// Every investor's deals, as the snapshot keeps them: per investor its
    /// id, its deal count and the deal numbers ascending as differences from
    /// the one before (one byte a deal when numbers are dense); an empty id
    /// ends the list (no investor id is empty). Written shard by shard, each
    /// copied under its lock, so only a sixteenth is ever copied at once.
    public func encodeInvestors(into w: inout ByteWriter) {
        for shard in byInvestor {
            let part = shard.withLock { m in m.map { ($0.key, $0.value.sorted()) } }
            Self.encodeEntries(part.sorted { $0.0 < $1.0 }, into: &w)
        }
        w.string("")
    }

    /// Every investor's deals, investors and deals ascending (`replay --out`, tests).
    public func investorDeals() -> [(String, [UInt32])] {
        var out: [(String, [UInt32])] = []
        for shard in byInvestor { out.append(contentsOf: shard.withLock { m in m.map { ($0.key, $0.value.sorted()) } }) }
        return out.sorted { $0.0 < $1.0 }
    }

    /// The same bytes `encodeInvestors` writes for these entries: shard by
    /// shard, ids ascending within a shard.
    static func encode(_ entries: [(String, [UInt32])], into w: inout ByteWriter) {
        let keyed = entries.map { (shard: shard($0.0), entry: $0) }
        encodeEntries(keyed.sorted { ($0.shard, $0.entry.0) < ($1.shard, $1.entry.0) }.map(\.entry), into: &w)
        w.string("")
    }

    private static func encodeEntries(_ entries: [(String, [UInt32])], into w: inout ByteWriter) {
        for (investor, deals) in entries {
            w.string(investor)
            w.varint(UInt64(deals.count))
            var previous: UInt32 = 0
            for d in deals.sorted() { w.varint(UInt64(d - previous)); previous = d }
        }
    }

    static func decodeInvestors(_ r: inout ByteReader) throws(DecodeError) -> [(String, [UInt32])] {
        var out: [(String, [UInt32])] = []
        while true {
            let investor = try r.string()
            if investor.isEmpty { break }
            let count = try r.varint()
            guard count >= 1, count <= UInt64(r.remaining) else { throw DecodeError("investor \(investor) with \(count) deals") }
            var deals: [UInt32] = []
            deals.reserveCapacity(Int(count))
            var previous: UInt64 = 0
            for i in 0..<count {
                let delta = try r.varint()
                // Strictly ascending (the first may be deal 0).
                guard (i == 0 || delta > 0), previous + delta <= UInt64(UInt32.max) else { throw DecodeError("investor \(investor): deal numbers out of order") }
                previous += delta
                deals.append(UInt32(previous))
            }
            out.append((investor, deals))
        }
        return out
    }

    /// Adds entries read from a snapshot.
    public func add(investors entries: [(String, [UInt32])]) {
        for (investor, deals) in entries {
            byInvestor[shard(investor)].withLock { m in m[investor, default: DealSet()].formUnion(deals) }
        }
    }

    /// The deals (by number, ascending) where the investor has rows.
    public func deals(of investor: String) -> [UInt32] {
        byInvestor[shard(investor)].withLock { m in m[investor]?.sorted() ?? [] }
    }

    /// The deals where the introducer has introductions.
    public func deals(ofIntroducer introducer: String) -> [UInt32] {
        byIntroducer.withLock { $0[introducer]?.sorted() ?? [] }
    }

    /// The deals of a vehicle, by number, ascending.
    public func deals(ofVehicle vehicle: String) -> [UInt32] {
        byVehicle.withLock { ($0[vehicle] ?? []).sorted() }
    }
}
