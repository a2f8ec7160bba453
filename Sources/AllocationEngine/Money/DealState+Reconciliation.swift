/// Reconciling bank transactions with a deal's invoices (`reconciliations`):
/// a match is an applied payment of the invoice that names the transaction,
/// so a reconciliation and its payment are one logged change. One transaction
/// may pay several invoices (of any deals) and one invoice may be paid by
/// several transactions; the sum matched from a transaction is kept within
/// its amount by `BankMatches`, reserved before the match is logged.
extension DealState {
    /// A live match of an invoice and a transaction: one at a time (the seed's unique key).
    struct MatchKey: Hashable, Sendable {
        var invoice: Int32
        var txn: String
    }

    mutating func decideReconcile(invoice invoiceID: String, txn txnID: String, amount: Money, now: Int64, context: EngineContext,
                                  by user: String?) throws(EngineError) -> (Payment?, String?) {
        try Validate.id(txnID, field: "transaction id")
        guard amount.raw > 0 && amount.raw <= NumberLimits.maxMoneyRaw else { throw EngineError(.invalid, "a matched amount is greater than zero, got \(amount)") }
        let slot = try invoiceSlot(invoiceID, index: context.indexes)
        let inv = money.invoices[Int(slot)]
        if let existing = money.liveMatch[MatchKey(invoice: slot, txn: txnID)] {
            // A retry answers the same payment; another amount needs UNRECONCILE first.
            guard money.payments[Int(existing)].amount == amount else {
                throw EngineError(.conflict, "invoice \(invoiceID) is already matched to \(txnID) for \(money.payments[Int(existing)].amount); UNRECONCILE it first")
            }
            return (nil, money.payments[Int(existing)].id)
        }
        guard !inv.isStatement else { throw EngineError(.conflict, "invoice \(invoiceID) is a commission statement; COMMISSION.PAY settles it") }
        guard !inv.cancelled else { throw EngineError(.conflict, "invoice \(invoiceID) is cancelled") }
        guard let txn = context.directory.withLock({ $0.ledger.transaction(txnID) }) else {
            throw EngineError(.notFound, "bank transaction \(txnID.prefix(128)) not found; BANK.IMPORT it first")
        }
        guard txn.amount.raw > 0 else { throw EngineError(.conflict, "bank transaction \(txnID) pays out \(txn.amount); only money received is matched to invoices") }
        guard txn.currency == inv.currency else {
            throw EngineError(.conflict, "bank transaction \(txnID) is in \(txn.currency), invoice \(invoiceID) in \(inv.currency)")
        }
        guard inv.paid.raw + amount.raw <= inv.total.raw else {
            throw EngineError(.conflict, "matching \(amount) would pay more than is owed on invoice \(invoiceID): total \(inv.total), paid \(inv.paid)")
        }
        guard inv.liveMatches < MoneyLimits.maxMatchesPerInvoice else {
            throw EngineError(.limit, "invoice \(invoiceID) has the maximum of \(MoneyLimits.maxMatchesPerInvoice) reconciliations")
        }
        guard money.payments.count < MoneyLimits.maxPaymentsPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of payments") }
        // Last, as it changes shared state: the transaction's amount left, across deals.
        guard context.indexes.bankMatches.reserve(txnID, amount, limit: txn.amount) else {
            let left = Money(raw: txn.amount.raw - context.indexes.bankMatches.matched(txnID).raw)
            throw EngineError(.conflict, "bank transaction \(txnID) has \(left) left to match, not \(amount)")
        }
        let pslot = Int32(money.payments.count)
        var p = Payment(id: GeneratedID.make(prefix: UInt8(ascii: "y"), deal: ref, slot: pslot), invoice: slot, amount: amount,
                        method: "bank_transfer", paidAt: Int64(txn.valueDate.days) * 86_400_000, createdBy: user)
        p.bankTxn = txnID
        return (p, nil)
    }

    /// Applies a payment (recorded by hand or reconciled): the invoice's paid amount follows.
    mutating func applyPayment(_ payment: Payment, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) {
        var p = payment
        guard p.invoice >= 0 && Int(p.invoice) < money.invoices.count else { throw EngineError(.notFound, "invoice #\(p.invoice) not in deal \(info.id)") }
        let inv = money.invoices[Int(p.invoice)]
        guard !inv.cancelled, !inv.isStatement else { throw EngineError(.conflict, "invoice \(inv.id) is \(inv.isStatement ? "a commission statement" : "cancelled")") }
        guard p.amount.raw > 0, inv.paid.raw + p.amount.raw <= inv.total.raw else {
            throw EngineError(.conflict, "payment of \(p.amount) on invoice \(inv.id) would pay \(Money(raw: inv.paid.raw + p.amount.raw)) of its total \(inv.total)")
        }
        guard money.payments.count < MoneyLimits.maxPaymentsPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of payments") }
        let slot = Int32(money.payments.count)
        if let txn = p.bankTxn {
            let key = MatchKey(invoice: p.invoice, txn: txn)
            guard money.liveMatch[key] == nil else { throw EngineError(.conflict, "invoice \(inv.id) is already matched to \(txn)") }
            guard inv.liveMatches < MoneyLimits.maxMatchesPerInvoice else { throw EngineError(.limit, "invoice \(inv.id) has the maximum number of reconciliations") }
            money.liveMatch[key] = slot
            money.invoices[Int(p.invoice)].liveMatches += 1
            // The live path reserved the amount when it decided; replay adds it here.
            if indexNew { index.bankMatches.add(txn, p.amount) }
        }
        if indexNew {
            guard index.payments.claim(p.id, RowRef(deal: ref, slot: slot)) else { throw EngineError(.exists, "payment id \(p.id) is already used") }
        }
        p.createdAt = time
        p.refunded = false
        money.invoices[Int(p.invoice)].paid.raw += p.amount.raw
        money.payments.append(p)
    }

    /// Refunds a payment; a reconciled one is unmatched, its amount back on the transaction.
    mutating func applyRefund(_ slot: Int32, index: EngineIndexes) throws(EngineError) {
        guard slot >= 0 && Int(slot) < money.payments.count else { throw EngineError(.notFound, "payment #\(slot) not in deal \(info.id)") }
        let p = money.payments[Int(slot)]
        guard !p.refunded else { throw EngineError(.conflict, "payment \(p.id) is already refunded") }
        money.payments[Int(slot)].refunded = true
        money.invoices[Int(p.invoice)].paid.raw -= p.amount.raw
        if let txn = p.bankTxn {
            money.liveMatch[MatchKey(invoice: p.invoice, txn: txn)] = nil
            money.invoices[Int(p.invoice)].liveMatches -= 1
            // Live and replay alike: nothing reserved this in advance.
            index.bankMatches.add(txn, Money(raw: -p.amount.raw))
        }
    }

    func liveMatch(invoice: String, txn: String, index: EngineIndexes) throws(EngineError) -> Int32 {
        let slot = try invoiceSlot(invoice, index: index)
        guard let p = money.liveMatch[MatchKey(invoice: slot, txn: txn)] else {
            throw EngineError(.notFound, "invoice \(invoice.prefix(128)) is not matched to bank transaction \(txn.prefix(128))")
        }
        return p
    }
}
