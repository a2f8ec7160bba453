/// The engine-wide money rows, kept in the directory beside the people they
/// name and changed under its lock by logged `DirectoryChange`s: imported bank
/// transactions (`bank_transactions`), introducers (`introducers`) and the
/// valuations of vehicles (`valuations`). What each deal matches, owes or
/// accrues against them lives in the deal's actor (payments, introductions,
/// commissions); the sums that cross deals (how much of a transaction is
/// matched) are derived from those rows (`BankMatches`), never stored twice.
///
/// Memory: one row per transaction, introducer and valuation, bounded by
/// `LedgerLimits`.
public struct MoneyLedger: Sendable {
    /// Bank transactions in import order; `bankSlot` finds one by its id.
    public internal(set) var bank = ChunkedArray<BankTransaction>()
    var bankSlot: [String: Int32] = [:]
    public internal(set) var introducers: [String: Introducer] = [:]
    /// Vehicle -> its valuations, oldest `as_of_date` first (one per day).
    public internal(set) var valuations: [String: [Valuation]] = [:]
    public init() {}

    public func transaction(_ id: String) -> BankTransaction? { bankSlot[id].map { bank[Int($0)] } }

    /// The introducers whose portal login is `user` (an introducer user reads only these).
    public func introducers(ofUser user: String) -> [String] {
        introducers.values.filter { $0.user == user }.map(\.id).sorted()
    }

    /// Applies one of the ledger's changes (routed here by `Directory.apply`).
    mutating func apply(_ change: DirectoryChange, time: Int64, directory: Directory) throws(EngineError) {
        switch change {
        case .bankImported(var t):
            guard bankSlot[t.id] == nil else { throw EngineError(.exists, "bank transaction \(t.id) was imported already") }
            guard bank.count < LedgerLimits.maxBankTransactions else {
                throw EngineError(.limit, "the engine has the maximum of \(LedgerLimits.maxBankTransactions) bank transactions")
            }
            t.createdAt = time
            bankSlot[t.id] = Int32(bank.count)
            bank.append(t)
        case .introducerCreated(var i):
            guard introducers[i.id] == nil else { throw EngineError(.exists, "introducer \(i.id) already exists") }
            if let u = i.user, directory.users[u] == nil { throw EngineError(.notFound, "user \(u) not found") }
            guard introducers.count < LedgerLimits.maxIntroducers else {
                throw EngineError(.limit, "the engine has the maximum of \(LedgerLimits.maxIntroducers) introducers")
            }
            i.createdAt = time
            introducers[i.id] = i
        case .introducerStatus(let id, let active):
            guard introducers[id] != nil else { throw EngineError(.notFound, "introducer \(id) not found") }
            introducers[id]!.active = active
        case .valuationSet(let v):
            guard directory.vehicles[v.vehicle] != nil else { throw EngineError(.notFound, "vehicle \(v.vehicle) not found") }
            var list = valuations[v.vehicle] ?? []
            // One valuation per vehicle and day (the seed's unique key): a new one for the day replaces it.
            let at = list.firstIndex { $0.asOf >= v.asOf } ?? list.count
            if at < list.count && list[at].asOf == v.asOf {
                list[at] = v
            } else {
                guard list.count < LedgerLimits.maxValuationsPerVehicle else {
                    throw EngineError(.limit, "vehicle \(v.vehicle) has the maximum of \(LedgerLimits.maxValuationsPerVehicle) valuations")
                }
                list.insert(v, at: at)
            }
            valuations[v.vehicle] = list
        default:
            preconditionFailure("not a ledger change")
        }
    }
}

public enum LedgerLimits {
    public static let maxBankTransactions = 10_000_000
    public static let maxIntroducers = 100_000
    public static let maxValuationsPerVehicle = 100_000
    /// Text fields of a bank line (memo, counterparty): bytes.
    public static let maxBankText = 512
}

/// `bank_transactions`: a line of a bank statement, imported once by its id.
/// A positive amount is money received (what invoices are reconciled
/// against); a negative one is money paid out, kept and listed, never matched.
public struct BankTransaction: Hashable, Sendable {
    public var id: String
    public var accountRef: String
    public var amount: Money
    public var currency: String
    public var valueDate: CivilDate
    public var memo: String?
    public var counterparty: String?
    public var batch: String?
    public var createdAt: Int64 = 0
    public init(id: String, accountRef: String, amount: Money, currency: String, valueDate: CivilDate, memo: String?, counterparty: String?, batch: String?) {
        self.id = id
        self.accountRef = accountRef
        self.amount = amount
        self.currency = currency
        self.valueDate = valueDate
        self.memo = memo
        self.counterparty = counterparty
        self.batch = batch
    }
    /// The same transaction as imported (everything but the import time).
    public func sameFields(as o: BankTransaction) -> Bool {
        var a = self, b = o
        a.createdAt = 0
        b.createdAt = 0
        return a == b
    }
}

/// `introducers`: someone paid a commission for bringing investors to deals.
public struct Introducer: Hashable, Sendable {
    public var id: String
    public var legalName: String
    /// `default_commission_bps`: the rate of an introduction that names none.
    public var commissionBps: Int32?
    /// The portal login: that user reads the introducer's introductions and commissions.
    public var user: String?
    public var active: Bool
    public var createdAt: Int64 = 0
    public init(id: String, legalName: String, commissionBps: Int32?, user: String?, active: Bool) {
        self.id = id
        self.legalName = legalName
        self.commissionBps = commissionBps
        self.user = user
        self.active = active
    }
}

/// `valuations`: a vehicle's NAV on a day.
public struct Valuation: Hashable, Sendable {
    public var vehicle: String
    public var asOf: CivilDate
    public var navPerUnit: Price
    public var navTotal: Money?
    public var setBy: String?
    public init(vehicle: String, asOf: CivilDate, navPerUnit: Price, navTotal: Money?, setBy: String?) {
        self.vehicle = vehicle
        self.asOf = asOf
        self.navPerUnit = navPerUnit
        self.navTotal = navTotal
        self.setBy = setBy
    }
}
