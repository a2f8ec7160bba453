import WAL

/// The log layouts of the money records (types 60-64), the deal's money
/// section of a snapshot, and its part of the digest (docs/wal-format.md).
extension DealMoneyChange {
    public var recordType: UInt8 {
        switch self {
        case .planCreated: 60
        case .componentAdded: 61
        case .termsSet: 62
        case .feesAccrued: 90
        case .feeVoided: 64
        case .dealExited: 65
        case .invoiceCreated: 66
        case .invoiceSent: 67
        case .invoiceCancelled: 68
        case .paymentRecorded: 69
        case .paymentRefunded: 70
        case .termSheetIssued: 71
        case .termSheetStatus: 72
        case .introductionCreated: 73
        case .introductionStatus: 74
        case .commissionsAccrued: 75
        case .commissionCancelled: 76
        case .statementCreated: 77
        case .statementPaid: 78
        case .reconciled: 79
        }
    }
    static let typeNames: [UInt8: String] = [
        60: "feeplan.created", 61: "feeplan.component", 62: "terms.set", 63: "fees.accrued", 64: "fee.voided", 65: "deal.exited",
        66: "invoice.created", 67: "invoice.sent", 68: "invoice.cancelled", 69: "payment.recorded", 70: "payment.refunded",
        71: "termsheet.issued", 72: "termsheet.status", 73: "introduction.created", 74: "introduction.status",
        75: "commissions.accrued", 76: "commission.cancelled", 77: "statement.created", 78: "statement.paid", 79: "payment.reconciled",
        90: "fees.accrued",
    ]
}

enum MoneyCodec: RecordFieldCoding {
    typealias W = ByteWriter
    typealias R = ByteReader

    static func named<T: RawRepresentable>(_ r: inout R, _ what: String) throws(DecodeError) -> T where T.RawValue == String {
        let s = try r.string()
        guard let v = T(rawValue: s) else { throw DecodeError("\(what) \(s)") }
        return v
    }
    static func money(_ r: inout R) throws(DecodeError) -> Money {
        let v = try r.zigzag128()
        guard v >= -NumberLimits.maxMoneyRaw * 1000 && v <= NumberLimits.maxMoneyRaw * 1000 else { throw DecodeError("money out of range") }
        return Money(raw: v)
    }
    static func bps(_ r: inout R) throws(DecodeError) -> Int32? {
        guard let v = try optInt(&r) else { return nil }
        guard v >= 0 && v <= Int64(MoneyLimits.maxRateBps) else { throw DecodeError("rate \(v) bps out of range") }
        return Int32(v)
    }

