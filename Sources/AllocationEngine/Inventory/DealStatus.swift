/// `deal_status_enum` of the seed: draft -> open -> allocation_pending -> closed,
/// and cancelled from any state before closed.
public enum DealStatus: UInt8, Sendable, CaseIterable {
    case draft = 0, open, allocationPending, closed, cancelled

    public var name: String {
        switch self {
        case .draft: "draft"
        case .open: "open"
        case .allocationPending: "allocation_pending"
        case .closed: "closed"
        case .cancelled: "cancelled"
        }
    }
    public init?(name: some StringProtocol) {
        guard let s = DealStatus.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = s
    }
    /// The transitions the seed allows. Staying in the same state is not a transition.
    public func canMove(to next: DealStatus) -> Bool {
        switch (self, next) {
        case (.draft, .open), (.open, .allocationPending), (.allocationPending, .closed): true
        case (.draft, .cancelled), (.open, .cancelled), (.allocationPending, .cancelled): true
        default: false
        }
    }
}

/// `reservation_status_enum`.
public enum HoldStatus: UInt8, Sendable, CaseIterable {
    case pending = 0, approved, expired, cancelled
    public var name: String {
        switch self {
        case .pending: "pending"
        case .approved: "approved"
        case .expired: "expired"
        case .cancelled: "cancelled"
        }
    }
}

/// `allocation_status_enum`: pending_review -> approved | rejected, approved -> settled.
public enum AllocationStatus: UInt8, Sendable, CaseIterable {
    case pendingReview = 0, approved, rejected, settled
    public var name: String {
        switch self {
        case .pendingReview: "pending_review"
        case .approved: "approved"
        case .rejected: "rejected"
        case .settled: "settled"
        }
    }
    /// Live allocations keep their units out of the lots.
    public var isLive: Bool { self != .rejected }
}

/// The lot's status follows from its counts (`share_lots.status`).
public enum LotStatus: String, Sendable {
    case available, held, exhausted
}
