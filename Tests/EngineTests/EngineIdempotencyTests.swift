import Foundation
import Testing
@testable import AllocationEngine

@Suite("Engine: idempotent retries")
struct EngineIdempotencyTests {
    @Test func holdRetryReturnsFirstReceipt() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine, lots: [("A", "30", "2020-01-01"), ("B", "70", "2021-01-01")])
            let first = try await engine.hold(deal: "d1", holdReq("50", investor: "i", price: "7", ttl: 60_000, id: "H1"))
            #expect(first.id == "H1")
            #expect(split(first) == ["A:30", "B:20"])
            let before = await engine.digest()
            clock.advance(millis: 10_000)
            let again = try await engine.hold(deal: "d1", holdReq("50", investor: "i", price: "7", ttl: 60_000, id: "H1"))
            #expect(again == first)
            #expect(await engine.digest() == before)
            #expect(try await engine.inventory(deal: "d1").holdsPending == 1)
            // Even when the units are gone, or the hold has since ended, the retry
            // answers with the first receipt instead of placing a new hold.
            _ = try await engine.hold(deal: "d1", holdReq("50"))
            #expect(try await engine.hold(deal: "d1", holdReq("50", investor: "i", price: "7", ttl: 60_000, id: "H1")) == first)
            try await engine.release(hold: "H1")
            let afterRelease = await engine.digest()
            #expect(try await engine.hold(deal: "d1", holdReq("50", investor: "i", price: "7", ttl: 60_000, id: "H1")) == first)
            #expect(await engine.digest() == afterRelease)
            #expect(try await engine.holdStatus("H1") == "cancelled")
        }
    }

    @Test func partialHoldRetry() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let first = try await engine.hold(deal: "d1", holdReq("150", id: "P", partial: true))
            #expect(first.units == u("100"))
            let before = await engine.digest()
            #expect(try await engine.hold(deal: "d1", holdReq("150", id: "P", partial: true)) == first)
            #expect(await engine.digest() == before)
        }
    }

    @Test func defaultTTLRetry() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let first = try await engine.hold(deal: "d1", holdReq("1", id: "D"))
            #expect(try await engine.hold(deal: "d1", holdReq("1", id: "D")) == first)
            // The default spelled out is the same parameter.
            #expect(try await engine.hold(deal: "d1", holdReq("1", ttl: defaultTTL, id: "D")) == first)
        }
    }

    @Test func sameHoldIDDifferentParamsIsConflict() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            _ = try await engine.hold(deal: "d1", holdReq("10", investor: "i", price: "7", ttl: 60_000, id: "H1"))
            let before = await engine.digest()
            let variants: [HoldRequest] = [
                holdReq("10", investor: "j", price: "7", ttl: 60_000, id: "H1"),
                holdReq("11", investor: "i", price: "7", ttl: 60_000, id: "H1"),
                holdReq("10.00000001", investor: "i", price: "7", ttl: 60_000, id: "H1"),
                holdReq("10", investor: "i", price: "7.000001", ttl: 60_000, id: "H1"),
                holdReq("10", investor: "i", price: "7", ttl: 60_001, id: "H1"),
                holdReq("10", investor: "i", price: "7", id: "H1"),
                holdReq("10", investor: "i", price: "7", ttl: 60_000, id: "H1", partial: true),
            ]
            for v in variants {
                await expectError(.conflict, message: "hold id H1 was used with different parameters") {
                    try await engine.hold(deal: "d1", v)
                }
            }
            #expect(await engine.digest() == before)
        }
    }

    @Test func sameHoldIDInAnotherDealIsConflict() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            try await openDeal(engine, "d2")
            let first = try await engine.hold(deal: "d1", holdReq("10", id: "H1"))
            let before = await engine.digest()
            await expectError(.conflict) { try await engine.hold(deal: "d2", holdReq("10", id: "H1")) }
            await expectError(.conflict) { try await engine.hold(deal: "d2", holdReq("3", id: "H1", partial: true)) }
            #expect(await engine.digest() == before)
            #expect(try await engine.inventory(deal: "d2").unitsHeld == .zero)
            #expect(engine.dealForHold("H1")?.id == "d1")
            #expect(try await engine.hold(deal: "d1", holdReq("10", id: "H1")) == first)
        }
    }

    /// Generated ids (h<deal>.<n>, a<deal>.<n>) name their row; callers may not choose that form.
    @Test func callerIDsOfGeneratedFormAreInvalid() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("1"))
            let before = await engine.digest()
            for id in ["h1.2", "h1.1", "a1.1", "h7.3", "a4294967295.1"] {
                await expectError(.invalid) { try await engine.hold(deal: "d1", holdReq("1", id: id)) }
                await expectError(.invalid) { try await engine.allocate(hold: h.id, id: id) }
            }
            #expect(await engine.digest() == before)
            // Near misses are ordinary ids.
            for id in ["h1.2x", "H1.2", "h01.2", "h1.0", "x1.2", "h1", "h.1"] {
                let r = try await engine.hold(deal: "d1", holdReq("1", id: id))
                #expect(r.id == id)
            }
            #expect(try await engine.allocate(hold: "h1.2x", id: "a1.2x") == "a1.2x")
        }
    }

    @Test func generatedIDsNameDealAndSlot() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            try await openDeal(engine, "d2")
            let mine = try await engine.hold(deal: "d2", holdReq("1", id: "mine"))
            let gen = try await engine.hold(deal: "d2", holdReq("2"))
            #expect(gen.id == "h2.2")
            #expect(try await engine.holdFields(gen.id)[field: "units"] == "2")
            #expect(try await engine.holdFields(mine.id)[field: "units"] == "1")
            // The generated name of a slot taken by a caller's id, a slot not yet
            // used and a deal that does not exist are all unknown holds.
            for id in ["h2.1", "h2.3", "h2.999", "h1.1", "h9.1"] {
                await expectError(.notFound) { try await engine.holdFields(id) }
                await expectError(.notFound) { try await engine.release(hold: id) }
                await expectError(.notFound) { try await engine.allocate(hold: id) }
            }
            let a = try await engine.allocate(hold: "mine", id: "my-alloc")
            let g = try await engine.allocate(hold: gen.id)
            #expect(a == "my-alloc")
            #expect(g == "a2.2")
            #expect(try await engine.allocationFields(g)[field: "hold"] == gen.id)
        }
    }

    @Test func releaseApproveRejectSettleRetries() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let h1 = try await engine.hold(deal: "d1", holdReq("10", id: "r1"))
            let h2 = try await engine.hold(deal: "d1", holdReq("10", id: "r2"))
            let h3 = try await engine.hold(deal: "d1", holdReq("10", id: "r3"))
            let a2 = try await engine.allocate(hold: h2.id, id: "A2")
            let a3 = try await engine.allocate(hold: h3.id, id: "A3")
            try await engine.release(hold: h1.id)
            try await engine.approve(allocation: a2)
            try await engine.settle(allocation: a2)
            try await engine.reject(allocation: a3)
            let before = await engine.digest()
            for _ in 0..<3 {
                try await engine.release(hold: h1.id)
                try await engine.settle(allocation: a2)
                try await engine.reject(allocation: a3)
                #expect(try await engine.allocate(hold: h2.id) == "A2")
                #expect(try await engine.allocate(hold: h3.id, id: "A3") == "A3")
            }
            #expect(await engine.digest() == before)
        }
    }
}

