/// Invoices of fee events (`invoices`, `invoice_lines`, `fn_invoice_fees`)
/// and the payments against them (`payments`), kept in the deal's actor with
/// the events they bill: an invoice and the status of its events are one
/// logged change, and so is a payment and its invoice's paid amount.
public struct Invoice: Hashable, Sendable {
    public var id: String
    /// The investor billed; empty on a commission statement.
    public var investor: String
    /// A commission statement's introducer (`generated_from` `introducer_commissions`): its
    /// lines are commissions, not fee events.
    public var introducer: String?
    /// One line per fee event (or commission).
    public var lines: [InvoiceLine]
    public var subtotal: Money
    public var taxBps: Int32
    public var tax: Money
    public var total: Money
    public var currency: String
    public var dueDate: CivilDate?
    public var sent = false
    public var cancelled = false
    /// Sum of the live (not refunded) payments; never above `total`.
    public var paid: Money = .zero
    public var createdBy: String?
    public var createdAt: Int64 = 0
    /// How many live reconciliations it has (bounded by `MoneyLimits.maxMatchesPerInvoice`).
    public var liveMatches: Int32 = 0

    public var isStatement: Bool { introducer != nil }
    public var generatedFrom: String { isStatement ? "introducer_commissions" : "fee_events" }

    public var status: InvoiceStatus {
        if cancelled { return .cancelled }
        if paid.raw > 0 && paid == total { return .paid }
        if paid.raw > 0 { return .partial }
        return sent ? .sent : .draft
    }
}

public struct InvoiceLine: Hashable, Sendable {
    /// The fee event's (or, on a statement, the commission's) slot in the deal.
    public var event: Int32
    public var amount: Money
}

public enum InvoiceStatus: String, Sendable, CaseIterable { case draft, sent, paid, partial, cancelled }

public enum PaymentStatus: String, Sendable, CaseIterable { case received, applied, refunded }

public struct Payment: Hashable, Sendable {
    public var id: String
    public var invoice: Int32
    public var amount: Money
    public var method: String?
    public var paidAt: Int64
    public var refunded = false
    public var createdBy: String?
    public var createdAt: Int64 = 0
    /// A reconciliation: the bank transaction it matches (`bank_txn_id`); `createdBy` is `matched_by`
    /// and `createdAt` `matched_at`.
    public var bankTxn: String?
    public var status: PaymentStatus { refunded ? .refunded : bankTxn != nil ? .applied : .received }
}

extension DealState {
    func invoiceSlot(_ id: String, index: EngineIndexes) throws(EngineError) -> Int32 {
        guard let r = index.invoices.lookup(id), r.deal == ref, r.slot >= 0, Int(r.slot) < money.invoices.count,
              money.invoices[Int(r.slot)].id == id else { throw EngineError(.notFound, "invoice \(id.prefix(128)) not found") }
        return r.slot
    }

    func paymentSlot(_ id: String, index: EngineIndexes) throws(EngineError) -> Int32 {
        guard let r = index.payments.lookup(id), r.deal == ref, r.slot >= 0, Int(r.slot) < money.payments.count,
              money.payments[Int(r.slot)].id == id else { throw EngineError(.notFound, "payment \(id.prefix(128)) not found") }
        return r.slot
    }

    /// Applies an invoice change (after `applyMoney` routed it here).
    mutating func applyInvoice(_ change: DealMoneyChange, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) {
        switch change {
        case .invoiceCreated(var inv):
            let slot = Int32(money.invoices.count)
            guard !inv.lines.isEmpty, inv.introducer == nil else { throw EngineError(.conflict, "an invoice of fee events needs at least one line") }
            var subtotal = Money.zero
            for l in inv.lines {
                guard l.event >= 0 && Int(l.event) < money.feeEvents.count, money.feeEvents[Int(l.event)].status == .accrued,
                      money.feeEvents[Int(l.event)].investor == inv.investor, money.feeEvents[Int(l.event)].computedAmount == l.amount else {
                    throw EngineError(.conflict, "invoice \(inv.id) bills a fee event that is not accrued for \(inv.investor)")
                }
                subtotal.raw += l.amount.raw
            }
            // The money invariant: total = sum of lines + tax.
            guard subtotal == inv.subtotal, inv.total.raw == inv.subtotal.raw + inv.tax.raw,
                  inv.tax == Money(raw: MoneyMath.mulDivRound(subtotal.raw, Int128(inv.taxBps), 10_000)) else {
                throw EngineError(.invalid, "invoice \(inv.id) totals do not add up")
            }
            if indexNew {
                guard index.invoices.claim(inv.id, RowRef(deal: ref, slot: slot)) else { throw EngineError(.exists, "invoice id \(inv.id) is already used") }
            }
            for l in inv.lines { money.feeEvents[Int(l.event)].status = .invoiced }
            inv.createdAt = time
            inv.paid = .zero
            money.invoices.append(inv)
        case .invoiceSent(let slot):
            try checkInvoice(slot)
            guard !money.invoices[Int(slot)].cancelled, !money.invoices[Int(slot)].sent else {
                throw EngineError(.conflict, "invoice \(money.invoices[Int(slot)].id) is \(money.invoices[Int(slot)].status.rawValue)")
            }
            money.invoices[Int(slot)].sent = true
        case .invoiceCancelled(let slot):
            try checkInvoice(slot)
            let inv = money.invoices[Int(slot)]
            guard !inv.cancelled, inv.paid.raw == 0 else { throw EngineError(.conflict, "invoice \(inv.id) is \(inv.status.rawValue); only one with nothing paid is cancelled") }
            money.invoices[Int(slot)].cancelled = true
            // Its events (a statement's commissions) return to accrued, and may be invoiced again.
            if inv.isStatement {
                for l in inv.lines {
                    money.commissions[Int(l.event)].status = .accrued
                    money.commissions[Int(l.event)].statement = -1
                }
            } else {
                for l in inv.lines { money.feeEvents[Int(l.event)].status = .accrued }
            }
        case .paymentRecorded(let p), .reconciled(let p):
            try applyPayment(p, time: time, index: index, indexNew: indexNew)
        case .paymentRefunded(let slot):
            try applyRefund(slot, index: index)
        default:
            preconditionFailure("not an invoice change")
        }
        assert(money.invoices.allSatisfy { $0.paid.raw >= 0 && $0.paid.raw <= $0.total.raw }, "paid exceeds total")
    }

