import Synchronization

/// Which deals each investor holds approved units in: derived from the deals'
/// positions (rebuilt on load, added to as allocations are approved), so
/// `PORTFOLIO` and distributions visit an investor's or a vehicle's deals
/// only, never every deal. Entries are never removed: a position that went
/// back to zero is read as zero.
///
/// Memory: one entry per (investor, deal) with an approved allocation.
public final class Holdings: Sendable {
    private let byInvestor = Mutex<[String: Set<UInt32>]>([:])
    /// Vehicle -> its deals (set when a deal is created with a vehicle; deals never change vehicle).
    private let byVehicle = Mutex<[String: [UInt32]]>([:])
    public init() {}

    func addDeal(_ deal: UInt32, vehicle: String) {
        byVehicle.withLock { m in if !(m[vehicle]?.contains(deal) ?? false) { m[vehicle, default: []].append(deal) } }
    }

    /// The deals of a vehicle, by number, ascending.
    public func deals(ofVehicle vehicle: String) -> [UInt32] {
        byVehicle.withLock { ($0[vehicle] ?? []).sorted() }
    }

    func add(_ investor: String, deal: UInt32) {
        byInvestor.withLock { m in _ = m[investor, default: []].insert(deal) }
    }

    /// The deals (by number, ascending) where the investor has held approved units.
    public func deals(of investor: String) -> [UInt32] {
        byInvestor.withLock { ($0[investor] ?? []).sorted() }
    }
}