    static func encode(_ c: DealMoneyChange, into w: inout W) {
        switch c {
        case .planCreated(let p): w.string(p.id); w.string(p.name); opt(p.description, &w); w.u8(p.isDefault ? 1 : 0)
        case .componentAdded(let plan, let c): w.varint(UInt64(plan)); encodeComponent(c, &w)
        case .termsSet(let investor, let plan, let overrides, let by): w.string(investor); w.varint(UInt64(plan)); opt(overrides, &w); opt(by, &w)
        case .feesAccrued(let events): w.varint(UInt64(events.count)); for e in events { encodeEvent(e, &w); optInt(e.navPerUnit?.raw, &w) }
        case .feeVoided(let slot): w.varint(UInt64(slot))
        case .dealExited(let price, let on, let events):
            // The events in the type-63 layout (an exit's fees have no NAV).
            w.zigzag(price.raw); w.zigzag(Int64(on.days)); w.varint(UInt64(events.count)); for e in events { encodeEvent(e, &w) }
        case .invoiceCreated(let inv): encodeInvoice(inv, &w)
        case .invoiceSent(let s), .invoiceCancelled(let s), .paymentRefunded(let s): w.varint(UInt64(s))
        case .paymentRecorded(let p):
            w.string(p.id); w.varint(UInt64(p.invoice)); w.zigzag128(p.amount.raw); opt(p.method, &w); w.zigzag(p.paidAt); opt(p.createdBy, &w)
        case .termSheetIssued(let t):
            w.string(t.id); w.string(t.investor); w.zigzag(Int64(t.plan)); w.zigzag(t.pricePerUnit.raw); w.string(t.currency)
            optInt(t.validUntil, &w); w.varint(UInt64(t.version)); w.zigzag(Int64(t.supersedes)); opt(t.doc, &w); opt(t.createdBy, &w)
        case .termSheetStatus(let s, let status, let by): w.varint(UInt64(s)); w.u8(status.rawValue); opt(by, &w)
        case .introductionCreated(let n):
            w.string(n.id); w.string(n.introducer); opt(n.investor, &w); opt(n.email, &w); w.zigzag(Int64(n.rateBps)); w.string(n.basis.rawValue)
            w.u8(n.status.rawValue); opt(n.createdBy, &w)
        case .introductionStatus(let s, let status, let investor): w.varint(UInt64(s)); w.u8(status.rawValue); opt(investor, &w)
        case .commissionsAccrued(let list): w.varint(UInt64(list.count)); for c in list { encodeCommission(c, &w) }
        case .commissionCancelled(let s): w.varint(UInt64(s))
        case .statementCreated(let inv): encodeInvoice(inv, &w); opt(inv.introducer, &w)
        case .statementPaid(let s, let paidAt, let by): w.varint(UInt64(s)); w.zigzag(paidAt); opt(by, &w)
        case .reconciled(let p): encode(.paymentRecorded(p), into: &w); opt(p.bankTxn, &w)
        }
    }

    static func encodeCommission(_ c: Commission, _ w: inout W) {
        w.string(c.introducer); w.varint(UInt64(c.introduction)); w.string(c.investor); w.string(c.basis.rawValue); w.zigzag(Int64(c.rateBps))
        w.zigzag128(c.baseAmount.raw); w.zigzag128(c.amount.raw); w.string(c.currency); w.varint(UInt64(c.source))
    }
    static func decodeCommission(_ r: inout R) throws(DecodeError) -> Commission {
        let introducer = try r.string(), introduction = try slot(&r), investor = try r.string()
        let basis: CommissionBasis = try named(&r, "commission basis")
        guard let rate = try bpsValue(&r) else { throw DecodeError("commission rate") }
        return Commission(introducer: introducer, introduction: introduction, investor: investor, basis: basis, rateBps: rate,
                          baseAmount: try money(&r), amount: try money(&r), currency: try r.string(), source: try slot(&r))
    }
    static func bpsValue(_ r: inout R) throws(DecodeError) -> Int32? {
        let v = try r.zigzag()
        guard v >= 0 && v <= Int64(MoneyLimits.maxRateBps) else { throw DecodeError("rate \(v) bps out of range") }
        return Int32(v)
    }
    static func events(_ r: inout R, withNAV: Bool) throws(DecodeError) -> [FeeEvent] {
        let n = try StateCodec.count(&r, "fee event")
        var events: [FeeEvent] = []
        for _ in 0..<n {
            var e = try decodeEvent(&r)
            if withNAV { e.navPerUnit = try optInt(&r).map(Price.init(raw:)) }
            events.append(e)
        }
        return events
    }

