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
        let live = await e.digest()
        try await d.close()
        let names = try logRecords(io).map(\.typeName)
        for n in ["feeplan.created", "feeplan.component", "terms.set", "fees.accrued", "fee.voided", "deal.exited"] { #expect(names.contains(n), "\(n)") }
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
