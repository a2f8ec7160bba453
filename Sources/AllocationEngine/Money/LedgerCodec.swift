import WAL

/// The log layouts of the engine-wide money records (types 80-83) and the
/// ledger's part of a snapshot (format 4), documented in docs/wal-format.md.
extension MoneyCodec {
    static func encodeLedger(_ c: DirectoryChange, into w: inout W) {
        switch c {
        case .bankImported(let t):
            w.string(t.id); w.string(t.accountRef); w.zigzag128(t.amount.raw); w.string(t.currency); w.zigzag(Int64(t.valueDate.days))
            opt(t.memo, &w); opt(t.counterparty, &w); opt(t.batch, &w)
        case .introducerCreated(let i):
            w.string(i.id); w.string(i.legalName); optInt(i.commissionBps.map(Int64.init), &w); opt(i.user, &w); w.u8(i.active ? 1 : 0)
        case .introducerStatus(let id, let active): w.string(id); w.u8(active ? 1 : 0)
        case .valuationSet(let v):
            w.string(v.vehicle); w.zigzag(Int64(v.asOf.days)); w.zigzag(v.navPerUnit.raw); optInt128(v.navTotal?.raw, &w); opt(v.setBy, &w)
        case .capitalCallCreated(let c):
            w.string(c.id); w.string(c.vehicle); opt(c.name, &w); w.zigzag(c.pctRaw); optInt(c.dueDate.map { Int64($0.days) }, &w)
        case .capitalCallIssued(let id, let flows): w.string(id); encodeFlows(flows, &w)
        case .distributionCreated(let d, let flows):
            w.string(d.id); w.string(d.vehicle); opt(d.name, &w); w.zigzag128(d.amount.raw); w.zigzag(Int64(d.date.days)); opt(d.classification, &w)
            encodeFlows(flows, &w)
        default: preconditionFailure("not a ledger change")
        }
    }

    static func encodeFlows(_ flows: [CashFlow], _ w: inout W) {
        w.varint(UInt64(flows.count))
        for f in flows { w.string(f.investor); w.string(f.vehicle); w.u8(f.kind.rawValue); w.zigzag128(f.amount.raw); w.zigzag(Int64(f.date.days)); w.string(f.ref) }
    }
    static func decodeFlows(_ r: inout R) throws(DecodeError) -> [CashFlow] {
        var out: [CashFlow] = []
        for _ in 0..<(try StateCodec.count(&r, "cashflow")) {
            out.append(CashFlow(investor: try r.string(), vehicle: try r.string(), kind: try code(&r, "cashflow type", CashFlowKind.init(rawValue:)),
                                amount: try money(&r), date: try date(&r), ref: try r.string()))
        }
        return out
    }

    static func date(_ r: inout R) throws(DecodeError) -> CivilDate {
        let v = try r.zigzag()
        guard v >= Int64(Int32.min) && v <= Int64(Int32.max) else { throw DecodeError("date out of range") }
        return CivilDate(days: Int32(v))
    }

    static func decodeLedger(type: UInt8, _ r: inout R) throws(DecodeError) -> DirectoryChange? {
        switch type {
        case 80:
            return .bankImported(BankTransaction(id: try r.string(), accountRef: try r.string(), amount: try money(&r), currency: try r.string(),
                                                 valueDate: try date(&r), memo: try opt(&r), counterparty: try opt(&r), batch: try opt(&r)))
        case 81:
            return .introducerCreated(Introducer(id: try r.string(), legalName: try r.string(), commissionBps: try bps(&r), user: try opt(&r),
                                                 active: try r.u8() == 1))
        case 82: return .introducerStatus(id: try r.string(), active: try r.u8() == 1)
        case 83:
            return .valuationSet(Valuation(vehicle: try r.string(), asOf: try date(&r), navPerUnit: Price(raw: try r.zigzag()),
                                           navTotal: try optInt128(&r).map(Money.init(raw:)), setBy: try opt(&r)))
        case 84:
            let id = try r.string(), vehicle = try r.string(), name = try opt(&r), pct = try r.zigzag()
            let due = try optInt(&r)
            guard due.map({ $0 >= Int64(Int32.min) && $0 <= Int64(Int32.max) }) ?? true else { throw DecodeError("due date out of range") }
            return .capitalCallCreated(CapitalCall(id: id, vehicle: vehicle, name: name, pctRaw: pct, dueDate: due.map { CivilDate(days: Int32($0)) }))
        case 85: return .capitalCallIssued(call: try r.string(), try decodeFlows(&r))
        case 86:
            let d = Distribution(id: try r.string(), vehicle: try r.string(), name: try opt(&r), amount: try money(&r), date: try date(&r),
                                 classification: try opt(&r))
            return .distributionCreated(d, try decodeFlows(&r))
        default: return nil
        }
    }

