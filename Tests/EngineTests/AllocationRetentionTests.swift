import Foundation
import Testing
@testable import AllocationEngine
@testable import WAL

/// Rejected allocations leaving memory for the history like ended holds
/// (AllocationTable, ArchivedAllocation, `allocations.archived`): approved and
/// settled ones stay (fees are computed from them), every read still answers,
/// a caller's id is never reused, and replay and snapshots reproduce memory.
@Suite struct AllocationRetentionTests {
    static let chunk = AllocationTable.chunkSize

    func config(window: Int64 = 1_000) -> DurableConfig {
        var c = durConfig(segmentBytes: 4 << 20)
        c.retention.endedMillis = window
        c.retention.maxEndedPerDeal = 1 << 20
        return c
    }

    /// `count` allocations in deal "ar"; allocation i is rejected when
    /// `reject(i)`, else approved (and settled when `settle(i)`). The first 5
    /// carry caller ids.
    func fill(_ d: DurableEngine, count: Int, reject: (Int) -> Bool, settle: (Int) -> Bool = { _ in false }) async throws -> [String] {
        _ = try await d.engine.createDeal(DealSpec(id: "ar", offerUnitPrice: Price.whole(10)))
        try await d.engine.addLot(deal: "ar", LotSpec(id: "ar-L1", unitsTotal: Units.whole(100_000), unitCost: Price.whole(5)))
        var ids: [String] = []
        for i in 0..<count {
            let h = try await d.engine.hold(deal: "ar", HoldRequest(investor: "inv\(i % 7)", units: Units.whole(2), price: Price.whole(10),
                                                                   ttlMillis: 3_600_000))
            let a = try await d.engine.allocate(hold: h.id, id: i < 5 ? "alloc-\(i)" : nil)
            if reject(i) { try await d.engine.reject(allocation: a) } else {
                try await d.engine.approve(allocation: a)
                if settle(i) { try await d.engine.settle(allocation: a) }
            }
            ids.append(a)
        }
        return ids
    }

