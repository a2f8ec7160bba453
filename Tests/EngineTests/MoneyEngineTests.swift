import Testing
import WAL
@testable import AllocationEngine

// Fee plans, terms and fee events (issue 8, first part): the seed's plans to
// the cent, computing twice accrues nothing twice, periods of a per-annum fee,
// components that mean nothing are refused, replay computes nothing again.

private func mo(_ e: Engine, _ r: MoneyRequest, deal: String = "d1", as p: Principal? = nil) async throws -> DealReply {
    guard let actor = e.deal(deal) else { throw EngineError(.notFound, "deal \(deal)") }
    // As a principal: the reply as it is (errors included); in process: errors thrown.
    if p != nil { return await actor.execute([.money(r)], as: p).replies[0] }
    let reply = await e.submit([.money(r)], to: actor)[0]
    if let err = reply.error { throw err }
    return reply
}

private func plan(_ e: Engine, _ id: String, deal: String = "d1", isDefault: Bool = false, _ components: [FeeComponent]) async throws {
    _ = try await mo(e, .createPlan(id: id, name: "plan \(id)", description: nil, isDefault: isDefault), deal: deal)
    for c in components { _ = try await mo(e, .addComponent(plan: id, c), deal: deal) }
}

/// Places, allocates and approves `units` at `price` for `investor`; returns the allocation id.
@discardableResult
private func allocation(_ e: Engine, _ investor: String, _ units: String, _ price: String, deal: String = "d1") async throws -> String {
    let h = try await e.hold(deal: deal, holdReq(units, investor: investor, price: price))
    let a = try await e.allocate(hold: h.id)
    try await e.approve(allocation: a)
    return a
}

private func fees(_ e: Engine, deal: String = "d1", investor: String? = nil, status: FeeEventStatus? = nil) async throws -> [[Field]] {
    guard case .page(_, let rows) = try await mo(e, .listFees(investor: investor, status: status, cursor: 0, count: 1000), deal: deal) else { return [] }
    return rows
}

private func compute(_ e: Engine, deal: String = "d1", investor: String? = nil, asOf: String? = nil) async throws -> Int {
    guard case .count(let n) = try await mo(e, .computeFees(investor: investor, asOf: asOf.map(date)), deal: deal) else { return -1 }
    return n
}

private let allIn = FeeComponent(id: "sub", kind: .subscription, method: .percentOfInvestment, rateBps: 500)

