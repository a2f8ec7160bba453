import WAL
import Synchronization
import Testing
@testable import AllocationEngine

/// Demand above supply, all at once: exactly the supply is sold, never more,
/// and no request is refused while enough units remain.
@Suite("Stress: exact supply under contention")
struct StressSupplyTests {
    /// N tasks each hold 1 unit of M < N: exactly M succeed, the rest get INSUFFICIENT.
    @Test func oneUnitEachAgainstOneLot() async throws {
        let m = max(10, Stress.ops / 4)
        let n = m + m / 2 + 7
        _ = Stress.seed("oneUnitEachAgainstOneLot")
        let engine = Engine(clock: ManualClock(millis: stressT0))
        try await makeDeal(engine, "d", lotSizes: [m])
        let problems = Problems()
        let successes = Counter()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<n {
                group.addTask {
                    do {
                        let r = try await engine.hold(deal: "d", HoldRequest(investor: "i\(i)", units: units(1), price: price("1")))
                        if r.units != units(1) { problems.add("hold \(r.id) filled \(r.units)") }
                        successes.add(1)
                    } catch let error as EngineError {
                        if error.code != .insufficient || error.message != "requested 1, available 0" { problems.add("\(error)") }
                    } catch { problems.add("\(error)") }
                }
            }
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        #expect(successes.load == m)
        let inv = try await engine.inventory(deal: "d")
        #expect(inv.unitsHeld == units(m) && inv.unitsRemaining == .zero && inv.holdsPending == m)
        await checkConservation(engine)
    }

