/// Deciding and applying the money side of a deal: fee plans, terms, fee
/// events. `FEES.COMPUTE` runs here, in the deal's actor, over the deal's own
/// allocations: the amounts are decided once and logged in one record, so a
/// compute is atomic and replay computes nothing.
extension DealState {

    // MARK: - Apply

    mutating func applyMoney(_ change: DealMoneyChange, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) {
        switch change {
        case .planCreated(var plan):
            guard money.planSlot[plan.id] == nil else { throw EngineError(.exists, "fee plan \(plan.id) already exists") }
            guard money.plans.count < MoneyLimits.maxPlansPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(MoneyLimits.maxPlansPerDeal) fee plans")
            }
            let slot = Int32(money.plans.count)
            if indexNew {
                guard index.feePlans.claim(plan.id, RowRef(deal: ref, slot: slot)) else { throw EngineError(.exists, "fee plan id \(plan.id) is already used") }
            }
            plan.createdAt = time
            plan.components = []
            if plan.isDefault {
                // At most one default plan per deal: a new default takes over.
                if money.defaultPlan >= 0 { money.plans[Int(money.defaultPlan)].isDefault = false }
                money.defaultPlan = slot
            }
            money.planSlot[plan.id] = slot
            money.plans.append(plan)
        case .componentAdded(let slot, let component):
            guard slot >= 0 && Int(slot) < money.plans.count else { throw EngineError(.notFound, "fee plan #\(slot) not in deal \(info.id)") }
            try Self.checkComponent(component)
            guard !money.plans[Int(slot)].components.contains(where: { $0.id == component.id }) else {
                throw EngineError(.exists, "component \(component.id) already exists in fee plan \(money.plans[Int(slot)].id)")
            }
            guard money.plans[Int(slot)].components.count < MoneyLimits.maxComponentsPerPlan else {
                throw EngineError(.limit, "a fee plan has at most \(MoneyLimits.maxComponentsPerPlan) components")
            }
            money.plans[Int(slot)].components.append(component)
        case .termsSet(let investor, let plan, let overrides, let by):
            try setTerms(investor: investor, plan: plan, overrides: overrides, by: by, time: time)
        case .termSheetIssued, .termSheetStatus:
            try applyTermSheet(change, time: time)
        case .dealExited(let price, let on, let events):
            guard money.exit == nil else { throw EngineError(.conflict, "deal \(info.id) has exited already") }
            try applyMoney(.feesAccrued(events), time: time, index: index, indexNew: indexNew)
            money.exit = (price, on)
        case .feesAccrued(let events):
            guard money.feeEvents.count + events.count <= MoneyLimits.maxFeeEventsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(MoneyLimits.maxFeeEventsPerDeal) fee events")
            }
            var seen: Set<FeeKey> = []
            for e in events {
                // Fees accrue on approved and settled allocations, which stay in memory.
                guard allocations.isInMemory(e.allocation), e.plan >= 0 && Int(e.plan) < money.plans.count,
                      e.component >= 0 && Int(e.component) < money.plans[Int(e.plan)].components.count,
                      investors[Int(allocations[Int(e.allocation)].investor)] == e.investor else {
                    throw EngineError(.invalid, "fee event names a missing allocation, plan or component")
                }
                guard !money.accrued.contains(e.key), seen.insert(e.key).inserted else {
                    throw EngineError(.conflict, "fee already accrued for allocation \(allocations[Int(e.allocation)].id)")
                }
            }
            for var e in events {
                e.status = .accrued
                e.createdAt = time
                money.accrued.insert(e.key)
                money.feeEvents.append(e)
            }
        case .invoiceCreated, .invoiceSent, .invoiceCancelled, .paymentRecorded, .paymentRefunded, .reconciled:
            try applyInvoice(change, time: time, index: index, indexNew: indexNew)
        case .introductionCreated, .introductionStatus, .commissionsAccrued, .commissionCancelled, .statementCreated, .statementPaid:
            try applyAttribution(change, time: time, index: index, indexNew: indexNew)
        case .feeVoided(let slot):
            guard slot >= 0 && Int(slot) < money.feeEvents.count else { throw EngineError(.notFound, "fee event #\(slot) not in deal \(info.id)") }
            guard money.feeEvents[Int(slot)].status == .accrued else {
                throw EngineError(.conflict, "fee event \(feeEventID(slot)) is \(money.feeEvents[Int(slot)].status.name); only an accrued one is voided")
            }
            money.feeEvents[Int(slot)].status = .voided
            // A voided fee may accrue again on the next compute.
            money.accrued.remove(money.feeEvents[Int(slot)].key)
        }
    }

    mutating func setTerms(investor: String, plan: Int32, overrides: String?, by: String?, time: Int64) throws(EngineError) {
        guard plan >= 0 && Int(plan) < money.plans.count else { throw EngineError(.notFound, "fee plan #\(plan) not in deal \(info.id)") }
        guard money.terms.count < MoneyLimits.maxTermsPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of terms") }
        // Exactly one active terms per investor and deal: the previous one is superseded.
        if let previous = money.activeTerms[investor] { money.terms[Int(previous)].active = false }
        money.activeTerms[investor] = Int32(money.terms.count)
        money.terms.append(InvestorTerms(investor: investor, plan: plan, overrides: overrides, active: true, createdBy: by, createdAt: time))
    }

    /// A component that means something (the issue's rules).
    static func checkComponent(_ c: FeeComponent) throws(EngineError) {
        try Validate.id(c.id, field: "component id")
        if let r = c.rateBps, !(r >= 0 && r <= MoneyLimits.maxRateBps) { throw EngineError(.invalid, "RATE_BPS must be between 0 and \(MoneyLimits.maxRateBps)") }
        if let h = c.hurdleBps, !(h >= 0 && h <= MoneyLimits.maxRateBps) { throw EngineError(.invalid, "HURDLE_BPS must be between 0 and \(MoneyLimits.maxRateBps)") }
        switch c.method {
        case .fixed:
            guard let a = c.flatAmount else { throw EngineError(.invalid, "a fixed component needs AMOUNT") }
            guard a.raw >= 0 && a.raw <= NumberLimits.maxMoneyRaw else { throw EngineError(.invalid, "AMOUNT out of range") }
        case .perUnitSpread:
            guard let p = c.perUnit else { throw EngineError(.invalid, "a per_unit_spread component needs AMOUNT (a price per unit)") }
            guard p.raw >= 0 && Int128(p.raw) <= NumberLimits.maxPriceRaw else { throw EngineError(.invalid, "AMOUNT out of range") }
        case .percentOfInvestment, .percentPerAnnum, .percentOfProfit:
            guard c.rateBps != nil else { throw EngineError(.invalid, "a \(c.method.rawValue) component needs RATE_BPS") }
        }
        if c.frequency == .onExit && c.kind != .performance { throw EngineError(.invalid, "on_exit is for a performance fee only") }
        switch (c.method, c.frequency) {
        case (.percentOfInvestment, .oneTime), (.fixed, .oneTime), (.perUnitSpread, .oneTime),
             (.percentPerAnnum, .monthly), (.percentPerAnnum, .quarterly), (.percentPerAnnum, .annual),
             (.percentOfProfit, .onExit), (.percentOfProfit, .monthly), (.percentOfProfit, .quarterly), (.percentOfProfit, .annual):
            break
        default:
            throw EngineError(.invalid, "a \(c.method.rawValue) component with frequency \(c.frequency.rawValue) means nothing here (one_time for percent_of_investment, fixed and per_unit_spread; monthly, quarterly or annual for percent_per_annum; on_exit, monthly, quarterly or annual for percent_of_profit)")
        }
        if c.hurdleBps != nil && !(c.method == .percentOfProfit && c.frequency == .onExit) {
            throw EngineError(.invalid, "HURDLE_BPS is for an on_exit percent_of_profit fee only (a periodic one is charged over its high-water mark)")
        }
        if c.highWaterMark && c.method != .percentOfProfit { throw EngineError(.invalid, "HWM is for percent_of_profit only") }
    }

    func feeEventID(_ slot: Int32) -> String { GeneratedID.make(prefix: UInt8(ascii: "f"), deal: ref, slot: slot) }

    func feeEventSlot(_ id: String) throws(EngineError) -> Int32 {
        guard let r = GeneratedID.parse(id, prefix: UInt8(ascii: "f")), r.deal == ref, Int(r.slot) < money.feeEvents.count else {
            throw EngineError(.notFound, "fee event \(id.prefix(128)) not found")
        }
        return r.slot
    }

    func planSlot(_ id: String) throws(EngineError) -> Int32 {
        guard let s = money.planSlot[id] else { throw EngineError(.notFound, "fee plan \(id.prefix(128)) not found in deal \(info.id)") }
        return s
    }

    // MARK: - Fee computation (fn_compute_fee_events)

    /// The events due now for the approved and settled allocations (of one
    /// investor, when given) up to `asOf`, not accrued before.
    func decideFees(investor: String?, asOf: CivilDate, valuations: [Valuation] = []) -> [FeeEvent] {
        var out: [FeeEvent] = []
        var keys: Set<FeeKey> = []
        // The NAV each periodic performance fee already accrued was charged at (its high-water mark).
        var chargedNAV: [FeeKey: Int64] = [:]
        if !valuations.isEmpty {
            for e in money.feeEvents where e.status != .voided { if let n = e.navPerUnit { chargedNAV[e.key] = n.raw } }
        }
        // Approved and settled allocations are in memory (only rejected ones leave).
        for slot in 0..<allocations.count where allocations.isInMemory(Int32(slot)) {
            let a = allocations[slot]
            guard a.status == .approved || a.status == .settled else { continue }
            let inv = investors[Int(a.investor)]
            if let investor, inv != investor { continue }
            // The investor's active terms, or the deal's default plan without terms.
            let plan = money.activeTerms[inv].map { money.terms[Int($0)].plan } ?? money.defaultPlan
            guard plan >= 0 else { continue }
            let investment = ExactAmount(units: a.units, price: a.unitPrice)
            let base = investment.roundedToMoney
            let approvedOn = CivilDate(days: Int32(Self.floorDiv(a.decidedAt, 86_400_000)))
            for (ci, c) in money.plans[Int(plan)].components.enumerated() {
                func add(_ amount: Money, date: CivilDate, from: CivilDate? = nil, to: CivilDate? = nil, base: Money = base, nav: Price? = nil) {
                    var e = FeeEvent(investor: inv, allocation: Int32(slot), plan: plan, component: Int32(ci), eventDate: date,
                                     periodStart: from, periodEnd: to, baseAmount: base, computedAmount: amount, currency: info.currency)
                    e.navPerUnit = nav
                    guard !money.accrued.contains(e.key), keys.insert(e.key).inserted else { return }
                    out.append(e)
                }
                switch c.method {
                case .percentOfInvestment: add(MoneyMath.percent(investment, bps: c.rateBps ?? 0), date: approvedOn)
                case .fixed: add(c.flatAmount ?? .zero, date: approvedOn)
                case .perUnitSpread: add(MoneyMath.product(a.units, c.perUnit ?? Price(raw: 0)), date: approvedOn)
                case .percentPerAnnum:
                    // One event per calendar period (UTC) from the approval day, for periods ended by asOf.
                    var start = approvedOn
                    while out.count < MoneyLimits.maxEventsPerCompute {
                        let end = Self.periodEnd(containing: start, c.frequency)
                        guard end <= asOf else { break }
                        add(MoneyMath.perAnnum(investment, bps: c.rateBps ?? 0, days: Int(end.days - start.days) + 1), date: end, from: start, to: end)
                        start = CivilDate(days: end.days + 1)
                    }
                case .percentOfProfit where c.frequency == .onExit:
                    break  // accrues at the deal's exit, not here
                case .percentOfProfit:
                    // Periodic: per calendar period ended by asOf, against the vehicle's latest NAV
                    // on or before the period's end; over the high-water mark (the highest NAV the
                    // allocation was charged at, or its unit price) with HWM, else over the NAV of
                    // the period before.
                    guard !valuations.isEmpty else { break }
                    var start = approvedOn
                    var mark = a.unitPrice.raw
                    while out.count < MoneyLimits.maxEventsPerCompute {
                        let end = Self.periodEnd(containing: start, c.frequency)
                        guard end <= asOf else { break }
                        defer { start = CivilDate(days: end.days + 1) }
                        guard let v = Self.latest(valuations, onOrBefore: end) else { continue }
                        let key = FeeKey(allocation: Int32(slot), plan: plan, component: Int32(ci), period: start.days)
                        if let charged = chargedNAV[key] {
                            // Charged before: its NAV is the mark from here on.
                            mark = c.highWaterMark ? max(mark, charged) : v.navPerUnit.raw
                            continue
                        }
                        let gain = v.navPerUnit.raw - mark
                        if !c.highWaterMark { mark = v.navPerUnit.raw }
                        guard gain > 0 else { continue }
                        let profit = ExactAmount(units: a.units, price: Price(raw: gain))
                        let fee = MoneyMath.percent(profit, bps: c.rateBps ?? 0)
                        guard fee.raw > 0 else { continue }
                        add(fee, date: end, from: start, to: end, base: profit.roundedToMoney, nav: v.navPerUnit)
                        if c.highWaterMark { mark = v.navPerUnit.raw }
                    }
                }
                if out.count >= MoneyLimits.maxEventsPerCompute { return out }
            }
        }
        return out
    }

    /// The performance fees of an exit at `price` (`percent_of_profit`,
    /// `on_exit`): profit = units × (exit price − unit price); fee = rate ×
    /// (profit − investment × hurdle), nothing when that is not positive (a
    /// simple hurdle on the invested amount, no catch-up).
    func decideExitFees(price: Price, on day: CivilDate) throws(EngineError) -> [FeeEvent] {
        var out: [FeeEvent] = []
        for slot in 0..<allocations.count where allocations.isInMemory(Int32(slot)) {
            let a = allocations[slot]
            guard a.status == .approved || a.status == .settled else { continue }
            let inv = investors[Int(a.investor)]
            let plan = money.activeTerms[inv].map { money.terms[Int($0)].plan } ?? money.defaultPlan
            guard plan >= 0 else { continue }
            let investment = ExactAmount(units: a.units, price: a.unitPrice)
            for (ci, c) in money.plans[Int(plan)].components.enumerated() where c.method == .percentOfProfit && c.frequency == .onExit {
                let profit = ExactAmount(units: a.units, price: Price(raw: price.raw - a.unitPrice.raw))
                guard let fee = MoneyMath.performance(profit: profit, investment: investment, rateBps: c.rateBps ?? 0, hurdleBps: c.hurdleBps ?? 0) else {
                    throw EngineError(.limit, "allocation \(a.id): the performance fee is too large to compute exactly within the engine's limits")
                }
                guard fee.raw > 0 else { continue }
                let e = FeeEvent(investor: inv, allocation: Int32(slot), plan: plan, component: Int32(ci), eventDate: day,
                                 periodStart: nil, periodEnd: nil, baseAmount: profit.roundedToMoney, computedAmount: fee, currency: info.currency)
                guard !money.accrued.contains(e.key) else { continue }
                out.append(e)
            }
        }
        return out
    }

    /// The latest of `list` (oldest first) on or before `day`.
    static func latest(_ list: [Valuation], onOrBefore day: CivilDate) -> Valuation? {
        var lo = 0, hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid].asOf <= day { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? nil : list[lo - 1]
    }

    /// The last day of the calendar month, quarter or year that holds `day`.
    static func periodEnd(containing day: CivilDate, _ f: FeeFrequency) -> CivilDate {
        let (y, m, _) = CivilDate.civilFromDays(Int(day.days))
        let lastMonth: Int
        switch f {
        case .monthly: lastMonth = m
        case .quarterly: lastMonth = ((m - 1) / 3 + 1) * 3
        default: lastMonth = 12
        }
        return CivilDate(days: Int32(CivilDate.daysFromCivil(y, lastMonth, CivilDate.daysInMonth(year: y, month: lastMonth))))
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    // MARK: - Execute

    mutating func executeMoney(_ request: MoneyRequest, now: Int64, context: EngineContext, principal: Principal?,
                               changes: inout [Change]) throws(EngineError) -> DealReply {
        func commit(_ c: DealMoneyChange) { self.commit(.money(deal: info.id, c), time: now, context: context, changes: &changes) }
        switch request {
        case .createPlan(let id, let name, let description, let isDefault):
            try Validate.id(id, field: "fee plan id")
            try Validate.text(name, field: "name")
            if let d = description { try Validate.text(d, field: "description") }
            guard money.planSlot[id] == nil, context.indexes.feePlans.lookup(id) == nil else { throw EngineError(.exists, "fee plan \(id) already exists") }
            guard money.plans.count < MoneyLimits.maxPlansPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(MoneyLimits.maxPlansPerDeal) fee plans")
            }
            guard context.indexes.feePlans.insertIfAbsent(id, RowRef(deal: ref, slot: Int32(money.plans.count))) == nil else {
                throw EngineError(.exists, "fee plan \(id) already exists")
            }
            commit(.planCreated(FeePlan(id: id, name: name, description: description, isDefault: isDefault)))
            return .ok
        case .addComponent(let planID, let component):
            let slot = try planSlot(planID)
            try Self.checkComponent(component)
            guard !money.plans[Int(slot)].components.contains(where: { $0.id == component.id }) else {
                throw EngineError(.exists, "component \(component.id) already exists in fee plan \(planID)")
            }
            guard money.plans[Int(slot)].components.count < MoneyLimits.maxComponentsPerPlan else {
                throw EngineError(.limit, "a fee plan has at most \(MoneyLimits.maxComponentsPerPlan) components")
            }
            commit(.componentAdded(plan: slot, component))
            return .ok
        case .getPlan(let id):
            return .fields(planFields(try planSlot(id)))
        case .setTerms(let investor, let planID, let overrides):
            try Validate.id(investor, field: "investor")
            if let o = overrides { try Validate.text(o, field: "overrides") }
            let slot = try planSlot(planID)
            if let active = money.activeTerms[investor], money.terms[Int(active)].plan == slot, money.terms[Int(active)].overrides == overrides {
                return .ok  // the same terms again: a retry
            }
            guard money.terms.count < MoneyLimits.maxTermsPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of terms") }
            commit(.termsSet(investor: investor, plan: slot, overrides: overrides, by: principal?.user))
            return .ok
        case .getTerms(let investor):
            guard let active = money.activeTerms[investor] else { throw EngineError(.notFound, "investor \(investor.prefix(128)) has no terms in deal \(info.id)") }
            return .fields(termsFields(active))
        case .termsHistory(let investor):
            let rows = money.terms.indices.filter { money.terms[$0].investor == investor }.map { termsFields(Int32($0)) }
            guard !rows.isEmpty else { throw EngineError(.notFound, "investor \(investor.prefix(128)) has no terms in deal \(info.id)") }
            return .page(cursor: "0", rows: rows)
        case .computeFees(let investor, let asOf):
            if let investor { try Validate.id(investor, field: "investor") }
            let today = CivilDate(days: Int32(Self.floorDiv(now, 86_400_000)))
            let valuations = info.vehicle.map { v in context.directory.withLock { $0.ledger.valuations[v] ?? [] } } ?? []
            let events = decideFees(investor: investor, asOf: asOf ?? today, valuations: valuations)
            guard money.feeEvents.count + events.count <= MoneyLimits.maxFeeEventsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(MoneyLimits.maxFeeEventsPerDeal) fee events")
            }
            if !events.isEmpty { commit(.feesAccrued(events)) }
            return .count(events.count)
        case .voidFee(let id):
            let slot = try feeEventSlot(id)
            let status = money.feeEvents[Int(slot)].status
            if status == .voided { return .ok }
            guard status == .accrued else { throw EngineError(.conflict, "fee event \(id) is \(status.name); only an accrued one is voided") }
            commit(.feeVoided(event: slot))
            return .ok
        case .exit(let price, let on):
            guard price.raw >= 0 && Int128(price.raw) <= NumberLimits.maxPriceRaw else { throw EngineError(.invalid, "exit price out of range") }
            guard money.exit == nil else { throw EngineError(.conflict, "deal \(info.id) has exited already (once per deal)") }
            let day = on ?? CivilDate(days: Int32(Self.floorDiv(now, 86_400_000)))
            let events = try decideExitFees(price: price, on: day)
            guard money.feeEvents.count + events.count <= MoneyLimits.maxFeeEventsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(MoneyLimits.maxFeeEventsPerDeal) fee events")
            }
            commit(.dealExited(price: price, on: day, events))
            return .count(events.count)
        case .createInvoice(let investor, let due, let taxBps, let id):
            try Validate.id(investor, field: "investor")
            guard taxBps >= 0 && taxBps <= MoneyLimits.maxRateBps else { throw EngineError(.invalid, "TAX_BPS out of range") }
            guard money.invoices.count < MoneyLimits.maxInvoicesPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of invoices") }
            let slot = Int32(money.invoices.count)
            if let id {
                try Validate.id(id, field: "invoice id")
                guard GeneratedID.parse(id, prefix: UInt8(ascii: "v")) == nil else { throw EngineError(.invalid, "invoice id \(id) has the reserved form v<n>.<n>") }
                if let existing = context.indexes.invoices.lookup(id) {
                    // A retry: the same investor answers the same invoice.
                    guard existing.deal == ref, Int(existing.slot) < money.invoices.count, money.invoices[Int(existing.slot)].investor == investor else {
                        throw EngineError(.conflict, "invoice id \(id) is already used")
                    }
                    return .id(id)
                }
            }
            let chosen = id ?? GeneratedID.make(prefix: UInt8(ascii: "v"), deal: ref, slot: slot)
            let invoice = try decideInvoice(investor: investor, id: chosen, due: due, taxBps: taxBps, by: principal?.user)
            if let id, context.indexes.invoices.insertIfAbsent(id, RowRef(deal: ref, slot: slot)) != nil {
                throw EngineError(.conflict, "invoice id \(id) is already used")
            }
            commit(.invoiceCreated(invoice))
            return .id(chosen)
        case .sendInvoice(let id):
            let slot = try invoiceSlot(id, index: context.indexes)
            let inv = money.invoices[Int(slot)]
            if inv.sent && !inv.cancelled { return .ok }
            guard !inv.cancelled else { throw EngineError(.conflict, "invoice \(id) is cancelled") }
            commit(.invoiceSent(invoice: slot))
            return .ok
        case .cancelInvoice(let id):
            let slot = try invoiceSlot(id, index: context.indexes)
            let inv = money.invoices[Int(slot)]
            if inv.cancelled { return .ok }
            guard inv.paid.raw == 0 else { throw EngineError(.conflict, "invoice \(id) has \(inv.paid) paid; refund the payments before cancelling") }
            commit(.invoiceCancelled(invoice: slot))
            return .ok
        case .getInvoice(let id):
            return .fields(invoiceFields(try invoiceSlot(id, index: context.indexes)))
        case .listInvoices(let investor, let status, let cursor, let count):
            let scope: [String: KYCStatus]? = principal.flatMap { $0.isStaff ? nil : $0.investors }
            return page(from: cursor, count: count, total: money.invoices.count) { slot in
                let inv = money.invoices[slot]
                if let investor, inv.investor != investor { return nil }
                if let status, inv.status != status { return nil }
                if let scope, scope[inv.investor] == nil { return nil }
                return invoiceFields(Int32(slot))
            }
        case .recordPayment(let invoiceID, let amount, let method, let paidAt, let id):
            let slot = try invoiceSlot(invoiceID, index: context.indexes)
            if let m = method { try Validate.text(m, field: "method") }
            guard amount.raw > 0 && amount.raw <= NumberLimits.maxMoneyRaw else { throw EngineError(.invalid, "a payment amount is greater than zero, got \(amount)") }
            if let id {
                try Validate.id(id, field: "payment id")
                guard GeneratedID.parse(id, prefix: UInt8(ascii: "y")) == nil else { throw EngineError(.invalid, "payment id \(id) has the reserved form y<n>.<n>") }
                if let existing = context.indexes.payments.lookup(id) {
                    guard existing.deal == ref, Int(existing.slot) < money.payments.count, money.payments[Int(existing.slot)].invoice == slot,
                          money.payments[Int(existing.slot)].amount == amount else {
                        throw EngineError(.conflict, "payment id \(id) was used with different parameters")
                    }
                    return .id(id)
                }
            }
            let inv = money.invoices[Int(slot)]
            guard !inv.isStatement else { throw EngineError(.conflict, "invoice \(invoiceID) is a commission statement; COMMISSION.PAY settles it") }
            guard !inv.cancelled else { throw EngineError(.conflict, "invoice \(invoiceID) is cancelled") }
            guard inv.paid.raw + amount.raw <= inv.total.raw else {
                throw EngineError(.conflict, "paying \(amount) would pay more than is owed on invoice \(invoiceID): total \(inv.total), paid \(inv.paid)")
            }
            guard money.payments.count < MoneyLimits.maxPaymentsPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of payments") }
            let pslot = Int32(money.payments.count)
            if let id, context.indexes.payments.insertIfAbsent(id, RowRef(deal: ref, slot: pslot)) != nil {
                throw EngineError(.conflict, "payment id \(id) is already used")
            }
            let chosen = id ?? GeneratedID.make(prefix: UInt8(ascii: "y"), deal: ref, slot: pslot)
            commit(.paymentRecorded(Payment(id: chosen, invoice: slot, amount: amount, method: method, paidAt: paidAt ?? now, createdBy: principal?.user)))
            return .id(chosen)
        case .refundPayment(let id):
            let slot = try paymentSlot(id, index: context.indexes)
            if money.payments[Int(slot)].refunded { return .ok }
            commit(.paymentRefunded(payment: slot))
            return .ok
        case .issueTermSheet(let investor, let price, let planID, let validUntil, let currency, let doc):
            try Validate.id(investor, field: "investor")
            guard price.raw >= 0 && Int128(price.raw) <= NumberLimits.maxPriceRaw else { throw EngineError(.invalid, "price per unit out of range") }
            if let d = doc { try Validate.id(d, field: "document ref") }
            try Validate.currency(currency ?? info.currency)
            if let v = validUntil, v <= now { throw EngineError(.invalid, "VALID_UNTIL must be in the future") }
            guard money.termSheets.count < MoneyLimits.maxTermSheetsPerDeal else { throw EngineError(.limit, "deal \(info.id) has the maximum number of term sheets") }
            let plan = try planID.map { id throws(EngineError) in try planSlot(id) } ?? -1
            let slot = Int32(money.termSheets.count)
            let previous = money.latestSheet[investor].map(Int.init)
            let sheet = TermSheet(id: GeneratedID.make(prefix: UInt8(ascii: "t"), deal: ref, slot: slot), investor: investor, plan: plan,
                                  pricePerUnit: price, currency: currency ?? info.currency, validUntil: validUntil,
                                  version: previous.map { money.termSheets[$0].version + 1 } ?? 1, supersedes: Int32(previous ?? -1),
                                  doc: doc, createdBy: principal?.user)
            commit(.termSheetIssued(sheet))
            return .id(sheet.id)
        case .moveTermSheet(let id, let target):
            let slot = try termSheetSlot(id)
            let t = money.termSheets[Int(slot)]
            if t.status == target { return .ok }
            if t.isOpen, let until = t.validUntil, until <= now {
                // Its time ran out: the expiry is recorded now, and the move refused.
                commit(.termSheetStatus(sheet: slot, status: .expired, by: nil))
                throw EngineError(.expired, "term sheet \(id) expired at \(until)")
            }
            switch (t.status, target) {
            case (.draft, .sent), (.sent, .accepted), (.draft, .rejected), (.sent, .rejected): break
            default:
                let hint = t.status == .draft && target == .accepted ? "; TERMSHEET.SEND it first" : ""
                throw EngineError(.conflict, "term sheet \(id) is \(t.status.name); it cannot become \(target.name)\(hint)")
            }
            commit(.termSheetStatus(sheet: slot, status: target, by: principal?.user))
            return .ok
        case .getTermSheet(let id):
            return .fields(termSheetFields(try termSheetSlot(id), now: now))
        case .getPayment(let id):
            return .fields(paymentFields(try paymentSlot(id, index: context.indexes)))
        case .reconcile(let invoice, let txn, let amount):
            let (payment, existing) = try decideReconcile(invoice: invoice, txn: txn, amount: amount, now: now, context: context, by: principal?.user)
            if let existing { return .id(existing) }
            commit(.reconciled(payment!))
            return .id(payment!.id)
        case .unreconcile(let invoice, let txn):
            commit(.paymentRefunded(payment: try liveMatch(invoice: invoice, txn: txn, index: context.indexes)))
            return .ok
        case .createIntroduction, .loseIntroduction, .getIntroduction, .listIntroductions, .listCommissions, .invoiceCommissions,
             .payStatement, .cancelCommission:
            return try executeAttribution(request, now: now, context: context, principal: principal, changes: &changes)
        case .listFees(let investor, let status, let cursor, let count):
            let scope: [String: KYCStatus]? = principal.flatMap { $0.isStaff ? nil : $0.investors }
            return page(from: cursor, count: count, total: money.feeEvents.count) { slot in
                let e = money.feeEvents[slot]
                if let investor, e.investor != investor { return nil }
                if let status, e.status != status { return nil }
                if let scope, scope[e.investor] == nil { return nil }
                return feeEventFields(Int32(slot))
            }
        }
    }
}
