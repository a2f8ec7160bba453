import AllocationEngine

/// The bank side: importing statement lines and matching them to invoices
/// (`bank_transactions`, `reconciliations`). Imports and matches are for
/// `staff_admin` and `staff_ops`; the bank lines are staff reads.
enum BankCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("BANK.IMPORT", "BANK.IMPORT <txn> <account ref> <amount> <value date> [CURRENCY <code>] [MEMO <text>] [COUNTERPARTY <text>] [BATCH <id>]", .administer) { a throws(CommandError) in
            let id = try a.id("txn"), account = try a.id("account ref"), amountText = try a.req("amount"), dateText = try a.req("value date")
            _ = try engine { () throws(EngineError) in try Money.parse(amountText) }  // refused at parse time
            let valueDate = try engine { () throws(EngineError) in try CivilDate.parse(dateText, field: "value date") }
            var currency = "USD"
            var memo: String?, counterparty: String?, batch: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "CURRENCY": currency = value.uppercased()
                case "MEMO": memo = value
                case "COUNTERPARTY": counterparty = value
                case "BATCH": batch = try Arguments.checkID(value, "batch")
                default: throw a.unknownOption(option)
                }
            }
            // The amount stays text until the change is built under the lock (no 128-bit value across an await; see Paging).
            return .engine { [currency, memo, counterparty, batch] c in
                await c.reply { () throws(EngineError) in
                    try await c.engine.change { d throws(EngineError) in
                        let t = BankTransaction(id: id, accountRef: account, amount: try Money.parse(amountText), currency: currency,
                                                valueDate: valueDate, memo: memo, counterparty: counterparty, batch: batch)
                        // Importing a line again: the same fields are a no-op, others a conflict.
                        if let existing = d.ledger.transaction(id) {
                            guard existing.sameFields(as: t) else {
                                throw EngineError(.conflict, "bank transaction \(id.prefix(128)) was imported with other fields (amount \(existing.amount), value date \(existing.valueDate), account \(existing.accountRef))")
                            }
                            return nil
                        }
                        return .bankImported(t)
                    }
                    return .ok
                }
            }
        },
        CommandSpec("BANK.GET", "BANK.GET <txn>", .staffRead) { a throws(CommandError) in
            let id = try a.id("txn"); try a.end()
            return .engine { c in
                let matches = c.engine.indexes.bankMatches
                guard let f = c.engine.readDirectory({ d in d.ledger.transaction(id).map { d.ledger.bankFields($0, matched: matches.matched(id)) } }) else {
                    return .failure(EngineError(.notFound, "bank transaction \(id.prefix(128)) not found"))
                }
                return .fields(f)
            }
        },
        CommandSpec("BANK.UNMATCHED", "BANK.UNMATCHED [ACCOUNT <ref>] [CURSOR <c>] [COUNT <n>]", .staffRead) { a throws(CommandError) in
            var account: String?
            var paging = Paging()
            while let option = a.next() {
                if try paging.take(option, &a) { continue }
                guard option.uppercased() == "ACCOUNT" else { throw a.unknownOption(option) }
                account = try a.id("account ref")
            }
            let cursor = Int(try paging.slotCursor())
            return .engine { [account, paging] c in
                let matches = c.engine.indexes.bankMatches
                return c.engine.readDirectory { $0.ledger.unmatched(account: account, cursor: cursor, count: paging.count, matches: matches) }
            }
        },
        CommandSpec("RECONCILE", "RECONCILE <invoice> <txn> <amount>", .administer) { a throws(CommandError) in
            let invoice = try a.id("invoice"), txn = try a.id("txn"), amountText = try a.req("amount"); try a.end()
            let amount = try engine { () throws(EngineError) in try Money.parse(amountText) }
            return .deal(.money(.reconcile(invoice: invoice, txn: txn, amount: amount)), .row(.invoice, invoice))
        },
        CommandSpec("UNRECONCILE", "UNRECONCILE <invoice> <txn>", .administer) { a throws(CommandError) in
            let invoice = try a.id("invoice"), txn = try a.id("txn"); try a.end()
            return .deal(.money(.unreconcile(invoice: invoice, txn: txn)), .row(.invoice, invoice))
        },
    ]
}
