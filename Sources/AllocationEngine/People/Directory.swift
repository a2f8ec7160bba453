/// The engine-wide people and reference data: users (`profiles`), investors,
/// the links between them (`investor_users`), tokens, vehicles, subscriptions
/// and share sources. Rarely written and small next to the deals, so one lock
/// guards it (`Engine.directory`); every change is a logged `DirectoryChange`
/// applied by `apply`, by the live engine and by replay alike.
///
/// Memory: proportional to the rows (users, investors, links, tokens,
/// vehicles, subscriptions, sources), each bounded by `DirectoryLimits`.
public struct Directory: Sendable {
    public internal(set) var users: [String: UserProfile] = [:]
    /// Lowercased email -> user: emails are unique, compared case-insensitively (citext).
    var emails: [String: String] = [:]
    public internal(set) var investors: [String: InvestorRecord] = [:]
    /// Token hash -> token. Tokens are never kept in plain text.
    public internal(set) var tokens: [String: UserToken] = [:]
    public internal(set) var vehicles: [String: Vehicle] = [:]
    public internal(set) var subscriptions: [String: Subscription] = [:]
    public internal(set) var sources: [String: ShareSource] = [:]
    /// The sequence of generated subscription ids (`sub<n>`).
    public internal(set) var subscriptionSequence: UInt64 = 0
    /// The engine-wide money rows: bank transactions, introducers, valuations (Money/MoneyLedger.swift).
    public internal(set) var ledger = MoneyLedger()
    /// Capital calls, distributions and the cashflows they make (Portfolio/CashFlow.swift).
    public internal(set) var portfolio = PortfolioBook()

    public init() {}

    // MARK: - Apply