    private func checkInvoice(_ slot: Int32) throws(EngineError) {
        guard slot >= 0 && Int(slot) < money.invoices.count else { throw EngineError(.notFound, "invoice #\(slot) not in deal \(info.id)") }
    }

    /// Decides INVOICE.CREATE: every accrued event of the investor, one line each.
    func decideInvoice(investor: String, id: String, due: CivilDate?, taxBps: Int32, by: String?) throws(EngineError) -> Invoice {
        var lines: [InvoiceLine] = []
        var subtotal = Money.zero
        for slot in money.feeEvents.indices where money.feeEvents[slot].status == .accrued && money.feeEvents[slot].investor == investor {
            lines.append(InvoiceLine(event: Int32(slot), amount: money.feeEvents[slot].computedAmount))
            subtotal.raw += money.feeEvents[slot].computedAmount.raw
        }
        guard !lines.isEmpty else { throw EngineError(.conflict, "investor \(investor) has no accrued fees in deal \(info.id)") }
        let tax = Money(raw: MoneyMath.mulDivRound(subtotal.raw, Int128(taxBps), 10_000))
        return Invoice(id: id, investor: investor, lines: lines, subtotal: subtotal, taxBps: taxBps, tax: tax,
                       total: Money(raw: subtotal.raw + tax.raw), currency: info.currency, dueDate: due, createdBy: by)
    }

    public func invoiceFields(_ slot: Int32) -> [Field] {
        let inv = money.invoices[Int(slot)]
        // [event, kind, description, amount] per line (`invoice_lines`); a statement's are commissions.
        let lines = inv.lines.map { l -> [String] in
            if inv.isStatement {
                let c = money.commissions[Int(l.event)]
                let source = c.basis == .investedAmount ? allocations[Int(c.source)].id : feeEventID(c.source)
                return [commissionID(l.event), "commission", "\(c.basis.rawValue) commission at \(c.rateBps) bps, investor \(c.investor), \(source)", l.amount.description]
            }
            let e = money.feeEvents[Int(l.event)]
            let c = money.plans[Int(e.plan)].components[Int(e.component)]
            let period = e.periodStart.map { " \($0) to \(e.periodEnd?.description ?? "")" } ?? ""
            let kind = c.kind == .spreadMarkup || c.method == .perUnitSpread ? "spread" : "fee"
            return [feeEventID(l.event), kind, "\(c.kind.rawValue) fee \(c.id), allocation \(allocations[Int(e.allocation)].id)\(period)", l.amount.description]
        }
        return [
            Field("id", inv.id), Field("deal", info.id), Field("investor", inv.isStatement ? nil : inv.investor), Field("introducer", inv.introducer),
            Field("status", inv.status.rawValue),
            Field("subtotal", inv.subtotal.description), Field("tax_bps", String(inv.taxBps)), Field("tax", inv.tax.description),
            Field("total", inv.total.description), Field("paid", inv.paid.description), Field("currency", inv.currency),
            Field("due_date", inv.dueDate?.description), Field("generated_from", inv.generatedFrom),
            Field("created_by", inv.createdBy), Field("created_at", String(inv.createdAt)), Field("lines", table: lines),
        ]
    }

    public func paymentFields(_ slot: Int32) -> [Field] {
        let p = money.payments[Int(slot)]
        let inv = money.invoices[Int(p.invoice)]
        return [
            Field("id", p.id), Field("deal", info.id), Field("investor", inv.investor), Field("invoice", inv.id),
            Field("amount", p.amount.description), Field("currency", inv.currency), Field("method", p.method),
            Field("paid_at", String(p.paidAt)), Field("status", p.status.rawValue), Field("bank_txn_id", p.bankTxn),
            Field("created_by", p.createdBy), Field("created_at", String(p.createdAt)),
            Field("matched_by", p.bankTxn == nil ? nil : p.createdBy), Field("matched_at", p.bankTxn == nil ? nil : String(p.createdAt)),
        ]
    }
}
