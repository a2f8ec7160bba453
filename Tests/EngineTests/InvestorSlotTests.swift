import Foundation
import Testing
@testable import AllocationEngine
@testable import WAL

/// A deal keeps an investor's slot only while rows in memory name it
/// (DealState+Investors.swift): when the last of its holds leaves memory for
/// the history the slot is freed and reused, while the history, the
/// statements and the investor's list of deals still know it, across replay
/// and snapshots.
@Suite struct InvestorSlotTests {
    static let chunk = HoldTable.chunkSize

    func config() -> DurableConfig {
        var c = durConfig(segmentBytes: 4 << 20)
        c.retention.endedMillis = 1_000
        c.retention.maxEndedPerDeal = 1 << 20
        return c
    }

    func holdRequest(_ investor: String, id: String? = nil) -> HoldRequest {
        HoldRequest(investor: investor, units: Units.whole(1), price: Price.whole(10), ttlMillis: 3_600_000, id: id)
    }

    func hold(_ investor: String, id: String? = nil) -> DealRequest { .hold(holdRequest(investor, id: id)) }

    func state(_ d: DurableEngine) async throws -> DealState {
        let actor = try #require(d.engine.deal("s1"))
        return await actor.capture().state
    }

    /// A first chunk of holds by investors a0...a1023, one each, all released;
    /// then holds by b0...b99 that stay pending; the first chunk is archived.
    func fillAndArchive(_ d: DurableEngine, _ clock: ManualClock) async throws -> [String] {
        _ = try await d.engine.createDeal(DealSpec(id: "s1", offerUnitPrice: Price.whole(10)))
        try await d.engine.addLot(deal: "s1", LotSpec(id: "s1-L1", unitsTotal: Units.whole(1_000_000), unitCost: Price.whole(5)))
        let actor = try #require(d.engine.deal("s1"))
        var ids: [String] = []
        let first = (0..<Self.chunk).map { hold("a\($0)", id: $0 == 5 ? "client-a5" : nil) }
        for reply in await d.engine.submit(first, to: actor) {
            guard case .hold(let r) = reply else { Issue.record("hold failed: \(reply)"); return ids }
            ids.append(r.id)
        }
        _ = await d.engine.submit((0..<100).map { hold("b\($0)") }, to: actor)
        _ = await d.engine.submit(ids.map { .release(hold: $0) }, to: actor)
        clock.advance(millis: 1_000)
        #expect(await d.archiveDue() == Self.chunk)
        return ids
    }

    @Test func slotsOfInvestorsWhoseRowsAllLeftAreFreedAndReused() async throws {
        let io = SimulatedFileIO(seed: 0x51a7)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        let ids = try await fillAndArchive(d, clock)
        let actor = try #require(d.engine.deal("s1"))

        var s = try await state(d)
        #expect(s.investors.count == Self.chunk + 100)
        #expect(s.freeInvestorSlots.count == Self.chunk)
        #expect(s.investorSlot.count == 100 && s.investorSlot[IdKey("a5")] == nil)
        #expect(s.investors[5].isEmpty && s.investors[Self.chunk] == "b0")
        #expect(s.invariantViolations().isEmpty)

        // A new investor takes a freed slot; the table does not grow.
        _ = await d.engine.submit([hold("c0")], to: actor)
        s = try await state(d)
        let c0 = try #require(s.investorSlot[IdKey("c0")])
        #expect(Int(c0) < Self.chunk && s.investors.count == Self.chunk + 100 && s.freeInvestorSlots.count == Self.chunk - 1)
        // An investor back after its rows left gets a slot again.
        _ = await d.engine.submit([hold("a7")], to: actor)
        s = try await state(d)
        #expect(s.investorSlot[IdKey("a7")] != nil && s.freeInvestorSlots.count == Self.chunk - 2)
        #expect(s.invariantViolations().isEmpty)

        // The archived row of the investor whose slot c0 took still names its own investor.
        let reused = Int(c0)
        let archivedOfSlot = ids[reused]
        #expect(try await d.engine.holdFields(archivedOfSlot)[field: "investor"] == "a\(reused)")
        #expect(try await d.engine.holdFields("client-a5")[field: "investor"] == "a5")

        // Statements: a5 has no slot, its archived hold is still listed; c0 sees only its own hold.
        func holds(of investor: String) async -> [[Field]] {
            guard case .page(_, let rows) = await d.engine.submit([.statement(.investor(investor, part: .holds, cursor: 0, count: 5000))], to: actor)[0]
            else { Issue.record("statement page of \(investor)"); return [] }
            return rows
        }
        #expect(await holds(of: "a5").map { $0[field: "id"] } == ["client-a5"])
        #expect(await holds(of: "a\(reused)").map { $0[field: "id"] } == [archivedOfSlot])
        let c0Rows = await holds(of: "c0")
        #expect(c0Rows.count == 1 && c0Rows[0][field: "investor"] == "c0")
        #expect(d.engine.indexes.holdings.deals(of: "a5") == [s.info.number])

        // A retry of the archived caller id from its investor gets the original hold.
        let retry = try await d.engine.hold(deal: "s1", holdRequest("a5", id: "client-a5"))
        #expect(retry.id == "client-a5")
        // ...and from another investor it is refused, not booked.
        await expectError(.conflict) {
            try await d.engine.hold(deal: "s1", holdRequest("c0", id: "client-a5"))
        }

        // Replay from the log alone, then snapshot + log: the same table, free list and reads.
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, config())
        #expect(await r.engine.digest() == live)
        #expect(r.engine.indexes.holdings.deals(of: "a5") == [s.info.number])
        try await r.snapshot()
        try await r.close()
        let t = try await openDurable(io, clock, config())
        #expect(t.recovery.snapshotPath != nil)
        #expect(await t.engine.digest() == live)
        // a5's deal survives in the snapshot although the deal forgot a5.
        #expect(t.engine.indexes.holdings.deals(of: "a5") == [s.info.number])
        let restored = try await state(t)
        #expect(restored.invariantViolations().isEmpty)
        // The next new investor gets the same slot it would have got before the restart.
        _ = await t.engine.submit([hold("d0")], to: try #require(t.engine.deal("s1")))
        let next = try await state(t).investorSlot[IdKey("d0")]
        #expect(next == s.freeInvestorSlots.last)
        try await t.close()
    }

