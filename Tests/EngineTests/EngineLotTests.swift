import Testing
@testable import AllocationEngine

@Suite("Engine: lots")
struct EngineLotTests {
    @Test func addLotAndReadIt() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [])
            try await engine.change(.sourceCreated(ShareSource(id: "founder-sale", kind: .company)))
            try await engine.addLot(deal: "d1", LotSpec(id: "L1", unitsTotal: u("100.5"), unitCost: p("4.25"), acquiredAt: date("2023-04-05"),
                                                        lockupUntil: date("2027-01-01"), source: "founder-sale"))
            let reply = try await engine.submit(.getLot("L1"), deal: "d1")
            guard case .fields(let f) = reply else { Issue.record("\(reply)"); return }
            #expect(f[field: "units_total"] == "100.5")
            #expect(f[field: "units_remaining"] == "100.5")
            #expect(f[field: "units_held"] == "0")
            #expect(f[field: "units_allocated"] == "0")
            #expect(f[field: "unit_cost"] == "4.25")
            #expect(f[field: "acquired_at"] == "2023-04-05")
            #expect(f[field: "lockup_until"] == "2027-01-01")
            #expect(f[field: "source"] == "founder-sale")
            #expect(f[field: "status"] == "available")
            #expect(f[field: "created_at"] == String(t0))
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsTotal == u("100.5") && inv.unitsRemaining == u("100.5"))
        }
    }

    @Test func addLotErrors() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            _ = await engine.digest()
            await expectError(.exists, message: "lot L1 already exists in deal d1") {
                try await engine.addLot(deal: "d1", LotSpec(id: "L1", unitsTotal: u("5"), unitCost: p("1")))
            }
            await expectError(.invalid) { try await engine.addLot(deal: "d1", LotSpec(id: "L2", unitsTotal: .zero, unitCost: p("1"))) }
            await expectError(.invalid) { try await engine.addLot(deal: "d1", LotSpec(id: "L2", unitsTotal: Units(raw: -1), unitCost: p("1"))) }
            await expectError(.invalid) {
                try await engine.addLot(deal: "d1", LotSpec(id: "L2", unitsTotal: Units(raw: NumberLimits.maxUnitsRaw + 1), unitCost: p("1")))
            }
            await expectError(.invalid) { try await engine.addLot(deal: "d1", LotSpec(id: "", unitsTotal: u("1"), unitCost: p("1"))) }
            await expectError(.invalid) { try await engine.addLot(deal: "d1", LotSpec(id: "L2", unitsTotal: u("1"), unitCost: p("1"), currency: "eur")) }
            await expectError(.invalid) {
                try await engine.addLot(deal: "d1", LotSpec(id: "L2", unitsTotal: u("1"), unitCost: p("1"), source: "tab\there"))
            }
            // Lot ids are unique across deals too.
            try await openDeal(engine, "d2", lots: [])
            let before2 = await engine.digest()
            await expectError(.exists) { try await engine.addLot(deal: "d2", LotSpec(id: "L1", unitsTotal: u("5"), unitCost: p("1"))) }
            #expect(await engine.digest() == before2)
            #expect(engine.dealForLot("L1")?.id == "d1")
            try await engine.addLot(deal: "d1", LotSpec(id: "L2", unitsTotal: Units(raw: NumberLimits.maxUnitsRaw), unitCost: p("1")))
        }
    }

    @Test(arguments: [DealStatus.closed, .cancelled])
    func noLotsInEndedDeals(_ status: DealStatus) async throws {
        try await withEngine { engine, _ in
            try await reach(engine, "d1", status)
            await expectError(.closed) { try await engine.addLot(deal: "d1", LotSpec(id: "L1", unitsTotal: u("1"), unitCost: p("1"))) }
        }
    }

    @Test func resizeGrowAndShrink() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L1", "100", nil)])
            let h = try await engine.hold(deal: "d1", holdReq("30"))
            let h2 = try await engine.hold(deal: "d1", holdReq("20"))
            try await engine.allocate(hold: h2.id)
            try await engine.resizeLot(deal: "d1", lot: "L1", unitsTotal: u("150"))
            var lot = try await engine.lot("d1", "L1")
            #expect(lot.unitsTotal == u("150") && lot.unitsRemaining == u("100") && lot.unitsHeld == u("30") && lot.unitsAllocated == u("20"))
            #expect(try await engine.inventory(deal: "d1").unitsTotal == u("150"))
            // Down to exactly held + allocated is fine; one step below is not.
            try await engine.resizeLot(deal: "d1", lot: "L1", unitsTotal: u("50"))
            lot = try await engine.lot("d1", "L1")
            #expect(lot.unitsRemaining == .zero && lot.status == .held)
            let before = await engine.digest()
            await expectError(.conflict) { try await engine.resizeLot(deal: "d1", lot: "L1", unitsTotal: u("49.99999999")) }
            await expectError(.conflict) { try await engine.resizeLot(deal: "d1", lot: "L1", unitsTotal: u("1")) }
            #expect(await engine.digest() == before)
            await expectError(.insufficient) { try await engine.hold(deal: "d1", holdReq("1")) }
            // Once the hold is released the lot can shrink further.
            try await engine.release(hold: h.id)
            try await engine.resizeLot(deal: "d1", lot: "L1", unitsTotal: u("20"))
            lot = try await engine.lot("d1", "L1")
            #expect(lot.unitsTotal == u("20") && lot.unitsRemaining == .zero && lot.status == .exhausted)
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsTotal == u("20") && inv.unitsRemaining == .zero && inv.unitsAllocated == u("20"))
        }
    }

    /// The engine refuses a lot above the units limit when it is added; growing
    /// an existing lot past the same limit must be refused too.
    @Test func resizeAboveUnitsLimitIsInvalid() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let before = await engine.digest()
            await expectError(.invalid) {
                try await engine.resizeLot(deal: "d1", lot: "L1", unitsTotal: Units(raw: NumberLimits.maxUnitsRaw + 1))
            }
            #expect(await engine.digest() == before)
        }
    }

    @Test func lotStatusFollowsCounts() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L1", "10", nil)])
            #expect(try await engine.lot("d1", "L1").status == .available)
            let h = try await engine.hold(deal: "d1", holdReq("10"))
            #expect(try await engine.lot("d1", "L1").status == .held)
            try await engine.allocate(hold: h.id)
            #expect(try await engine.lot("d1", "L1").status == .exhausted)
        }
    }
}