    static func decode(type: UInt8, _ r: inout R) throws(DecodeError) -> DealMoneyChange? {
        switch type {
        case 60:
            return .planCreated(FeePlan(id: try r.string(), name: try r.string(), description: try opt(&r), isDefault: try r.u8() == 1))
        case 61: return .componentAdded(plan: try slot(&r), try decodeComponent(&r))
        case 62: return .termsSet(investor: try r.string(), plan: try slot(&r), overrides: try opt(&r), by: try opt(&r))
        case 63: return .feesAccrued(try events(&r, withNAV: false))
        case 90: return .feesAccrued(try events(&r, withNAV: true))
        case 73:
            let id = try r.string(), introducer = try r.string(), investor = try opt(&r), email = try opt(&r)
            guard let rate = try bpsValue(&r) else { throw DecodeError("introduction rate") }
            let basis: CommissionBasis = try named(&r, "commission basis")
            let status = try code(&r, "introduction status", IntroductionStatus.init(rawValue:))
            var n = Introduction(id: id, introducer: introducer, investor: investor, email: email, rateBps: rate, basis: basis, createdBy: try opt(&r))
            n.status = status
            return .introductionCreated(n)
        case 74:
            return .introductionStatus(introduction: try slot(&r), status: try code(&r, "introduction status", IntroductionStatus.init(rawValue:)), investor: try opt(&r))
        case 75:
            var list: [Commission] = []
            for _ in 0..<(try StateCodec.count(&r, "commission")) { list.append(try decodeCommission(&r)) }
            return .commissionsAccrued(list)
        case 76: return .commissionCancelled(commission: try slot(&r))
        case 77:
            var inv = try decodeInvoice(&r)
            inv.introducer = try opt(&r)
            return .statementCreated(inv)
        case 78: return .statementPaid(invoice: try slot(&r), paidAt: try r.zigzag(), by: try opt(&r))
        case 79:
            guard case .paymentRecorded(var p)? = try decode(type: 69, &r) else { throw DecodeError("reconciled payment") }
            p.bankTxn = try opt(&r)
            guard p.bankTxn != nil else { throw DecodeError("a reconciled payment without its bank transaction") }
            return .reconciled(p)
        case 64: return .feeVoided(event: try slot(&r))
        case 66: return .invoiceCreated(try decodeInvoice(&r))
        case 67: return .invoiceSent(invoice: try slot(&r))
        case 68: return .invoiceCancelled(invoice: try slot(&r))
        case 69:
            return .paymentRecorded(Payment(id: try r.string(), invoice: try slot(&r), amount: try money(&r), method: try opt(&r),
                                            paidAt: try r.zigzag(), createdBy: try opt(&r)))
        case 70: return .paymentRefunded(payment: try slot(&r))
        case 71:
            let id = try r.string(), investor = try r.string()
            let plan = try r.zigzag()
            guard plan >= -1 && plan <= Int64(Int32.max) else { throw DecodeError("term sheet plan \(plan)") }
            let price = Price(raw: try r.zigzag())
            let currency = try r.string(), until = try optInt(&r)
            let version = try r.varint()
            guard version >= 1 && version <= UInt64(Int32.max) else { throw DecodeError("term sheet version \(version)") }
            let supersedes = try r.zigzag()
            guard supersedes >= -1 && supersedes <= Int64(Int32.max) else { throw DecodeError("term sheet supersedes \(supersedes)") }
            return .termSheetIssued(TermSheet(id: id, investor: investor, plan: Int32(plan), pricePerUnit: price, currency: currency,
                                              validUntil: until, version: Int32(version), supersedes: Int32(supersedes),
                                              doc: try opt(&r), createdBy: try opt(&r)))
        case 72:
            return .termSheetStatus(sheet: try slot(&r), status: try code(&r, "term sheet status", TermSheetStatus.init(rawValue:)), by: try opt(&r))
        case 65:
            let price = Price(raw: try r.zigzag())
            let day = try r.zigzag()
            guard day >= Int64(Int32.min) && day <= Int64(Int32.max) else { throw DecodeError("exit date out of range") }
            return .dealExited(price: price, on: CivilDate(days: Int32(day)), try events(&r, withNAV: false))
        default: return nil
        }
    }