    /// Applies a change after checking it against the directory; a change that
    /// does not fit throws and changes nothing (so a refused command and a
    /// damaged record alike leave the directory as it was).
    public mutating func apply(_ change: DirectoryChange, time: Int64) throws(EngineError) {
        switch change {
        case .userSet(let u):
            let emailKey = u.email?.lowercased()
            if let emailKey, let owner = emails[emailKey], owner != u.id {
                throw EngineError(.exists, "email \(u.email!) is already used by user \(owner)")
            }
            if let old = users[u.id] {
                if let e = old.email?.lowercased() { emails[e] = nil }
                var updated = u
                updated.createdAt = old.createdAt
                updated.investors = old.investors
                users[u.id] = updated
            } else {
                guard users.count < DirectoryLimits.maxUsers else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxUsers) users") }
                var created = u
                created.createdAt = time
                created.investors = []
                users[u.id] = created
            }
            if let emailKey { emails[emailKey] = u.id }
        case .investorCreated(let i):
            guard investors[i.id] == nil else { throw EngineError(.exists, "investor \(i.id) already exists") }
            guard investors.count < DirectoryLimits.maxInvestors else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxInvestors) investors") }
            var created = i
            created.createdAt = time
            created.users = []
            investors[i.id] = created
        case .investorKYC(let id, let status):
            guard investors[id] != nil else { throw EngineError(.notFound, "investor \(id) not found") }
            investors[id]!.kycStatus = status
        case .investorLinked(let investor, let user):
            guard investors[investor] != nil else { throw EngineError(.notFound, "investor \(investor) not found") }
            guard users[user] != nil else { throw EngineError(.notFound, "user \(user) not found") }
            if users[user]!.investors.contains(investor) { return }
            guard users[user]!.investors.count < DirectoryLimits.maxLinksPerUser,
                  investors[investor]!.users.count < DirectoryLimits.maxLinksPerInvestor else {
                throw EngineError(.limit, "at most \(DirectoryLimits.maxLinksPerUser) investors per user and \(DirectoryLimits.maxLinksPerInvestor) users per investor")
            }
            users[user]!.investors.insertSorted(investor)
            investors[investor]!.users.insertSorted(user)
        case .investorUnlinked(let investor, let user):
            guard investors[investor] != nil else { throw EngineError(.notFound, "investor \(investor) not found") }
            guard users[user] != nil else { throw EngineError(.notFound, "user \(user) not found") }
            guard users[user]!.investors.contains(investor) else {
                throw EngineError(.notFound, "user \(user) is not linked to investor \(investor)")
            }
            users[user]!.investors.removeAll { $0 == investor }
            investors[investor]!.users.removeAll { $0 == user }
        case .tokenIssued(let t):
            guard users[t.user] != nil else { throw EngineError(.notFound, "user \(t.user) not found") }
            guard tokens[t.tokenHash] == nil else { throw EngineError(.exists, "token already registered") }
            guard tokens.count < DirectoryLimits.maxTokens else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxTokens) tokens; revoke some") }
            tokens[t.tokenHash] = t
        case .tokensRevoked(let user):
            guard users[user] != nil else { throw EngineError(.notFound, "user \(user) not found") }
            tokens = tokens.filter { $0.value.user != user }
        case .legacyToken(let user, let role, let investorIDs, let hash):
            // TOKEN.CREATE's first form, one record: the user (role set, the
            // rest kept), each investor (registered with KYC pending when new),
            // the links, the token. Every check comes first, so it applies
            // whole or not at all.
            let ids = Array(Set(investorIDs)).sorted()
            guard tokens[hash] == nil else { throw EngineError(.exists, "token already registered") }
            guard tokens.count < DirectoryLimits.maxTokens else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxTokens) tokens; revoke some") }
            guard users[user] != nil || users.count < DirectoryLimits.maxUsers else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxUsers) users") }
            let newInvestors = ids.filter { investors[$0] == nil }
            guard investors.count + newInvestors.count <= DirectoryLimits.maxInvestors else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxInvestors) investors") }
            let linked = users[user]?.investors ?? []
            let newLinks = ids.filter { !linked.contains($0) }
            guard linked.count + newLinks.count <= DirectoryLimits.maxLinksPerUser,
                  newLinks.allSatisfy({ (investors[$0]?.users.count ?? 0) < DirectoryLimits.maxLinksPerInvestor }) else {
                throw EngineError(.limit, "at most \(DirectoryLimits.maxLinksPerUser) investors per user and \(DirectoryLimits.maxLinksPerInvestor) users per investor")
            }
            // Cannot fail now: the user keeps its email; new investors and links were checked.
            let existing = users[user]
            do throws(EngineError) {
                try apply(.userSet(UserProfile(id: user, role: role, name: existing?.name, email: existing?.email, title: existing?.title)), time: time)
                for i in newInvestors { try apply(.investorCreated(InvestorRecord(id: i, legalName: i)), time: time) }
                for i in newLinks { try apply(.investorLinked(investor: i, user: user), time: time) }
            } catch {
                preconditionFailure("a checked legacy token record failed to apply: \(error)")
            }
            tokens[hash] = UserToken(user: user, tokenHash: hash, createdAt: time)
        case .vehicleCreated(let v):
            guard vehicles[v.id] == nil else { throw EngineError(.exists, "vehicle \(v.id) already exists") }
            guard vehicles.count < DirectoryLimits.maxVehicles else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxVehicles) vehicles") }
            var created = v
            created.createdAt = time
            vehicles[v.id] = created
        case .subscriptionCreated(let s):
            guard subscriptions[s.id] == nil else { throw EngineError(.exists, "subscription \(s.id) already exists") }
            guard investors[s.investor] != nil else { throw EngineError(.notFound, "investor \(s.investor) not found") }
            guard vehicles[s.vehicle] != nil else { throw EngineError(.notFound, "vehicle \(s.vehicle) not found") }
            guard subscriptions.count < DirectoryLimits.maxSubscriptions else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxSubscriptions) subscriptions") }
            var created = s
            created.createdAt = time
            created.status = .pending
            subscriptions[s.id] = created
            if let n = Subscription.generatedSequence(s.id) { subscriptionSequence = max(subscriptionSequence, n) }
        case .subscriptionStatus(let id, let status):
            guard let s = subscriptions[id] else { throw EngineError(.notFound, "subscription \(id) not found") }
            guard s.status == .pending, status != .pending else {
                throw EngineError(.conflict, "subscription \(id) is \(s.status.rawValue); it cannot become \(status.rawValue)")
            }
            subscriptions[id]!.status = status
        case .bankImported, .introducerCreated, .introducerStatus, .valuationSet:
            try ledger.apply(change, time: time, directory: self)
        case .capitalCallCreated, .capitalCallIssued, .distributionCreated:
            try portfolio.apply(change, time: time, directory: self)
        case .sourceCreated(let s):
            guard sources[s.id] == nil else { throw EngineError(.exists, "share source \(s.id) already exists") }
            guard sources.count < DirectoryLimits.maxSources else { throw EngineError(.limit, "the engine has the maximum of \(DirectoryLimits.maxSources) share sources") }
            sources[s.id] = s
        }
    }

    // MARK: - Reads

    /// The principal a token stands for now, or nil when it is unknown or revoked.
    public func principal(forTokenHash hash: String) -> Principal? {
        guard let t = tokens[hash], let u = users[t.user] else { return nil }
        var linked: [String: KYCStatus] = [:]
        for i in u.investors { linked[i] = investors[i]?.kycStatus ?? .pending }
        return Principal(user: u.id, role: u.role, investors: linked, introducers: ledger.introducers(ofUser: u.id))
    }

    public func principal(forToken token: String) -> Principal? { principal(forTokenHash: SHA256.hex(token)) }

    public func kyc(_ investor: String) -> KYCStatus? { investors[investor]?.kycStatus }

    public func nextSubscriptionID() -> String {
        var n = subscriptionSequence + 1
        while subscriptions["sub\(n)"] != nil { n += 1 }
        return "sub\(n)"
    }
}

