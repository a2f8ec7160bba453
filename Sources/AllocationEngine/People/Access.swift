/// Users and their tokens (the seed's `user_role` and `deal_member_role`), kept
/// as SHA-256 hashes of the tokens only: neither the log nor a snapshot ever
/// holds a token in plain text.
public enum UserRole: String, Sendable, CaseIterable {
    case investor, staffAdmin = "staff_admin", staffOps = "staff_ops", staffRM = "staff_rm"
    case coInvestor = "co_investor", spouse, advisor, lawyer, banker, introducer, viewer, versoStaff = "verso_staff"

    public var isStaff: Bool { self == .staffAdmin || self == .staffOps || self == .staffRM || self == .versoStaff }

    /// What a role may do, by kind of command.
    public enum Permission: Sendable { case read, hold, decide, administer, manageUsers }

    public func allows(_ p: Permission) -> Bool {
        switch self {
        case .staffAdmin: true
        case .staffOps: p != .manageUsers
        case .staffRM, .versoStaff: p == .read || p == .hold
        case .investor, .coInvestor: p == .read || p == .hold
        case .spouse, .advisor, .lawyer, .banker, .introducer, .viewer: p == .read
        }
    }
    /// Staff see every investor's rows; everyone else only the investors linked to them.
    public var seesAllInvestors: Bool { isStaff }
}

public struct UserToken: Sendable, Hashable {
    public var user: String
    public var role: UserRole
    public var investors: [String]
    public var tokenHash: String
    public var createdAt: Int64
}

/// Who is on the other end of a connection.
public struct Principal: Sendable, Hashable {
    public var user: String
    public var role: UserRole
    /// nil: every investor (staff); otherwise only these.
    public var investors: Set<String>?
    public static let admin = Principal(user: "admin", role: .staffAdmin, investors: nil)
    public init(user: String, role: UserRole, investors: Set<String>?) {
        self.user = user
        self.role = role
        self.investors = investors
    }
}

public struct AccessState: Sendable {
    public internal(set) var tokens: [String: UserToken] = [:]
    public init() {}

    mutating func apply(_ t: UserToken) throws(EngineError) {
        guard tokens[t.tokenHash] == nil else { throw EngineError(.exists, "token already registered") }
        tokens[t.tokenHash] = t
    }

    public func principal(forToken token: String) -> Principal? {
        guard let t = tokens[SHA256.hex(token)] else { return nil }
        return Principal(user: t.user, role: t.role, investors: t.role.seesAllInvestors ? nil : Set(t.investors))
    }
}