    static func encodeInvoice(_ inv: Invoice, _ w: inout W) {
        w.string(inv.id); w.string(inv.investor); w.varint(UInt64(inv.lines.count))
        for l in inv.lines { w.varint(UInt64(l.event)); w.zigzag128(l.amount.raw) }
        w.zigzag128(inv.subtotal.raw); w.zigzag(Int64(inv.taxBps)); w.zigzag128(inv.tax.raw); w.zigzag128(inv.total.raw)
        w.string(inv.currency); optInt(inv.dueDate.map { Int64($0.days) }, &w); opt(inv.createdBy, &w)
    }
    static func decodeInvoice(_ r: inout R) throws(DecodeError) -> Invoice {
        let id = try r.string(), investor = try r.string()
        var lines: [InvoiceLine] = []
        for _ in 0..<(try StateCodec.count(&r, "invoice line")) { lines.append(InvoiceLine(event: try slot(&r), amount: try money(&r))) }
        let subtotal = try money(&r)
        let taxBps = try r.zigzag()
        guard taxBps >= 0 && taxBps <= Int64(MoneyLimits.maxRateBps) else { throw DecodeError("tax bps \(taxBps)") }
        let tax = try money(&r), total = try money(&r), currency = try r.string()
        let due = try optInt(&r)
        guard due.map({ $0 >= Int64(Int32.min) && $0 <= Int64(Int32.max) }) ?? true else { throw DecodeError("due date out of range") }
        return Invoice(id: id, investor: investor, lines: lines, subtotal: subtotal, taxBps: Int32(taxBps), tax: tax, total: total,
                       currency: currency, dueDate: due.map { CivilDate(days: Int32($0)) }, createdBy: try opt(&r))
    }

    static func encodeComponent(_ c: FeeComponent, _ w: inout W) {
        w.string(c.id); w.string(c.kind.rawValue); w.string(c.method.rawValue); optInt(c.rateBps.map(Int64.init), &w)
        optInt128(c.flatAmount?.raw, &w); optInt(c.perUnit?.raw, &w); w.string(c.frequency.rawValue)
        optInt(c.hurdleBps.map(Int64.init), &w); w.u8(c.highWaterMark ? 1 : 0)
    }
    static func decodeComponent(_ r: inout R) throws(DecodeError) -> FeeComponent {
        let id = try r.string()
        let kind: FeeKind = try named(&r, "fee kind")
        let method: FeeMethod = try named(&r, "fee method")
        let rate = try bps(&r)
        let flat = try optInt128(&r).map(Money.init(raw:))
        let perUnit = try optInt(&r).map(Price.init(raw:))
        let frequency: FeeFrequency = try named(&r, "fee frequency")
        let hurdle = try bps(&r)
        let hwm = try r.u8() == 1
        return FeeComponent(id: id, kind: kind, method: method, rateBps: rate, flatAmount: flat, perUnit: perUnit, frequency: frequency,
                            hurdleBps: hurdle, highWaterMark: hwm)
    }
    static func encodeEvent(_ e: FeeEvent, _ w: inout W) {
        w.string(e.investor); w.varint(UInt64(e.allocation)); w.varint(UInt64(e.plan)); w.varint(UInt64(e.component))
        w.zigzag(Int64(e.eventDate.days)); optInt(e.periodStart.map { Int64($0.days) }, &w); optInt(e.periodEnd.map { Int64($0.days) }, &w)
        w.zigzag128(e.baseAmount.raw); w.zigzag128(e.computedAmount.raw); w.string(e.currency)
    }
    static func decodeEvent(_ r: inout R) throws(DecodeError) -> FeeEvent {
        func date(_ v: Int64) throws(DecodeError) -> CivilDate {
            guard v >= Int64(Int32.min) && v <= Int64(Int32.max) else { throw DecodeError("date out of range") }
            return CivilDate(days: Int32(v))
        }
        let investor = try r.string()
        let allocation = try slot(&r), plan = try slot(&r), component = try slot(&r)
        let eventDate = try date(try r.zigzag())
        let start = try optInt(&r), end = try optInt(&r)
        return FeeEvent(investor: investor, allocation: allocation, plan: plan, component: component, eventDate: eventDate,
                        periodStart: try start.map { v throws(DecodeError) in try date(v) }, periodEnd: try end.map { v throws(DecodeError) in try date(v) },
                        baseAmount: try money(&r), computedAmount: try money(&r), currency: try r.string())
    }

    // MARK: - Snapshot section

