import Foundation
import WAL
import Synchronization
import Testing
@testable import AllocationEngine

/// Sizes and seed of the stress runs, from the environment:
/// `STRESS_OPS` (operations per run, default 2000: a few seconds for the whole
/// target), `STRESS_SEED` (decimal or 0x-hex; default fixed so CI is repeatable).
enum Stress {
    static let ops: Int = {
        guard let s = ProcessInfo.processInfo.environment["STRESS_OPS"], let n = Int(s), n > 0 else { return 2_000 }
        return n
    }()

    static let baseSeed: UInt64 = {
        guard let s = ProcessInfo.processInfo.environment["STRESS_SEED"] else { return 0x5EED_2C86_6E25 }
        if s.hasPrefix("0x"), let v = UInt64(s.dropFirst(2), radix: 16) { return v }
        if let v = UInt64(s) { return v }
        if s == "random" { return UInt64.random(in: 1...UInt64.max) }
        return 0x5EED_2C86_6E25
    }()

    /// A per-test seed, printed so a failing run can be repeated with STRESS_SEED.
    static func seed(_ test: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in test.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        let seed = baseSeed ^ h
        print("[stress] \(test): STRESS_SEED=0x\(String(baseSeed, radix: 16)) seed=0x\(String(seed, radix: 16)) ops=\(ops)")
        return seed
    }
}


/// 2026-01-01T00:00:00Z.
let stressT0: Int64 = 1_767_225_600_000

func units(_ n: Int) -> Units { Units.whole(n) }
func units(_ s: String) -> Units { try! Units.parse(s) }
func price(_ s: String) -> Price { try! Price.parse(s) }

/// A thread-safe list shared by the tasks of one run.
final class SharedList<T: Sendable>: Sendable {
    private let items = Locked<[T]>([])
    func append(_ x: T) { items.withLock { $0.append(x) } }
    func random(_ rng: inout SplitMix64) -> T? {
        items.withLock { $0.isEmpty ? nil : $0[Int(rng.next() % UInt64($0.count))] }
    }
    var all: [T] { items.withLock { $0 } }
}

/// Failures seen inside tasks, reported once at the end (with the seed).
final class Problems: Sendable {
    private let list = Locked<[String]>([])
    func add(_ s: String) { list.withLock { if $0.count < 50 { $0.append(s) } } }
    var all: [String] { list.withLock { $0 } }
}

/// Creates an open deal with `lotSizes` whole-unit lots, oldest first.
func makeDeal(_ engine: Engine, _ id: String, lotSizes: [Int], fractional: Bool = false) async throws {
    _ = try await engine.createDeal(DealSpec(id: id))
    for (i, size) in lotSizes.enumerated() {
        let total = fractional ? Units(raw: Int128(size) * 100_000_000 + 12_345) : units(size)
        try await engine.addLot(deal: id, LotSpec(id: "\(id)-L\(i)", unitsTotal: total, unitCost: price("1"),
                                                  acquiredAt: CivilDate(days: Int32(18_000 + i))))
    }
}

/// The checks every run ends with: the engine's own invariant check, then the
/// same sums recomputed here from the rows (no unit sold twice, nothing lost).
func checkConservation(_ engine: Engine, sourceLocation: SourceLocation = #_sourceLocation) async {
    let problems = await conservationProblems(engine)
    #expect(problems.isEmpty, "\(problems.prefix(10))", sourceLocation: sourceLocation)
}

/// What `checkConservation` checks, as a list of what is wrong (empty when
/// all holds), for callers that report with their own context (a seed).
func conservationProblems(_ engine: Engine) async -> [String] {
    var problems = await engine.invariantViolations().map { "invariant violation: \($0)" }
    func check(_ ok: Bool, _ message: @autoclosure () -> String) {
        if !ok && problems.count < 20 { problems.append(message()) }
    }
    for actor in engine.allDeals {
        let state = await actor.read { $0 }
        var held = [Int128](repeating: 0, count: state.lots.count)
        var allocated = [Int128](repeating: 0, count: state.lots.count)
        var pending = 0
        // Held units from the pending holds (always in memory), allocated
        // units from the live allocations' own lot splits.
        state.holds.forEachInMemory { _, h in
            if h.status == .pending {
                pending += 1
                for part in h.parts { held[Int(part.lot)] += part.units.raw }
            }
            if h.status == .approved {
                let a = state.allocations[Int(h.allocation)]
                check(a.units == h.filled && a.holdID == h.id, "deal \(state.info.id) allocation \(a.id) differs from its hold")
            }
        }
        for a in state.allocations.inMemoryRows() where a.status != .rejected {
            a.forEachPart { lot, u in allocated[Int(lot)] += u.raw }
        }
        var totalSupply: Int128 = 0, totalAllocated: Int128 = 0
        for (i, lot) in state.lots.enumerated() {
            totalSupply += lot.unitsTotal.raw
            totalAllocated += allocated[i]
            check(held[i] + allocated[i] == lot.unitsTotal.raw - lot.unitsRemaining.raw,
                  "deal \(state.info.id) lot \(lot.id): held \(held[i]) + allocated \(allocated[i]) != total - remaining")
            check(lot.unitsRemaining.raw >= 0 && allocated[i] <= lot.unitsTotal.raw, "deal \(state.info.id) lot \(lot.id) negative or oversold")
            check(lot.unitsHeld.raw == held[i] && lot.unitsAllocated.raw == allocated[i], "deal \(state.info.id) lot \(lot.id) counters differ from the rows")
        }
        check(totalAllocated <= totalSupply, "deal \(state.info.id) allocated more than its supply")
        check(pending == state.pendingHolds, "deal \(state.info.id): \(pending) pending holds, counter \(state.pendingHolds)")
        // Positions are exactly the approved and settled allocations.
        var posUnits = [Int128](repeating: 0, count: state.investors.count)
        var posCost = [Int128](repeating: 0, count: state.investors.count)
        for a in state.allocations.inMemoryRows() where a.status == .approved || a.status == .settled {
            posUnits[Int(a.investor)] += a.units.raw
            posCost[Int(a.investor)] += a.units.raw * Int128(a.unitPrice.raw)
        }
        for (i, p) in state.positions.enumerated() {
            check(p.units.raw == posUnits[i] && p.costBasis.raw == posCost[i],
                  "deal \(state.info.id) investor \(state.investors[i]) position differs from its allocations")
        }
    }
    return problems
}

/// Runs one engine call and returns its outcome as a value.
func attempt<T>(_ body: () async throws -> T) async -> Result<T, EngineError> {
    do {
        return .success(try await body())
    } catch let error as EngineError {
        return .failure(error)
    } catch {
        return .failure(EngineError(.invalid, "not an engine error: \(error)"))
    }
}

/// An atomic integer in a class, so task closures can share it.
final class Counter: Sendable {
    private let value: Atomic<Int>
    init(_ v: Int = 0) { value = Atomic(v) }
    func add(_ n: Int) { value.add(n, ordering: .relaxed) }
    func min(_ n: Int) { value.min(n, ordering: .relaxed) }
    var load: Int { value.load(ordering: .relaxed) }
}

/// A one-way flag shared by tasks.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// A mutex-protected value in a class, so task closures can share it.
final class Shared<T: Sendable>: Sendable {
    private let mutex: Locked<T>
    init(_ v: T) { mutex = Locked(v) }
    func withLock<R: Sendable>(_ body: (inout T) -> R) -> R { mutex.withLock { body(&$0) } }
}
