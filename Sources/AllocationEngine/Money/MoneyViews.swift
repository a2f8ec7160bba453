/// Read views of the money rows with the seed's column names.
extension DealState {
    public func planFields(_ slot: Int32) -> [Field] {
        let p = money.plans[Int(slot)]
        return [
            Field("id", p.id), Field("deal", info.id), Field("name", p.name), Field("description", p.description),
            Field("is_default", p.isDefault ? "1" : "0"), Field("created_at", String(p.createdAt)),
            Field("components", items: p.components.map(Self.componentText)),
        ]
    }

    /// `id kind method rate_bps=.. amount=.. frequency=.. hurdle_bps=.. hwm=..`
    static func componentText(_ c: FeeComponent) -> String {
        var s = "\(c.id) kind=\(c.kind.rawValue) method=\(c.method.rawValue) frequency=\(c.frequency.rawValue)"
        if let r = c.rateBps { s += " rate_bps=\(r)" }
        if let a = c.flatAmount { s += " amount=\(a)" }
        if let p = c.perUnit { s += " amount=\(p)" }
        if let h = c.hurdleBps { s += " hurdle_bps=\(h)" }
        if c.highWaterMark { s += " hwm=1" }
        return s
    }

    public func termsFields(_ slot: Int32) -> [Field] {
        let t = money.terms[Int(slot)]
        return [
            Field("deal", info.id), Field("investor", t.investor), Field("fee_plan", money.plans[Int(t.plan)].id),
            Field("overrides", t.overrides), Field("status", t.active ? "active" : "superseded"),
            Field("created_by", t.createdBy), Field("created_at", String(t.createdAt)),
        ]
    }

    public func feeEventFields(_ slot: Int32) -> [Field] {
        let e = money.feeEvents[Int(slot)]
        let plan = money.plans[Int(e.plan)]
        let c = plan.components[Int(e.component)]
        return [
            Field("id", feeEventID(slot)), Field("deal", info.id), Field("investor", e.investor), Field("fee_plan", plan.id),
            Field("component", c.id), Field("kind", c.kind.rawValue), Field("event_date", e.eventDate.description),
            Field("period_start", e.periodStart?.description), Field("period_end", e.periodEnd?.description),
            Field("base_amount", e.baseAmount.description), Field("computed_amount", e.computedAmount.description),
            Field("currency", e.currency), Field("source_ref", allocations[Int(e.allocation)].id), Field("status", e.status.name),
            Field("created_at", String(e.createdAt)),
        ]
    }
}
