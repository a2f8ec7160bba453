/// What callers ask of a deal actor. A batch of these reaches the actor in one
/// call and every request gets its own reply.
public enum DealRequest: Sendable {
    case hold(HoldRequest)
    case release(hold: String)
    case allocate(hold: String, id: String?)
    case approve(allocation: String)
    case reject(allocation: String)
    case settle(allocation: String)
    case setStatus(DealStatus)
    case addLot(LotSpec)
    case resizeLot(lot: String, unitsTotal: Units)
    case getDeal
    case getHold(String)
    case getAllocation(String)
    case getLot(String)
    case inventory
    case position(investor: String)
    /// Members, invite links, commitments, approvals (People/DealPeople.swift).
    indirect case people(PeopleRequest)
    /// Fee plans, terms, fee events (Money/DealMoney.swift).
    indirect case money(MoneyRequest)
    /// The deal's summary and its part of statements (Statements/).
    indirect case statement(StatementRequest)
}

public struct HoldRequest: Sendable, Hashable {
    public var investor: String
    public var units: Units
    public var price: Price
    /// Time to live; the engine's default (30 minutes) when nil.
    public var ttlMillis: Int64?
    /// The caller's own id, for safe retries.
    public var id: String?
    /// Fill what is there instead of all-or-nothing.
    public var partial: Bool
    public init(investor: String, units: Units, price: Price, ttlMillis: Int64? = nil, id: String? = nil, partial: Bool = false) {
        self.investor = investor
        self.units = units
        self.price = price
        self.ttlMillis = ttlMillis
        self.id = id
        self.partial = partial
    }
}

/// A lot's share in a reply, by lot id.
public struct LotShare: Sendable, Hashable {
    public var lot: String
    public var units: Units
}

/// What a successful hold answers: its id, when it expires, and its split.
public struct HoldReceipt: Sendable, Hashable {
    public var id: String
    public var expiresAt: Int64
    public var units: Units
    public var firstPart: LotShare
    /// Further lots (empty for the common single-lot hold: no allocation).
    public var moreParts: [LotShare]
    public var parts: [LotShare] { [firstPart] + moreParts }
    public var partCount: Int { 1 + moreParts.count }
}

/// A row shown as field/value pairs (like HGETALL).
public struct Field: Sendable, Hashable {
    public var name: String
    public var value: String?
    /// Set for a field whose value is a list (shown as an array).
    public var items: [String]?
    /// Set for a field whose value is a list of tuples (an array of arrays).
    public var table: [[String]]?
    public init(_ name: String, _ value: String?) { self.name = name; self.value = value }
    public init(_ name: String, items: [String]) { self.name = name; self.value = nil; self.items = items }
    public init(_ name: String, table: [[String]]) { self.name = name; self.value = nil; self.table = table }
}

public enum DealReply: Sendable, Hashable {
    case ok
    /// A status line with more than OK (`+OK <entries> <head>`).
    case status(String)
    case hold(HoldReceipt)
    case id(String)
    case count(Int)
    case fields([Field])
    /// Plain values, shown as an array of strings.
    case values([String])
    /// One page of a list: the cursor to continue from ("0" at the end) and the rows.
    case page(cursor: String, rows: [[Field]])
    case failure(EngineError)
    /// A reply the server encoded itself (RESP; the same in RESP2 and RESP3):
    /// server control commands such as `ROLE`.
    case resp([UInt8])

    public var error: EngineError? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
