/// Introductions and introducer commissions of a deal: creating and losing
/// introductions, the statuses and commissions that follow what happens in the
/// deal (a member joins, an allocation is approved, a fee accrues), and the
/// commission statements. What follows a change is decided by `attribution`
/// right after the change, and logged with it in one group record, so a crash
/// leaves both or neither; replay applies what was logged and decides nothing.
extension DealState {

    // MARK: - Apply

    mutating func applyAttribution(_ change: DealMoneyChange, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) {
        switch change {
        case .introductionCreated(var n):
            let slot = Int32(money.introductions.count)
            guard money.introductions.count < IntroductionLimits.maxIntroductionsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(IntroductionLimits.maxIntroductionsPerDeal) introductions")
            }
            let keys = Self.prospectKeys(investor: n.investor, email: n.email)
            if let taken = keys.compactMap({ money.introducedProspect[$0] }).first {
                throw EngineError(.conflict, "the prospect is already introduced to deal \(info.id) by \(money.introductions[Int(taken)].introducer) (\(money.introductions[Int(taken)].id)); INTRODUCTION.LOST it first")
            }
            if indexNew && GeneratedID.parse(n.id, prefix: UInt8(ascii: "n")) == nil {
                guard index.introductions.claim(n.id, RowRef(deal: ref, slot: slot)) else { throw EngineError(.exists, "introduction id \(n.id) is already used") }
            }
            n.createdAt = time
            index.holdings.add(introducer: n.introducer, deal: ref)
            for k in keys { money.introducedProspect[k] = slot }
            money.introductions.append(n)
        case .introductionStatus(let slot, let status, let investor):
            guard slot >= 0 && Int(slot) < money.introductions.count else { throw EngineError(.notFound, "introduction #\(slot) not in deal \(info.id)") }
            let n = money.introductions[Int(slot)]
            guard Self.introductionMove(from: n.status, to: status) else {
                throw EngineError(.conflict, "introduction \(n.id) is \(n.status.name); it cannot become \(status.name)")
            }
            if let investor, n.investor == nil {
                // An email prospect's investor, learnt when its user joined: it is the prospect now too.
                money.introductions[Int(slot)].investor = investor
                if money.introducedProspect["i:" + investor] == nil { money.introducedProspect["i:" + investor] = slot }
            }
            money.introductions[Int(slot)].status = status
            if status == .lost {
                // Lost: the prospect may be introduced again (by anyone).
                for k in Self.prospectKeys(investor: money.introductions[Int(slot)].investor, email: n.email) where money.introducedProspect[k] == slot {
                    money.introducedProspect[k] = nil
                }
            }
        case .commissionsAccrued(let list):
            guard money.commissions.count + list.count <= IntroductionLimits.maxCommissionsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(IntroductionLimits.maxCommissionsPerDeal) commissions")
            }
            var seen: Set<CommissionKey> = []
            for c in list {
                guard c.introduction >= 0 && Int(c.introduction) < money.introductions.count,
                      money.introductions[Int(c.introduction)].introducer == c.introducer, c.amount.raw >= 0 else {
                    throw EngineError(.invalid, "a commission names a missing introduction")
                }
                if c.basis == .investedAmount {
                    // Commissions on invested amounts are of approved allocations, which stay in memory.
                    guard allocations.isInMemory(c.source) else { throw EngineError(.invalid, "a commission names a missing allocation") }
                } else {
                    guard c.source >= 0 && Int(c.source) < money.feeEvents.count else { throw EngineError(.invalid, "a commission names a missing fee event") }
                }
                guard !money.commissionKeys.contains(c.key), seen.insert(c.key).inserted else {
                    throw EngineError(.conflict, "commission already accrued for introduction \(money.introductions[Int(c.introduction)].id)")
                }
            }
            for var c in list {
                c.status = .accrued
                c.statement = -1
                c.paidAt = nil
                c.createdAt = time
                money.commissionKeys.insert(c.key)
                money.commissions.append(c)
            }
        case .commissionCancelled(let slot):
            guard slot >= 0 && Int(slot) < money.commissions.count else { throw EngineError(.notFound, "commission #\(slot) not in deal \(info.id)") }
            guard money.commissions[Int(slot)].status == .accrued else {
                throw EngineError(.conflict, "commission \(commissionID(slot)) is \(money.commissions[Int(slot)].status.name); only an accrued one is cancelled")
            }
            money.commissions[Int(slot)].status = .cancelled
        case .statementCreated(var inv):
            let slot = Int32(money.invoices.count)
            guard let introducer = inv.introducer, !inv.lines.isEmpty else { throw EngineError(.invalid, "a statement names its introducer and has lines") }
            guard money.invoices.count < MoneyLimits.maxInvoicesPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of invoices") }
            var subtotal = Money.zero
            for l in inv.lines {
                guard l.event >= 0 && Int(l.event) < money.commissions.count, money.commissions[Int(l.event)].status == .accrued,
                      money.commissions[Int(l.event)].introducer == introducer, money.commissions[Int(l.event)].amount == l.amount else {
                    throw EngineError(.conflict, "statement \(inv.id) lists a commission that is not accrued for \(introducer)")
                }
                subtotal.raw += l.amount.raw
            }
            guard subtotal == inv.subtotal, inv.taxBps == 0, inv.tax == .zero, inv.total == subtotal else {
                throw EngineError(.invalid, "statement \(inv.id) totals do not add up")
            }
            if indexNew {
                guard index.invoices.claim(inv.id, RowRef(deal: ref, slot: slot)) else { throw EngineError(.exists, "invoice id \(inv.id) is already used") }
            }
            for l in inv.lines {
                money.commissions[Int(l.event)].status = .invoiced
                money.commissions[Int(l.event)].statement = slot
            }
            inv.createdAt = time
            inv.paid = .zero
            inv.sent = true  // a statement is issued to its introducer when made
            money.invoices.append(inv)
        case .statementPaid(let slot, let paidAt, _):
            guard slot >= 0 && Int(slot) < money.invoices.count, money.invoices[Int(slot)].isStatement else {
                throw EngineError(.notFound, "statement #\(slot) not in deal \(info.id)")
            }
            let inv = money.invoices[Int(slot)]
            guard !inv.cancelled, inv.paid.raw == 0 else { throw EngineError(.conflict, "statement \(inv.id) is \(inv.status.rawValue)") }
            for l in inv.lines {
                money.commissions[Int(l.event)].status = .paid
                money.commissions[Int(l.event)].paidAt = paidAt
            }
            money.invoices[Int(slot)].paid = inv.total
        default:
            preconditionFailure("not an attribution change")
        }
    }

    static func prospectKeys(investor: String?, email: String?) -> [String] {
        (investor.map { ["i:" + $0] } ?? []) + (email.map { ["e:" + $0.lowercased()] } ?? [])
    }

    static func introductionMove(from: IntroductionStatus, to: IntroductionStatus) -> Bool {
        switch (from, to) {
        case (.invited, .joined), (.invited, .allocated), (.joined, .allocated), (.invited, .lost), (.joined, .lost), (.allocated, .lost): true
        default: false
        }
    }

    // MARK: - What follows a change

    /// The introduction statuses and commissions that follow `change`, which
    /// has just been applied: decided now, with the rates and the introducers'
    /// state as they are, and logged with the change in one group record.
    func attribution(following change: Change, context: EngineContext) -> [DealMoneyChange] {
        guard !money.introductions.isEmpty else { return [] }
        switch change {
        case .allocationStatus(_, let id, .approved, _):
            guard let slot = try? allocationSlot(id, index: context.indexes) else { return [] }
            return followApproval(slot, context: context)
        case .people(_, .allocationDecided(let approval, true, _, _)):
            // Just decided (applied in this batch), so still in memory.
            guard people.approvals.isInMemory(approval) else { return [] }
            let a = people.approvals[Int(approval)]
            guard a.entity == .allocation else { return [] }
            return followApproval(a.entitySlot, context: context)
        case .people(_, .memberAdded(let m)):
            return followJoin(user: m.user, investor: m.investor, context: context)
        case .people(_, .inviteAccepted(_, let user, let investor)):
            return followJoin(user: user, investor: investor, context: context)
        case .money(_, .feesAccrued(let events)), .money(_, .dealExited(_, _, let events)):
            return followFees(from: money.feeEvents.count - events.count, context: context)
        case .money(_, .feeVoided(let event)):
            // Commissions on a voided fee are cancelled with it while still accrued.
            return money.commissions.indices.filter {
                let c = money.commissions[$0]
                return c.basis != .investedAmount && c.source == event && c.status == .accrued
            }.map { .commissionCancelled(commission: Int32($0)) }
        default:
            return []
        }
    }

    /// The live introductions of an investor in this deal.
    private func introductions(of investor: String) -> [Int32] {
        money.introducedProspect["i:" + investor].map { [$0] } ?? []
    }

    private func activeIntroducers(_ ids: [String], context: EngineContext) -> Set<String> {
        context.directory.withLock { d in Set(ids.filter { d.ledger.introducers[$0]?.active ?? false }) }
    }

    private func followApproval(_ allocation: Int32, context: EngineContext) -> [DealMoneyChange] {
        let a = allocations[Int(allocation)]
        let investor = investors[Int(a.investor)]
        let found = introductions(of: investor)
        guard !found.isEmpty else { return [] }
        let active = activeIntroducers(found.map { money.introductions[Int($0)].introducer }, context: context)
        var out: [DealMoneyChange] = []
        var accrued: [Commission] = []
        let investment = ExactAmount(units: a.units, price: a.unitPrice)
        for slot in found {
            let n = money.introductions[Int(slot)]
            if n.status != .allocated { out.append(.introductionStatus(introduction: slot, status: .allocated, investor: nil)) }
            guard n.basis == .investedAmount, active.contains(n.introducer) else { continue }
            let c = Commission(introducer: n.introducer, introduction: slot, investor: investor, basis: .investedAmount, rateBps: n.rateBps,
                               baseAmount: investment.roundedToMoney, amount: MoneyMath.percent(investment, bps: n.rateBps),
                               currency: info.currency, source: allocation)
            if !money.commissionKeys.contains(c.key) { accrued.append(c) }
        }
        if !accrued.isEmpty { out.append(.commissionsAccrued(accrued)) }
        return out
    }

    private func followJoin(user: String, investor: String?, context: EngineContext) -> [DealMoneyChange] {
        let invited = money.introductions.indices.filter { money.introductions[$0].status == .invited }
        guard !invited.isEmpty else { return [] }
        let (email, linked) = context.directory.withLock { d in (d.users[user]?.email?.lowercased(), d.users[user]?.investors ?? []) }
        var out: [DealMoneyChange] = []
        for slot in invited {
            let n = money.introductions[slot]
            if let prospect = n.investor {
                guard prospect == investor || linked.contains(prospect) else { continue }
                out.append(.introductionStatus(introduction: Int32(slot), status: .joined, investor: nil))
            } else if let e = n.email, e.lowercased() == email {
                // The investor it joined for (or the user's only one), when known.
                let learnt = investor ?? (linked.count == 1 ? linked[0] : nil)
                let free = learnt.map { money.introducedProspect["i:" + $0] == nil } ?? false
                out.append(.introductionStatus(introduction: Int32(slot), status: .joined, investor: free ? learnt : nil))
            }
        }
        return out
    }

    private func followFees(from first: Int, context: EngineContext) -> [DealMoneyChange] {
        guard first >= 0 else { return [] }
        var candidates: [(event: Int, intro: Int32, basis: CommissionBasis)] = []
        for slot in first..<money.feeEvents.count {
            let e = money.feeEvents[slot]
            guard let basis = CommissionBasis.of(money.plans[Int(e.plan)].components[Int(e.component)]) else { continue }
            for intro in introductions(of: e.investor) where money.introductions[Int(intro)].basis == basis {
                candidates.append((slot, intro, basis))
            }
        }
        guard !candidates.isEmpty else { return [] }
        let active = activeIntroducers(candidates.map { money.introductions[Int($0.intro)].introducer }, context: context)
        var accrued: [Commission] = []
        for (slot, intro, basis) in candidates {
            let n = money.introductions[Int(intro)]
            guard active.contains(n.introducer) else { continue }
            let e = money.feeEvents[slot]
            let c = Commission(introducer: n.introducer, introduction: intro, investor: e.investor, basis: basis, rateBps: n.rateBps,
                               baseAmount: e.computedAmount, amount: Money(raw: MoneyMath.mulDivRound(e.computedAmount.raw, Int128(n.rateBps), 10_000)),
                               currency: e.currency, source: Int32(slot))
            if !money.commissionKeys.contains(c.key) { accrued.append(c) }
        }
        return accrued.isEmpty ? [] : [.commissionsAccrued(accrued)]
    }

    // MARK: - Ids

    func commissionID(_ slot: Int32) -> String { GeneratedID.make(prefix: UInt8(ascii: "m"), deal: ref, slot: slot) }

    func commissionSlot(_ id: String) throws(EngineError) -> Int32 {
        guard let r = GeneratedID.parse(id, prefix: UInt8(ascii: "m")), r.deal == ref, Int(r.slot) < money.commissions.count else {
            throw EngineError(.notFound, "commission \(id.prefix(128)) not found")
        }
        return r.slot
    }

    func introductionSlot(_ id: String, index: EngineIndexes) throws(EngineError) -> Int32 {
        if let r = GeneratedID.parse(id, prefix: UInt8(ascii: "n")) {
            guard r.deal == ref, Int(r.slot) < money.introductions.count else { throw EngineError(.notFound, "introduction \(id.prefix(128)) not found") }
            return r.slot
        }
        guard let r = index.introductions.lookup(id), r.deal == ref, Int(r.slot) < money.introductions.count,
              money.introductions[Int(r.slot)].id == id else { throw EngineError(.notFound, "introduction \(id.prefix(128)) not found") }
        return r.slot
    }

    // MARK: - Views

    public func introductionFields(_ slot: Int32) -> [Field] {
        let n = money.introductions[Int(slot)]
        return [
            Field("id", n.id), Field("introducer", n.introducer), Field("deal", info.id), Field("prospect_investor", n.investor),
            Field("prospect_email", n.email), Field("rate_bps", String(n.rateBps)), Field("basis", n.basis.rawValue),
            Field("status", n.status.name), Field("created_by", n.createdBy), Field("created_at", String(n.createdAt)),
        ]
    }

    public func commissionFields(_ slot: Int32) -> [Field] {
        let c = money.commissions[Int(slot)]
        let source = c.basis == .investedAmount ? allocations[Int(c.source)].id : feeEventID(c.source)
        return [
            Field("id", commissionID(slot)), Field("introducer", c.introducer), Field("deal", info.id), Field("investor", c.investor),
            Field("introduction", money.introductions[Int(c.introduction)].id), Field("basis_type", c.basis.rawValue),
            Field("rate_bps", String(c.rateBps)), Field("base_amount", c.baseAmount.description), Field("accrual_amount", c.amount.description),
            Field("currency", c.currency), Field("source_ref", source), Field("status", c.status.name),
            Field("invoice_id", c.statement >= 0 ? money.invoices[Int(c.statement)].id : nil), Field("paid_at", c.paidAt.map { String($0) }),
            Field("created_at", String(c.createdAt)),
        ]
    }

    /// Whether a principal that is not staff may read an introducer's rows: it is that introducer's login.
    static func readsIntroducer(_ introducer: String, _ principal: Principal?) -> Bool {
        guard let p = principal, !p.isStaff else { return true }
        return p.introducers.contains(introducer)
    }
}

