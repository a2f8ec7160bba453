/// Read views of the engine-wide money rows, with the seed's column names.
extension MoneyLedger {
    public func bankFields(_ t: BankTransaction, matched: Money) -> [Field] {
        [
            Field("id", t.id), Field("account_ref", t.accountRef), Field("amount", t.amount.description), Field("currency", t.currency),
            Field("value_date", t.valueDate.description), Field("memo", t.memo), Field("counterparty", t.counterparty),
            Field("import_batch_id", t.batch), Field("matched", matched.description),
            Field("unmatched", t.amount.raw > 0 ? Money(raw: t.amount.raw - matched.raw).description : t.amount.description),
            Field("created_at", String(t.createdAt)),
        ]
    }

    /// BANK.UNMATCHED: transactions with amount left to match (money paid out
    /// is never matched, so it is always listed), in import order from `cursor`.
    public func unmatched(account: String?, cursor: Int, count: Int, matches: BankMatches) -> DealReply {
        var rows: [[Field]] = []
        var slot = cursor
        var looked = 0
        while slot < bank.count && rows.count < count && looked < PeopleLimits.maxPageScan {
            let t = bank[slot]
            slot += 1
            looked += 1
            if let account, t.accountRef != account { continue }
            let matched = matches.matched(t.id)
            guard t.amount.raw < 0 || matched.raw < t.amount.raw else { continue }
            rows.append(bankFields(t, matched: matched))
        }
        return .page(cursor: slot < bank.count ? String(slot) : "0", rows: rows)
    }

    public func introducerFields(_ id: String) -> [Field]? {
        guard let i = introducers[id] else { return nil }
        return [
            Field("id", i.id), Field("legal_name", i.legalName), Field("default_commission_bps", i.commissionBps.map { String($0) }),
            Field("user", i.user), Field("status", i.active ? "active" : "inactive"), Field("created_at", String(i.createdAt)),
        ]
    }

    public func valuationFields(_ v: Valuation) -> [Field] {
        [
            Field("vehicle", v.vehicle), Field("as_of_date", v.asOf.description), Field("nav_per_unit", v.navPerUnit.description),
            Field("nav_total", v.navTotal?.description), Field("set_by", v.setBy),
        ]
    }
}
