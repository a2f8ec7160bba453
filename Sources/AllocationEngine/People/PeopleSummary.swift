/// One-line descriptions of the people records for `allocation-engine dump`.
extension DirectoryChange {
    public var summary: String {
        func o(_ k: String, _ v: String?) -> String { v.map { " \(k)=\($0)" } ?? "" }
        switch self {
        case .userSet(let u): return "user=\(u.id) role=\(u.role.rawValue)" + o("name", u.name.map { "\"\($0)\"" }) + o("email", u.email) + o("title", u.title.map { "\"\($0)\"" })
        case .investorCreated(let i): return "investor=\(i.id) legal_name=\"\(i.legalName)\" kyc=\(i.kycStatus.rawValue)" + o("type", i.type) + o("country", i.country)
        case .investorKYC(let i, let s): return "investor=\(i) kyc=\(s.rawValue)"
        case .investorLinked(let i, let u): return "investor=\(i) user=\(u)"
        case .investorUnlinked(let i, let u): return "investor=\(i) user=\(u)"
        case .tokenIssued(let t): return "user=\(t.user) token_sha256=\(t.tokenHash.prefix(12))…"
        case .tokensRevoked(let u): return "user=\(u)"
        case .legacyToken(let u, let r, let inv, let h): return "user=\(u) role=\(r.rawValue) investors=\(inv.joined(separator: ",")) token_sha256=\(h.prefix(12))…"
        case .vehicleCreated(let v): return "vehicle=\(v.id) name=\"\(v.name)\" currency=\(v.currency)" + o("type", v.type?.rawValue)
        case .subscriptionCreated(let s): return "subscription=\(s.id) investor=\(s.investor) vehicle=\(s.vehicle) commitment=\(s.commitment) \(s.currency)"
        case .subscriptionStatus(let id, let s): return "subscription=\(id) status=\(s.rawValue)"
        case .sourceCreated(let s): return "source=\(s.id) kind=\(s.kind.rawValue)" + o("counterparty", s.counterparty.map { "\"\($0)\"" })
        case .bankImported(let t): return "txn=\(t.id) account=\(t.accountRef) amount=\(t.amount) \(t.currency) value_date=\(t.valueDate)" + o("batch", t.batch)
        case .introducerCreated(let i): return "introducer=\(i.id) legal_name=\"\(i.legalName)\"" + o("commission_bps", i.commissionBps.map(String.init)) + o("user", i.user) + (i.active ? "" : " inactive")
        case .introducerStatus(let id, let active): return "introducer=\(id) status=\(active ? "active" : "inactive")"
        case .capitalCallCreated(let c): return "call=\(c.id) vehicle=\(c.vehicle) pct=\(c.pctText)" + o("due", c.dueDate?.description)
        case .capitalCallIssued(let id, let flows): return "call=\(id) cashflows=\(flows.count) total=\(Money(raw: flows.reduce(Int128(0)) { $0 + $1.amount.raw }))"
        case .distributionCreated(let d, let flows): return "distribution=\(d.id) vehicle=\(d.vehicle) amount=\(d.amount) date=\(d.date) cashflows=\(flows.count)"
        case .valuationSet(let v): return "vehicle=\(v.vehicle) as_of=\(v.asOf) nav_per_unit=\(v.navPerUnit)" + o("nav_total", v.navTotal?.description)
        }
    }
}

extension DealPeopleChange {
    public var summary: String {
        func o(_ k: String, _ v: String?) -> String { v.map { " \(k)=\($0)" } ?? "" }
        switch self {
        case .memberAdded(let m): return "user=\(m.user) role=\(m.role.rawValue)" + o("investor", m.investor) + o("by", m.invitedBy)
        case .memberRemoved(let u): return "user=\(u)"
        case .inviteCreated(let i): return "invite=\(i.id) role=\(i.role.rawValue) expires_at=\(i.expiresAt) max_uses=\(i.maxUses)" + o("by", i.createdBy)
        case .inviteAccepted(let s, let u, let inv): return "invite=#\(s) user=\(u)" + o("investor", inv)
        case .inviteRevoked(let s): return "invite=#\(s)"
        case .commitmentCreated(let c):
            return "commitment=\(c.id) investor=\(c.investor)" + o("units", c.units?.description) + o("amount", c.amount?.description) + o("by", c.createdBy)
        case .commitmentStatus(let s, let st, let by, let note): return "commitment=#\(s) status=\(st.name)" + o("by", by) + o("note", note.map { "\"\($0)\"" })
        case .approvalAssigned(let s, let u): return "approval=#\(s) assigned_to=\(u)"
        case .approvalPriority(let s, let p): return "approval=#\(s) priority=\(p.name)"
        case .allocationDecided(let s, let a, let by, let note): return "approval=#\(s) decision=\(a ? "approve" : "reject")" + o("by", by) + o("note", note.map { "\"\($0)\"" })
        case .slaSet(let e, let sec): return "entity=\(e.name) sla_seconds=\(sec)"
        }
    }
}
