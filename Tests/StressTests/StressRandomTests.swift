import WAL
import Synchronization
import Testing
@testable import AllocationEngine

/// Random concurrent workloads: hold / retry / release / allocate / approve /
/// reject / settle / resize / sweep from many tasks while another task moves the
/// manual clock. Every reply must be one the state machine allows, every success
/// must still show in the final state, and the units must add up.
@Suite("Stress: random concurrent workloads")
struct StressRandomTests {
    struct PlacedHold: Sendable {
        var deal: String
        var request: HoldRequest
        var receipt: HoldReceipt
    }

    /// Everything the tasks saw succeed (or expire), checked against the final state.
    final class Ledger: Sendable {
        let holds = SharedList<PlacedHold>()
        let allocations = SharedList<String>()
        let released = SharedList<String>()
        let expired = SharedList<String>()
        let allocated = SharedList<[String]>()  // [hold, allocation]
        let approved = SharedList<String>()
        let rejected = SharedList<String>()
        let settled = SharedList<String>()
        let problems = Problems()
        let opsDone = Counter()
        let statusChanges = SharedList<[String]>()  // [deal, status]
    }

    struct Options: Sendable {
        var deals: Int
        var workers = 8
        /// Move deals through allocation_pending to closed, or cancel them, mid-run.
        var changeStatus = false
    }

    static func run(_ name: String, _ options: Options) async throws {
        let seed = Stress.seed(name)
        var rng = SplitMix64(seed: seed)
        let clock = ManualClock(millis: stressT0)
        let engine = Engine(clock: clock)
        let opsPerWorker = max(50, Stress.ops / options.workers)
        // Scarce supply: about as many units as one worker's demand per deal.
        for d in 0..<options.deals {
            let lots = (0..<(2 + rng.below(4))).map { _ in 1 + rng.below(max(4, Stress.ops / options.deals / 3)) }
            try await makeDeal(engine, "d\(d)", lotSizes: lots, fractional: d % 2 == 1)
        }
        let ledger = Ledger()
        let done = Flag()
        let workerSeeds = (0..<options.workers).map { _ in rng.next() }
        let clockSeed = rng.next()
        await withTaskGroup(of: Void.self) { group in
            // The clock: moves time forward in small random steps and sweeps now and then.
            group.addTask {
                var r = SplitMix64(seed: clockSeed)
                while !done.isSet {
                    clock.advance(millis: Int64(r.below(400)))
                    if r.chance(30) { await engine.sweepExpired() }
                    await Task.yield()
                }
            }
            if options.changeStatus {
                let statusSeed = rng.next()
                group.addTask {
                    var r = SplitMix64(seed: statusSeed)
                    for d in 0..<options.deals {
                        // Wait until the run is some way in, differently per deal.
                        let at = r.below(opsPerWorker * options.workers)
                        while ledger.opsDone.load < at && !done.isSet { await Task.yield() }
                        let path: [DealStatus] = r.chance(50) ? [.cancelled] : r.chance(50) ? [.allocationPending, .closed]
                            : [.allocationPending, .cancelled]
                        for s in path {
                            switch await attempt({ try await engine.setStatus(deal: "d\(d)", s) }) {
                            case .success: ledger.statusChanges.append(["d\(d)", s.name])
                            case .failure(let e): ledger.problems.add("status d\(d) -> \(s.name): \(e)")
                            }
                            await Task.yield()
                        }
                    }
                }
            }
            await withTaskGroup(of: Void.self) { workers in
                for w in 0..<options.workers {
                    let s = workerSeeds[w]
                    workers.addTask {
                        await worker(w, seed: s, ops: opsPerWorker, engine: engine, deals: options.deals,
                                     statusChanges: options.changeStatus, ledger: ledger)
                    }
                }
            }
            done.set()
        }
        try await verify(engine, clock: clock, ledger: ledger, options: options, seed: seed)
    }

