import Testing
import WAL
@testable import AllocationEngine

// Issue 9, the portfolio: positions per investor × vehicle, capital calls and
// distributions to the cent (largest remainder), cashflows, replay.

private func money(_ s: String) -> Money { try! Money.parse(s) }

private func approved(_ e: Engine, _ deal: String, _ investor: String, _ units: String, _ price: String) async throws {
    let h = try await e.hold(deal: deal, holdReq(units, investor: investor, price: price))
    let a = try await e.allocate(hold: h.id)
    try await e.approve(allocation: a)
}

private func vehicleDeal(_ e: Engine, _ deal: String, vehicle: String) async throws {
    var spec = DealSpec(id: deal)
    spec.vehicle = vehicle
    try await e.createDeal(spec)
    try await e.addLot(deal: deal, LotSpec(id: "\(deal)-L1", unitsTotal: Units.whole(1_000_000), unitCost: Price.whole(1)))
}

/// DISTRIBUTION.CREATE's body, as the command runs it.
private func distribute(_ e: Engine, _ vehicle: String, _ id: String, _ amount: String) async throws -> [(String, String)] {
    let holders = await e.holders(of: vehicle)
    try await e.change { _ throws(EngineError) in
        guard let split = CashFlowMath.split(money(amount), by: holders.map { ($0.0, Units(raw: Int128($0.1)!)) }) else { throw EngineError(.limit, "split") }
        let d = Distribution(id: id, vehicle: vehicle, name: nil, amount: money(amount), date: date("2026-06-30"), classification: nil)
        return .distributionCreated(d, split.map { CashFlow(investor: $0.0, vehicle: vehicle, kind: .distribution, amount: $0.1, date: d.date, ref: id) })
    }
    return e.readDirectory { d in d.portfolio.cashflows.filter { $0.ref == id }.map { ($0.investor, $0.amount.description) } }
}

@Suite("Portfolio: positions per vehicle, calls, distributions") struct PortfolioTests {
    @Test func largestRemainderAddsUpExactly() {
        func split(_ amount: String, _ units: [(String, String)]) -> [String] {
            CashFlowMath.split(money(amount), by: units.map { ($0.0, u($0.1)) })!.map { "\($0.0)=\($0.1)" }
        }
        // The example: 1,000.00 over three equal holders; the extra cent to the lowest id.
        #expect(split("1000", [("a", "1"), ("b", "1"), ("c", "1")]) == ["a=333.34", "b=333.33", "c=333.33"])
        #expect(split("1000", [("c", "1"), ("a", "1"), ("b", "1")]) == ["c=333.33", "a=333.34", "b=333.33"])
        // 0.05 over 3 holders of 1, 1, 1: 0.0166.. each, two cents by remainder, ties to the lower ids.
        #expect(split("0.05", [("x", "1"), ("y", "1"), ("z", "1")]) == ["x=0.02", "y=0.02", "z=0.01"])
        // Unequal: 100.00 over 1/3, 2/3 of a unit split 33.33.., 66.66.. -> 33.33 and 66.67 (larger remainder).
        #expect(split("100", [("p", "0.33333333"), ("q", "0.66666667")]) == ["p=33.33", "q=66.67"])
        var rng = SplitMix64(seed: 9)
        for _ in 0..<500 {
            let n = 1 + Int(rng.next() % 12)
            let holders = (0..<n).map { ("i\($0)", Units(raw: Int128(1 + rng.next() % 1_000_000_000_000))) }
            let amount = Money(raw: Int128(rng.next() % 1_000_000_000_000))
            let s = CashFlowMath.split(amount, by: holders)!
            #expect(s.reduce(Int128(0)) { $0 + $1.1.raw } == amount.raw)
            // Each share is within one cent of its exact value.
            let total = holders.reduce(Int128(0)) { $0 + $1.1.raw }
            for (i, share) in s.enumerated() {
                let exact = amount.raw * holders[i].1.raw
                #expect(share.1.raw * total >= exact - total && share.1.raw * total <= exact + total)
            }
        }
    }

    @Test func capitalCallsToTheCent() {
        #expect(CashFlowMath.call(commitment: money("33333.33"), pctRaw: 125_000) == money("4166.67"))  // 4166.66625
        #expect(CashFlowMath.call(commitment: money("100000"), pctRaw: 1) == money("0.10"))  // 0.0001 % of 100,000.00
        #expect(CashFlowMath.call(commitment: money("0.01"), pctRaw: 500_000) == money("0.01"))  // 0.005 -> 0.01, half away from zero
        #expect(CashFlowMath.call(commitment: money("0.03"), pctRaw: 500_000) == money("0.02"))  // 0.015 -> 0.02
    }

