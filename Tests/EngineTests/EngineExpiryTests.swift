import WAL
import Testing
@testable import AllocationEngine

@Suite("Engine: hold expiry on a manual clock")
struct EngineExpiryTests {
    @Test func sweepExpiresDueHoldsAndReturnsUnitsAtOnce() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let a = try await engine.hold(deal: "d1", holdReq("10", ttl: 1_000))
            let b = try await engine.hold(deal: "d1", holdReq("20", ttl: 5_000))
            let c = try await engine.hold(deal: "d1", holdReq("30"))
            #expect(await engine.sweepExpired() == 0)
            clock.advance(millis: 999)
            #expect(await engine.sweepExpired() == 0)
            #expect(try await engine.holdStatus(a.id) == "pending")
            clock.advance(millis: 1)  // exactly at expires_at: due
            #expect(await engine.sweepExpired() == 1)
            #expect(try await engine.holdStatus(a.id) == "expired")
            var inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("50") && inv.unitsHeld == u("50") && inv.holdsPending == 2)
            #expect(await engine.sweepExpired() == 0)
            clock.advance(millis: 30 * minute)
            #expect(await engine.sweepExpired() == 2)
            #expect(try await engine.holdStatus(b.id) == "expired")
            #expect(try await engine.holdStatus(c.id) == "expired")
            inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("100") && inv.unitsHeld == .zero && inv.holdsPending == 0)
            #expect(try await engine.lot("d1", "L1").status == .available)
            // Returned units are immediately holdable again.
            _ = try await engine.hold(deal: "d1", holdReq("100"))
        }
    }

    @Test func sweepCoversEveryDeal() async throws {
        try await withEngine { engine, clock in
            for d in 0..<5 {
                try await openDeal(engine, "d\(d)", lots: [("L\(d)", "10", nil)])
                for i in 0..<3 { _ = try await engine.hold(deal: "d\(d)", holdReq("1", ttl: Int64(1_000 * (i + 1)))) }
            }
            clock.advance(millis: 1_000)
            #expect(await engine.sweepExpired() == 5)
            clock.advance(millis: 10_000)
            #expect(await engine.sweepExpired() == 10)
            for d in 0..<5 { #expect(try await engine.inventory(deal: "d\(d)").unitsRemaining == u("10")) }
        }
    }

    @Test func earlierHoldPlacedAfterLaterOneStillExpiresOnTime() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let late = try await engine.hold(deal: "d1", holdReq("1", ttl: 60 * minute))
            let early = try await engine.hold(deal: "d1", holdReq("1", ttl: 1_000))
            clock.advance(millis: 1_000)
            #expect(await engine.sweepExpired() == 1)
            #expect(try await engine.holdStatus(early.id) == "expired")
            #expect(try await engine.holdStatus(late.id) == "pending")
            clock.advance(millis: 60 * minute)
            #expect(await engine.sweepExpired() == 1)
            #expect(try await engine.holdStatus(late.id) == "expired")
        }
    }

    @Test func releaseOfOverdueUnsweptHoldIsExpired() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("40", ttl: 2_000))
            clock.advance(millis: 2_000)
            await expectError(.expired) { try await engine.release(hold: h.id) }
            #expect(try await engine.holdStatus(h.id) == "expired")
            #expect(try await engine.inventory(deal: "d1").unitsRemaining == u("100"))
            // Asking again stays EXPIRED; the sweep finds nothing left to do.
            await expectError(.expired) { try await engine.release(hold: h.id) }
            await expectError(.expired) { try await engine.allocate(hold: h.id) }
            #expect(await engine.sweepExpired() == 0)
        }
    }

    @Test func allocateOfOverdueUnsweptHoldIsExpired() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("40", ttl: 2_000))
            clock.advance(millis: 5_000)
            await expectError(.expired) { try await engine.allocate(hold: h.id) }
            #expect(try await engine.holdStatus(h.id) == "expired")
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("100") && inv.unitsAllocated == .zero && inv.holdsPending == 0)
            await expectError(.expired) { try await engine.allocate(hold: h.id, id: "a-x") }
            #expect(engine.indexes.allocations.lookup("a-x") == nil)
            await expectError(.expired) { try await engine.release(hold: h.id) }
            #expect(await engine.sweepExpired() == 0)
        }
    }

    @Test func operationsOnSweptHold() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("40", ttl: 1_000))
            clock.advance(millis: 1_000)
            #expect(await engine.sweepExpired() == 1)
            await expectError(.expired) { try await engine.allocate(hold: h.id) }
            await expectError(.expired) { try await engine.release(hold: h.id) }
            #expect(try await engine.holdStatus(h.id) == "expired")
        }
    }

    @Test func releasedAndAllocatedHoldsAreNotExpired() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let released = try await engine.hold(deal: "d1", holdReq("10", ttl: 1_000))
            let allocated = try await engine.hold(deal: "d1", holdReq("20", ttl: 1_000))
            try await engine.release(hold: released.id)
            let a = try await engine.allocate(hold: allocated.id)
            clock.advance(millis: 10 * minute)
            #expect(await engine.sweepExpired() == 0)
            #expect(try await engine.holdStatus(released.id) == "cancelled")
            #expect(try await engine.holdStatus(allocated.id) == "approved")
            #expect(try await engine.allocationStatus(a) == "pending_review")
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("80") && inv.unitsAllocated == u("20"))
            // The allocation is not subject to the hold's TTL.
            try await engine.approve(allocation: a)
        }
    }

    @Test func holdCancelledByCloseIsNotExpiredLater() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("10", ttl: 1_000))
            try await engine.setStatus(deal: "d1", .cancelled)
            clock.advance(millis: 2_000)
            #expect(await engine.sweepExpired() == 0)
            #expect(try await engine.holdStatus(h.id) == "cancelled")
        }
    }

    @Test func manyHoldsExpireInTimeOrder() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine, lots: [("L1", "1000", nil)])
            var rng = SplitMix64(seed: 42)
            var ttls: [Int64] = []
            for _ in 0..<300 {
                let ttl = Int64(1_000 + rng.next() % 100_000)
                ttls.append(ttl)
                _ = try await engine.hold(deal: "d1", holdReq("1", ttl: ttl))
            }
            var expired = 0
            for step in stride(from: Int64(0), through: 101_000, by: 7_777) {
                clock.set(millis: t0 + step)
                expired += await engine.sweepExpired()
                #expect(expired == ttls.filter { $0 <= step }.count)
                #expect(try await engine.inventory(deal: "d1").holdsPending == 300 - expired)
            }
            clock.set(millis: t0 + 200_000)
            expired += await engine.sweepExpired()
            #expect(expired == 300)
        }
    }
}