    static func encode(_ m: DealMoney, into w: inout W) {
        w.varint(UInt64(m.plans.count))
        for p in m.plans {
            encode(.planCreated(p), into: &w); w.zigzag(p.createdAt)
            w.varint(UInt64(p.components.count)); for c in p.components { encodeComponent(c, &w) }
        }
        w.zigzag(Int64(m.defaultPlan))
        w.varint(UInt64(m.terms.count))
        for t in m.terms { encode(.termsSet(investor: t.investor, plan: t.plan, overrides: t.overrides, by: t.createdBy), into: &w); w.u8(t.active ? 1 : 0); w.zigzag(t.createdAt) }
        w.varint(UInt64(m.feeEvents.count))
        for e in m.feeEvents { encodeEvent(e, &w); w.u8(e.status.rawValue); w.zigzag(e.createdAt); optInt(e.navPerUnit?.raw, &w) }
        if let exit = m.exit { w.u8(1); w.zigzag(exit.price.raw); w.zigzag(Int64(exit.on.days)) } else { w.u8(0) }
        w.varint(UInt64(m.invoices.count))
        for inv in m.invoices {
            encodeInvoice(inv, &w); w.u8(inv.sent ? 1 : 0); w.u8(inv.cancelled ? 1 : 0); w.zigzag128(inv.paid.raw); w.zigzag(inv.createdAt)
            opt(inv.introducer, &w)
        }
        w.varint(UInt64(m.payments.count))
        for p in m.payments {
            encode(.paymentRecorded(p), into: &w); w.u8(p.refunded ? 1 : 0); w.zigzag(p.createdAt); opt(p.bankTxn, &w)
        }
        w.varint(UInt64(m.termSheets.count))
        for t in m.termSheets { encode(.termSheetIssued(t), into: &w); w.u8(t.status.rawValue); w.zigzag(t.createdAt) }
        w.varint(UInt64(m.introductions.count))
        for n in m.introductions { encode(.introductionCreated(n), into: &w); w.zigzag(n.createdAt) }
        w.varint(UInt64(m.commissions.count))
        for c in m.commissions {
            encodeCommission(c, &w); w.u8(c.status.rawValue); w.zigzag(Int64(c.statement)); optInt(c.paidAt, &w); w.zigzag(c.createdAt)
        }
    }

