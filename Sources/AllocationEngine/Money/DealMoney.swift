/// The money side of one deal, owned by its actor beside the lots and the
/// allocations it is computed from: fee plans and their components
/// (`fee_plans`, `fee_components`), each investor's terms (`investor_terms`)
/// and the fee events accrued from allocations (`fee_events`). Fee amounts are
/// computed once, when decided, and logged: replay computes no fee again.
///
/// Memory: one row per plan, component, terms version and fee event, each
/// bounded by `MoneyLimits`; the dedup keys are one per accrued event.
public struct DealMoney: Sendable {
    public internal(set) var plans: [FeePlan] = []
    var planSlot: [String: Int32] = [:]
    /// Slot of the deal's default plan, or -1.
    public internal(set) var defaultPlan: Int32 = -1
    /// Every terms version, oldest first; `activeTerms` names the active one per investor.
    public internal(set) var terms: [InvestorTerms] = []
    var activeTerms: [String: Int32] = [:]
    public internal(set) var feeEvents = ChunkedArray<FeeEvent>()
    /// What has accrued already (not voided): computing again never accrues it twice.
    var accrued: Set<FeeKey> = []
    public internal(set) var termSheets: [TermSheet] = []
    /// Investor -> slot of its latest term sheet (the next version supersedes it).
    var latestSheet: [String: Int32] = [:]
    /// Open term sheets by `valid_until`, for the expiry ticker (stale entries are skipped).
    var sheetExpiry = ExpiryHeap()
    public internal(set) var invoices: [Invoice] = []
    public internal(set) var payments: [Payment] = []
    /// The deal's exit (`DEAL.EXIT`, once per deal): price per unit and day.
    public internal(set) var exit: (price: Price, on: CivilDate)?
    public internal(set) var introductions: [Introduction] = []
    /// Prospect ("i:<investor>" or "e:<lowercased email>") -> its live introduction: one at a time.
    var introducedProspect: [String: Int32] = [:]
    public internal(set) var commissions = ChunkedArray<Commission>()
    /// What has accrued a commission already (not cancelled).
    var commissionKeys: Set<CommissionKey> = []
    /// Invoice x bank transaction -> the live reconciled payment.
    var liveMatch: [DealState.MatchKey: Int32] = [:]
    public init() {}
}

public enum MoneyLimits {
    public static let maxPlansPerDeal = 10_000
    public static let maxComponentsPerPlan = 64
    public static let maxTermsPerDeal = 1_000_000
    public static let maxFeeEventsPerDeal = 10_000_000
    /// Fee events one FEES.COMPUTE may accrue (run it again for the rest).
    public static let maxEventsPerCompute = 100_000
    /// Rates in basis points: 0 to 100 000 (1000 %).
    public static let maxRateBps: Int32 = 100_000
    public static let maxInvoicesPerDeal = 1_000_000
    public static let maxTermSheetsPerDeal = 1_000_000
    public static let maxPaymentsPerDeal = 10_000_000
    /// Live reconciliations of one invoice (one per bank transaction).
    public static let maxMatchesPerInvoice = 10_000
}

public enum FeeKind: String, Sendable, CaseIterable { case subscription, management, performance, spreadMarkup = "spread_markup", flat, other }
public enum FeeMethod: String, Sendable, CaseIterable {
    case percentOfInvestment = "percent_of_investment", percentPerAnnum = "percent_per_annum", percentOfProfit = "percent_of_profit"
    case perUnitSpread = "per_unit_spread", fixed
}
public enum FeeFrequency: String, Sendable, CaseIterable { case oneTime = "one_time", annual, quarterly, monthly, onExit = "on_exit" }

/// `fee_components`.
public struct FeeComponent: Hashable, Sendable {
    public var id: String
    public var kind: FeeKind
    public var method: FeeMethod
    public var rateBps: Int32?
    /// `fixed`: the amount (money).
    public var flatAmount: Money?
    /// `per_unit_spread`: the amount per unit (a price).
    public var perUnit: Price?
    public var frequency: FeeFrequency
    public var hurdleBps: Int32?
    public var highWaterMark: Bool
    public init(id: String, kind: FeeKind, method: FeeMethod, rateBps: Int32? = nil, flatAmount: Money? = nil, perUnit: Price? = nil,
                frequency: FeeFrequency = .oneTime, hurdleBps: Int32? = nil, highWaterMark: Bool = false) {
        self.id = id
        self.kind = kind
        self.method = method
        self.rateBps = rateBps
        self.flatAmount = flatAmount
        self.perUnit = perUnit
        self.frequency = frequency
        self.hurdleBps = hurdleBps
        self.highWaterMark = highWaterMark
    }
}

/// `fee_plans`.
public struct FeePlan: Hashable, Sendable {
    public var id: String
    public var name: String
    public var description: String?
    public var isDefault: Bool
    public var createdAt: Int64 = 0
    public var components: [FeeComponent] = []
    public init(id: String, name: String, description: String?, isDefault: Bool) {
        self.id = id
        self.name = name
        self.description = description
        self.isDefault = isDefault
    }
}

/// `investor_terms`: exactly one active per investor and deal.
public struct InvestorTerms: Hashable, Sendable {
    public var investor: String
    public var plan: Int32
    public var overrides: String?
    public var active: Bool
    public var createdBy: String?
    public var createdAt: Int64
}

public enum FeeEventStatus: UInt8, Sendable, CaseIterable {
    case accrued, invoiced, voided
    public var name: String { ["accrued", "invoiced", "voided"][Int(rawValue)] }
    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
}

