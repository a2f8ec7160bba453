/// The people side of one deal, owned by its actor beside the lots and holds:
/// memberships (`deal_memberships`), invite links (`invite_links`),
/// commitments (`deal_commitments`) and the approval queue (`approvals`) of
/// its commitments and allocations. Rows are append-only slots (a removed
/// member or revoked link keeps its slot), so a list cursor is a slot and a
/// walk sees every row present during it exactly once.
///
/// Memory: one row per membership, link and commitment ever made in the deal,
/// each bounded by `PeopleLimits`; approvals while pending (decided ones leave
/// memory for the history, `ApprovalTable`).
public struct DealPeople: Sendable {
    public internal(set) var members: [Membership] = []
    /// Active member -> slot.
    var memberSlot: [String: Int32] = [:]
    public internal(set) var invites: [Invite] = []
    /// Token hash -> invite slot.
    var inviteByHash: [String: Int32] = [:]
    public internal(set) var commitments = ChunkedArray<Commitment>()
    public internal(set) var approvals = ApprovalTable()
    /// When the newest approval was created: the next is never dated before
    /// it (the queue's order is creation order), even when that row has left
    /// memory. In the snapshot from format 8.
    var approvalClock: Int64 = 0
    /// Approval SLA per entity type, in seconds (`DEAL.SLA`).
    public internal(set) var slaSeconds: [Int64] = [PeopleLimits.defaultSLASeconds, PeopleLimits.defaultSLASeconds]
    public init() {}

    func member(_ user: String) -> Membership? { memberSlot[user].map { members[Int($0)] } }
    func sla(_ entity: ApprovalEntity) -> Int64 { slaSeconds[Int(entity.rawValue)] }
}

public enum PeopleLimits {
    /// Membership rows (active or removed) per deal.
    public static let maxMembersPerDeal = 1_000_000
    public static let maxInvitesPerDeal = 100_000
    public static let maxCommitmentsPerDeal = 10_000_000
    /// Invite links live at most a year; default a week.
    public static let maxInviteTTLSeconds: Int64 = 365 * 86_400
    public static let defaultInviteTTLSeconds: Int64 = 7 * 86_400
    public static let maxInviteUses = 100_000
    /// Approval SLA: default 24 hours, between a minute and a year.
    public static let defaultSLASeconds: Int64 = 86_400
    public static let minSLASeconds: Int64 = 60
    public static let maxSLASeconds: Int64 = 365 * 86_400
    /// Rows a list page returns by default and at most, and rows one page may
    /// examine (a filtered walk returns fewer rows and a cursor to go on).
    public static let defaultPageCount = 100
    public static let maxPageCount = 1_000
    public static let maxPageScan = 10_000
}

/// `deal_memberships`.
public struct Membership: Hashable, Sendable {
    public var user: String
    public var role: DealMemberRole
    /// The investor the member takes part for; nil for an external participant.
    public var investor: String?
    public var invitedBy: String?
    public var invitedAt: Int64
    public var acceptedAt: Int64?
    /// Set when removed; the slot stays (list cursors are slots).
    public var removed = false
    public init(user: String, role: DealMemberRole, investor: String?, invitedBy: String?, invitedAt: Int64, acceptedAt: Int64?) {
        self.user = user
        self.role = role
        self.investor = investor
        self.invitedBy = invitedBy
        self.invitedAt = invitedAt
        self.acceptedAt = acceptedAt
    }
}

