import Testing
@testable import AllocationEngine

@Suite("Engine: release, allocate, approve, reject, settle")
struct EngineAllocationTests {
    @Test func releaseReturnsUnitsAndRetryIsOK() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("A", "30", "2020-01-01"), ("B", "70", "2021-01-01")])
            let h = try await engine.hold(deal: "d1", holdReq("50"))
            try await engine.release(hold: h.id)
            #expect(try await engine.holdStatus(h.id) == "cancelled")
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("100") && inv.unitsHeld == .zero && inv.holdsPending == 0)
            #expect(try await engine.lot("d1", "A").unitsRemaining == u("30"))
            #expect(try await engine.lot("d1", "B").unitsRemaining == u("70"))
            let before = await engine.digest()
            try await engine.release(hold: h.id)  // retry: OK, nothing changes
            #expect(await engine.digest() == before)
            await expectError(.conflict) { try await engine.allocate(hold: h.id) }
        }
    }

    @Test func releaseOfAllocatedHoldIsConflict() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("10"))
            try await engine.allocate(hold: h.id)
            let before = await engine.digest()
            await expectError(.conflict) { try await engine.release(hold: h.id) }
            #expect(await engine.digest() == before)
        }
    }

    @Test func allocateKeepsTheSplit() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine, lots: [("A", "30", "2020-01-01"), ("B", "70", "2021-01-01")])
            let h = try await engine.hold(deal: "d1", holdReq("50", investor: "bob", price: "2.5"))
            clock.advance(millis: 1_000)
            let a = try await engine.allocate(hold: h.id)
            #expect(a == "a1.1")
            #expect(try await engine.holdStatus(h.id) == "approved")
            #expect(try await engine.holdFields(h.id)[field: "allocation"] == a)
            let f = try await engine.allocationFields(a)
            #expect(f[field: "status"] == "pending_review")
            #expect(f[field: "hold"] == h.id)
            #expect(f[field: "investor"] == "bob")
            #expect(f[field: "units"] == "50")
            #expect(f[field: "unit_price"] == "2.5")
            #expect(f[field: "amount"] == "125.00")
            #expect(f[field: "created_at"] == String(t0 + 1_000))
            #expect(f[field: "approved_at"] == nil)
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsHeld == .zero && inv.unitsAllocated == u("50") && inv.unitsRemaining == u("50"))
            #expect(inv.holdsPending == 0)
            let lotA = try await engine.lot("d1", "A"), lotB = try await engine.lot("d1", "B")
            #expect(lotA.unitsAllocated == u("30") && lotA.unitsHeld == .zero && lotA.status == .exhausted)
            #expect(lotB.unitsAllocated == u("20") && lotB.unitsRemaining == u("50"))
            // The position moves only on approval.
            #expect(try await engine.position(deal: "d1", investor: "bob").units == .zero)
        }
    }

    @Test func allocateWithCallerIDAndRetries() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            try await openDeal(engine, "d2")
            let h1 = try await engine.hold(deal: "d1", holdReq("10"))
            let h2 = try await engine.hold(deal: "d1", holdReq("10"))
            let h3 = try await engine.hold(deal: "d2", holdReq("10"))
            #expect(try await engine.allocate(hold: h1.id, id: "alloc-1") == "alloc-1")
            let before = await engine.digest()
            // Retries return the same allocation id and change nothing.
            #expect(try await engine.allocate(hold: h1.id, id: "alloc-1") == "alloc-1")
            #expect(try await engine.allocate(hold: h1.id) == "alloc-1")
            #expect(await engine.digest() == before)
            // Another id for the same hold, or the same id for another hold: CONFLICT.
            await expectError(.conflict) { try await engine.allocate(hold: h1.id, id: "alloc-2") }
            await expectError(.conflict) { try await engine.allocate(hold: h2.id, id: "alloc-1") }
            await expectError(.conflict) { try await engine.allocate(hold: h3.id, id: "alloc-1") }
            await expectError(.invalid) { try await engine.allocate(hold: h2.id, id: "bad id") }
            #expect(await engine.digest() == before)
            #expect(try await engine.holdStatus(h2.id) == "pending")
            #expect(try await engine.holdStatus(h3.id) == "pending")
            let gen = try await engine.allocate(hold: h2.id)
            #expect(try await engine.allocate(hold: h2.id) == gen)
        }
    }

    @Test func approveUpdatesPositionExactly() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine, lots: [("L1", "100000", nil)])
            let h1 = try await engine.hold(deal: "d1", holdReq("12345.6789", investor: "carol", price: "98.765432"))
            let h2 = try await engine.hold(deal: "d1", holdReq("3.33333333", investor: "carol", price: "1.005"))
            let a1 = try await engine.allocate(hold: h1.id)
            let a2 = try await engine.allocate(hold: h2.id)
            clock.advance(millis: 5_000)
            try await engine.approve(allocation: a1)
            var pos = try await engine.position(deal: "d1", investor: "carol")
            #expect(pos.units == u("12345.6789"))
            #expect(pos.costBasis.description == "1219326.3098917848")
            #expect(pos.costBasis.roundedToMoney.description == "1219326.31")
            #expect(pos.lastUpdated == t0 + 5_000)
            let f1 = try await engine.allocationFields(a1)
            #expect(f1[field: "status"] == "approved")
            #expect(f1[field: "approved_at"] == String(t0 + 5_000))
            #expect(f1[field: "amount"] == "1219326.31")
            try await engine.approve(allocation: a2)
            pos = try await engine.position(deal: "d1", investor: "carol")
            #expect(pos.units == u("12349.01223333"))
            // 1219326.3098917848 + 3.34999999665, exact, then half away from zero to cents.
            #expect(pos.costBasis.description == "1219329.65989178145")
            let reply = try await engine.submit(.position(investor: "carol"), deal: "d1")
            guard case .fields(let pf) = reply else { Issue.record("not fields: \(reply)"); return }
            #expect(pf[field: "units"] == "12349.01223333")
            #expect(pf[field: "cost_basis"] == "1219329.66")
            #expect(pf[field: "cost_basis_exact"] == "1219329.65989178145")
            // Approve retry is a no-op: the position is not counted twice.
            let before = await engine.digest()
            try await engine.approve(allocation: a1)
            #expect(await engine.digest() == before)
            #expect(try await engine.position(deal: "d1", investor: "carol").units == u("12349.01223333"))
            // Nobody else has a position.
            #expect(try await engine.position(deal: "d1", investor: "dave").units == .zero)
        }
    }

    /// Half away from zero (the one rounding rule; it was half to even before issue 8).
    @Test(arguments: [("0.125", "0.13"), ("0.135", "0.14"), ("0.1251", "0.13"), ("0.124999", "0.12"), ("0.005", "0.01"), ("0.015", "0.02"),
                      ("0.004999", "0.00"), ("10.1", "10.10")])
    func costBasisRoundsHalfAwayFromZero(_ price: String, _ cents: String) async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("1", investor: "i", price: price))
            let a = try await engine.allocate(hold: h.id)
            try await engine.approve(allocation: a)
            let reply = try await engine.submit(.position(investor: "i"), deal: "d1")
            guard case .fields(let f) = reply else { Issue.record("not fields"); return }
            #expect(f[field: "cost_basis"] == cents)
            #expect(f[field: "cost_basis_exact"] == price)
            #expect(try await engine.allocationFields(a)[field: "amount"] == cents)
        }
    }

    @Test func rejectReturnsUnitsToLots() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("A", "30", "2020-01-01"), ("B", "70", "2021-01-01")])
            let h = try await engine.hold(deal: "d1", holdReq("50", investor: "eve"))
            let a = try await engine.allocate(hold: h.id)
            try await engine.reject(allocation: a)
            #expect(try await engine.allocationStatus(a) == "rejected")
            #expect(try await engine.allocationFields(a)[field: "rejected_at"] != nil)
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("100") && inv.unitsAllocated == .zero && inv.unitsHeld == .zero)
            #expect(try await engine.lot("d1", "A").unitsRemaining == u("30"))
            #expect(try await engine.position(deal: "d1", investor: "eve").units == .zero)
            let before = await engine.digest()
            try await engine.reject(allocation: a)  // retry: no-op
            #expect(await engine.digest() == before)
            // The returned units go to the next hold, oldest lot first.
            let h2 = try await engine.hold(deal: "d1", holdReq("40"))
            #expect(split(h2) == ["A:30", "B:10"])
        }
    }

    @Test func approvedThenSettled() async throws {
        try await withEngine { engine, clock in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("10", investor: "i", price: "3"))
            let a = try await engine.allocate(hold: h.id)
            try await engine.approve(allocation: a)
            clock.advance(millis: 7_000)
            try await engine.settle(allocation: a)
            let f = try await engine.allocationFields(a)
            #expect(f[field: "status"] == "settled")
            #expect(f[field: "settled_at"] == String(t0 + 7_000))
            #expect(f[field: "approved_at"] == String(t0))
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsAllocated == u("10") && inv.unitsRemaining == u("90"))
            let pos = try await engine.position(deal: "d1", investor: "i")
            #expect(pos.units == u("10") && pos.costBasis.description == "30")
            let before = await engine.digest()
            try await engine.settle(allocation: a)  // retry: no-op
            #expect(await engine.digest() == before)
        }
    }

    /// The allocation states a test can reach, and how to get there.
    enum Reached: String, CaseIterable, Sendable { case pendingReview = "pending_review", approved, rejected, settled }

    static let allocationPairs: [(Reached, Reached)] = Reached.allCases.flatMap { a in Reached.allCases.map { (a, $0) } }

    @Test(arguments: allocationPairs)
    func everyAllocationTransition(_ from: Reached, _ to: Reached) async throws {
        let allowed: Set<[Reached]> = [[.pendingReview, .approved], [.pendingReview, .rejected], [.approved, .settled]]
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let h = try await engine.hold(deal: "d1", holdReq("10", investor: "i"))
            let a = try await engine.allocate(hold: h.id)
            switch from {
            case .pendingReview: break
            case .approved: try await engine.approve(allocation: a)
            case .rejected: try await engine.reject(allocation: a)
            case .settled:
                try await engine.approve(allocation: a)
                try await engine.settle(allocation: a)
            }
            let before = await engine.digest()
            func move() async throws(EngineError) {
                switch to {
                case .pendingReview: return  // no request moves back to review
                case .approved: try await engine.approve(allocation: a)
                case .rejected: try await engine.reject(allocation: a)
                case .settled: try await engine.settle(allocation: a)
                }
            }
            if to == .pendingReview { return }
            if from == to {
                try await move()
                #expect(await engine.digest() == before)
            } else if allowed.contains([from, to]) {
                try await move()
                #expect(try await engine.allocationStatus(a) == to.rawValue)
            } else {
                await expectError(.conflict, message: "allocation \(a) is \(from.rawValue); it cannot become \(to.rawValue)") {
                    try await move()
                }
                #expect(try await engine.allocationStatus(a) == from.rawValue)
                #expect(await engine.digest() == before)
            }
        }
    }

    @Test func allocationWhileAllocationPending() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            let h1 = try await engine.hold(deal: "d1", holdReq("10", investor: "i"))
            let h2 = try await engine.hold(deal: "d1", holdReq("20", investor: "i"))
            try await engine.setStatus(deal: "d1", .allocationPending)
            // Pending holds survive the move and can still be allocated or released.
            #expect(try await engine.holdStatus(h1.id) == "pending")
            let a = try await engine.allocate(hold: h1.id)
            try await engine.approve(allocation: a)
            try await engine.release(hold: h2.id)
            #expect(try await engine.position(deal: "d1", investor: "i").units == u("10"))
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("90") && inv.unitsAllocated == u("10") && inv.holdsPending == 0)
        }
    }

    @Test func closingCancelsPendingHolds() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("A", "30", "2020-01-01"), ("B", "70", "2021-01-01")])
            let h1 = try await engine.hold(deal: "d1", holdReq("40"))
            let h2 = try await engine.hold(deal: "d1", holdReq("20"))
            let a = try await engine.allocate(hold: h2.id)
            try await engine.approve(allocation: a)
            try await engine.setStatus(deal: "d1", .allocationPending)
            try await engine.setStatus(deal: "d1", .closed)
            #expect(try await engine.holdStatus(h1.id) == "cancelled")
            #expect(try await engine.allocationStatus(a) == "approved")
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsHeld == .zero && inv.holdsPending == 0)
            #expect(inv.unitsAllocated == u("20") && inv.unitsRemaining == u("80"))
            #expect(try await engine.lot("d1", "A").unitsRemaining == u("30"))
            #expect(try await engine.lot("d1", "B").unitsRemaining == u("50"))
            // A cancelled hold stays released: allocate conflicts, release is an OK no-op.
            await expectError(.conflict) { try await engine.allocate(hold: h1.id) }
            try await engine.release(hold: h1.id)
            // Settling an approved allocation after close still works.
            try await engine.settle(allocation: a)
        }
    }

    @Test func cancellingCancelsHoldsAndRejectsPendingReview() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("A", "30", "2020-01-01"), ("B", "70", "2021-01-01")])
            let pending = try await engine.hold(deal: "d1", holdReq("25", investor: "p"))
            let review = try await engine.hold(deal: "d1", holdReq("15", investor: "r"))
            let approved = try await engine.hold(deal: "d1", holdReq("10", investor: "ap", price: "2"))
            let aReview = try await engine.allocate(hold: review.id)
            let aApproved = try await engine.allocate(hold: approved.id)
            try await engine.approve(allocation: aApproved)
            try await engine.setStatus(deal: "d1", .cancelled)
            #expect(try await engine.holdStatus(pending.id) == "cancelled")
            #expect(try await engine.allocationStatus(aReview) == "rejected")
            #expect(try await engine.allocationStatus(aApproved) == "approved")
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.status == .cancelled)
            #expect(inv.unitsHeld == .zero && inv.holdsPending == 0)
            #expect(inv.unitsAllocated == u("10") && inv.unitsRemaining == u("90"))
            #expect(try await engine.position(deal: "d1", investor: "ap").units == u("10"))
            #expect(try await engine.position(deal: "d1", investor: "r").units == .zero)
            // Nothing moves in a cancelled deal any more.
            await expectError(.closed) { try await engine.approve(allocation: aReview) }
            await expectError(.closed) { try await engine.settle(allocation: aApproved) }
            await expectError(.closed) { try await engine.hold(deal: "d1", holdReq("1")) }
            await expectError(.closed) { try await engine.addLot(deal: "d1", LotSpec(id: "C", unitsTotal: u("1"), unitCost: p("1"))) }
        }
    }

    @Test func cancellingDraftDealWithLots() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("A", "30", nil)], status: .draft)
            try await engine.setStatus(deal: "d1", .cancelled)
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsRemaining == u("30"))
        }
    }

    @Test func unknownIDsAreNotFound() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine)
            try await openDeal(engine, "d2")
            let other = try await engine.hold(deal: "d2", holdReq("1"))
            let otherAlloc = try await engine.allocate(hold: other.id)
            let before = await engine.digest()
            await expectError(.notFound) { try await engine.release(hold: "nope") }
            await expectError(.notFound) { try await engine.allocate(hold: "nope") }
            await expectError(.notFound) { try await engine.holdFields("nope") }
            await expectError(.notFound) { try await engine.approve(allocation: "nope") }
            await expectError(.notFound) { try await engine.reject(allocation: "nope") }
            await expectError(.notFound) { try await engine.settle(allocation: "nope") }
            await expectError(.notFound) { try await engine.allocationFields("nope") }
            await expectError(.notFound) { try await engine.resizeLot(deal: "d1", lot: "nope", unitsTotal: u("1")) }
            await expectError(.notFound) { try await engine.submit(.getLot("nope"), deal: "d1") }
            // Ids of another deal are not found when asked of this one.
            await expectError(.notFound) { try await engine.submit(.getHold(other.id), deal: "d1") }
            await expectError(.notFound) { try await engine.submit(.release(hold: other.id), deal: "d1") }
            await expectError(.notFound) { try await engine.submit(.allocate(hold: other.id, id: nil), deal: "d1") }
            await expectError(.notFound) { try await engine.submit(.getAllocation(otherAlloc), deal: "d1") }
            await expectError(.notFound) { try await engine.submit(.approve(allocation: otherAlloc), deal: "d1") }
            #expect(await engine.digest() == before)
        }
    }

    @Test func batchRepliesOnePerRequest() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L1", "10", nil)])
            let actor = try #require(engine.deal("d1"))
            let replies = await engine.submit([
                .hold(holdReq("6", id: "b1")), .hold(holdReq("6", id: "b2")), .hold(holdReq("4", id: "b3")),
                .allocate(hold: "b1", id: "ab1"), .approve(allocation: "ab1"), .release(hold: "b3"), .inventory,
            ], to: actor)
            #expect(replies.count == 7)
            guard case .hold(let r1) = replies[0] else { Issue.record("\(replies[0])"); return }
            #expect(r1.id == "b1")
            #expect(replies[1].error?.code == .insufficient)
            guard case .hold = replies[2] else { Issue.record("\(replies[2])"); return }
            #expect(replies[3] == .id("ab1"))
            #expect(replies[4] == .ok && replies[5] == .ok)
            guard case .fields(let f) = replies[6] else { Issue.record("\(replies[6])"); return }
            #expect(f[field: "units_allocated"] == "6")
            #expect(f[field: "units_remaining"] == "4")
            #expect(engine.indexes.holds.lookup("b2") == nil)
        }
    }
}
