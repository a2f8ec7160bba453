/// A decided state change: the unit of the write-ahead log and of replay.
/// Every change names its deal and carries everything needed to apply it again
/// without consulting the clock or making a decision (ids, expiry times and the
/// lot split are all resolved before logging).
public enum Change: Hashable, Sendable {
    case dealCreated(DealInfo)
    case dealStatus(deal: String, status: DealStatus)
    case lotAdded(deal: String, lot: LotSpec)
    case lotResized(deal: String, lot: Int32, unitsTotal: Units)
    case holdPlaced(deal: String, hold: HoldSpec)
    case holdReleased(deal: String, hold: String)
    case holdExpired(deal: String, hold: String)
    /// `by`: the user who made it (the seed's `created_by` / `approved_by`), nil in process.
    case allocationCreated(deal: String, hold: String, allocation: String, by: String? = nil)
    case allocationStatus(deal: String, allocation: String, status: AllocationStatus, by: String? = nil)
    /// Not of any deal: applies to the engine's people directory (types 10, 20-29).
    case directory(DirectoryChange)
    /// Memberships, invite links, commitments and approvals of one deal (types 40-59).
    case people(deal: String, DealPeopleChange)
    /// Fee plans, terms and fee events of one deal (types 60-79, 90).
    case money(deal: String, DealMoneyChange)
    /// Several changes of one deal decided together, logged as one record and
    /// so applied all or none (type 100): an approval and the commissions it
    /// accrues, fee events and theirs. Never nested.
    case group(deal: String, [Change])
    /// Ended holds left memory: their rows are durable in the history at
    /// `location` (written before this record), and the deal drops them
    /// (type 101). Replay drops the same rows, so memory is reproduced exactly.
    case holdsArchived(deal: String, ArchiveCandidate, location: HistoryLocation)
    /// Rejected allocations left memory the same way (type 103; the payload
    /// of type 101).
    case allocationsArchived(deal: String, ArchiveCandidate, location: HistoryLocation)
    /// Decided approvals left memory the same way (type 104).
    case approvalsArchived(deal: String, ArchiveCandidate, location: HistoryLocation)
    /// The deal's first `count` archived caller ids are answered by the
    /// on-disk id run `run` (written and synced before this record), and leave
    /// memory (type 102). Replay drops the same ones.
    case holdIDsMoved(deal: String, count: Int, run: UInt32)

    /// The deal the change belongs to; empty for engine-wide changes.
    public var deal: String {
        switch self {
        case .directory: ""
        case .people(let d, _), .money(let d, _), .group(let d, _), .holdsArchived(let d, _, _),
             .allocationsArchived(let d, _, _), .approvalsArchived(let d, _, _), .holdIDsMoved(let d, _, _): d
        case .dealCreated(let info): info.id
        case .dealStatus(let d, _), .lotAdded(let d, _), .lotResized(let d, _, _), .holdPlaced(let d, _),
             .holdReleased(let d, _), .holdExpired(let d, _), .allocationCreated(let d, _, _, _),
             .allocationStatus(let d, _, _, _): d
        }
    }

    /// The record type byte in the log. Stable: never renumber.
    public var recordType: UInt8 {
        switch self {
        case .dealCreated: 1
        case .dealStatus: 2
        case .lotAdded: 3
        case .lotResized: 4
        case .holdPlaced: 5
        case .holdReleased: 6
        case .holdExpired: 7
        case .allocationCreated: 8
        case .allocationStatus: 9
        case .directory(let c): c.recordType
        case .people(_, let c): c.recordType
        case .money(_, let c): c.recordType
        case .group: 100
        case .holdsArchived: 101
        case .holdIDsMoved: 102
        case .allocationsArchived: 103
        case .approvalsArchived: 104
        }
    }

    public static let typeNames: [UInt8: String] = [
        1: "deal.created", 2: "deal.status", 3: "lot.added", 4: "lot.resized", 5: "hold.placed",
        6: "hold.released", 7: "hold.expired", 8: "allocation.created", 9: "allocation.status", 100: "deal.group", 101: "holds.archived", 102: "hold_ids.moved", 103: "allocations.archived", 104: "approvals.archived", 110: "audit.seal",
    ].merging(DirectoryChange.typeNames) { a, _ in a }.merging(DealPeopleChange.typeNames) { a, _ in a }
        .merging(DealMoneyChange.typeNames) { a, _ in a }
}

public struct LotSpec: Hashable, Sendable {
    public var id: String
    public var unitsTotal: Units
    public var unitCost: Price
    public var currency: String
    public var acquiredAt: CivilDate?
    public var lockupUntil: CivilDate?
    public var source: String?
    public init(id: String, unitsTotal: Units, unitCost: Price, currency: String = "USD",
                acquiredAt: CivilDate? = nil, lockupUntil: CivilDate? = nil, source: String? = nil) {
        self.id = id
        self.unitsTotal = unitsTotal
        self.unitCost = unitCost
        self.currency = currency
        self.acquiredAt = acquiredAt
        self.lockupUntil = lockupUntil
        self.source = source
    }
}

public struct HoldSpec: Hashable, Sendable {
    public var id: String
    public var investor: String
    public var requested: Units
    public var price: Price
    public var expiresAt: Int64
    public var partial: Bool
    /// The user who placed it (the seed's `created_by`), nil in process.
    public var createdBy: String?
    /// The split, oldest lot first. Kept as first + rest so the common
    /// single-lot hold allocates nothing.
    public var firstPart: LotPart
    public var moreParts: [LotPart]

    public init(id: String, investor: String, requested: Units, price: Price, expiresAt: Int64, partial: Bool,
                firstPart: LotPart, moreParts: [LotPart] = [], createdBy: String? = nil) {
        self.createdBy = createdBy
        self.id = id
        self.investor = investor
        self.requested = requested
        self.price = price
        self.expiresAt = expiresAt
        self.partial = partial
        self.firstPart = firstPart
        self.moreParts = moreParts
    }

    public var parts: [LotPart] { [firstPart] + moreParts }
    public var partCount: Int { 1 + moreParts.count }

    @inline(__always)
    func forEachPart(_ body: (LotPart) -> Void) {
        body(firstPart)
        for p in moreParts { body(p) }
    }
}
