/// The investments side of the seed (`capital_calls`, `distributions`,
/// `cashflows`): engine-wide rows of vehicles, kept in the directory beside
/// the subscriptions they are computed from and changed under its lock. A
/// capital call's and a distribution's cashflows are computed when they are
/// issued and logged with them, so replay computes nothing.
///
/// Memory: one row per call, distribution and cashflow, bounded by `PortfolioLimits`.
public struct PortfolioBook: Sendable {
    public internal(set) var calls: [String: CapitalCall] = [:]
    public internal(set) var distributions: [String: Distribution] = [:]
    public internal(set) var cashflows = ChunkedArray<CashFlow>()
    /// Investor -> its cashflows' slots, oldest first.
    var byInvestor: [String: [Int32]] = [:]
    public init() {}

    mutating func append(_ flows: [CashFlow]) {
        for f in flows {
            byInvestor[f.investor, default: []].append(Int32(cashflows.count))
            cashflows.append(f)
        }
    }
}

public enum PortfolioLimits {
    public static let maxCapitalCalls = 1_000_000
    public static let maxDistributions = 1_000_000
    public static let maxCashflows = 10_000_000
    /// Cashflows one call or distribution makes.
    public static let maxFlowsPerEvent = 100_000
}

/// `capital_calls`: `call_pct` is `numeric(7,4)`, a percent with 4 decimals (0 < pct <= 100).
public struct CapitalCall: Hashable, Sendable {
    public var id: String
    public var vehicle: String
    public var name: String?
    /// The percent at 10^-4 (12.5 % = 125 000).
    public var pctRaw: Int64
    public var dueDate: CivilDate?
    public var issued = false
    public var createdAt: Int64 = 0
    public init(id: String, vehicle: String, name: String?, pctRaw: Int64, dueDate: CivilDate?) {
        self.id = id
        self.vehicle = vehicle
        self.name = name
        self.pctRaw = pctRaw
        self.dueDate = dueDate
    }
    public var pctText: String { FixedPoint.format(Int128(pctRaw), scale: 4, minimumDecimals: 4) }
}

/// `distributions`.
public struct Distribution: Hashable, Sendable {
    public var id: String
    public var vehicle: String
    public var name: String?
    public var amount: Money
    public var date: CivilDate
    public var classification: String?
    public var createdAt: Int64 = 0
    public init(id: String, vehicle: String, name: String?, amount: Money, date: CivilDate, classification: String?) {
        self.id = id
        self.vehicle = vehicle
        self.name = name
        self.amount = amount
        self.date = date
        self.classification = classification
    }
}

public enum CashFlowKind: UInt8, Sendable, CaseIterable {
    case call, distribution
    public var name: String { self == .call ? "call" : "distribution" }
}

/// `cashflows`: money called from or distributed to an investor in a vehicle.
public struct CashFlow: Hashable, Sendable {
    public var investor: String
    public var vehicle: String
    public var kind: CashFlowKind
    public var amount: Money
    public var date: CivilDate
    /// The capital call or distribution.
    public var ref: String
    public init(investor: String, vehicle: String, kind: CashFlowKind, amount: Money, date: CivilDate, ref: String) {
        self.investor = investor
        self.vehicle = vehicle
        self.kind = kind
        self.amount = amount
        self.date = date
        self.ref = ref
    }
}

/// The cents of a capital call and the split of a distribution.
public enum CashFlowMath {
    /// commitment × pct (a percent at 10^-4), rounded to the cent half away from zero.
    public static func call(commitment: Money, pctRaw: Int64) -> Money {
        Money(raw: MoneyMath.mulDivRound(commitment.raw, Int128(pctRaw), 1_000_000))
    }

    /// `amount` split pro rata to `units` (each > 0), in whole cents that add up
    /// exactly to it: every share is first rounded down, then the cents left go
    /// one each to the largest remainders, ties to the lower investor id.
    /// Nil when a product does not fit 256 bits (beyond the engine's limits).
    public static func split(_ amount: Money, by holders: [(investor: String, units: Units)]) -> [(String, Money)]? {
        let total = holders.reduce(Int128(0)) { $0 + $1.units.raw }
        guard total > 0, amount.raw >= 0 else { return nil }
        var shares: [(investor: String, cents: Int128, remainder: Int128)] = []
        var given: Int128 = 0
        for h in holders {
            // amount × units / total, exactly: a 256-bit product, divided.
            let product = amount.raw.multipliedFullWidth(by: h.units.raw)
            guard product.high >= 0, total > product.high else { return nil }
            let (q, r) = total.dividingFullWidth(product)
            shares.append((h.investor, q, r))
            given += q
        }
        var left = amount.raw - given
        let order = shares.indices.sorted { a, b in
            shares[a].remainder != shares[b].remainder ? shares[a].remainder > shares[b].remainder : shares[a].investor < shares[b].investor
        }
        for i in order where left > 0 {
            shares[i].cents += 1
            left -= 1
        }
        return shares.map { ($0.investor, Money(raw: $0.cents)) }
    }
}