    static func worker(_ w: Int, seed: UInt64, ops: Int, engine: Engine, deals: Int, statusChanges: Bool, ledger: Ledger) async {
        var r = SplitMix64(seed: seed)
        let problems = ledger.problems
        // Outcomes a request may have besides success; a deal whose status moves adds CLOSED.
        func allowed(_ e: EngineError, _ codes: Set<EngineError.Code>, _ what: String) -> Bool {
            if codes.contains(e.code) || (statusChanges && e.code == .closed) { return true }
            problems.add("worker \(w) \(what): unexpected \(e)")
            return false
        }
        for k in 0..<ops {
            defer { ledger.opsDone.add(1) }
            let roll = r.below(100)
            switch roll {
            case 0..<32:  // hold
                let d = "d\(r.below(deals))"
                let size = r.chance(70) ? units(1 + r.below(8)) : Units(raw: Int128(1 + r.below(900_000_000)))
                let request = HoldRequest(investor: "inv\(r.below(10))", units: size, price: Price(raw: Int64(1 + r.below(50_000_000))),
                                          ttlMillis: Int64(1_000 + r.below(30_000)), id: r.chance(50) ? "w\(w)-\(k)" : nil,
                                          partial: r.chance(20))
                switch await attempt({ try await engine.hold(deal: d, request) }) {
                case .success(let receipt):
                    let sum = receipt.parts.reduce(Units.zero) { $0 + $1.units }
                    if sum != receipt.units || receipt.units.raw <= 0 || receipt.units > size
                        || (!request.partial && receipt.units != size) {
                        problems.add("hold \(receipt.id): bad receipt \(receipt) for \(size)")
                    }
                    ledger.holds.append(PlacedHold(deal: d, request: request, receipt: receipt))
                case .failure(let e): _ = allowed(e, [.insufficient], "hold")
                }
            case 32..<37:  // retry a hold with its caller id: the first receipt, or CONFLICT in another deal
                guard let placed = ledger.holds.random(&r), placed.request.id != nil else { continue }
                let other = "d\(r.below(deals))"
                switch await attempt({ try await engine.hold(deal: other, placed.request) }) {
                case .success(let receipt):
                    if other != placed.deal || receipt != placed.receipt {
                        problems.add("retry of \(placed.receipt.id) in \(other): \(receipt) vs first \(placed.receipt)")
                    }
                case .failure(let e):
                    if other == placed.deal { problems.add("retry of \(placed.receipt.id) in its own deal failed: \(e)") }
                    else { _ = allowed(e, [.conflict], "cross-deal retry") }
                }
            case 37..<47:  // release
                guard let placed = ledger.holds.random(&r) else { continue }
                switch await attempt({ try await engine.release(hold: placed.receipt.id) }) {
                case .success: ledger.released.append(placed.receipt.id)
                case .failure(let e):
                    if e.code == .expired { ledger.expired.append(placed.receipt.id) }
                    _ = allowed(e, [.expired, .conflict], "release")
                }
            case 47..<67:  // allocate
                guard let placed = ledger.holds.random(&r) else { continue }
                let given: String? = r.chance(30) ? "al-\(placed.receipt.id)" : nil
                switch await attempt({ try await engine.allocate(hold: placed.receipt.id, id: given) }) {
                case .success(let a):
                    ledger.allocations.append(a)
                    ledger.allocated.append([placed.receipt.id, a])
                case .failure(let e):
                    if e.code == .expired { ledger.expired.append(placed.receipt.id) }
                    _ = allowed(e, [.expired, .conflict], "allocate")
                }
            case 67..<79:  // approve
                guard let a = ledger.allocations.random(&r) else { continue }
                switch await attempt({ try await engine.approve(allocation: a) }) {
                case .success: ledger.approved.append(a)
                case .failure(let e): _ = allowed(e, [.conflict], "approve")
                }
            case 79..<86:  // reject
                guard let a = ledger.allocations.random(&r) else { continue }
                switch await attempt({ try await engine.reject(allocation: a) }) {
                case .success: ledger.rejected.append(a)
                case .failure(let e): _ = allowed(e, [.conflict], "reject")
                }
            case 86..<91:  // settle
                guard let a = ledger.allocations.random(&r) else { continue }
                switch await attempt({ try await engine.settle(allocation: a) }) {
                case .success: ledger.settled.append(a)
                case .failure(let e): _ = allowed(e, [.conflict], "settle")
                }
            case 91..<94:  // resize a lot: grow, or try to shrink (CONFLICT below held + allocated)
                let d = "d\(r.below(deals))"
                guard case .success(let inv) = await attempt({ try await engine.inventory(deal: d) }), !inv.lots.isEmpty else { continue }
                let lot = inv.lots[r.below(inv.lots.count)]
                let target = r.chance(50) ? lot.unitsTotal + units(1 + r.below(5)) : Units(raw: lot.unitsTotal.raw / 2 + 1)
                if case .failure(let e) = await attempt({ try await engine.resizeLot(deal: d, lot: lot.id, unitsTotal: target) }) {
                    _ = allowed(e, [.conflict], "resize")
                }
            case 94..<97:  // sweep from a worker too
                await engine.sweepExpired()
            default:  // reads
                let d = "d\(r.below(deals))"
                if case .failure(let e) = await attempt({ try await engine.inventory(deal: d) }) { problems.add("inventory: \(e)") }
                if let placed = ledger.holds.random(&r), case .failure(let e) = await attempt({ try await engine.holdFields(placed.receipt.id) }) {
                    problems.add("hold fields: \(e)")
                }
            }
        }
    }