// MARK: - Execute

extension DealState {
    mutating func executeAttribution(_ request: MoneyRequest, now: Int64, context: EngineContext, principal: Principal?,
                                     changes: inout [Change]) throws(EngineError) -> DealReply {
        func commit(_ c: DealMoneyChange) { self.commit(.money(deal: info.id, c), time: now, context: context, changes: &changes) }
        switch request {
        case .createIntroduction(let introducerID, let investor, let email, let rateBps, let basis, let id):
            try Validate.id(introducerID, field: "introducer")
            if let investor { try Validate.id(investor, field: "investor") }
            if let email { try Validate.email(email) }
            guard (investor == nil) != (email == nil) else { throw EngineError(.invalid, "an introduction names INVESTOR <investor> or EMAIL <email>, one of them") }
            if let r = rateBps, !(r >= 0 && r <= MoneyLimits.maxRateBps) { throw EngineError(.invalid, "RATE_BPS must be between 0 and \(MoneyLimits.maxRateBps)") }
            if let id {
                try Validate.id(id, field: "introduction id")
                guard !GeneratedID.isReserved(id) else { throw EngineError(.invalid, "introduction id \(id) has a reserved generated form") }
                if let existing = context.indexes.introductions.lookup(id) {
                    // A retry: the same introducer and prospect answer the same id.
                    guard existing.deal == ref, Int(existing.slot) < money.introductions.count,
                          money.introductions[Int(existing.slot)].introducer == introducerID,
                          money.introductions[Int(existing.slot)].email?.lowercased() == email?.lowercased(),
                          email != nil || money.introductions[Int(existing.slot)].investor == investor else {
                        throw EngineError(.conflict, "introduction id \(id) is already used")
                    }
                    return .id(id)
                }
            }
            let (introducer, investorKnown, memberUsers) = context.directory.withLock { d in
                (d.ledger.introducers[introducerID], investor.map { d.investors[$0] != nil } ?? true,
                 // Members that already are the prospect: it has joined then.
                 people.members.filter { !$0.removed }.filter { m in
                    if let investor { return m.investor == investor || (d.users[m.user]?.investors.contains(investor) ?? false) }
                    return d.users[m.user]?.email?.lowercased() == email?.lowercased()
                 }.count)
            }
            guard let introducer else { throw EngineError(.notFound, "introducer \(introducerID.prefix(128)) not found; INTRODUCER.CREATE it first") }
            guard introducer.active else { throw EngineError(.conflict, "introducer \(introducerID) is inactive") }
            guard investorKnown else { throw EngineError(.notFound, "investor \(investor!.prefix(128)) not found") }
            guard let rate = rateBps ?? introducer.commissionBps else {
                throw EngineError(.invalid, "introducer \(introducerID) has no COMMISSION_BPS; give the introduction RATE_BPS")
            }
            if let taken = Self.prospectKeys(investor: investor, email: email).compactMap({ money.introducedProspect[$0] }).first {
                throw EngineError(.conflict, "the prospect is already introduced to deal \(info.id) by \(money.introductions[Int(taken)].introducer) (\(money.introductions[Int(taken)].id)); INTRODUCTION.LOST it first")
            }
            guard money.introductions.count < IntroductionLimits.maxIntroductionsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(IntroductionLimits.maxIntroductionsPerDeal) introductions")
            }
            let slot = Int32(money.introductions.count)
            if let id, context.indexes.introductions.insertIfAbsent(id, RowRef(deal: ref, slot: slot)) != nil {
                throw EngineError(.conflict, "introduction id \(id) is already used")
            }
            let chosen = id ?? GeneratedID.make(prefix: UInt8(ascii: "n"), deal: ref, slot: slot)
            var n = Introduction(id: chosen, introducer: introducerID, investor: investor, email: email, rateBps: rate, basis: basis, createdBy: principal?.user)
            if memberUsers > 0 { n.status = .joined }
            commit(.introductionCreated(n))
            return .id(chosen)
        case .loseIntroduction(let id):
            let slot = try introductionSlot(id, index: context.indexes)
            if money.introductions[Int(slot)].status == .lost { return .ok }
            commit(.introductionStatus(introduction: slot, status: .lost, investor: nil))
            return .ok
        case .getIntroduction(let id):
            let slot = try introductionSlot(id, index: context.indexes)
            guard Self.readsIntroducer(money.introductions[Int(slot)].introducer, principal) else {
                throw EngineError(.notFound, "introduction \(id.prefix(128)) not found")
            }
            return .fields(introductionFields(slot))
        case .listIntroductions(let introducer, let cursor, let count):
            return page(from: cursor, count: count, total: money.introductions.count) { slot in
                let n = money.introductions[slot]
                if let introducer, n.introducer != introducer { return nil }
                guard Self.readsIntroducer(n.introducer, principal) else { return nil }
                return introductionFields(Int32(slot))
            }
        case .listCommissions(let introducer, let status, let cursor, let count):
            return page(from: cursor, count: count, total: money.commissions.count) { slot in
                let c = money.commissions[slot]
                if let introducer, c.introducer != introducer { return nil }
                if let status, c.status != status { return nil }
                guard Self.readsIntroducer(c.introducer, principal) else { return nil }
                return commissionFields(Int32(slot))
            }
        case .invoiceCommissions(let introducer):
            try Validate.id(introducer, field: "introducer")
            var lines: [InvoiceLine] = []
            var total = Money.zero
            for slot in money.commissions.indices where money.commissions[slot].introducer == introducer && money.commissions[slot].status == .accrued {
                lines.append(InvoiceLine(event: Int32(slot), amount: money.commissions[slot].amount))
                total.raw += money.commissions[slot].amount.raw
            }
            guard !lines.isEmpty else { throw EngineError(.conflict, "introducer \(introducer.prefix(128)) has no accrued commissions in deal \(info.id)") }
            guard money.invoices.count < MoneyLimits.maxInvoicesPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of invoices") }
            let id = GeneratedID.make(prefix: UInt8(ascii: "v"), deal: ref, slot: Int32(money.invoices.count))
            var statement = Invoice(id: id, investor: "", introducer: introducer, lines: lines, subtotal: total, taxBps: 0, tax: .zero, total: total,
                                    currency: info.currency, dueDate: nil, createdBy: principal?.user)
            statement.sent = true
            commit(.statementCreated(statement))
            return .id(id)
        case .payStatement(let id, let paidAt):
            let slot = try invoiceSlot(id, index: context.indexes)
            let inv = money.invoices[Int(slot)]
            guard inv.isStatement else { throw EngineError(.conflict, "invoice \(id) is not a commission statement; PAYMENT.RECORD pays it") }
            if inv.status == .paid { return .ok }
            guard !inv.cancelled else { throw EngineError(.conflict, "statement \(id) is cancelled") }
            commit(.statementPaid(invoice: slot, paidAt: paidAt ?? now, by: principal?.user))
            return .ok
        case .cancelCommission(let id):
            let slot = try commissionSlot(id)
            let status = money.commissions[Int(slot)].status
            if status == .cancelled { return .ok }
            guard status == .accrued else {
                throw EngineError(.conflict, "commission \(id) is \(status.name); only an accrued one is cancelled (cancel its statement first)")
            }
            commit(.commissionCancelled(commission: slot))
            return .ok
        default:
            preconditionFailure("not an attribution request")
        }
    }
}
