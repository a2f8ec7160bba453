import Testing
@testable import AllocationEngine

@Suite("Engine: deals and the deal status machine")
struct EngineDealStatusTests {
    @Test func createDealDefaults() async throws {
        try await withEngine { engine, _ in
            let info = try await engine.createDeal(DealSpec(id: "d1"))
            #expect(info.status == .open)
            #expect(info.number == 1)
            #expect(info.createdAt == t0)
            #expect(info.name == "d1")
            #expect(info.currency == "USD")
            let draft = try await engine.createDeal(DealSpec(id: "d2", status: .draft))
            #expect(draft.status == .draft)
            #expect(draft.number == 2)
            #expect(engine.deal("d1")?.number == 1)
            #expect(engine.deal(number: 2)?.id == "d2")
            #expect(engine.allDeals.map(\.id) == ["d1", "d2"])
            let inv = try await engine.inventory(deal: "d1")
            #expect(inv.unitsTotal == .zero && inv.holdsPending == 0 && inv.lots.isEmpty)
        }
    }

    @Test func createDealErrors() async throws {
        try await withEngine { engine, _ in
            try await engine.createDeal(DealSpec(id: "d1"))
            await expectError(.exists) { try await engine.createDeal(DealSpec(id: "d1")) }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "")) }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "has space")) }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "quo\"te")) }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: String(repeating: "x", count: 129))) }
            try await engine.createDeal(DealSpec(id: String(repeating: "x", count: 128)))
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "d3", currency: "usd")) }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "d3", currency: "USDX")) }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "d3", name: "bad\nname")) }
            for status in [DealStatus.allocationPending, .closed, .cancelled] {
                await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "d3", status: status)) }
            }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "d3", openAt: t0, closeAt: t0)) }
            await expectError(.invalid) { try await engine.createDeal(DealSpec(id: "d3", openAt: t0, closeAt: t0 - 1)) }
            // None of the refused creations left a deal behind.
            #expect(engine.deal("d3") == nil)
            #expect(engine.allDeals.count == 2)
        }
    }

    @Test func forwardPathToClosed() async throws {
        try await withEngine { engine, _ in
            try await engine.createDeal(DealSpec(id: "d1", status: .draft))
            for next in [DealStatus.open, .allocationPending, .closed] {
                try await engine.setStatus(deal: "d1", next)
                #expect(try await engine.dealStatus("d1") == next)
            }
        }
    }

    @Test(arguments: [DealStatus.draft, .open, .allocationPending])
    func cancelFromAnyStateBeforeClosed(_ from: DealStatus) async throws {
        try await withEngine { engine, _ in
            try await reach(engine, "d1", from)
            try await engine.setStatus(deal: "d1", .cancelled)
            #expect(try await engine.dealStatus("d1") == .cancelled)
        }
    }

    /// The allowed moves, written out independently of `DealStatus.canMove`.
    static let allowed: Set<[DealStatus]> = [
        [.draft, .open], [.open, .allocationPending], [.allocationPending, .closed],
        [.draft, .cancelled], [.open, .cancelled], [.allocationPending, .cancelled],
    ]

    static let allPairs: [(DealStatus, DealStatus)] = DealStatus.allCases.flatMap { a in DealStatus.allCases.map { (a, $0) } }

    @Test(arguments: allPairs)
    func everyTransition(_ from: DealStatus, _ to: DealStatus) async throws {
        try await withEngine { engine, _ in
            try await reach(engine, "d1", from)
            let before = await engine.digest()
            if from == to {
                // Same status again: a no-op that changes nothing.
                try await engine.setStatus(deal: "d1", to)
                #expect(await engine.digest() == before)
            } else if Self.allowed.contains([from, to]) {
                try await engine.setStatus(deal: "d1", to)
                #expect(try await engine.dealStatus("d1") == to)
            } else {
                await expectError(.conflict, message: "deal d1 cannot move from \(from.name) to \(to.name)") {
                    try await engine.setStatus(deal: "d1", to)
                }
                #expect(try await engine.dealStatus("d1") == from)
                #expect(await engine.digest() == before)
            }
        }
    }

    @Test func statusOfUnknownDeal() async throws {
        try await withEngine { engine, _ in
            await expectError(.notFound) { try await engine.setStatus(deal: "nope", .open) }
            await expectError(.notFound) { try await engine.inventory(deal: "nope") }
            await expectError(.notFound) { try await engine.position(deal: "nope", investor: "i") }
            await expectError(.notFound) { try await engine.addLot(deal: "nope", LotSpec(id: "L", unitsTotal: u("1"), unitCost: p("1"))) }
            await expectError(.notFound) { try await engine.hold(deal: "nope", holdReq("1")) }
        }
    }

    @Test func dealNames() {
        for s in DealStatus.allCases { #expect(DealStatus(name: s.name) == s) }
        #expect(DealStatus(name: "ALLOCATION_PENDING") == .allocationPending)
        #expect(DealStatus(name: "pending") == nil)
    }

    @Test func getDealFields() async throws {
        try await withEngine { engine, _ in
            try await openDeal(engine, lots: [("L1", "10", nil), ("L2", "5", nil)])
            let reply = try await engine.submit(.getDeal, deal: "d1")
            guard case .fields(let f) = reply else { Issue.record("not fields: \(reply)"); return }
            #expect(f[field: "id"] == "d1")
            #expect(f[field: "status"] == "open")
            #expect(f[field: "offer_unit_price"] == "10")
            #expect(f[field: "lots"] == "2")
            #expect(f[field: "created_at"] == String(t0))
        }
    }
}

/// Creates deal `id` and moves it to `status` by the allowed path.
func reach(_ engine: Engine, _ id: String, _ status: DealStatus) async throws {
    switch status {
    case .draft: try await engine.createDeal(DealSpec(id: id, status: .draft))
    case .open: try await engine.createDeal(DealSpec(id: id))
    case .allocationPending:
        try await engine.createDeal(DealSpec(id: id))
        try await engine.setStatus(deal: id, .allocationPending)
    case .closed:
        try await engine.createDeal(DealSpec(id: id))
        try await engine.setStatus(deal: id, .allocationPending)
        try await engine.setStatus(deal: id, .closed)
    case .cancelled:
        try await engine.createDeal(DealSpec(id: id))
        try await engine.setStatus(deal: id, .cancelled)
    }
}