    static func verify(_ engine: Engine, clock: ManualClock, ledger: Ledger, options: Options, seed: UInt64) async throws {
        let seedText = "seed 0x\(String(seed, radix: 16))"
        print("[stress] \(seedText): \(ledger.holds.all.count) holds, \(ledger.allocations.all.count) allocations, "
              + "\(ledger.released.all.count) released, \(ledger.expired.all.count) seen expired, \(Set(ledger.approved.all).count) approved, "
              + "\(Set(ledger.rejected.all).count) rejected, \(Set(ledger.settled.all).count) settled, status changes \(ledger.statusChanges.all.count)")
        #expect(ledger.problems.all.isEmpty, "\(seedText): \(ledger.problems.all)")
        await checkConservation(engine)

        // Every success is still visible.
        let finalStatus = Locked<[String: String]>([:])
        func holdStatus(_ id: String) async -> String? {
            if let s = finalStatus.withLock({ $0["h:" + id] }) { return s }
            let s = try? await engine.holdFields(id)[field: "status"]
            finalStatus.withLock { $0["h:" + id] = s }
            return s
        }
        func allocationStatus(_ id: String) async -> String? { try? await engine.allocationFields(id)[field: "status"] }
        for h in ledger.released.all { #expect(await holdStatus(h) == "cancelled", "\(seedText): released \(h)") }
        for h in ledger.expired.all { #expect(await holdStatus(h) == "expired", "\(seedText): expired \(h)") }
        var allocationOf: [String: String] = [:]
        for pair in ledger.allocated.all {
            #expect(await holdStatus(pair[0]) == "approved", "\(seedText): allocated \(pair[0])")
            #expect(try await engine.holdFields(pair[0])[field: "allocation"] == pair[1])
            if let earlier = allocationOf[pair[0]] { #expect(earlier == pair[1], "\(seedText): hold \(pair[0]) allocated twice") }
            allocationOf[pair[0]] = pair[1]
        }
        #expect(Set(allocationOf.values).count == allocationOf.count, "\(seedText): one allocation id for two holds")
        let approved = Set(ledger.approved.all), rejected = Set(ledger.rejected.all), settled = Set(ledger.settled.all)
        #expect(approved.isDisjoint(with: rejected), "\(seedText): approved and rejected: \(approved.intersection(rejected))")
        for a in approved { #expect(["approved", "settled"].contains(await allocationStatus(a)), "\(seedText): approved \(a)") }
        for a in rejected { #expect(await allocationStatus(a) == "rejected", "\(seedText): rejected \(a)") }
        for a in settled { #expect(await allocationStatus(a) == "settled", "\(seedText): settled \(a)") }
        // A released hold never also expired or allocated.
        let released = Set(ledger.released.all)
        #expect(released.isDisjoint(with: Set(ledger.expired.all)))
        #expect(released.isDisjoint(with: Set(allocationOf.keys)))

        // Deals whose status moved: no pending holds left; cancelled ones have nothing under review.
        var finalDealStatus: [String: String] = [:]
        for change in ledger.statusChanges.all { finalDealStatus[change[0]] = change[1] }
        for actor in engine.allDeals {
            let state = await actor.read { $0 }
            guard let s = finalDealStatus[state.info.id] else { continue }
            #expect(state.info.status.name == s)
            if s == "closed" || s == "cancelled" { #expect(state.pendingHolds == 0 && state.unitsHeld == .zero) }
            if s == "cancelled" { #expect(!state.allocations.inMemoryRows().contains { $0.status == .pendingReview }) }
        }

        // Let every hold run out: all units come back except the live allocations.
        clock.advance(millis: EngineLimits.maxHoldTTLMillis + 1)
        await engine.sweepExpired()
        for actor in engine.allDeals {
            let state = await actor.read { $0 }
            #expect(state.pendingHolds == 0 && state.unitsHeld == .zero, "\(seedText): deal \(state.info.id) still holds units")
            let live = state.allocations.inMemoryRows().filter { $0.status != .rejected }.reduce(Int128(0)) { $0 + $1.units.raw }
            #expect(state.unitsAllocated.raw == live)
            #expect(state.unitsRemaining.raw == state.unitsTotal.raw - live)
        }
        await checkConservation(engine)
    }

    @Test func randomMixOneDeal() async throws {
        try await Self.run("randomMixOneDeal", Options(deals: 1))
    }

    @Test func randomMixManyDeals() async throws {
        try await Self.run("randomMixManyDeals", Options(deals: 12))
    }

    @Test func randomMixWithStatusChanges() async throws {
        try await Self.run("randomMixWithStatusChanges", Options(deals: 6, changeStatus: true))
    }

    /// Short holds racing their own expiry: each ends allocated or expired, never both.
    @Test func allocateRacesExpiry() async throws {
        var rng = SplitMix64(seed: Stress.seed("allocateRacesExpiry"))
        let clock = ManualClock(millis: stressT0)
        let engine = Engine(clock: clock)
        let count = max(40, Stress.ops / 4)
        try await makeDeal(engine, "d", lotSizes: [count])
        var holds: [String] = []
        for i in 0..<count {
            let ttl = Int64(1_000 + rng.below(4_000))
            holds.append(try await engine.hold(deal: "d", HoldRequest(investor: "i\(i % 5)", units: units(1), price: price("1"), ttlMillis: ttl)).id)
        }
        let allocated = SharedList<String>()
        let expired = SharedList<String>()
        let problems = Problems()
        let done = Flag()
        let order = holds.shuffled(using: &rng)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !done.isSet && clock.nowMillis() < stressT0 + 6_000 {
                    clock.advance(millis: 25)
                    await engine.sweepExpired()
                    await Task.yield()
                }
            }
            await withTaskGroup(of: Void.self) { workers in
                for chunk in 0..<4 {
                    workers.addTask {
                        for (i, h) in order.enumerated() where i % 4 == chunk {
                            switch await attempt({ try await engine.allocate(hold: h) }) {
                            case .success: allocated.append(h)
                            case .failure(let e) where e.code == .expired: expired.append(h)
                            case .failure(let e): problems.add("\(h): \(e)")
                            }
                            await Task.yield()
                        }
                    }
                }
            }
            done.set()
        }
        #expect(problems.all.isEmpty, "\(problems.all)")
        #expect(Set(allocated.all).isDisjoint(with: Set(expired.all)))
        #expect(allocated.all.count + expired.all.count == count)
        clock.advance(millis: 10_000)
        await engine.sweepExpired()
        for h in allocated.all { #expect(try await engine.holdStatus(h) == "approved") }
        for h in expired.all { #expect(try await engine.holdStatus(h) == "expired") }
        let inv = try await engine.inventory(deal: "d")
        #expect(inv.unitsAllocated == units(allocated.all.count))
        #expect(inv.unitsRemaining == units(count - allocated.all.count))
        #expect(inv.holdsPending == 0)
        await checkConservation(engine)
    }
}

extension Engine {
    func holdStatus(_ id: String) async throws -> String? { try await holdFields(id)[field: "status"] }
}
