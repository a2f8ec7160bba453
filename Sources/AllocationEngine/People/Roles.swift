/// The seed keeps two role lists, and so does the engine: a user's global role
/// (`user_role`: what the user is on the platform) and a member's role inside
/// one deal (`deal_member_role`: what the user is to that deal). Staff act in
/// every deal by their global role; everyone else acts in a deal only through
/// a membership, by its deal role.
public enum UserRole: String, Sendable, CaseIterable {
    case investor, staffAdmin = "staff_admin", staffOps = "staff_ops", staffRM = "staff_rm"

    public var isStaff: Bool { self != .investor }

    /// What a global role may do, by kind of command. A non-staff user's
    /// commands are then checked against its membership inside the deal actor.
    public enum Permission: String, Sendable, CaseIterable {
        /// Reads (every user; deal reads are further limited to members).
        case read
        /// Place, release and allocate holds; commit (for investors the user acts for).
        case hold
        /// Reads only staff make: the approval queue.
        case staffRead
        /// Decide: approve, reject, settle allocations; review and decide commitments; approvals.
        case decide
        /// Deals, lots, investors and KYC, vehicles, subscriptions, share sources, snapshots.
        case administer
        /// Deal memberships and invite links.
        case invite
        /// Users, their investor links and their tokens.
        case manageUsers
    }

    /// The roles table of docs/protocol.md.
    public func allows(_ p: Permission) -> Bool {
        switch self {
        case .staffAdmin: true
        case .staffOps: p != .manageUsers
        case .staffRM: p == .read || p == .hold || p == .staffRead || p == .invite
        case .investor: p == .read || p == .hold
        }
    }
}

/// A member's role in one deal (`deal_member_role`).
public enum DealMemberRole: String, Sendable, CaseIterable {
    case investor, coInvestor = "co_investor", spouse, advisor, lawyer, banker, introducer, viewer, versoStaff = "verso_staff"

    /// Only these place, release and allocate holds and commit; the others read.
    public var holds: Bool { self == .investor || self == .coInvestor }

}

public enum KYCStatus: String, Sendable, CaseIterable {
    case pending, approved, rejected
}

/// A role or status stored in the log and snapshots as one byte: its
/// position in `allCases` (so cases are only ever appended, never reordered).
protocol LoggedCase: CaseIterable, Equatable where AllCases == [Self] {}

extension LoggedCase {
    var code: UInt8 { UInt8(Self.allCases.firstIndex(of: self)!) }
    init?(code: UInt8) {
        guard Int(code) < Self.allCases.count else { return nil }
        self = Self.allCases[Int(code)]
    }
}

extension UserRole: LoggedCase {}
extension DealMemberRole: LoggedCase {}
extension KYCStatus: LoggedCase {}

/// Who is on the other end of a connection, as the directory knew it when the
/// command was parsed.
public struct Principal: Sendable, Hashable {
    public var user: String
    public var role: UserRole
    /// The investors the user is linked to (`investor_users`), with their KYC status.
    public var investors: [String: KYCStatus]
    /// The introducers whose portal login the user is: it reads their introductions and commissions.
    public var introducers: [String]
    public static let admin = Principal(user: "admin", role: .staffAdmin, investors: [:])
    public init(user: String, role: UserRole, investors: [String: KYCStatus] = [:], introducers: [String] = []) {
        self.user = user
        self.role = role
        self.investors = investors
        self.introducers = introducers
    }
    public var isStaff: Bool { role.isStaff }
    public func actsFor(_ investor: String) -> Bool { isStaff || investors[investor] != nil }
}