    @Test func rejectedAllocationsLeaveAfterTheWindowAndStayReadable() async throws {
        let io = SimulatedFileIO(seed: 0xa11)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        // Two full chunks and a partial one; one in five approved (a chunk may keep three quarters live).
        let n = Self.chunk * 2 + 10
        let ids = try await fill(d, count: n, reject: { $0 % 5 != 0 }, settle: { $0 % 10 == 0 })
        let actor = try #require(d.engine.deal("ar"))
        let before = try await d.engine.submit(.statement(.summary), holdOwner: try await d.engine.allocationFields(ids[0])[field: "hold"]!)
        clock.advance(millis: 999)
        let insideWindow = await d.archiveDue()
        // Holds end (allocated) at the same times, so nothing of either table leaves inside the window.
        #expect(insideWindow == 0)
        clock.advance(millis: 1)
        #expect(await d.archiveDue() > 0)
        let (inMemory, archived) = await actor.read { ($0.allocations.inMemory, $0.allocations.archivedRows) }
        let rejectedInFullChunks = (0..<(Self.chunk * 2)).filter { $0 % 5 != 0 }.count
        #expect(archived == rejectedInFullChunks)
        #expect(inMemory == n - rejectedInFullChunks)
        #expect(await d.engine.invariantViolations().isEmpty)

        // Reads of a rejected allocation that left memory answer from the history.
        let old = try await d.engine.allocationFields(ids[1])
        #expect(old[field: "status"] == "rejected" && old[field: "id"] == ids[1] && old[field: "investor"] == "inv1")
        #expect(try await d.engine.allocationStatus("alloc-2") == "rejected")
        // The hold names it; approving it again is refused; rejecting it again is a no-op.
        let hold = try #require(old[field: "hold"])
        #expect(try await d.engine.holdFields(hold)[field: "allocation"] == ids[1])
        await expectError(.conflict) { try await d.engine.approve(allocation: ids[1]) }
        try await d.engine.reject(allocation: ids[1])
        // Allocating its hold again answers with the same allocation.
        #expect(try await d.engine.allocate(hold: hold) == ids[1])
        // A caller id that left memory is still taken.
        let h2 = try await d.engine.hold(deal: "ar", HoldRequest(investor: "inv9", units: Units.whole(1), price: Price.whole(10), ttlMillis: 3_600_000))
        await expectError(.conflict) { _ = try await d.engine.allocate(hold: h2.id, id: "alloc-3") }
        // Approved and settled allocations stayed, positions agree.
        #expect(try await d.engine.allocationStatus(ids[5]) == "approved")
        #expect(try await d.engine.allocationStatus(ids[10]) == "settled")

        // The summary counts rows in memory and in the history alike.
        let after = try await d.engine.submit(.statement(.summary), holdOwner: hold)
        guard case .fields(let f0) = before, case .fields(let f1) = after else { Issue.record("summary"); return }
        #expect(f0[field: "allocations_rejected"] == f1[field: "allocations_rejected"])
        #expect(f0[field: "allocations_rejected_units"] == f1[field: "allocations_rejected_units"])
        #expect(f1[field: "allocations_rejected"] == String((0..<n).filter { $0 % 5 != 0 }.count))

        // The investor's statement lists archived allocations too.
        guard case .page(_, let rows) = await d.engine.submit([.statement(.investor("inv1", part: .allocations, cursor: 0, count: 1000))], to: actor)[0]
        else { Issue.record("statement page"); return }
        #expect(Set(rows.compactMap { $0[field: "id"] }) == Set(ids.indices.filter { $0 % 7 == 1 }.map { ids[$0] }))

        // Restart from the log, then from a snapshot: the same memory, the same reads.
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, config())
        #expect(await r.engine.digest() == live)
        #expect(try await r.engine.allocationStatus("alloc-2") == "rejected")
        try await r.snapshot()
        try await r.close()
        let s = try await openDurable(io, clock, config())
        #expect(s.recovery.snapshotPath != nil)
        #expect(await s.engine.digest() == live)
        #expect(try await s.engine.allocationStatus(ids[1]) == "rejected")
        #expect(await s.engine.deal("ar")!.read { $0.allocations.archivedRows } == rejectedInFullChunks)
        let h3 = try await s.engine.hold(deal: "ar", HoldRequest(investor: "inv9", units: Units.whole(1), price: Price.whole(10), ttlMillis: 3_600_000))
        await expectError(.conflict) { _ = try await s.engine.allocate(hold: h3.id, id: "alloc-3") }
        #expect(await s.engine.invariantViolations().isEmpty)
        try await s.close()
    }

    @Test func aChunkOfMostlyApprovedAllocationsStays() async throws {
        let io = SimulatedFileIO(seed: 0xa12)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        // Four in five approved: more than three quarters of the chunk is live, so it stays however old.
        _ = try await fill(d, count: Self.chunk, reject: { $0 % 5 == 0 })
        #expect((0..<Self.chunk).filter { $0 % 5 != 0 }.count > Allocation.maxLiveToLeave)
        clock.advance(millis: 10_000)
        _ = await d.archiveDue()
        #expect(await d.engine.deal("ar")!.read { $0.allocations.archivedRows } == 0)
        try await d.close()
    }

    @Test func investorSlotsOfArchivedAllocationsAreFreedOnlyWithoutOtherRows() async throws {
        let io = SimulatedFileIO(seed: 0xa13)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        // Every allocation rejected: once holds and allocations have left, no investor keeps a slot.
        _ = try await fill(d, count: HoldTable.chunkSize, reject: { _ in true })
        clock.advance(millis: 10_000)
        _ = await d.archiveDue()
        let actor = try #require(d.engine.deal("ar"))
        let (archived, liveInvestors) = await actor.read { s in (s.allocations.archivedRows, s.investors.filter { !$0.isEmpty }.count) }
        #expect(archived == HoldTable.chunkSize)
        #expect(liveInvestors == 0)
        #expect(await d.engine.invariantViolations().isEmpty)
        // The statement of an investor without a slot still finds its rejected
        // allocations, a few history entries a page, the cursor going on from there.
        var rows: [[Field]] = []
        var cursor: UInt64 = 0
        var pages = 0
        repeat {
            guard case .page(let next, let page) = await d.engine.submit([.statement(.investor("inv3", part: .allocations, cursor: cursor, count: 1000))], to: actor)[0]
            else { Issue.record("statement page"); return }
            rows += page
            pages += 1
            cursor = UInt64(next) ?? 0
        } while cursor != 0 && pages < 100
        #expect(pages > 1)
        #expect(rows.count == (0..<HoldTable.chunkSize).filter { $0 % 7 == 3 }.count)
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, config())
        #expect(await r.engine.digest() == live)
        try await r.snapshot()
        try await r.close()
        let s = try await openDurable(io, clock, config())
        #expect(await s.engine.digest() == live)
        #expect(await s.engine.invariantViolations().isEmpty)
        try await s.close()
    }

    @Test func decidedApprovalsLeaveWithTheirAllocationsAndStayReadable() async throws {
        let io = SimulatedFileIO(seed: 0xa14)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        let n = Self.chunk * 2
        // The last five stay under review, so their approvals stay pending.
        _ = try await d.engine.createDeal(DealSpec(id: "ap", offerUnitPrice: Price.whole(10)))
        try await d.engine.addLot(deal: "ap", LotSpec(id: "ap-L1", unitsTotal: Units.whole(100_000), unitCost: Price.whole(5)))
        var ids: [String] = []
        for i in 0..<(n + 5) {
            let h = try await d.engine.hold(deal: "ap", HoldRequest(investor: "inv\(i % 7)", units: Units.whole(1), price: Price.whole(10), ttlMillis: 3_600_000))
            let a = try await d.engine.allocate(hold: h.id)
            if i < n { if i % 4 == 0 { try await d.engine.approve(allocation: a) } else { try await d.engine.reject(allocation: a) } }
            ids.append(a)
        }
        let actor = try #require(d.engine.deal("ap"))
        func fields(_ r: DealReply) -> [Field] { if case .fields(let f) = r { return f }; Issue.record("\(r)"); return [] }
        let approvalOf = try #require(try await d.engine.allocationFields(ids[1])[field: "approval"])
        let approvedOne = try #require(try await d.engine.allocationFields(ids[0])[field: "approval"])
        let listBefore = await actor.execute([.people(.listApprovals(ApprovalFilter(), cursor: 0, count: 1000))]).replies[0]
        clock.advance(millis: 1_000)
        _ = await d.archiveDue()
        let archived = await actor.read { $0.people.approvals.archivedRows }
        #expect(archived == n)  // every decided approval of the two full chunks
        #expect(await actor.read { $0.people.approvals.inMemory } == 5)

        // APPROVAL.GET of one that left memory, with its entity's id.
        let got = fields(await actor.execute([.people(.getApproval(id: approvalOf))]).replies[0])
        #expect(got[field: "status"] == "rejected" && got[field: "entity_id"] == ids[1] && got[field: "entity_type"] == "allocation")
        // Deciding it again the same way is a no-op; the other way is refused.
        #expect(await actor.execute([.people(.decideApproval(id: approvalOf, approve: false, note: nil))]).replies[0] == .ok)
        guard case .failure(let e) = await actor.execute([.people(.decideApproval(id: approvedOne, approve: false, note: nil))]).replies[0] else {
            Issue.record("deciding an archived approval the other way was not refused"); return
        }
        #expect(e.code == .conflict)
        guard case .failure(let e2) = await actor.execute([.people(.prioritizeApproval(id: approvalOf, priority: .high))]).replies[0] else {
            Issue.record("prioritising a decided approval was not refused"); return
        }
        #expect(e2.code == .conflict)
        // The deal's list is the same as before the rows left; the engine-wide walk too.
        #expect(await actor.execute([.people(.listApprovals(ApprovalFilter(), cursor: 0, count: 1000))]).replies[0] == listBefore)
        let now = clock.nowMillis()
        let indexes = d.engine.indexes
        let walk = await actor.read { $0.approvals(after: ApprovalKey(cursor: "0"), filter: ApprovalFilter(status: .pending), count: 100, budget: 10_000, now: now, index: indexes) }
        #expect(walk.error == nil)
        #expect(walk.rows.map { $0.fields[field: "entity_id"] } == ids.suffix(5).map { Optional($0) })
        // New approvals keep the queue's creation order after the rows before them left.
        let h = try await d.engine.hold(deal: "ap", HoldRequest(investor: "inv1", units: Units.whole(1), price: Price.whole(10), ttlMillis: 3_600_000))
        _ = try await d.engine.allocate(hold: h.id)

        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, config())
        #expect(await r.engine.digest() == live)
        try await r.snapshot()
        try await r.close()
        let s = try await openDurable(io, clock, config())
        #expect(await s.engine.digest() == live)
        let again = fields(await s.engine.deal("ap")!.execute([.people(.getApproval(id: approvalOf))]).replies[0])
        #expect(again == got)
        #expect(await s.engine.invariantViolations().isEmpty)
        try await s.close()
    }

    /// The row sizes the memory bound in docs/architecture.md and the tables' comments quote.
    @Test func rowSizesAreTheOnesTheBoundQuotes() {
        #expect(MemoryLayout<Allocation>.stride == 160)
        #expect(MemoryLayout<Approval>.stride == 104)
        #expect(MemoryLayout<Hold>.stride == 112)
    }

    @Test func historyRowOfAnAllocationRoundTrips() throws {
        let a = Allocation(units: Units.whole(3), firstPart: LotPart(lot: 0, units: Units.whole(2)), id: "a1.7", holdID: "client-h",
                           moreParts: [LotPart(lot: 2, units: Units.whole(1))], unitPrice: Price.whole(12), createdAt: 5, decidedAt: 9,
                           settledAt: 0, hold: 40, investor: 3, approval: 11, status: .rejected, createdBy: "u1", decidedBy: nil)
        let entry = HistoryStore.entry(deal: 4, rows: [(slot: Int32(7), hold: ArchivedAllocation(allocation: a, investorID: "inv-x"))])
        let io = SimulatedFileIO(seed: 1)
        let store = try HistoryStore(directory: "/h", io: io)
        let loc = try store.append([entry])[0]
        let back = try #require(try store.row(ArchivedAllocation.self, deal: 4, slot: 7, at: loc))
        #expect(back.allocation == a && back.investorID == "inv-x")
        // A hold read of an allocation entry is refused as damage, not misread.
        #expect(throws: EngineError.self) { _ = try store.hold(deal: 4, slot: 7, at: loc) }
    }
}