    static func decodeMoney(_ r: inout R, allocations: Int, version: UInt16) throws(DecodeError) -> DealMoney {
        let v4 = version >= 4
        var m = DealMoney()
        for _ in 0..<(try StateCodec.count(&r, "fee plan")) {
            guard case .planCreated(var p)? = try decode(type: 60, &r) else { throw DecodeError("fee plan") }
            p.createdAt = try r.zigzag()
            for _ in 0..<(try StateCodec.count(&r, "fee component")) { p.components.append(try decodeComponent(&r)) }
            guard m.planSlot[p.id] == nil else { throw DecodeError("fee plan \(p.id) twice") }
            m.planSlot[p.id] = Int32(m.plans.count)
            m.plans.append(p)
        }
        let def = try r.zigzag()
        guard def >= -1 && def < Int64(m.plans.count) else { throw DecodeError("default plan \(def)") }
        m.defaultPlan = Int32(def)
        for _ in 0..<(try StateCodec.count(&r, "terms")) {
            guard case .termsSet(let investor, let plan, let overrides, let by)? = try decode(type: 62, &r) else { throw DecodeError("terms") }
            guard Int(plan) < m.plans.count else { throw DecodeError("terms of a missing plan") }
            let active = try r.u8() == 1
            let t = InvestorTerms(investor: investor, plan: plan, overrides: overrides, active: active, createdBy: by, createdAt: try r.zigzag())
            if active {
                guard m.activeTerms[investor] == nil else { throw DecodeError("two active terms for \(investor)") }
                m.activeTerms[investor] = Int32(m.terms.count)
            }
            m.terms.append(t)
        }
        for _ in 0..<(try StateCodec.count(&r, "fee event")) {
            var e = try decodeEvent(&r)
            guard Int(e.allocation) < allocations, Int(e.plan) < m.plans.count, Int(e.component) < m.plans[Int(e.plan)].components.count else {
                throw DecodeError("fee event names a missing allocation, plan or component")
            }
            e.status = try code(&r, "fee event status", FeeEventStatus.init(rawValue:))
            e.createdAt = try r.zigzag()
            if v4 { e.navPerUnit = try optInt(&r).map(Price.init(raw:)) }
            if e.status != .voided { m.accrued.insert(e.key) }
            m.feeEvents.append(e)
        }
        switch try r.u8() {
        case 0: break
        case 1:
            let price = Price(raw: try r.zigzag())
            let day = try r.zigzag()
            guard day >= Int64(Int32.min) && day <= Int64(Int32.max) else { throw DecodeError("exit date out of range") }
            m.exit = (price, CivilDate(days: Int32(day)))
        case let f: throw DecodeError("exit flag \(f)")
        }
        for _ in 0..<(try StateCodec.count(&r, "invoice")) {
            var inv = try decodeInvoice(&r)
            inv.sent = try r.u8() == 1
            inv.cancelled = try r.u8() == 1
            inv.paid = try money(&r)
            inv.createdAt = try r.zigzag()
            if v4 { inv.introducer = try opt(&r) }
            if !inv.isStatement {
                for l in inv.lines where Int(l.event) >= m.feeEvents.count { throw DecodeError("invoice \(inv.id) bills a missing fee event") }
            }
            guard inv.paid.raw >= 0 && inv.paid.raw <= inv.total.raw else { throw DecodeError("invoice \(inv.id) paid beyond its total") }
            m.invoices.append(inv)
        }
        for _ in 0..<(try StateCodec.count(&r, "payment")) {
            guard case .paymentRecorded(var p)? = try decode(type: 69, &r) else { throw DecodeError("payment") }
            guard Int(p.invoice) < m.invoices.count else { throw DecodeError("payment of a missing invoice") }
            p.refunded = try r.u8() == 1
            p.createdAt = try r.zigzag()
            if v4 { p.bankTxn = try opt(&r) }
            if let txn = p.bankTxn, !p.refunded {
                let key = DealState.MatchKey(invoice: p.invoice, txn: txn)
                guard m.liveMatch[key] == nil else { throw DecodeError("invoice #\(p.invoice) matched to \(txn) twice") }
                m.liveMatch[key] = Int32(m.payments.count)
                m.invoices[Int(p.invoice)].liveMatches += 1
            }
            m.payments.append(p)
        }
        for _ in 0..<(try StateCodec.count(&r, "term sheet")) {
            guard case .termSheetIssued(var t)? = try decode(type: 71, &r) else { throw DecodeError("term sheet") }
            guard Int(t.plan) < m.plans.count, Int(t.supersedes) < m.termSheets.count else { throw DecodeError("term sheet \(t.id) names a missing row") }
            t.status = try code(&r, "term sheet status", TermSheetStatus.init(rawValue:))
            t.createdAt = try r.zigzag()
            if t.isOpen, let until = t.validUntil { m.sheetExpiry.push(at: until, slot: Int32(m.termSheets.count)) }
            m.latestSheet[t.investor] = Int32(m.termSheets.count)
            m.termSheets.append(t)
        }
        guard v4 else { return m }
        for _ in 0..<(try StateCodec.count(&r, "introduction")) {
            guard case .introductionCreated(var n)? = try decode(type: 73, &r) else { throw DecodeError("introduction") }
            n.createdAt = try r.zigzag()
            let slot = Int32(m.introductions.count)
            if n.isLive {
                // As apply maps them: the first live introduction of a prospect holds its key.
                for k in DealState.prospectKeys(investor: n.investor, email: n.email) where m.introducedProspect[k] == nil {
                    m.introducedProspect[k] = slot
                }
            }
            m.introductions.append(n)
        }
        for _ in 0..<(try StateCodec.count(&r, "commission")) {
            var c = try decodeCommission(&r)
            c.status = try code(&r, "commission status", CommissionStatus.init(rawValue:))
            let statement = try r.zigzag()
            guard statement >= -1 && statement < Int64(m.invoices.count), Int(c.introduction) < m.introductions.count else {
                throw DecodeError("commission names a missing row")
            }
            c.statement = Int32(statement)
            c.paidAt = try optInt(&r)
            c.createdAt = try r.zigzag()
            guard c.basis == .investedAmount ? Int(c.source) < allocations : Int(c.source) < m.feeEvents.count else {
                throw DecodeError("commission names a missing source")
            }
            m.commissionKeys.insert(c.key)  // a cancelled commission never accrues again either
            m.commissions.append(c)
        }
        for inv in m.invoices where inv.isStatement {
            for l in inv.lines where Int(l.event) >= m.commissions.count { throw DecodeError("statement \(inv.id) lists a missing commission") }
        }
        return m
    }
}