    /// The same across several lots and several deals at once, with fractional lot sizes.
    @Test func oneUnitEachAcrossLotsAndDeals() async throws {
        var rng = SplitMix64(seed: Stress.seed("oneUnitEachAcrossLotsAndDeals"))
        let dealCount = 6
        var supply: [Int] = []
        let engine = Engine(clock: ManualClock(millis: stressT0))
        for d in 0..<dealCount {
            let lots = (0..<(1 + rng.below(4))).map { _ in 1 + rng.below(max(2, Stress.ops / 40)) }
            supply.append(lots.reduce(0, +))
            try await makeDeal(engine, "d\(d)", lotSizes: lots, fractional: true)
        }
        // Per deal: supply + 50% + 3 requests, shuffled together.
        var requests: [Int] = []
        for d in 0..<dealCount { requests += Array(repeating: d, count: supply[d] + supply[d] / 2 + 3) }
        requests.shuffle(using: &rng)
        let problems = Problems()
        let won = Shared<[Int]>(Array(repeating: 0, count: dealCount))
        await withTaskGroup(of: Void.self) { group in
            for (i, d) in requests.enumerated() {
                group.addTask {
                    do {
                        _ = try await engine.hold(deal: "d\(d)", HoldRequest(investor: "i\(i % 17)", units: units(1), price: price("2.5")))
                        won.withLock { $0[d] += 1 }
                    } catch let error as EngineError {
                        // Each lot has a fraction left over: 0.00012345 units per lot remain.
                        if error.code != .insufficient || !error.message.hasPrefix("requested 1, available 0.") {
                            problems.add("deal d\(d): \(error)")
                        }
                    } catch { problems.add("\(error)") }
                }
            }
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        let wins = won.withLock { $0 }
        for d in 0..<dealCount {
            #expect(wins[d] == supply[d], "deal d\(d): \(wins[d]) holds for a supply of \(supply[d])")
            let inv = try await engine.inventory(deal: "d\(d)")
            #expect(inv.unitsHeld == units(supply[d]))
            #expect(inv.unitsRemaining.raw == Int128(inv.lots.count) * 12_345)
        }
        await checkConservation(engine)
    }

    /// Random sizes, all-or-nothing: every refusal happened because fewer units
    /// remained than it asked for (no false sold-out), and what was sold is exact.
    @Test func randomSizesNoFalseSoldOut() async throws {
        var rng = SplitMix64(seed: Stress.seed("randomSizesNoFalseSoldOut"))
        let supply = max(50, Stress.ops)
        let engine = Engine(clock: ManualClock(millis: stressT0))
        try await makeDeal(engine, "d", lotSizes: [supply / 3, supply / 3, supply - 2 * (supply / 3)])
        var sizes: [Int] = []
        var demand = 0
        while demand < supply * 2 {
            let s = 1 + rng.below(12)
            sizes.append(s)
            demand += s
        }
        let problems = Problems()
        let granted = Counter()
        let smallestRefused = Counter(Int.max)
        await withTaskGroup(of: Void.self) { group in
            for (i, s) in sizes.enumerated() {
                group.addTask {
                    do {
                        let r = try await engine.hold(deal: "d", HoldRequest(investor: "i\(i)", units: units(s), price: price("1")))
                        let sum = r.parts.reduce(Units.zero) { $0 + $1.units }
                        if r.units != units(s) || sum != units(s) { problems.add("hold \(r.id): \(r)") }
                        granted.add(s)
                    } catch let error as EngineError {
                        if error.code != .insufficient { problems.add("\(error)") }
                        smallestRefused.min(s)
                    } catch { problems.add("\(error)") }
                }
            }
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        let inv = try await engine.inventory(deal: "d")
        let g = granted.load
        #expect(inv.unitsHeld == units(g))
        #expect(inv.unitsRemaining == units(supply - g))
        // Remaining only shrinks here, so each refused request asked for more than is left now.
        let refused = smallestRefused.load
        #expect(refused == .max || supply - g < refused, "refused a hold of \(refused) while \(supply - g) remain")
        await checkConservation(engine)
    }

    /// Partial holds against scarce supply: the fills add up to exactly the supply.
    @Test func partialHoldsSellExactlyTheSupply() async throws {
        var rng = SplitMix64(seed: Stress.seed("partialHoldsSellExactlyTheSupply"))
        let supply = max(40, Stress.ops / 2)
        let engine = Engine(clock: ManualClock(millis: stressT0))
        try await makeDeal(engine, "d", lotSizes: [supply / 2, supply - supply / 2], fractional: true)
        let totalSupply = try await engine.inventory(deal: "d").unitsTotal
        let sizes = (0..<(supply / 2)).map { _ in 1 + rng.below(9) }
        let problems = Problems()
        let filled = Shared<Units>(.zero)
        await withTaskGroup(of: Void.self) { group in
            for (i, s) in sizes.enumerated() {
                group.addTask {
                    do {
                        let r = try await engine.hold(deal: "d", HoldRequest(investor: "i\(i)", units: units(s), price: price("1"), partial: true))
                        if r.units.raw <= 0 || r.units > units(s) { problems.add("partial hold \(r.id) filled \(r.units) of \(s)") }
                        filled.withLock { $0 += r.units }
                    } catch let error as EngineError {
                        if error.code != .insufficient || !error.message.hasSuffix("available 0") { problems.add("\(error)") }
                    } catch { problems.add("\(error)") }
                }
            }
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        let inv = try await engine.inventory(deal: "d")
        #expect(filled.withLock { $0 } == totalSupply)
        #expect(inv.unitsRemaining == .zero && inv.unitsHeld == totalSupply)
        await checkConservation(engine)
    }

    /// Many tasks retrying one request, in several deals at once: one deal wins
    /// the id, every retry there gets the same receipt, every other deal CONFLICT.
    /// Then one allocation and one position however many retries race.
    @Test func concurrentRetriesAreIdempotent() async throws {
        _ = Stress.seed("concurrentRetriesAreIdempotent")
        let engine = Engine(clock: ManualClock(millis: stressT0))
        let deals = 8
        for d in 0..<deals { try await makeDeal(engine, "d\(d)", lotSizes: [100, 100]) }
        let tasks = max(32, Stress.ops / 25)
        let request = HoldRequest(investor: "inv", units: units(150), price: price("3.25"), ttlMillis: 60_000, id: "the-hold")
        let receipts = SharedList<HoldReceipt>()
        let problems = Problems()
        let conflicts = Counter()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<tasks {
                group.addTask {
                    switch await attempt({ try await engine.hold(deal: "d\(i % deals)", request) }) {
                    case .success(let r): receipts.append(r)
                    case .failure(let e) where e.code == .conflict: conflicts.add(1)
                    case .failure(let e): problems.add("\(e)")
                    }
                }
            }
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        let winner = try #require(engine.dealForHold("the-hold")).id
        let winnerIndex = Int(winner.dropFirst())!
        #expect(Set(receipts.all).count == 1)
        #expect(receipts.all.count == (0..<tasks).filter { $0 % deals == winnerIndex }.count)
        #expect(conflicts.load + receipts.all.count == tasks)
        for d in 0..<deals {
            let inv = try await engine.inventory(deal: "d\(d)")
            #expect(inv.holdsPending == (d == winnerIndex ? 1 : 0))
            #expect(inv.unitsHeld == (d == winnerIndex ? units(150) : .zero))
        }

        let ids = SharedList<String>()
        let allocateConflicts = Counter()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<tasks {
                group.addTask {
                    switch await attempt({ try await engine.allocate(hold: "the-hold", id: i % 2 == 0 ? "the-alloc" : nil) }) {
                    case .success(let id): ids.append(id)
                    case .failure(let e) where e.code == .conflict: allocateConflicts.add(1)
                    case .failure(let e): problems.add("\(e)")
                    }
                }
            }
        }
        // Whichever allocate ran first named the allocation; every success agrees
        // with it, and only a request naming another id may conflict.
        let names = Set(ids.all)
        #expect(names.count == 1, "\(names)")
        let allocation = try #require(names.first)
        if allocation == "the-alloc" { #expect(allocateConflicts.load == 0) }
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    if case .failure(let e) = await attempt({ try await engine.approve(allocation: allocation) }) { problems.add("\(e)") }
                }
            }
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        let position = try await engine.position(deal: winner, investor: "inv")
        #expect(position.units == units(150))
        #expect(position.costBasis.description == "487.5")
        await checkConservation(engine)
    }

    /// Deal ids and lot ids are unique engine-wide: racing creations, one winner each.
    @Test func racingCreationsHaveOneWinner() async throws {
        _ = Stress.seed("racingCreationsHaveOneWinner")
        let engine = Engine(clock: ManualClock(millis: stressT0))
        let tasks = max(16, Stress.ops / 50)
        let problems = Problems()
        let dealWins = Counter(), dealExists = Counter()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    switch await attempt({ try await engine.createDeal(DealSpec(id: "same")) }) {
                    case .success: dealWins.add(1)
                    case .failure(let e) where e.code == .exists: dealExists.add(1)
                    case .failure(let e): problems.add("\(e)")
                    }
                }
            }
        }
        #expect(dealWins.load == 1 && dealExists.load == tasks - 1)
        for d in 0..<8 { _ = try await engine.createDeal(DealSpec(id: "d\(d)")) }
        let lotWins = SharedList<Int>(), lotExists = Counter()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<tasks {
                group.addTask {
                    let spec = LotSpec(id: "shared-lot", unitsTotal: units(10), unitCost: price("1"))
                    switch await attempt({ try await engine.addLot(deal: "d\(i % 8)", spec) }) {
                    case .success: lotWins.append(i % 8)
                    case .failure(let e) where e.code == .exists: lotExists.add(1)
                    case .failure(let e): problems.add("\(e)")
                    }
                }
            }
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        #expect(lotWins.all.count == 1 && lotExists.load == tasks - 1)
        var withLot = 0
        for d in 0..<8 { withLot += try await engine.inventory(deal: "d\(d)").lots.count }
        #expect(withLot == 1)
        #expect(engine.dealForLot("shared-lot")?.id == "d\(lotWins.all.first ?? -1)")
        await checkConservation(engine)
    }
}