/// A logged change of the directory (record types 20-29; docs/wal-format.md).
/// Indirect: every payload is boxed, so a change is one pointer wherever it
/// goes, async frames included (no inline 128-bit money there; see Paging).
public indirect enum DirectoryChange: Hashable, Sendable {
    /// Creates the user or updates its role, name, email and title (links and
    /// `created_at` are kept).
    case userSet(UserProfile)
    case investorCreated(InvestorRecord)
    case investorKYC(investor: String, status: KYCStatus)
    case investorLinked(investor: String, user: String)
    case investorUnlinked(investor: String, user: String)
    case tokenIssued(UserToken)
    case tokensRevoked(user: String)
    /// `token.created` (type 10): TOKEN.CREATE's first form, the user with a
    /// role and investors, and its token (also the first log format's record).
    case legacyToken(user: String, role: UserRole, investors: [String], tokenHash: String)
    case vehicleCreated(Vehicle)
    case subscriptionCreated(Subscription)
    case subscriptionStatus(id: String, status: SubscriptionStatus)
    case sourceCreated(ShareSource)
    /// The engine-wide money rows (types 80-83; Money/MoneyLedger.swift).
    case bankImported(BankTransaction)
    case introducerCreated(Introducer)
    case introducerStatus(id: String, active: Bool)
    case valuationSet(Valuation)
    /// The portfolio's rows (types 84-86; Portfolio/CashFlow.swift), cashflows computed and logged.
    case capitalCallCreated(CapitalCall)
    case capitalCallIssued(call: String, [CashFlow])
    case distributionCreated(Distribution, [CashFlow])
}

public enum DirectoryLimits {
    public static let maxUsers = 1_000_000
    public static let maxInvestors = 1_000_000
    public static let maxTokens = 1_000_000
    public static let maxLinksPerUser = 1_000
    public static let maxLinksPerInvestor = 1_000
    public static let maxVehicles = 100_000
    public static let maxSubscriptions = 1_000_000
    public static let maxSources = 100_000
}

