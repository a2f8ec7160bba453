import WAL
import Synchronization

/// Which deals each investor has rows in (from its first hold there) and
/// which deals each introducer has introductions in, and the deals of each
/// vehicle: derived from the deals (rebuilt on load, added to as rows are
/// made), so statements, `PORTFOLIO` and distributions visit only the deals
/// that matter, never every deal. Entries are never removed.
///
/// Sharded by investor: a hold of an investor new to its deal takes one short
/// lock of one of 16 shards (the hot path pays this once per investor and deal).
///
/// Memory: one entry per (investor, deal) with a hold, (introducer, deal)
/// with an introduction, and deal with a vehicle.
public final class Holdings: Sendable {
    private static let shardCount = 16
    private let byInvestor: [Locked<[String: Set<UInt32>]>] = (0..<Holdings.shardCount).map { _ in Locked([:]) }
    private let byIntroducer = Locked<[String: Set<UInt32>]>([:])
    private let byVehicle = Locked<[String: [UInt32]]>([:])
    public init() {}

    private func shard(_ id: String) -> Int {
        var h: UInt32 = 2_166_136_261
        for b in id.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return Int(h % UInt32(Self.shardCount))
    }

    func add(_ investor: String, deal: UInt32) {
        byInvestor[shard(investor)].withLock { m in _ = m[investor, default: []].insert(deal) }
    }

    func add(introducer: String, deal: UInt32) {
        byIntroducer.withLock { m in _ = m[introducer, default: []].insert(deal) }
    }

    func addDeal(_ deal: UInt32, vehicle: String) {
        byVehicle.withLock { m in if !(m[vehicle]?.contains(deal) ?? false) { m[vehicle, default: []].append(deal) } }
    }

    /// The deals (by number, ascending) where the investor has rows.
    public func deals(of investor: String) -> [UInt32] {
        byInvestor[shard(investor)].withLock { m in (m[investor] ?? []).sorted() }
    }

    /// The deals where the introducer has introductions.
    public func deals(ofIntroducer introducer: String) -> [UInt32] {
        byIntroducer.withLock { ($0[introducer] ?? []).sorted() }
    }

    /// The deals of a vehicle, by number, ascending.
    public func deals(ofVehicle vehicle: String) -> [UInt32] {
        byVehicle.withLock { ($0[vehicle] ?? []).sorted() }
    }
}
