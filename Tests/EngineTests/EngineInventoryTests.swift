import Foundation
import Testing
@testable import AllocationEngine

@Suite("Engine: inventory view, state digest, request validation")
struct EngineInventoryTests {
    @Test func inventoryCounts() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("A", "100", "2020-01-01"), ("B", "200", "2021-01-01")])
            var inv = try await engine.inventory(deal: "d1")
            #expect(inv.utilizationPercent == "0.00")
            let h1 = try await engine.hold(deal: "d1", holdReq("120"))
            _ = try await engine.hold(deal: "d1", holdReq("30"))
            try await engine.allocate(hold: h1.id)
            _ = try await engine.hold(deal: "d1", holdReq("5"))
            inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsTotal == u("300"))
            #expect(inv.unitsHeld == u("35"))
            #expect(inv.unitsAllocated == u("120"))
            #expect(inv.unitsRemaining == u("145"))
            #expect(inv.holdsPending == 2)
            #expect(inv.utilizationPercent == "51.67")  // 155 / 300
            #expect(inv.lots.map(\.id) == ["A", "B"])
            let f = inv.fields
            #expect(f[field: "deal"] == "d1")
            #expect(f[field: "status"] == "open")
            #expect(f[field: "units_total"] == "300")
            #expect(f[field: "units_remaining"] == "145")
            #expect(f[field: "units_held"] == "35")
            #expect(f[field: "units_allocated"] == "120")
            #expect(f[field: "holds_pending"] == "2")
            #expect(f[field: "utilization_percent"] == "51.67")
            #expect(f[field: "lot:A"] == "total=100 remaining=0 held=0 allocated=100 status=exhausted")
            #expect(f[field: "lot:B"] == "total=200 remaining=145 held=35 allocated=20 status=available")
            // The same view through a request.
            let reply = try await engine.submit(.inventory, deal: "d1")
            #expect(reply == .fields(f))
        }
    }

    @Test(arguments: [("300", "75", "25.00"), ("3", "1", "33.33"), ("3", "2", "66.67"), ("800", "1", "0.12"), ("800", "3", "0.38"),
                      ("10", "10", "100.00"), ("100000000", "0.00000001", "0.00"), ("7", "0.00000001", "0.00")])
    func utilizationPercent(_ total: String, _ held: String, _ expected: String) async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L", total, nil)])
            _ = try await engine.hold(deal: "d1", holdReq(held))
            #expect(try await engine.inventory(deal: "d1").utilizationPercent == expected)
        }
    }

    /// 10000000.00000001 of 200000000000 units is 0.005000000000000005 %: just
    /// above half a cent of a percent, so half-to-even rounding gives 0.01.
    @Test func utilizationRoundsTheExactValue() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L", "200000000000", nil)])
            _ = try await engine.hold(deal: "d1", holdReq("10000000.00000001"))
            #expect(try await engine.inventory(deal: "d1").utilizationPercent == "0.01")
        }
    }

    @Test func utilizationOfEmptyDeal() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [])
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.utilizationPercent == "0.00")
            #expect(inv.fields[field: "lots"] == "0")
        }
    }

    /// The same operations on the same clock give the same digest in two engines.
    static func script(_ engine: Engine, _ clock: ManualClock) async throws {
        try await openDeal(engine, "d1", lots: [("A", "30", "2020-01-01"), ("B", "70", nil)])
        try await openDeal(engine, "d2", lots: [("C", "5", nil)])
        let h1 = try await engine.hold(deal: "d1", holdReq("40", investor: "x", price: "1.5"))
        let h2 = try await engine.hold(deal: "d1", holdReq("10", investor: "y", ttl: 2_000))
        _ = try await engine.hold(deal: "d2", holdReq("9", investor: "y", id: "mine", partial: true))
        clock.advance(millis: 1_000)
        let a = try await engine.allocate(hold: h1.id)
        try await engine.approve(allocation: a)
        try await engine.resizeLot(deal: "d1", lot: "B", unitsTotal: u("80"))
        clock.advance(millis: 1_000)
        await engine.sweepExpired()
        _ = h2
        try await engine.setStatus(deal: "d2", .allocationPending)
    }

    @Test func digestEqualForEqualStates() async throws {
        let c1 = ManualClock(millis: t0), c2 = ManualClock(millis: t0)
        let e1 = Engine(clock: c1), e2 = Engine(clock: c2)
        #expect(await e1.digest() == e2.digest())
        try await Self.script(e1, c1)
        try await Self.script(e2, c2)
        let d1 = await e1.digest()
        #expect(d1 == (await e2.digest()))
        #expect(d1.count == 32)
        // A digest is stable: asking twice gives the same answer.
        #expect(d1 == (await e1.digest()))
        // Failed and no-op requests leave it alone.
        await expectError(.insufficient) { try await e1.hold(deal: "d1", holdReq("1000")) }
        try await e1.setStatus(deal: "d1", .open)
        #expect(await e1.digest() == d1)
        // Any real change moves it, and the same change in the other engine brings them together again.
        _ = try await e1.hold(deal: "d1", holdReq("1"))
        let changed = await e1.digest()
        #expect(changed != d1)
        _ = try await e2.hold(deal: "d1", holdReq("1"))
        #expect(await e2.digest() == changed)
        // Different content, same shape: another investor.
        _ = try await e1.hold(deal: "d1", holdReq("1", investor: "p"))
        _ = try await e2.hold(deal: "d1", holdReq("1", investor: "q"))
        #expect(await e1.digest() != (await e2.digest()))
        #expect(await e1.invariantViolations().isEmpty)
        #expect(await e2.invariantViolations().isEmpty)
    }

    @Test func digestSeesEveryKindOfChange() async throws {
        try await withEngine { engine, clock in
            var seen: Set<String> = [await engine.digest()]
            func step(_ what: String, _ body: () async throws -> Void) async throws {
                try await body()
                let d = await engine.digest()
                #expect(!seen.contains(d), "digest did not change after \(what)")
                seen.insert(d)
            }
            try await step("create") { try await engine.createDeal(DealSpec(id: "d1")) }
            try await step("lot") { try await engine.addLot(deal: "d1", LotSpec(id: "L", unitsTotal: u("10"), unitCost: p("1"))) }
            try await step("resize") { try await engine.resizeLot(deal: "d1", lot: "L", unitsTotal: u("11")) }
            try await step("hold") { _ = try await engine.hold(deal: "d1", holdReq("1", id: "h1")) }
            try await step("release") { try await engine.release(hold: "h1") }
            try await step("hold2") { _ = try await engine.hold(deal: "d1", holdReq("1", ttl: 1_000, id: "h2")) }
            clock.advance(millis: 1_000)
            try await step("expire") { #expect(await engine.sweepExpired() == 1) }
            try await step("hold3") { _ = try await engine.hold(deal: "d1", holdReq("2", id: "h3")) }
            try await step("allocate") { try await engine.allocate(hold: "h3", id: "a3") }
            try await step("approve") { try await engine.approve(allocation: "a3") }
            try await step("settle") { try await engine.settle(allocation: "a3") }
            try await step("hold4") { _ = try await engine.hold(deal: "d1", holdReq("2", id: "h4")) }
            try await step("allocate4") { try await engine.allocate(hold: "h4", id: "a4") }
            try await step("reject") { try await engine.reject(allocation: "a4") }
            try await step("status") { try await engine.setStatus(deal: "d1", .allocationPending) }
        }
    }

    @Test func invariantCheckerSeesCorruption() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            _ = try await engine.hold(deal: "d1", holdReq("10"))
            let state = try await #require(engine.deal("d1")).capture().state
            #expect(state.invariantViolations().isEmpty)
            var broken = state
            broken.lots[0].unitsRemaining = u("91")
            #expect(!broken.invariantViolations().isEmpty)
            var broken2 = state
            broken2.pendingHolds = 0
            #expect(!broken2.invariantViolations().isEmpty)
        }
    }

    /// A hold request that takes no units must be refused, not reach the state
    /// machine (where an empty hold is a precondition failure that stops the process).
    @Test func zeroUnitHoldIsInvalid() async {
        await #expect(processExitsWith: .success) {
            let engine = Engine(clock: ManualClock())
            _ = try await engine.createDeal(DealSpec(id: "d1"))
            try await engine.addLot(deal: "d1", LotSpec(id: "L", unitsTotal: Units.whole(10), unitCost: Price.whole(1)))
            do {
                _ = try await engine.hold(deal: "d1", HoldRequest(investor: "i", units: .zero, price: Price.whole(1)))
                exit(2)
            } catch {
                if (error as? EngineError)?.code != .invalid { exit(3) }
            }
        }
    }

    @Test func zeroUnitPartialHoldIsInvalid() async {
        await #expect(processExitsWith: .success) {
            let engine = Engine(clock: ManualClock())
            _ = try await engine.createDeal(DealSpec(id: "d1"))
            try await engine.addLot(deal: "d1", LotSpec(id: "L", unitsTotal: Units.whole(10), unitCost: Price.whole(1)))
            do {
                _ = try await engine.hold(deal: "d1", HoldRequest(investor: "i", units: .zero, price: Price.whole(1), partial: true))
                exit(2)
            } catch {
                if (error as? EngineError)?.code != .invalid { exit(3) }
            }
        }
    }

    @Test func negativeUnitHoldIsInvalid() async {
        await #expect(processExitsWith: .success) {
            let engine = Engine(clock: ManualClock())
            _ = try await engine.createDeal(DealSpec(id: "d1"))
            try await engine.addLot(deal: "d1", LotSpec(id: "L", unitsTotal: Units.whole(10), unitCost: Price.whole(1)))
            do {
                _ = try await engine.hold(deal: "d1", HoldRequest(investor: "i", units: Units(raw: -5), price: Price.whole(1)))
                exit(2)
            } catch {
                if (error as? EngineError)?.code != .invalid { exit(3) }
            }
        }
    }

    @Test func negativePriceHoldIsInvalid() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let before = await engine.digest()
            await expectError(.invalid) {
                try await engine.hold(deal: "d1", HoldRequest(investor: "i", units: u("1"), price: Price(raw: -1)))
            }
            #expect(await engine.digest() == before)
        }
    }

    /// Above the price limit (10^9 per unit) a hold's units x price can leave
    /// Int128 when approved; the engine must refuse it when the hold is asked for.
    @Test func priceAboveLimitHoldIsInvalid() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let before = await engine.digest()
            await expectError(.invalid) {
                try await engine.hold(deal: "d1", HoldRequest(investor: "i", units: u("1"), price: Price(raw: Int64(NumberLimits.maxPriceRaw) + 1)))
            }
            #expect(await engine.digest() == before)
        }
    }
}