/// Allocation ids the engine never handed out must be unknown, even when they
/// have the generated form and name an existing deal.
@Suite("Engine: unknown allocation ids of generated form")
struct EngineGeneratedAllocationIDTests {
    @Test func fieldsOfUnusedGeneratedSlotAreNotFound() async {
        await #expect(processExitsWith: .success) {
            let engine = Engine(clock: ManualClock())
            _ = try await engine.createDeal(DealSpec(id: "d1"))
            try await engine.addLot(deal: "d1", LotSpec(id: "L", unitsTotal: Units.whole(10), unitCost: Price.whole(1)))
            let h = try await engine.hold(deal: "d1", HoldRequest(investor: "i", units: Units.whole(1), price: Price.whole(1)))
            _ = try await engine.allocate(hold: h.id)  // a1.1
            do {
                _ = try await engine.allocationFields("a1.5")
                exit(2)
            } catch {
                if (error as? EngineError)?.code != .notFound { exit(3) }
            }
        }
    }

    @Test func approveByGeneratedNameOfCallerNamedSlotIsNotFound() async {
        await #expect(processExitsWith: .success) {
            let engine = Engine(clock: ManualClock())
            _ = try await engine.createDeal(DealSpec(id: "d1"))
            try await engine.addLot(deal: "d1", LotSpec(id: "L", unitsTotal: Units.whole(10), unitCost: Price.whole(1)))
            let h = try await engine.hold(deal: "d1", HoldRequest(investor: "i", units: Units.whole(1), price: Price.whole(1)))
            _ = try await engine.allocate(hold: h.id, id: "X")  // slot 0 of deal 1, which "a1.1" would name
            do {
                try await engine.approve(allocation: "a1.1")
                exit(2)
            } catch {
                if (error as? EngineError)?.code != .notFound { exit(3) }
            }
        }
    }

    @Test func fieldsByGeneratedNameOfCallerNamedSlotAreNotFound() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("1"))
            try await engine.allocate(hold: h.id, id: "X")
            #expect(try await engine.allocationFields("X")[field: "id"] == "X")
            await expectError(.notFound) { try await engine.allocationFields("a1.1") }
        }
    }
}
