import Testing
@testable import AllocationEngine

@Suite("Engine: holds")
struct EngineHoldTests {
    @Test func holdTakesUnits() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let r = try await engine.hold(deal: "d1", holdReq("30", investor: "alice", price: "12.5"))
            #expect(r.units == u("30"))
            #expect(split(r) == ["L1:30"])
            #expect(r.expiresAt == t0 + defaultTTL)
            #expect(r.id == "h1.1")  // generated: h<deal number>.<sequence>
            let f = try await engine.holdFields(r.id)
            #expect(f[field: "status"] == "pending")
            #expect(f[field: "investor"] == "alice")
            #expect(f[field: "units"] == "30")
            #expect(f[field: "requested_units"] == "30")
            #expect(f[field: "price"] == "12.5")
            #expect(f[field: "partial"] == "0")
            #expect(f[field: "lots"] == "L1:30")
            #expect(f[field: "allocation"] == nil)
            #expect(f[field: "created_at"] == String(t0))
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("70") && inv.unitsHeld == u("30") && inv.unitsAllocated == .zero)
            #expect(inv.holdsPending == 1)
            let lot = try await engine.lot("d1", "L1")
            #expect(lot.unitsRemaining == u("70") && lot.unitsHeld == u("30") && lot.status == .available)
            // A second hold gets the next generated id.
            let r2 = try await engine.hold(deal: "d1", holdReq("70"))
            #expect(r2.id == "h1.2")
            #expect(try await engine.lot("d1", "L1").status == .held)
        }
    }

    @Test(arguments: [DealStatus.draft, .allocationPending, .closed, .cancelled])
    func holdsOnlyWhileOpen(_ status: DealStatus) async throws {
        try await withEngine { engine, _ in
            try await reach(engine, "d1", status)
            if status == .draft || status == .allocationPending {
                // Lots can still be added to these; the refusal must come from the status.
                try await engine.addLot(deal: "d1", LotSpec(id: "L1", unitsTotal: u("100"), unitCost: p("1")))
            }
            let before = await engine.digest()
            await expectError(.closed) { try await engine.hold(deal: "d1", holdReq("1")) }
            await expectError(.closed) { try await engine.hold(deal: "d1", holdReq("1", id: "mine", partial: true)) }
            #expect(await engine.digest() == before)
            #expect(engine.indexes.holds.lookup("mine") == nil)
        }
    }

    @Test func holdsOnlyBetweenOpenAndCloseTime() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine, openAt: t0 + 10 * minute, closeAt: t0 + 20 * minute)
            await expectError(.closed) { try await engine.hold(deal: "d1", holdReq("1")) }
            clock.set(millis: t0 + 10 * minute - 1)
            await expectError(.closed) { try await engine.hold(deal: "d1", holdReq("1")) }
            clock.set(millis: t0 + 10 * minute)
            _ = try await engine.hold(deal: "d1", holdReq("1"))
            clock.set(millis: t0 + 20 * minute - 1)
            _ = try await engine.hold(deal: "d1", holdReq("1"))
            clock.set(millis: t0 + 20 * minute)
            await expectError(.closed) { try await engine.hold(deal: "d1", holdReq("1")) }
            clock.set(millis: t0 + 21 * minute)
            await expectError(.closed) { try await engine.hold(deal: "d1", holdReq("1", partial: true)) }
            #expect(try await engine.inventory(deal: "d1").unitsHeld == u("2"))
        }
    }

    @Test func allOrNothing() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L1", "60", "2023-01-01"), ("L2", "40", "2024-01-01")])
            _ = try await engine.hold(deal: "d1", holdReq("0.5"))
            let before = await engine.digest()
            let invBefore = try await engine.inventory(deal: "d1")
            await expectError(.insufficient, message: "requested 100, available 99.5") {
                try await engine.hold(deal: "d1", holdReq("100"))
            }
            await expectError(.insufficient, message: "requested 99.50000001, available 99.5") {
                try await engine.hold(deal: "d1", holdReq("99.50000001", id: "x1"))
            }
            // Nothing changed: counters, rows, id index.
            #expect(await engine.digest() == before)
            #expect(try await engine.inventory(deal: "d1") == invBefore)
            #expect(engine.indexes.holds.lookup("x1") == nil)
            // Exactly what remains is fine.
            let r = try await engine.hold(deal: "d1", holdReq("99.5"))
            #expect(split(r) == ["L1:59.5", "L2:40"])
            await expectError(.insufficient, message: "requested 0.00000001, available 0") {
                try await engine.hold(deal: "d1", holdReq("0.00000001"))
            }
        }
    }

    @Test func partialFillsWhatIsThere() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L1", "60", "2023-01-01"), ("L2", "40", "2024-01-01")])
            _ = try await engine.hold(deal: "d1", holdReq("30"))
            let r = try await engine.hold(deal: "d1", holdReq("150", id: "p1", partial: true))
            #expect(r.units == u("70"))
            #expect(split(r) == ["L1:30", "L2:40"])
            let f = try await engine.holdFields("p1")
            #expect(f[field: "units"] == "70")
            #expect(f[field: "requested_units"] == "150")
            #expect(f[field: "partial"] == "1")
            // A partial hold that fits entirely takes exactly what it asks for.
            try await engine.release(hold: "p1")
            let r2 = try await engine.hold(deal: "d1", holdReq("5", partial: true))
            #expect(r2.units == u("5"))
            _ = try await engine.hold(deal: "d1", holdReq("65", partial: true))
            // Nothing left: a partial hold is refused, not placed empty.
            let before = await engine.digest()
            await expectError(.insufficient, message: "requested 5, available 0") {
                try await engine.hold(deal: "d1", holdReq("5", partial: true))
            }
            #expect(await engine.digest() == before)
        }
    }

    @Test func splitOldestLotFirst() async throws {
        try await withEngine { engine, _ in
            // Added newest first; the split must follow the acquisition dates.
            try await openDeal(engine, lots: [("new", "100", "2024-03-01"), ("old", "50", "2023-01-01"), ("mid", "30", "2023-06-01")])
            let r = try await engine.hold(deal: "d1", holdReq("120"))
            #expect(split(r) == ["old:50", "mid:30", "new:40"])
            #expect(try await engine.holdFields(r.id)[field: "lots"] == "old:50,mid:30,new:40")
            let r2 = try await engine.hold(deal: "d1", holdReq("10"))
            #expect(split(r2) == ["new:10"])
            // Units returned to an old lot are taken first again.
            try await engine.release(hold: r.id)
            let r3 = try await engine.hold(deal: "d1", holdReq("60"))
            #expect(split(r3) == ["old:50", "mid:10"])
            #expect(try await engine.lot("d1", "old").status == .held)
            #expect(try await engine.lot("d1", "mid").unitsRemaining == u("20"))
            #expect(try await engine.lot("d1", "new").unitsRemaining == u("90"))
        }
    }

    @Test func splitTiesByCreationOrder() async throws {
        try await withEngine { engine, _ in
            // Same acquisition date: the order they were added. A lot without a
            // date counts from its creation day (2026-01-01 on the manual clock).
            try await openDeal(engine, lots: [
                ("future", "10", "2027-01-01"), ("undated", "10", nil), ("same-b", "10", "2020-05-05"),
                ("same-a", "10", "2020-05-05"), ("ancient", "10", "1999-12-31"),
            ])
            let r = try await engine.hold(deal: "d1", holdReq("50"))
            #expect(split(r) == ["ancient:10", "same-b:10", "same-a:10", "undated:10", "future:10"])
        }
    }

    @Test func lotAddedLaterJoinsTheOrder() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L2024", "10", "2024-01-01")])
            _ = try await engine.hold(deal: "d1", holdReq("4"))
            try await engine.addLot(deal: "d1", LotSpec(id: "L2020", unitsTotal: u("3"), unitCost: p("1"), acquiredAt: date("2020-01-01")))
            let r = try await engine.hold(deal: "d1", holdReq("5"))
            #expect(split(r) == ["L2020:3", "L2024:2"])
            // A grown older lot is used first again.
            try await engine.resizeLot(deal: "d1", lot: "L2020", unitsTotal: u("5"))
            let r2 = try await engine.hold(deal: "d1", holdReq("3"))
            #expect(split(r2) == ["L2020:2", "L2024:1"])
        }
    }

    @Test func ttlDefaultAndBounds() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            #expect(try await engine.hold(deal: "d1", holdReq("1")).expiresAt == t0 + 30 * minute)
            #expect(try await engine.hold(deal: "d1", holdReq("1", ttl: 1_000)).expiresAt == t0 + 1_000)
            #expect(try await engine.hold(deal: "d1", holdReq("1", ttl: 7 * 24 * 60 * minute)).expiresAt == t0 + 7 * 24 * 60 * minute)
            let before = await engine.digest()
            for bad: Int64 in [999, 0, -1, -1_800_000, 7 * 24 * 60 * minute + 1, .max, .min] {
                await expectError(.invalid) { try await engine.hold(deal: "d1", holdReq("1", ttl: bad)) }
            }
            #expect(await engine.digest() == before)
        }
    }

    @Test func configuredDefaultTTL() async throws {
        try await withEngine(config: EngineConfig(defaultHoldTTLMillis: 5 * minute)) { engine, _ in
            try await openDeal(engine)
            #expect(try await engine.hold(deal: "d1", holdReq("1")).expiresAt == t0 + 5 * minute)
        }
        #expect(throws: EngineError.self) { try EngineConfig(defaultHoldTTLMillis: 999).validated() }
        #expect(throws: EngineError.self) { try EngineConfig(defaultHoldTTLMillis: 7 * 24 * 60 * minute + 1).validated() }
        #expect(throws: EngineError.self) { try EngineConfig(expiryTickMillis: 0).validated() }
        _ = try EngineConfig().validated()
    }

    @Test func invalidHoldRequests() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let before = await engine.digest()
            await expectError(.invalid) { try await engine.hold(deal: "d1", holdReq("1", investor: "")) }
            await expectError(.invalid) { try await engine.hold(deal: "d1", holdReq("1", investor: "two words")) }
            await expectError(.invalid) { try await engine.hold(deal: "d1", holdReq("1", id: "")) }
            await expectError(.invalid) { try await engine.hold(deal: "d1", holdReq("1", id: "bad id")) }
            #expect(await engine.digest() == before)
        }
    }

    @Test func holdWithFractionalUnitsAcrossLots() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("A", "0.00000003", "2020-01-01"), ("B", "1.5", "2021-01-01")])
            let r = try await engine.hold(deal: "d1", holdReq("0.00000005"))
            #expect(split(r) == ["A:0.00000003", "B:0.00000002"])
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("1.49999998"))
            #expect(inv.unitsHeld == u("0.00000005"))
        }
    }
}