    @Test func anInvestorWithAnAllocationKeepsItsSlotAndPosition() async throws {
        let io = SimulatedFileIO(seed: 0x51a8)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        _ = try await d.engine.createDeal(DealSpec(id: "s1", offerUnitPrice: Price.whole(10)))
        try await d.engine.addLot(deal: "s1", LotSpec(id: "s1-L1", unitsTotal: Units.whole(1_000_000), unitCost: Price.whole(5)))
        let actor = try #require(d.engine.deal("s1"))
        var ids: [String] = []
        for reply in await d.engine.submit((0..<Self.chunk).map { hold($0 == 0 ? "z" : "y\($0)") }, to: actor) {
            guard case .hold(let r) = reply else { Issue.record("hold failed"); return }
            ids.append(r.id)
        }
        let allocation = try await d.engine.allocate(hold: ids[0])
        try await d.engine.approve(allocation: allocation)
        _ = await d.engine.submit(ids.dropFirst().map { .release(hold: $0) }, to: actor)
        _ = await d.engine.submit([hold("w")], to: actor)
        clock.advance(millis: 1_000)
        #expect(await d.archiveDue() == Self.chunk)
        let s = try await state(d)
        let z = try #require(s.investorSlot[IdKey("z")])
        #expect(s.positions[Int(z)].units == Units.whole(1))
        #expect(s.investorRefs[Int(z)] == 1)
        #expect(s.freeInvestorSlots.count == Self.chunk - 1)
        #expect(try await d.engine.holdFields(ids[0])[field: "investor"] == "z")
        #expect(s.invariantViolations().isEmpty)
        let live = await d.engine.digest()
        try await d.snapshot()
        try await d.close()
        let r = try await openDurable(io, clock, config())
        #expect(await r.engine.digest() == live)
        #expect(await r.engine.invariantViolations().isEmpty)
        try await r.close()
    }

    @Test func snapshotsNamingAFreedSlotOrMissingTheFreeListAreRefused() throws {
        var s = DealState(info: DealInfo(id: "s9", number: 1))
        _ = s.internInvestor("x")
        s.retainInvestor(0)
        // A state whose table says slot 0 is in use but no row names it: refused on load.
        var image = EngineImage(floorLSN: 0, deals: [(s, 0)])
        #expect(throws: DecodeError.self) { try StateCodec.decode(StateCodec.encode(image)) }
        // Freed without being listed as free: refused.
        s.investors[0] = ""
        s.investorSlot = [:]
        s.investorRefs = [0]
        image = EngineImage(floorLSN: 0, deals: [(s, 0)])
        #expect(throws: DecodeError.self) { try StateCodec.decode(StateCodec.encode(image)) }
        // Freed and listed: loads.
        s.freeInvestorSlots = [0]
        image = EngineImage(floorLSN: 0, deals: [(s, 0)])
        let loaded = try StateCodec.decode(StateCodec.encode(image))
        #expect(loaded.deals[0].state.freeInvestorSlots == [0])
    }
}