    // MARK: - Snapshot section (format 4, after the directory)

    static func encode(_ p: PortfolioBook, into w: inout W) {
        let calls = p.calls.values.sorted { $0.id < $1.id }
        w.varint(UInt64(calls.count))
        for c in calls { encodeLedger(.capitalCallCreated(c), into: &w); w.u8(c.issued ? 1 : 0); w.zigzag(c.createdAt) }
        let dists = p.distributions.values.sorted { $0.id < $1.id }
        w.varint(UInt64(dists.count))
        for d in dists { encodeLedger(.distributionCreated(d, []), into: &w); w.zigzag(d.createdAt) }
        encodeFlows(Array(p.cashflows), &w)
    }

    static func decodePortfolio(_ r: inout R) throws(DecodeError) -> PortfolioBook {
        var p = PortfolioBook()
        for _ in 0..<(try StateCodec.count(&r, "capital call")) {
            guard case .capitalCallCreated(var c)? = try decodeLedger(type: 84, &r) else { throw DecodeError("capital call") }
            c.issued = try r.u8() == 1
            c.createdAt = try r.zigzag()
            guard p.calls[c.id] == nil else { throw DecodeError("capital call \(c.id) twice") }
            p.calls[c.id] = c
        }
        for _ in 0..<(try StateCodec.count(&r, "distribution")) {
            guard case .distributionCreated(var d, _)? = try decodeLedger(type: 86, &r) else { throw DecodeError("distribution") }
            d.createdAt = try r.zigzag()
            guard p.distributions[d.id] == nil else { throw DecodeError("distribution \(d.id) twice") }
            p.distributions[d.id] = d
        }
        p.append(try decodeFlows(&r))
        return p
    }

    static func encode(_ l: MoneyLedger, into w: inout W) {
        w.varint(UInt64(l.bank.count))
        for t in l.bank { encodeLedger(.bankImported(t), into: &w); w.zigzag(t.createdAt) }
        let introducers = l.introducers.values.sorted { $0.id < $1.id }
        w.varint(UInt64(introducers.count))
        for i in introducers { encodeLedger(.introducerCreated(i), into: &w); w.zigzag(i.createdAt) }
        let vehicles = l.valuations.keys.sorted()
        w.varint(UInt64(vehicles.count))
        for v in vehicles {
            let list = l.valuations[v]!
            w.varint(UInt64(list.count))
            for x in list { encodeLedger(.valuationSet(x), into: &w) }
        }
    }

    static func decodeLedger(_ r: inout R) throws(DecodeError) -> MoneyLedger {
        var l = MoneyLedger()
        for _ in 0..<(try StateCodec.count(&r, "bank transaction")) {
            guard case .bankImported(var t)? = try decodeLedger(type: 80, &r) else { throw DecodeError("bank transaction") }
            t.createdAt = try r.zigzag()
            guard l.bankSlot[t.id] == nil else { throw DecodeError("bank transaction \(t.id) twice") }
            l.bankSlot[t.id] = Int32(l.bank.count)
            l.bank.append(t)
        }
        for _ in 0..<(try StateCodec.count(&r, "introducer")) {
            guard case .introducerCreated(var i)? = try decodeLedger(type: 81, &r) else { throw DecodeError("introducer") }
            i.createdAt = try r.zigzag()
            guard l.introducers[i.id] == nil else { throw DecodeError("introducer \(i.id) twice") }
            l.introducers[i.id] = i
        }
        for _ in 0..<(try StateCodec.count(&r, "valued vehicle")) {
            var list: [Valuation] = []
            for _ in 0..<(try StateCodec.count(&r, "valuation")) {
                guard case .valuationSet(let v)? = try decodeLedger(type: 83, &r) else { throw DecodeError("valuation") }
                guard list.last.map({ $0.asOf < v.asOf && $0.vehicle == v.vehicle }) ?? true else { throw DecodeError("valuations out of order") }
                list.append(v)
            }
            guard let first = list.first else { throw DecodeError("a valued vehicle without valuations") }
            guard l.valuations[first.vehicle] == nil else { throw DecodeError("vehicle \(first.vehicle) valued twice") }
            l.valuations[first.vehicle] = list
        }
        return l
    }
}
