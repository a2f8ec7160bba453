/// Term sheets (`term_sheets`): the offer to one investor in one deal, in
/// versions 1, 2, 3, ... each naming the one it supersedes. `draft → sent →
/// accepted | rejected`, and `expired` when `valid_until` passes: a logged
/// change made by the engine's expiry ticker exactly like a hold's expiry, so
/// replay never reads the clock. Accepting a sheet that names a plan makes
/// that plan the investor's terms in the same change.
public struct TermSheet: Hashable, Sendable {
    public var id: String
    public var investor: String
    /// Slot of its fee plan, or -1.
    public var plan: Int32
    public var pricePerUnit: Price
    public var currency: String
    public var validUntil: Int64?
    public var status: TermSheetStatus = .draft
    public var version: Int32
    /// Slot of the version it supersedes, or -1.
    public var supersedes: Int32
    public var doc: String?
    public var createdBy: String?
    public var createdAt: Int64 = 0
    var isOpen: Bool { status == .draft || status == .sent }
}

public enum TermSheetStatus: UInt8, Sendable, CaseIterable {
    case draft, sent, accepted, rejected, expired
    public var name: String { ["draft", "sent", "accepted", "rejected", "expired"][Int(rawValue)] }
}

extension DealState {
    func termSheetSlot(_ id: String) throws(EngineError) -> Int32 {
        guard let r = GeneratedID.parse(id, prefix: UInt8(ascii: "t")), r.deal == ref, Int(r.slot) < money.termSheets.count else {
            throw EngineError(.notFound, "term sheet \(id.prefix(128)) not found")
        }
        return r.slot
    }

    mutating func applyTermSheet(_ change: DealMoneyChange, time: Int64) throws(EngineError) {
        switch change {
        case .termSheetIssued(var t):
            let slot = Int32(money.termSheets.count)
            guard t.id == GeneratedID.make(prefix: UInt8(ascii: "t"), deal: ref, slot: slot) else { throw EngineError(.invalid, "term sheet id \(t.id) does not name its slot") }
            guard t.plan == -1 || (t.plan >= 0 && Int(t.plan) < money.plans.count) else { throw EngineError(.notFound, "fee plan #\(t.plan) not in deal \(info.id)") }
            let previous = money.latestSheet[t.investor]
            guard t.version == (previous.map { money.termSheets[Int($0)].version + 1 } ?? 1), t.supersedes == (previous ?? -1) else {
                throw EngineError(.invalid, "term sheet \(t.id) version does not follow")
            }
            t.status = .draft
            t.createdAt = time
            money.latestSheet[t.investor] = slot
            money.termSheets.append(t)
            if let until = t.validUntil { money.sheetExpiry.push(at: until, slot: slot) }
        case .termSheetStatus(let slot, let status, let by):
            guard slot >= 0 && Int(slot) < money.termSheets.count else { throw EngineError(.notFound, "term sheet #\(slot) not in deal \(info.id)") }
            let t = money.termSheets[Int(slot)]
            switch (t.status, status) {
            case (.draft, .sent), (.sent, .accepted), (.draft, .rejected), (.sent, .rejected): break
            case (.draft, .expired), (.sent, .expired):
                guard let until = t.validUntil, until <= time else { throw EngineError(.conflict, "term sheet \(t.id) is not due to expire at \(time)") }
            default:
                throw EngineError(.conflict, "term sheet \(t.id) is \(t.status.name); it cannot become \(status.name)")
            }
            if status == .accepted || status == .sent, let until = t.validUntil, until <= time {
                throw EngineError(.conflict, "term sheet \(t.id) expired at \(until)")
            }
            money.termSheets[Int(slot)].status = status
            // Accepting a sheet that names a plan sets the investor's terms to it, in the same change.
            if status == .accepted && t.plan >= 0 {
                try setTerms(investor: t.investor, plan: t.plan, overrides: "term sheet \(t.id)", by: by, time: time)
            }
        default:
            preconditionFailure("not a term sheet change")
        }
    }

    /// Open term sheets whose `valid_until` has passed at `now` (for the expiry ticker).
    mutating func dueTermSheets(now: Int64) -> [Int32] {
        var due: [Int32] = []
        while let entry = money.sheetExpiry.popDue(now: now) {
            let t = money.termSheets[Int(entry.slot)]
            if t.isOpen && t.validUntil == entry.at { due.append(entry.slot) }
        }
        return due
    }

    public func termSheetFields(_ slot: Int32, now: Int64) -> [Field] {
        let t = money.termSheets[Int(slot)]
        return [
            Field("id", t.id), Field("deal", info.id), Field("investor", t.investor),
            Field("fee_plan", t.plan >= 0 ? money.plans[Int(t.plan)].id : nil), Field("price_per_unit", t.pricePerUnit.description),
            Field("currency", t.currency), Field("valid_until", t.validUntil.map { String($0) }), Field("status", t.status.name),
            Field("version", String(t.version)), Field("supersedes_id", t.supersedes >= 0 ? money.termSheets[Int(t.supersedes)].id : nil),
            Field("doc_id", t.doc), Field("created_by", t.createdBy), Field("created_at", String(t.createdAt)),
        ]
    }
}

extension DealState {
    /// The earliest time something of this deal expires: a hold or a term sheet.
    var earliestWake: Int64? {
        switch (expiry.earliest, money.sheetExpiry.earliest) {
        case (let a?, let b?): min(a, b)
        case (let a?, nil): a
        case (nil, let b?): b
        case (nil, nil): nil
        }
    }
}