/// `profiles`.
public struct UserProfile: Hashable, Sendable {
    public var id: String
    public var role: UserRole
    public var name: String?
    public var email: String?
    public var title: String?
    public var createdAt: Int64 = 0
    /// Linked investors, sorted.
    public var investors: [String] = []
    public init(id: String, role: UserRole, name: String? = nil, email: String? = nil, title: String? = nil) {
        self.id = id
        self.role = role
        self.name = name
        self.email = email
        self.title = title
    }
}

/// `investors`.
public struct InvestorRecord: Hashable, Sendable {
    public var id: String
    public var legalName: String
    /// `individual` or `entity`.
    public var type: String?
    /// ISO 3166 alpha-2.
    public var country: String?
    public var kycStatus: KYCStatus = .pending
    public var createdAt: Int64 = 0
    /// Linked users, sorted.
    public var users: [String] = []
    public init(id: String, legalName: String, type: String? = nil, country: String? = nil, kycStatus: KYCStatus = .pending) {
        self.id = id
        self.legalName = legalName
        self.type = type
        self.country = country
        self.kycStatus = kycStatus
    }
}

/// A token of a user, by the SHA-256 of the token.
public struct UserToken: Sendable, Hashable {
    public var user: String
    public var tokenHash: String
    public var createdAt: Int64
    public init(user: String, tokenHash: String, createdAt: Int64) {
        self.user = user
        self.tokenHash = tokenHash
        self.createdAt = createdAt
    }
}

public enum VehicleType: String, Sendable, CaseIterable { case fund, spv, securitization, note, other }

/// `vehicles`.
public struct Vehicle: Hashable, Sendable {
    public var id: String
    public var name: String
    public var type: VehicleType?
    public var domicile: String?
    public var currency: String = "USD"
    public var createdAt: Int64 = 0
    public init(id: String, name: String, type: VehicleType? = nil, domicile: String? = nil, currency: String = "USD") {
        self.id = id
        self.name = name
        self.type = type
        self.domicile = domicile
        self.currency = currency
    }
}

public enum SubscriptionStatus: String, Sendable, CaseIterable { case pending, active, cancelled }

/// `subscriptions`: an investor's commitment to a vehicle.
public struct Subscription: Hashable, Sendable {
    public var id: String
    public var investor: String
    public var vehicle: String
    public var commitment: Money
    public var currency: String = "USD"
    public var status: SubscriptionStatus = .pending
    public var createdAt: Int64 = 0
    public init(id: String, investor: String, vehicle: String, commitment: Money, currency: String = "USD") {
        self.id = id
        self.investor = investor
        self.vehicle = vehicle
        self.commitment = commitment
        self.currency = currency
    }
    /// n of a generated id `sub<n>`.
    static func generatedSequence(_ id: String) -> UInt64? {
        guard id.hasPrefix("sub"), id.count > 3 else { return nil }
        return UInt64(id.dropFirst(3))
    }
}

public enum ShareSourceKind: String, Sendable, CaseIterable { case company, fund, colleague, other }

/// `share_sources`: where a lot's shares came from.
public struct ShareSource: Hashable, Sendable {
    public var id: String
    public var kind: ShareSourceKind
    public var counterparty: String?
    public var notes: String?
    public init(id: String, kind: ShareSourceKind, counterparty: String? = nil, notes: String? = nil) {
        self.id = id
        self.kind = kind
        self.counterparty = counterparty
        self.notes = notes
    }
}

extension Array where Element == String {
    mutating func insertSorted(_ s: String) {
        var lo = 0, hi = count
        while lo < hi { let mid = (lo + hi) / 2; if self[mid] < s { lo = mid + 1 } else { hi = mid } }
        insert(s, at: lo)
    }
}