/// What makes a fee event unique: the allocation, the plan's component, the period.
struct FeeKey: Hashable, Sendable {
    var allocation: Int32
    var plan: Int32
    var component: Int32
    /// Days since 1970 of the period's first day; `Int32.min` for a one-time fee.
    var period: Int32
}

/// `fee_events`. Amounts are computed when decided and logged.
public struct FeeEvent: Hashable, Sendable {
    public var investor: String
    public var allocation: Int32
    public var plan: Int32
    public var component: Int32
    public var eventDate: CivilDate
    public var periodStart: CivilDate?
    public var periodEnd: CivilDate?
    public var baseAmount: Money
    public var computedAmount: Money
    public var currency: String
    public var status: FeeEventStatus = .accrued
    public var createdAt: Int64 = 0
    /// A periodic performance fee: the NAV per unit it was charged at (the next high-water mark).
    public var navPerUnit: Price?
    var key: FeeKey { FeeKey(allocation: allocation, plan: plan, component: component, period: periodStart?.days ?? .min) }
}

/// A logged change of a deal's money rows (types 60-69). Indirect: boxed
/// payloads (money is 128-bit; see Paging on async frames).
public indirect enum DealMoneyChange: Hashable, Sendable {
    case planCreated(FeePlan)
    case componentAdded(plan: Int32, FeeComponent)
    case termsSet(investor: String, plan: Int32, overrides: String?, by: String?)
    /// The events one FEES.COMPUTE accrued, amounts included.
    case feesAccrued([FeeEvent])
    case feeVoided(event: Int32)
    /// The deal's exit and the performance fees it accrued, amounts included.
    case dealExited(price: Price, on: CivilDate, [FeeEvent])
    /// An invoice and its events becoming `invoiced`: one change.
    case invoiceCreated(Invoice)
    case invoiceSent(invoice: Int32)
    /// Cancelled with nothing paid; its events return to `accrued`.
    case invoiceCancelled(invoice: Int32)
    case paymentRecorded(Payment)
    case paymentRefunded(payment: Int32)
    case termSheetIssued(TermSheet)
    /// Sent, accepted (and, with a plan, the investor's terms set), rejected, or expired (by the ticker).
    case termSheetStatus(sheet: Int32, status: TermSheetStatus, by: String?)
    case introductionCreated(Introduction)
    /// Joined (an email prospect's investor learnt then), allocated, or lost.
    case introductionStatus(introduction: Int32, status: IntroductionStatus, investor: String?)
    /// Commissions accrued, amounts included (with what they accrue from, in one group record).
    case commissionsAccrued([Commission])
    case commissionCancelled(commission: Int32)
    /// A statement: an invoice of accrued commissions of one introducer, which become `invoiced`.
    case statementCreated(Invoice)
    /// The statement's commissions become `paid`, and the statement with them.
    case statementPaid(invoice: Int32, paidAt: Int64, by: String?)
    /// A bank transaction matched to an invoice: an applied payment naming it.
    case reconciled(Payment)
}

/// What callers ask of a deal actor about money (boxed in `DealRequest.money`).
public enum MoneyRequest: Sendable {
    case createPlan(id: String, name: String, description: String?, isDefault: Bool)
    case addComponent(plan: String, FeeComponent)
    case getPlan(String)
    case setTerms(investor: String, plan: String, overrides: String?)
    case getTerms(investor: String)
    case termsHistory(investor: String)
    case computeFees(investor: String?, asOf: CivilDate?)
    case voidFee(String)
    case listFees(investor: String?, status: FeeEventStatus?, cursor: UInt64, count: Int)
    case exit(price: Price, on: CivilDate?)
    case createInvoice(investor: String, due: CivilDate?, taxBps: Int32, id: String?)
    case sendInvoice(String)
    case cancelInvoice(String)
    case getInvoice(String)
    case listInvoices(investor: String?, status: InvoiceStatus?, cursor: UInt64, count: Int)
    case recordPayment(invoice: String, amount: Money, method: String?, paidAt: Int64?, id: String?)
    case refundPayment(String)
    case getPayment(String)
    case issueTermSheet(investor: String, price: Price, plan: String?, validUntil: Int64?, currency: String?, doc: String?)
    case moveTermSheet(String, to: TermSheetStatus)
    case getTermSheet(String)
    case createIntroduction(introducer: String, investor: String?, email: String?, rateBps: Int32?, basis: CommissionBasis, id: String?)
    case loseIntroduction(String)
    case getIntroduction(String)
    case listIntroductions(introducer: String?, cursor: UInt64, count: Int)
    case listCommissions(introducer: String?, status: CommissionStatus?, cursor: UInt64, count: Int)
    case invoiceCommissions(introducer: String)
    case payStatement(String, paidAt: Int64?)
    case cancelCommission(String)
    case reconcile(invoice: String, txn: String, amount: Money)
    case unreconcile(invoice: String, txn: String)

    public var isChange: Bool {
        switch self {
        case .createPlan, .addComponent, .setTerms, .computeFees, .voidFee, .exit, .createInvoice, .sendInvoice, .cancelInvoice,
             .recordPayment, .refundPayment, .issueTermSheet, .moveTermSheet, .createIntroduction, .loseIntroduction,
             .invoiceCommissions, .payStatement, .cancelCommission, .reconcile, .unreconcile: true
        case .getPlan, .getTerms, .termsHistory, .listFees, .getInvoice, .listInvoices, .getPayment, .getTermSheet,
             .getIntroduction, .listIntroductions, .listCommissions: false
        }
    }
}
