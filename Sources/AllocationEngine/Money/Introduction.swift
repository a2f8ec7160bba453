/// Introducer attribution inside a deal (`introductions`,
/// `introducer_commissions`): who brought which prospect to the deal, and
/// the commissions that accrue when the prospect's allocations are approved
/// (basis `invested_amount`) or its fee events accrue (the fee bases). Both
/// live in the deal's actor beside the allocations and fees they follow, so a
/// commission is logged in the same record as what it accrues from.
public struct Introduction: Hashable, Sendable {
    public var id: String
    public var introducer: String
    /// The prospect: an investor, or an email until a user with it joins (then its investor too).
    public var investor: String?
    public var email: String?
    public var rateBps: Int32
    public var basis: CommissionBasis
    public var status: IntroductionStatus = .invited
    public var createdBy: String?
    public var createdAt: Int64 = 0
    public init(id: String, introducer: String, investor: String?, email: String?, rateBps: Int32, basis: CommissionBasis, createdBy: String?) {
        self.id = id
        self.introducer = introducer
        self.investor = investor
        self.email = email
        self.rateBps = rateBps
        self.basis = basis
        self.createdBy = createdBy
    }
    /// Whether it still earns: `lost` ends it.
    var isLive: Bool { status != .lost }
}

public enum IntroductionStatus: UInt8, Sendable, CaseIterable {
    case invited, joined, allocated, lost
    public var name: String { ["invited", "joined", "allocated", "lost"][Int(rawValue)] }
}

public enum CommissionBasis: String, Sendable, CaseIterable {
    case investedAmount = "invested_amount", spread, managementFee = "management_fee", performanceFee = "performance_fee"

    /// The basis a fee of this component pays commission on, if any.
    static func of(_ c: FeeComponent) -> CommissionBasis? {
        switch c.kind {
        case .management: .managementFee
        case .performance: .performanceFee
        case .spreadMarkup: .spread
        default: c.method == .perUnitSpread ? .spread : nil
        }
    }
}

public enum CommissionStatus: UInt8, Sendable, CaseIterable {
    case accrued, invoiced, paid, cancelled
    public var name: String { ["accrued", "invoiced", "paid", "cancelled"][Int(rawValue)] }
    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
}

/// `introducer_commissions`. The amount is decided when it accrues and logged.
public struct Commission: Hashable, Sendable {
    public var introducer: String
    /// The introduction's slot in the deal.
    public var introduction: Int32
    public var investor: String
    public var basis: CommissionBasis
    public var rateBps: Int32
    /// What the rate applies to: the investment, or the fee event's amount.
    public var baseAmount: Money
    public var amount: Money
    public var currency: String
    /// The allocation's slot (`invested_amount`) or the fee event's slot (the fee bases).
    public var source: Int32
    public var status: CommissionStatus = .accrued
    /// The statement (an invoice of the deal) it is on, or -1.
    public var statement: Int32 = -1
    public var paidAt: Int64?
    public var createdAt: Int64 = 0
    var key: CommissionKey { CommissionKey(introduction: introduction, source: source, onFee: basis != .investedAmount) }
}

/// A commission accrues once per introduction and allocation (or fee event).
struct CommissionKey: Hashable, Sendable {
    var introduction: Int32
    var source: Int32
    var onFee: Bool
}

public enum IntroductionLimits {
    public static let maxIntroductionsPerDeal = 1_000_000
    public static let maxCommissionsPerDeal = 10_000_000
}