extension PortfolioBook {
    /// Applies one of the book's changes (routed here by `Directory.apply`).
    mutating func apply(_ change: DirectoryChange, time: Int64, directory: Directory) throws(EngineError) {
        func room(_ n: Int) throws(EngineError) {
            guard n <= PortfolioLimits.maxFlowsPerEvent, cashflows.count + n <= PortfolioLimits.maxCashflows else {
                throw EngineError(.limit, "the engine keeps at most \(PortfolioLimits.maxCashflows) cashflows, \(PortfolioLimits.maxFlowsPerEvent) per call or distribution")
            }
        }
        switch change {
        case .capitalCallCreated(var c):
            guard directory.vehicles[c.vehicle] != nil else { throw EngineError(.notFound, "vehicle \(c.vehicle) not found") }
            guard calls[c.id] == nil else { throw EngineError(.exists, "capital call \(c.id) already exists") }
            guard c.pctRaw > 0 && c.pctRaw <= 1_000_000 else { throw EngineError(.invalid, "call pct is more than 0 and at most 100") }
            guard calls.count < PortfolioLimits.maxCapitalCalls else { throw EngineError(.limit, "the engine has the maximum of \(PortfolioLimits.maxCapitalCalls) capital calls") }
            c.createdAt = time
            c.issued = false
            calls[c.id] = c
        case .capitalCallIssued(let id, let flows):
            guard let c = calls[id] else { throw EngineError(.notFound, "capital call \(id) not found") }
            guard !c.issued else { throw EngineError(.conflict, "capital call \(id) is issued already") }
            try room(flows.count)
            for f in flows {
                guard f.kind == .call, f.ref == id, f.vehicle == c.vehicle, f.amount.raw >= 0 else { throw EngineError(.invalid, "a cashflow of call \(id) names another event") }
            }
            calls[id]!.issued = true
            append(flows)
        case .distributionCreated(var d, let flows):
            guard directory.vehicles[d.vehicle] != nil else { throw EngineError(.notFound, "vehicle \(d.vehicle) not found") }
            guard distributions[d.id] == nil else { throw EngineError(.exists, "distribution \(d.id) already exists") }
            guard distributions.count < PortfolioLimits.maxDistributions else { throw EngineError(.limit, "the engine has the maximum of \(PortfolioLimits.maxDistributions) distributions") }
            try room(flows.count)
            // The cashflows add up exactly to the amount (largest remainder).
            guard flows.allSatisfy({ $0.kind == .distribution && $0.ref == d.id && $0.vehicle == d.vehicle && $0.amount.raw >= 0 }),
                  flows.reduce(Int128(0), { $0 + $1.amount.raw }) == d.amount.raw || flows.isEmpty else {
                throw EngineError(.invalid, "the cashflows of distribution \(d.id) do not add up to \(d.amount)")
            }
            d.createdAt = time
            distributions[d.id] = d
            append(flows)
        default:
            preconditionFailure("not a portfolio change")
        }
    }

    public func cashflows(of investor: String) -> [Int32] { byInvestor[investor] ?? [] }

    public func cashflowFields(_ slot: Int32) -> [Field] {
        let f = cashflows[Int(slot)]
        return [
            Field("investor", f.investor), Field("vehicle", f.vehicle), Field("type", f.kind.name), Field("amount", f.amount.description),
            Field("date", f.date.description), Field("ref_id", f.ref),
        ]
    }

    public func callFields(_ id: String) -> [Field]? {
        guard let c = calls[id] else { return nil }
        let flows = cashflows.lazy.filter { $0.kind == .call && $0.ref == id }
        return [
            Field("id", c.id), Field("vehicle", c.vehicle), Field("name", c.name), Field("call_pct", c.pctText),
            Field("due_date", c.dueDate?.description), Field("status", c.issued ? "issued" : "draft"),
            Field("cashflows", String(flows.count)), Field("total", Money(raw: flows.reduce(Int128(0)) { $0 + $1.amount.raw }).description),
            Field("created_at", String(c.createdAt)),
        ]
    }

    public func distributionFields(_ id: String) -> [Field]? {
        guard let d = distributions[id] else { return nil }
        let flows = cashflows.lazy.filter { $0.kind == .distribution && $0.ref == id }
        return [
            Field("id", d.id), Field("vehicle", d.vehicle), Field("name", d.name), Field("amount", d.amount.description),
            Field("date", d.date.description), Field("classification", d.classification), Field("cashflows", String(flows.count)),
            Field("created_at", String(d.createdAt)),
        ]
    }
}
