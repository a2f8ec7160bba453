/// The domain rows the deal actor owns. Plain values: a snapshot copies them
/// cheaply (copy-on-write) and the state digest reads them in a fixed order.

/// One lot's share of a hold or allocation (`reservation_lot_items`,
/// `allocation_lot_items`). `lot` is the lot's position in its deal.
public struct LotPart: Hashable, Sendable {
    // Units first: with the 16-byte-aligned Int128 leading, the part takes 20
    // bytes instead of 32, and the hold's small fields fit behind it.
    public var units: Units
    public var lot: Int32
    public init(lot: Int32, units: Units) { self.lot = lot; self.units = units }
}

/// `deals`.
public struct DealInfo: Hashable, Sendable {
    public var id: String
    /// Assigned at creation, logged, stable across restarts; used in generated ids.
    public var number: UInt32
    public var name: String
    public var dealType: String
    public var vehicle: String?
    public var currency: String
    public var offerUnitPrice: Price?
    public var openAt: Int64?
    public var closeAt: Int64?
    public var status: DealStatus
    public var createdAt: Int64
    /// `DEAL.CREATE ... KYC required`: every hold and commitment, by anyone,
    /// needs a registered investor whose KYC is approved.
    public var kycRequired = false
    /// The user who created it (the seed's `created_by`).
    public var createdBy: String?

    public init(id: String, number: UInt32, name: String? = nil, dealType: String = "equity_secondary", vehicle: String? = nil,
                currency: String = "USD", offerUnitPrice: Price? = nil, openAt: Int64? = nil, closeAt: Int64? = nil,
                status: DealStatus = .open, createdAt: Int64 = 0) {
        self.id = id
        self.number = number
        self.name = name ?? id
        self.dealType = dealType
        self.vehicle = vehicle
        self.currency = currency
        self.offerUnitPrice = offerUnitPrice
        self.openAt = openAt
        self.closeAt = closeAt
        self.status = status
        self.createdAt = createdAt
    }
}

/// `share_lots`. `remaining + held + allocated == total` always.
public struct Lot: Hashable, Sendable {
    public var id: String
    public var unitsTotal: Units
    public var unitCost: Price
    public var currency: String
    public var acquiredAt: CivilDate?
    public var lockupUntil: CivilDate?
    public var source: String?
    public var createdAt: Int64
    public var unitsRemaining: Units
    public var unitsHeld: Units
    public var unitsAllocated: Units

    public var status: LotStatus {
        if unitsRemaining.raw > 0 { return .available }
        return unitsHeld.raw > 0 ? .held : .exhausted
    }
}

/// `reservations`: a pending claim on units with an expiry.
///
/// Field order is chosen for size (112 bytes with the 16-byte alignment of
/// Int128): millions of these live in memory during a launch.
public struct Hold: Hashable, Sendable {
    /// Units asked for; `filled` may be less only for a partial hold.
    public var requested: Units
    public var firstPart: LotPart
    public var investor: Int32
    /// Index of the allocation made from this hold, or -1.
    public var allocation: Int32
    public var status: HoldStatus
    public var partial: Bool
    public var id: String
    public var proposedUnitPrice: Price
    public var createdAt: Int64
    public var expiresAt: Int64
    /// Further lots when the hold spans more than one (empty arrays allocate nothing).
    public var moreParts: [LotPart]
    /// The user who placed it (the seed's `created_by`), nil in process.
    public var createdBy: String?

    public init(requested: Units, firstPart: LotPart, id: String, proposedUnitPrice: Price, createdAt: Int64, expiresAt: Int64,
                moreParts: [LotPart], investor: Int32, allocation: Int32, status: HoldStatus, partial: Bool,
                createdBy: String? = nil) {
        self.createdBy = createdBy
        self.requested = requested
        self.firstPart = firstPart
        self.investor = investor
        self.allocation = allocation
        self.status = status
        self.partial = partial
        self.id = id
        self.proposedUnitPrice = proposedUnitPrice
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.moreParts = moreParts
    }

    public var parts: [LotPart] { [firstPart] + moreParts }
    public var filled: Units {
        var total = firstPart.units
        for p in moreParts { total += p.units }
        return total
    }
}

/// `allocations`: made from a hold, same lot split (`allocation_lot_items`),
/// kept with the allocation so it stands alone once its hold has left memory.
public struct Allocation: Hashable, Sendable {
    public var units: Units
    public var firstPart: LotPart
    public var id: String
    /// The hold it was made from, by id (the hold row may be in the history).
    public var holdID: String
    public var moreParts: [LotPart] = []
    public var unitPrice: Price
    public var createdAt: Int64
    public var decidedAt: Int64
    public var settledAt: Int64
    public var hold: Int32
    public var investor: Int32
    /// Slot of its approval in `DealPeople.approvals`.
    public var approval: Int32 = -1
    public var status: AllocationStatus
    /// The users who created it and who approved or rejected it (the seed's `approved_by`).
    public var createdBy: String?
    public var decidedBy: String?
}

/// `positions` of one investor in one deal, from approved allocations.
public struct Position: Hashable, Sendable {
    public var units: Units = .zero
    /// Sum of units x unit price of approved allocations, exact (14 decimals).
    public var costBasis: ExactAmount = ExactAmount(raw: 0)
    public var lastUpdated: Int64 = 0
}