/// `invite_links`: only the SHA-256 of the token is ever kept.
public struct Invite: Hashable, Sendable {
    public var id: String
    public var role: DealMemberRole
    public var tokenHash: String
    public var expiresAt: Int64
    public var maxUses: Int32
    public var usedCount: Int32 = 0
    public var createdBy: String?
    public var createdAt: Int64
    public var revoked = false
    public init(id: String, role: DealMemberRole, tokenHash: String, expiresAt: Int64, maxUses: Int32, createdBy: String?, createdAt: Int64) {
        self.id = id
        self.role = role
        self.tokenHash = tokenHash
        self.expiresAt = expiresAt
        self.maxUses = maxUses
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
    public func status(now: Int64) -> String {
        if revoked { return "revoked" }
        if usedCount >= maxUses { return "used_up" }
        if now >= expiresAt { return "expired" }
        return "active"
    }
}

public enum CommitmentStatus: UInt8, Sendable, CaseIterable {
    case submitted, underReview, approved, rejected, cancelled
    public var name: String {
        switch self {
        case .submitted: "submitted"
        case .underReview: "under_review"
        case .approved: "approved"
        case .rejected: "rejected"
        case .cancelled: "cancelled"
        }
    }
    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
    var isOpen: Bool { self == .submitted || self == .underReview }
}

/// `deal_commitments`: an investor's indication of how much it wants.
public struct Commitment: Hashable, Sendable {
    public var id: String
    public var investor: String
    public var units: Units?
    public var amount: Money?
    public var status: CommitmentStatus = .submitted
    public var createdBy: String?
    public var createdAt: Int64 = 0
    /// Slot of its approval.
    public var approval: Int32 = -1
    public init(id: String, investor: String, units: Units?, amount: Money?, createdBy: String?) {
        self.id = id
        self.investor = investor
        self.units = units
        self.amount = amount
        self.createdBy = createdBy
    }
}

public enum ApprovalEntity: UInt8, Sendable, CaseIterable {
    case commitment, allocation
    public var name: String { self == .commitment ? "deal_commitment" : "allocation" }
    public init?(name: String) {
        switch name {
        case "deal_commitment", "commitment": self = .commitment
        case "allocation": self = .allocation
        default: return nil
        }
    }
}

public enum ApprovalStatus: UInt8, Sendable, CaseIterable {
    case pending, approved, rejected
    public var name: String { ["pending", "approved", "rejected"][Int(rawValue)] }
    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
}

public enum ApprovalPriority: UInt8, Sendable, CaseIterable {
    case low, normal, high
    public var name: String { ["low", "normal", "high"][Int(rawValue)] }
    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
}

/// `approvals`: one per commitment and per allocation, opened with it. Its
/// status moves with its entity's (deciding one is deciding the other).
public struct Approval: Hashable, Sendable {
    public var entity: ApprovalEntity
    /// Slot of the commitment or allocation in this deal.
    public var entitySlot: Int32
    public var status: ApprovalStatus = .pending
    public var priority: ApprovalPriority = .normal
    public var requestedBy: String?
    public var assignedTo: String?
    public var decidedBy: String?
    public var decidedAt: Int64 = 0
    public var notes: String?
    public var createdAt: Int64
    public var slaBreachAt: Int64
}

/// A logged change of a deal's people rows. Slots name rows (like
/// `lot.resized`): replay applies them without lookups by id.
public indirect enum DealPeopleChange: Hashable, Sendable {
    /// Adds the member, or changes the role and investor of a present one.
    case memberAdded(Membership)
    case memberRemoved(user: String)
    case inviteCreated(Invite)
    case inviteAccepted(invite: Int32, user: String, investor: String?)
    case inviteRevoked(invite: Int32)
    case commitmentCreated(Commitment)
    case commitmentStatus(commitment: Int32, status: CommitmentStatus, by: String?, note: String?)
    case approvalAssigned(approval: Int32, user: String)
    case approvalPriority(approval: Int32, priority: ApprovalPriority)
    /// An allocation's approval decided: the allocation moves with it.
    case allocationDecided(approval: Int32, approve: Bool, by: String?, note: String?)
    case slaSet(entity: ApprovalEntity, seconds: Int64)
}

/// What callers ask of a deal actor about its people (boxed in
/// `DealRequest.people`, so the hold path's request stays small).
public enum PeopleRequest: Sendable {
    case addMember(user: String, role: DealMemberRole, investor: String?)
    case removeMember(user: String)
    case getMember(user: String)
    case listMembers(cursor: UInt64, count: Int)
    /// The token is made in the actor (from the engine's secret source) and
    /// shown once in the reply; only its hash is kept.
    case createInvite(role: DealMemberRole, ttlSeconds: Int64?, uses: Int32?)
    case acceptInvite(tokenHash: String, investor: String?)
    case revokeInvite(id: String)
    case getInvite(id: String)
    case commit(investor: String, units: Units?, amount: Money?, id: String?)
    case commitStatus(id: String, to: CommitmentStatus)
    case getCommitment(id: String)
    case assignApproval(id: String, user: String)
    case prioritizeApproval(id: String, priority: ApprovalPriority)
    case decideApproval(id: String, approve: Bool, note: String?)
    case getApproval(id: String)
    case listApprovals(ApprovalFilter, cursor: UInt64, count: Int)
    case setSLA(entity: ApprovalEntity, seconds: Int64)

    public var isChange: Bool {
        switch self {
        case .addMember, .removeMember, .createInvite, .acceptInvite, .revokeInvite, .commit, .commitStatus,
             .assignApproval, .prioritizeApproval, .decideApproval, .setSLA: true
        case .getMember, .listMembers, .getInvite, .getCommitment, .getApproval, .listApprovals: false
        }
    }
}

public struct ApprovalFilter: Sendable, Hashable {
    public var status: ApprovalStatus?
    public var assignee: String?
    public var breached = false
    public init(status: ApprovalStatus? = nil, assignee: String? = nil, breached: Bool = false) {
        self.status = status
        self.assignee = assignee
        self.breached = breached
    }
}