extension DealMoney {
    func hash(into h: inout StateHasher) { h.encoded { MoneyCodec.encode(self, into: &$0) } }
}

extension DealMoneyChange {
    /// One line for `allocation-engine dump`.
    public var summary: String {
        switch self {
        case .planCreated(let p): return "plan=\(p.id) name=\"\(p.name)\"" + (p.isDefault ? " default" : "")
        case .componentAdded(let s, let c): return "plan=#\(s) component=" + DealState.componentText(c)
        case .termsSet(let i, let p, let o, let by): return "investor=\(i) plan=#\(p)" + (o.map { " overrides=\"\($0)\"" } ?? "") + (by.map { " by=\($0)" } ?? "")
        case .feesAccrued(let events):
            return "events=\(events.count)" + events.prefix(8).map { " [\($0.investor) alloc=#\($0.allocation) comp=#\($0.component) \($0.eventDate) \($0.computedAmount)]" }.joined()
        case .feeVoided(let s): return "event=#\(s)"
        case .dealExited(let p, let on, let events): return "exit_price=\(p) on=\(on) fees=\(events.count)"
        case .invoiceCreated(let i): return "invoice=\(i.id) investor=\(i.investor) lines=\(i.lines.count) subtotal=\(i.subtotal) tax=\(i.tax) total=\(i.total)"
        case .invoiceSent(let s): return "invoice=#\(s) sent"
        case .invoiceCancelled(let s): return "invoice=#\(s) cancelled"
        case .paymentRecorded(let p): return "payment=\(p.id) invoice=#\(p.invoice) amount=\(p.amount)" + (p.createdBy.map { " by=\($0)" } ?? "")
        case .paymentRefunded(let s): return "payment=#\(s) refunded"
        case .termSheetIssued(let t): return "termsheet=\(t.id) investor=\(t.investor) version=\(t.version) price=\(t.pricePerUnit)" + (t.validUntil.map { " valid_until=\($0)" } ?? "")
        case .termSheetStatus(let s, let st, let by): return "termsheet=#\(s) status=\(st.name)" + (by.map { " by=\($0)" } ?? "")
        case .introductionCreated(let n):
            return "introduction=\(n.id) introducer=\(n.introducer)" + (n.investor.map { " investor=\($0)" } ?? "") + (n.email.map { " email=\($0)" } ?? "")
                + " rate_bps=\(n.rateBps) basis=\(n.basis.rawValue) status=\(n.status.name)"
        case .introductionStatus(let s, let st, let inv): return "introduction=#\(s) status=\(st.name)" + (inv.map { " investor=\($0)" } ?? "")
        case .commissionsAccrued(let list):
            return "commissions=\(list.count)" + list.prefix(8).map { " [\($0.introducer) \($0.basis.rawValue) \($0.rateBps)bps of \($0.baseAmount) = \($0.amount)]" }.joined()
        case .commissionCancelled(let s): return "commission=#\(s) cancelled"
        case .statementCreated(let i): return "statement=\(i.id) introducer=\(i.introducer ?? "") lines=\(i.lines.count) total=\(i.total)"
        case .statementPaid(let s, let at, let by): return "statement=#\(s) paid_at=\(at)" + (by.map { " by=\($0)" } ?? "")
        case .reconciled(let p): return "payment=\(p.id) invoice=#\(p.invoice) bank_txn=\(p.bankTxn ?? "") amount=\(p.amount)" + (p.createdBy.map { " by=\($0)" } ?? "")
        }
    }
}