@Suite("Money: fee plans, terms, fee events") struct MoneyEngineTests {
    @Test func allInFivePercentToTheCent() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "allin", isDefault: true, [allIn])
            let a = try await allocation(e, "inv-a", "1000", "28.50")
            #expect(try await compute(e) == 1)
            let rows = try await fees(e)
            #expect(rows.count == 1)
            #expect(rows[0][field: "base_amount"] == "28500.00" && rows[0][field: "computed_amount"] == "1425.00", "\(rows)")
            #expect(rows[0][field: "source_ref"] == a && rows[0][field: "status"] == "accrued" && rows[0][field: "kind"] == "subscription")
            #expect(rows[0][field: "event_date"] == "2026-01-01" && rows[0][field: "currency"] == "USD")
            // Computing again accrues nothing twice.
            let digest = await e.digest()
            #expect(try await compute(e) == 0)
            #expect(await e.digest() == digest)
        }
    }

    @Test func threePlusCarryAndTermsSupersede() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "allin", isDefault: true, [allIn])
            try await plan(e, "carry", [FeeComponent(id: "sub", kind: .subscription, method: .percentOfInvestment, rateBps: 300),
                                        FeeComponent(id: "perf", kind: .performance, method: .percentOfProfit, rateBps: 1000, frequency: .onExit)])
            _ = try await mo(e, .setTerms(investor: "inv-b", plan: "allin", overrides: nil))
            _ = try await mo(e, .setTerms(investor: "inv-b", plan: "carry", overrides: "side letter 12"))
            guard case .fields(let t) = try await mo(e, .getTerms(investor: "inv-b")) else { Issue.record("terms"); return }
            #expect(t[field: "fee_plan"] == "carry" && t[field: "status"] == "active" && t[field: "overrides"] == "side letter 12")
            guard case .page(_, let history) = try await mo(e, .termsHistory(investor: "inv-b")) else { Issue.record("history"); return }
            #expect(history.map { $0[field: "status"] } == ["superseded", "active"])
            try await allocation(e, "inv-b", "2000", "28.50")
            #expect(try await compute(e) == 1)  // the carry accrues at exit, not here
            #expect(try await fees(e).map { $0[field: "computed_amount"] } == ["1710.00"])
            await expectError(.notFound) { try await mo(e, .getTerms(investor: "inv-z")) }
            await expectError(.notFound) { try await mo(e, .setTerms(investor: "inv-b", plan: "nope", overrides: nil)) }
        }
    }

    /// The seed's carry plans at exit: 3 % + 10 % carry, and 20 % over an 8 % hurdle.
    @Test(arguments: [("40", "2300.00"), ("25", nil), ("28.5", nil)])
    func carryAtExit(_ exitPrice: String, _ expected: String?) async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "carry", isDefault: true, [FeeComponent(id: "sub", kind: .subscription, method: .percentOfInvestment, rateBps: 300),
                                                         FeeComponent(id: "perf", kind: .performance, method: .percentOfProfit, rateBps: 1000, frequency: .onExit)])
            try await allocation(e, "inv-b", "2000", "28.50")
            #expect(try await compute(e) == 1)
            guard case .count(let n) = try await mo(e, .exit(price: p(exitPrice), on: date("2030-06-30"))) else { Issue.record("exit"); return }
            #expect(n == (expected == nil ? 0 : 1))
            let perf = try await fees(e).filter { $0[field: "component"] == "perf" }
            #expect(perf.map { $0[field: "computed_amount"] } == (expected.map { [$0] } ?? []))
            if expected != nil { #expect(perf[0][field: "base_amount"] == "23000.00" && perf[0][field: "event_date"] == "2030-06-30") }
            // Once per deal; FEES.COMPUTE never accrues the carry.
            #expect(try await mo(e, .exit(price: p("50"), on: nil), as: .admin).error?.code == .conflict)
            #expect(try await compute(e) == 0)
        }
    }

    @Test(arguments: [("115", "140.00"), ("105", nil), ("108", nil), ("108.01", "0.20")])
    func hurdleAtExit(_ exitPrice: String, _ expected: String?) async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "h", isDefault: true, [FeeComponent(id: "perf", kind: .performance, method: .percentOfProfit, rateBps: 2000,
                                                                  frequency: .onExit, hurdleBps: 800)])
            try await allocation(e, "inv-h", "100", "100")
            _ = try await mo(e, .exit(price: p(exitPrice), on: nil))
            #expect(try await fees(e).map { $0[field: "computed_amount"] } == (expected.map { [$0] } ?? []))
        }
    }

    @Test func fixedSpreadAndPerAnnumPeriods() async throws {
        try await withEngine { e, clock in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "p", isDefault: true, [
                FeeComponent(id: "flat", kind: .flat, method: .fixed, flatAmount: try Money.parse("250")),
                FeeComponent(id: "spread", kind: .spreadMarkup, method: .perUnitSpread, perUnit: p("0.125")),
                FeeComponent(id: "mgmt", kind: .management, method: .percentPerAnnum, rateBps: 200, frequency: .quarterly),
            ])
            clock.set(millis: 1_767_225_600_000 + 45 * 86_400_000)  // 2026-02-15
            try await allocation(e, "inv-c", "100", "100")
            // As of 2026-06-30: Feb 15 - Mar 31 (45 days) and Q2 (91 days); Q3 has not ended.
            #expect(try await compute(e, asOf: "2026-06-30") == 4)
            let rows = try await fees(e)
            #expect(rows.map { $0[field: "computed_amount"] } == ["250.00", "12.50", "24.66", "49.86"], "\(rows)")
            #expect(rows[2][field: "period_start"] == "2026-02-15" && rows[2][field: "period_end"] == "2026-03-31")
            #expect(rows[3][field: "period_start"] == "2026-04-01" && rows[3][field: "event_date"] == "2026-06-30")
            // A day later Q3 still has not ended; at its end it accrues once.
            #expect(try await compute(e, asOf: "2026-07-01") == 0)
            #expect(try await compute(e, asOf: "2026-09-30") == 1)
            #expect(try await compute(e, asOf: "2026-09-30") == 0)
        }
    }

    @Test func voidThenRecompute() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "allin", isDefault: true, [allIn])
            try await allocation(e, "inv-a", "10", "10")
            #expect(try await compute(e) == 1)
            let id = try #require(try await fees(e).first?[field: "id"])
            _ = try await mo(e, .voidFee(id))
            _ = try await mo(e, .voidFee(id))  // again: no-op
            #expect(try await fees(e, status: .voided).count == 1)
            #expect(try await fees(e, status: .accrued).count == 0)
            // A voided fee may accrue again.
            #expect(try await compute(e) == 1)
            #expect(try await fees(e, status: .accrued).count == 1)
            await expectError(.notFound) { try await mo(e, .voidFee("f1.99")) }
        }
    }

    @Test func onlyApprovedAllocationsAndTheRightPlan() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            // No plan at all: nothing accrues.
            try await allocation(e, "inv-a", "10", "10")
            #expect(try await compute(e) == 0)
            try await plan(e, "allin", isDefault: true, [allIn])
            let pending = try await e.hold(deal: "d1", holdReq("5", investor: "inv-p", price: "10"))
            _ = try await e.allocate(hold: pending.id)  // pending_review: no fee
            #expect(try await compute(e, investor: "inv-p") == 0)
            #expect(try await compute(e, investor: "inv-a") == 1)
            // A new default plan takes over; the old one is no longer default.
            try await plan(e, "zero", isDefault: true, [FeeComponent(id: "z", kind: .other, method: .fixed, flatAmount: .zero)])
            guard case .fields(let old) = try await mo(e, .getPlan("allin")) else { Issue.record("plan"); return }
            #expect(old[field: "is_default"] == "0")
        }
    }

    @Test(arguments: [
        FeeComponent(id: "c", kind: .flat, method: .fixed),                                            // fixed without AMOUNT
        FeeComponent(id: "c", kind: .subscription, method: .percentOfInvestment),                     // percent without RATE_BPS
        FeeComponent(id: "c", kind: .management, method: .percentPerAnnum, rateBps: 100),            // per annum one_time
        FeeComponent(id: "c", kind: .subscription, method: .percentOfInvestment, rateBps: 100, frequency: .onExit),  // on_exit not performance
        FeeComponent(id: "c", kind: .performance, method: .percentOfProfit, rateBps: 100, frequency: .oneTime),
        FeeComponent(id: "c", kind: .subscription, method: .percentOfInvestment, rateBps: 100_001),
        FeeComponent(id: "c", kind: .spreadMarkup, method: .perUnitSpread),
        FeeComponent(id: "c", kind: .subscription, method: .percentOfInvestment, rateBps: 100, hurdleBps: 800),
        FeeComponent(id: "bad id", kind: .flat, method: .fixed, flatAmount: .zero),
    ])
    func meaninglessComponentsAreInvalid(_ c: FeeComponent) async throws {
        try await withEngine { e, _ in
            try await openDeal(e)
            try await plan(e, "p", [])
            let digest = await e.digest()
            await expectError(.invalid) { try await mo(e, .addComponent(plan: "p", c)) }
            #expect(await e.digest() == digest)
        }
    }

    @Test func planIdsAreUniqueAcrossDeals() async throws {
        try await withEngine { e, _ in
            try await openDeal(e)
            try await openDeal(e, "d2")
            try await plan(e, "p", [allIn])
            await expectError(.exists) { try await mo(e, .createPlan(id: "p", name: "again", description: nil, isDefault: false), deal: "d2") }
            await expectError(.exists) { try await mo(e, .addComponent(plan: "p", allIn)) }
        }
    }

    @Test func investorUsersSeeOnlyTheirFees() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "allin", isDefault: true, [allIn])
            try await allocation(e, "inv-a", "10", "10")
            try await allocation(e, "inv-b", "20", "10")
            #expect(try await compute(e) == 2)
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor)))
            try await e.change(.investorCreated(InvestorRecord(id: "inv-a", legalName: "A", kycStatus: .approved)))
            try await e.change(.investorLinked(investor: "inv-a", user: "alice"))
            _ = try await e.submit(.people(.addMember(user: "alice", role: .investor, investor: "inv-a")), deal: "d1")
            let alice = Principal(user: "alice", role: .investor, investors: ["inv-a": .approved])
            let reply = try await mo(e, .listFees(investor: nil, status: nil, cursor: 0, count: 100), as: alice)
            guard case .page(_, let rows) = reply else { Issue.record("\(reply)"); return }
            #expect(rows.map { $0[field: "investor"] } == ["inv-a"])
            #expect(try await mo(e, .computeFees(investor: nil, asOf: nil), as: alice).error?.code == .noPermission)
            #expect(try await mo(e, .getTerms(investor: "inv-b"), as: alice).error?.code == .noPermission)
        }
    }

    @Test func invoicesTaxPaymentsRefunds() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "p", isDefault: true, [allIn, FeeComponent(id: "flat", kind: .flat, method: .fixed, flatAmount: try Money.parse("100.01"))])
            await expectError(.conflict) { try await mo(e, .createInvoice(investor: "inv-a", due: nil, taxBps: 0, id: nil)) }  // nothing accrued
            try await allocation(e, "inv-a", "1", "10.10")
            #expect(try await compute(e) == 2)
            // 0.505 -> 0.51 and 100.01: subtotal 100.52; tax 7.5 % = 7.539 -> 7.54; total 108.06.
            guard case .id(let inv) = try await mo(e, .createInvoice(investor: "inv-a", due: date("2026-02-01"), taxBps: 750, id: nil)) else { Issue.record("id"); return }
            guard case .fields(let f) = try await mo(e, .getInvoice(inv)) else { Issue.record("fields"); return }
            #expect(f[field: "subtotal"] == "100.52" && f[field: "tax"] == "7.54" && f[field: "total"] == "108.06" && f[field: "status"] == "draft", "\(f)")
            #expect(try await fees(e, status: .invoiced).count == 2)
            await expectError(.conflict) { try await mo(e, .createInvoice(investor: "inv-a", due: nil, taxBps: 0, id: nil)) }  // all invoiced
            _ = try await mo(e, .sendInvoice(inv))
            await expectError(.conflict) { try await mo(e, .recordPayment(invoice: inv, amount: try Money.parse("108.07"), method: nil, paidAt: nil, id: nil)) }
            guard case .id(let p1) = try await mo(e, .recordPayment(invoice: inv, amount: try Money.parse("8.06"), method: "wire", paidAt: nil, id: "pay-1")) else { return }
            #expect(p1 == "pay-1")
            // A retry with the same ID: the same payment, nothing paid twice.
            #expect(try await mo(e, .recordPayment(invoice: inv, amount: try Money.parse("8.06"), method: "wire", paidAt: nil, id: "pay-1")) == .id("pay-1"))
            func status() async throws -> (String?, String?) {
                guard case .fields(let f) = try await mo(e, .getInvoice(inv)) else { return (nil, nil) }
                return (f[field: "status"], f[field: "paid"])
            }
            #expect(try await status() == ("partial", "8.06"))
            await expectError(.conflict) { try await mo(e, .cancelInvoice(inv)) }  // something is paid
            _ = try await mo(e, .recordPayment(invoice: inv, amount: try Money.parse("100"), method: nil, paidAt: nil, id: nil))
            #expect(try await status() == ("paid", "108.06"))
            await expectError(.conflict) { try await mo(e, .recordPayment(invoice: inv, amount: try Money.parse("0.01"), method: nil, paidAt: nil, id: nil)) }
            _ = try await mo(e, .refundPayment("pay-1"))
            #expect(try await status() == ("partial", "100.00"))
            _ = try await mo(e, .refundPayment("y1.2"))
            #expect(try await status() == ("sent", "0.00"))
            // Cancelled with nothing paid: its events are accrued again and may be invoiced anew.
            _ = try await mo(e, .cancelInvoice(inv))
            #expect(try await fees(e, status: .accrued).count == 2)
            #expect(try await mo(e, .createInvoice(investor: "inv-a", due: nil, taxBps: 0, id: "inv-2")) == .id("inv-2"))
            await expectError(.conflict) { try await mo(e, .recordPayment(invoice: inv, amount: try Money.parse("1"), method: nil, paidAt: nil, id: nil)) }
        }
    }

    /// For any sequence of invoice, payment, refund and cancel commands: paid =
    /// sum of live payments <= total, and every invoice's total = its lines + tax.
    @Test(arguments: 0..<4)
    func paidNeverExceedsTotal(seed: Int) async throws {
        try await withEngine { e, _ in
            var rng = SplitMix64(seed: UInt64(seed) &+ 77)
            try await openDeal(e, lots: [("L1", "10000000", nil)])
            try await plan(e, "p", isDefault: true, [FeeComponent(id: "s", kind: .subscription, method: .percentOfInvestment, rateBps: 137)])
            var invoices: [String] = [], payments: [String] = []
            for step in 0..<300 {
                let investor = "inv-\(rng.next() % 3)"
                switch rng.next() % 6 {
                case 0:
                    try await allocation(e, investor, String(1 + rng.next() % 500), "\(1 + rng.next() % 90).\(rng.next() % 100)")
                    _ = try await compute(e)
                case 1:
                    if case .id(let id)? = try? await mo(e, .createInvoice(investor: investor, due: nil, taxBps: Int32(rng.next() % 2000), id: nil)) { invoices.append(id) }
                case 2, 3:
                    guard let inv = invoices.randomElement(using: &rng) else { continue }
                    let amount = Money(raw: Int128(1 + rng.next() % 50_000))
                    if case .id(let id)? = try? await mo(e, .recordPayment(invoice: inv, amount: amount, method: nil, paidAt: nil, id: "p\(step)")) { payments.append(id) }
                case 4:
                    if let p = payments.randomElement(using: &rng) { _ = try? await mo(e, .refundPayment(p)) }
                default:
                    if let inv = invoices.randomElement(using: &rng) { _ = try? await mo(e, .cancelInvoice(inv)) }
                }
            }
            let state = try #require(await e.deal("d1")?.read { $0.money })
            for (slot, inv) in state.invoices.enumerated() {
                let live = state.payments.filter { Int($0.invoice) == slot && !$0.refunded }.reduce(Int128(0)) { $0 + $1.amount.raw }
                #expect(inv.paid.raw == live && inv.paid.raw <= inv.total.raw && inv.paid.raw >= 0, "invoice \(inv.id)")
                #expect(inv.total.raw == inv.lines.reduce(Int128(0)) { $0 + $1.amount.raw } + inv.tax.raw)
                if inv.cancelled { #expect(live == 0) }
            }
            // Every fee event is billed by at most one live invoice.
            var billed: [Int32: Int] = [:]
            for inv in state.invoices where !inv.cancelled { for l in inv.lines { billed[l.event, default: 0] += 1 } }
            #expect(billed.values.allSatisfy { $0 == 1 })
            #expect(billed.keys.allSatisfy { state.feeEvents[Int($0)].status == .invoiced })
        }
    }

    @Test func termSheetVersionsAndTransitions() async throws {
        try await withEngine { e, clock in
            try await openDeal(e)
            try await plan(e, "carry", [allIn])
            func sheet(_ id: String) async throws -> [Field] {
                guard case .fields(let f) = try await mo(e, .getTermSheet(id)) else { return [] }
                return f
            }
            guard case .id(let t1) = try await mo(e, .issueTermSheet(investor: "inv-a", price: p("28.5"), plan: "carry", validUntil: nil, currency: nil, doc: "doc-1")) else { return }
            guard case .id(let t2) = try await mo(e, .issueTermSheet(investor: "inv-a", price: p("28"), plan: "carry", validUntil: nil, currency: nil, doc: nil)) else { return }
            guard case .id(let other) = try await mo(e, .issueTermSheet(investor: "inv-b", price: p("30"), plan: nil, validUntil: nil, currency: "EUR", doc: nil)) else { return }
            let s1 = try await sheet(t1), s2 = try await sheet(t2), so = try await sheet(other)
            #expect(s1[field: "version"] == "1" && s1[field: "supersedes_id"] == nil && s1[field: "doc_id"] == "doc-1")
            #expect(s2[field: "version"] == "2" && s2[field: "supersedes_id"] == t1)
            #expect(so[field: "version"] == "1" && so[field: "currency"] == "EUR")
            await expectError(.conflict) { try await mo(e, .moveTermSheet(t2, to: .accepted)) }  // draft: send first
            _ = try await mo(e, .moveTermSheet(t2, to: .sent))
            _ = try await mo(e, .moveTermSheet(t2, to: .accepted))
            #expect(try await sheet(t2)[field: "status"] == "accepted")
            // Accepting a sheet that names a plan makes it the investor's terms.
            guard case .fields(let t) = try await mo(e, .getTerms(investor: "inv-a")) else { Issue.record("terms"); return }
            #expect(t[field: "fee_plan"] == "carry" && t[field: "status"] == "active")
            await expectError(.conflict) { try await mo(e, .moveTermSheet(t2, to: .rejected)) }
            _ = try await mo(e, .moveTermSheet(t1, to: .rejected))
            await expectError(.conflict) { try await mo(e, .moveTermSheet(t1, to: .sent)) }
            await expectError(.notFound) { try await mo(e, .issueTermSheet(investor: "inv-a", price: p("1"), plan: "nope", validUntil: nil, currency: nil, doc: nil)) }
            await expectError(.invalid) { try await mo(e, .issueTermSheet(investor: "inv-a", price: p("1"), plan: nil, validUntil: clock.nowMillis() - 1, currency: nil, doc: nil)) }
        }
    }

    /// `valid_until` passing is a logged change made by the expiry ticker (SWEEP), like a hold's expiry.
    @Test func termSheetsExpireAsLoggedChanges() async throws {
        let io = SimulatedFileIO(seed: 0x7465726d)
        let clock = ManualClock()
        let d = try await openDurable(io, clock)
        let e = d.engine
        try await openDeal(e)
        let until = clock.nowMillis() + 60_000
        guard case .id(let t) = try await mo(e, .issueTermSheet(investor: "inv-a", price: p("10"), plan: nil, validUntil: until, currency: nil, doc: nil)) else { return }
        guard case .id(let late) = try await mo(e, .issueTermSheet(investor: "inv-b", price: p("10"), plan: nil, validUntil: until, currency: nil, doc: nil)) else { return }
        _ = try await mo(e, .moveTermSheet(t, to: .sent))
        clock.advance(millis: 59_999)
        #expect(await e.sweepExpired() == 0)
        clock.advance(millis: 1)
        // Accepting after valid_until records the expiry and answers EXPIRED.
        await expectError(.expired) { try await mo(e, .moveTermSheet(late, to: .sent)) }
        #expect(await e.sweepExpired() == 1)  // t, by the sweep
        guard case .fields(let f) = try await mo(e, .getTermSheet(t)) else { Issue.record("sheet"); return }
        #expect(f[field: "status"] == "expired")
        await expectError(.conflict) { try await mo(e, .moveTermSheet(t, to: .accepted)) }
        let live = await e.digest()
        try await d.close()
        #expect(try logRecords(io).filter { $0.typeName == "termsheet.status" }.count == 3)
        // Replay reads no clock: the expiries are in the log.
        let (replayed, _) = try recoverDigest(io)
        #expect(replayed == live)
    }

    /// Replay applies the logged amounts: snapshot + replay and replay from LSN 1 equal the live state.
    @Test func replayComputesNothingAgain() async throws {
        let io = SimulatedFileIO(seed: 0x6d6f6e6579)
        let clock = ManualClock()
        let d = try await openDurable(io, clock)
        let e = d.engine
        try await openDeal(e, lots: [("L1", "100000", nil)])
        try await plan(e, "allin", isDefault: true, [allIn, FeeComponent(id: "m", kind: .management, method: .percentPerAnnum, rateBps: 150, frequency: .monthly)])
        try await plan(e, "carry", [FeeComponent(id: "sub", kind: .subscription, method: .percentOfInvestment, rateBps: 300)])
        _ = try await mo(e, .setTerms(investor: "inv-b", plan: "carry", overrides: nil))
        try await allocation(e, "inv-a", "1000", "28.50")
        try await d.snapshot()
        try await allocation(e, "inv-b", "2000", "28.50")
        // inv-a: the 5 % once and January to April monthly; inv-b: its 3 % once.
        #expect(try await compute(e, asOf: "2026-04-30") == 6)
        let id = try #require(try await fees(e).last?[field: "id"])
        _ = try await mo(e, .voidFee(id))
        #expect(try await mo(e, .exit(price: p("40"), on: nil)) == .count(0))  // no carry in these plans
        guard case .id(let invoice) = try await mo(e, .createInvoice(investor: "inv-a", due: nil, taxBps: 500, id: nil)) else { Issue.record("invoice"); return }
        _ = try await mo(e, .recordPayment(invoice: invoice, amount: try Money.parse("10"), method: "wire", paidAt: nil, id: "pay-r"))
        _ = try await mo(e, .recordPayment(invoice: invoice, amount: try Money.parse("5"), method: nil, paidAt: nil, id: nil))
        _ = try await mo(e, .refundPayment("pay-r"))
        if case .id(let ts) = try await mo(e, .issueTermSheet(investor: "inv-b", price: p("28"), plan: "carry", validUntil: nil, currency: nil, doc: nil)) {
            _ = try await mo(e, .moveTermSheet(ts, to: .sent))
            _ = try await mo(e, .moveTermSheet(ts, to: .accepted))
        }
        let live = await e.digest()
        try await d.close()
        let names = try logRecords(io).map(\.typeName)
        for n in ["feeplan.created", "feeplan.component", "terms.set", "fees.accrued", "fee.voided", "deal.exited", "invoice.created", "payment.recorded", "payment.refunded", "termsheet.issued", "termsheet.status"] { #expect(names.contains(n), "\(n)") }
        let (fromSnapshot, report) = try recoverDigest(io)
        #expect(report.snapshotLSN > 0)
        #expect(fromSnapshot == live)
        let r = try await openDurable(io, clock)
        #expect(await r.engine.digest() == live)
        // Recovered: computing again still accrues nothing twice, and the voided fee may accrue again.
        #expect(try await compute(r.engine, asOf: "2026-04-30") == 1)
        try await r.close()
    }
}