    @Test func portfolioSumsTheVehiclesDeals() async throws {
        try await withEngine { e, _ in
            try await e.change(.vehicleCreated(Vehicle(id: "fund-1", name: "Fund I")))
            try await e.change(.vehicleCreated(Vehicle(id: "fund-2", name: "Fund II")))
            try await vehicleDeal(e, "d1", vehicle: "fund-1")
            try await vehicleDeal(e, "d2", vehicle: "fund-1")
            try await vehicleDeal(e, "d3", vehicle: "fund-2")
            try await openDeal(e, "plain")  // no vehicle: only its deal position
            try await approved(e, "d1", "inv-a", "10", "10")
            try await approved(e, "d2", "inv-a", "5", "12.5")
            try await approved(e, "d3", "inv-a", "1", "3.333333")
            try await approved(e, "plain", "inv-a", "1", "10")
            let h = try await e.hold(deal: "d1", holdReq("7", investor: "inv-a", price: "10"))
            _ = try await e.allocate(hold: h.id)  // pending review: not in the position
            try await e.change(.valuationSet(Valuation(vehicle: "fund-1", asOf: date("2026-12-31"), navPerUnit: p("13.333333"), navTotal: nil, setBy: nil)))
            let rows = await e.portfolio(of: "inv-a")
            #expect(rows.map { $0[field: "vehicle"] } == ["fund-1", "fund-2"])
            // fund-1: 15 units, cost 162.50, value 15 × 13.333333 = 199.999995 -> 200.00.
            #expect(rows[0][field: "units"] == "15" && rows[0][field: "cost_basis"] == "162.50" && rows[0][field: "value"] == "200.00")
            #expect(rows[0][field: "last_nav"] == "13.333333" && rows[0][field: "as_of_date"] == "2026-12-31")
            #expect(rows[1][field: "cost_basis"] == "3.33" && rows[1][field: "last_nav"] == nil && rows[1][field: "value"] == nil)
            #expect(await e.portfolio(of: "inv-nobody").isEmpty)
            // Holders of fund-1 across its deals, and a distribution over them.
            try await approved(e, "d2", "inv-b", "15", "10")
            try await approved(e, "d1", "inv-c", "15", "10")
            #expect(try await distribute(e, "fund-1", "dist-1", "1000").map { "\($0.0)=\($0.1)" } == ["inv-a=333.34", "inv-b=333.33", "inv-c=333.33"])
        }
    }

    @Test func callsDistributionsAndCashflowsReplay() async throws {
        let io = SimulatedFileIO(seed: 0x706f7274)
        let clock = ManualClock()
        let d = try await openDurable(io, clock)
        let e = d.engine
        try await e.change(.vehicleCreated(Vehicle(id: "fund-1", name: "Fund I")))
        try await vehicleDeal(e, "d1", vehicle: "fund-1")
        for (i, c) in [("inv-a", "100000"), ("inv-b", "33333.33")] {
            try await e.change(.investorCreated(InvestorRecord(id: i, legalName: i)))
            try await e.change(.subscriptionCreated(Subscription(id: "s-\(i)", investor: i, vehicle: "fund-1", commitment: money(c))))
            try await e.change(.subscriptionStatus(id: "s-\(i)", status: .active))
        }
        try await approved(e, "d1", "inv-a", "2", "10")
        try await d.snapshot()
        try await approved(e, "d1", "inv-b", "1", "10")
        try await e.change(.capitalCallCreated(CapitalCall(id: "cc1", vehicle: "fund-1", name: "First close", pctRaw: 125_000, dueDate: date("2026-07-15"))))
        let flows = e.readDirectory { d in
            d.subscriptions.values.filter { $0.vehicle == "fund-1" && $0.status == .active }.sorted { $0.id < $1.id }.map {
                CashFlow(investor: $0.investor, vehicle: "fund-1", kind: .call, amount: CashFlowMath.call(commitment: $0.commitment, pctRaw: 125_000), date: date("2026-07-15"), ref: "cc1")
            }
        }
        try await e.change(.capitalCallIssued(call: "cc1", flows))
        await expectError(.conflict) { try await e.change(.capitalCallIssued(call: "cc1", flows)) }
        #expect(try await distribute(e, "fund-1", "dist-1", "100").map { $0.1 } == ["66.67", "33.33"])
        await expectError(.invalid) {
            try await e.change(.distributionCreated(Distribution(id: "bad", vehicle: "fund-1", name: nil, amount: money("10"), date: date("2026-01-01"), classification: nil),
                                                    [CashFlow(investor: "inv-a", vehicle: "fund-1", kind: .distribution, amount: money("9.99"), date: date("2026-01-01"), ref: "bad")]))
        }
        let cashA = e.readDirectory { d in d.portfolio.cashflows(of: "inv-a").map { d.portfolio.cashflows[Int($0)].amount.description } }
        #expect(cashA == ["12500.00", "66.67"])
        #expect(e.readDirectory { $0.portfolio.callFields("cc1")?[field: "total"] } == "16666.67")
        let live = await e.digest()
        try await d.close()
        let names = Set(try logRecords(io).map(\.typeName))
        for n in ["capitalcall.created", "capitalcall.issued", "distribution.created"] { #expect(names.contains(n), "\(n)") }
        let (fromSnapshot, report) = try recoverDigest(io)
        #expect(report.snapshotLSN > 0 && fromSnapshot == live)
        let r = try await openDurable(io, clock)
        #expect(await r.engine.digest() == live)
        // The holdings index is rebuilt: the portfolio reads the same after the restart.
        #expect(await r.engine.portfolio(of: "inv-b").first?[field: "units"] == "1")
        try await r.close()
    }
}
