import Foundation
import Testing
@testable import AllocationEngine
@testable import Snapshot
@testable import WAL

// Helpers for the durability tests: a durable engine on a SimulatedFileIO with
// a ManualClock, log inspection, directory copies, and a seeded workload that
// drives one or two engines with the same operations.

/// `DURABILITY_OPS` (operations per property run, default 300) and
/// `DURABILITY_SEED` (decimal or 0x-hex; "random" for a fresh one).
enum Durability {
    static let ops: Int = {
        guard let s = ProcessInfo.processInfo.environment["DURABILITY_OPS"], let n = Int(s), n > 0 else { return 300 }
        return n
    }()

    static let baseSeed: UInt64 = {
        guard let s = ProcessInfo.processInfo.environment["DURABILITY_SEED"] else { return 0xD0_7AB1_E5EE_D001 }
        if s.hasPrefix("0x"), let v = UInt64(s.dropFirst(2), radix: 16) { return v }
        if let v = UInt64(s) { return v }
        if s == "random" { return UInt64.random(in: 1...UInt64.max) }
        return 0xD0_7AB1_E5EE_D001
    }()

    /// A per-test seed, printed so a failing run can be repeated with DURABILITY_SEED.
    static func seed(_ test: String, _ index: Int = 0) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in "\(test)#\(index)".utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        let seed = baseSeed ^ h
        print("[durability] \(test)#\(index): DURABILITY_SEED=0x\(String(baseSeed, radix: 16)) seed=0x\(String(seed, radix: 16)) ops=\(ops)")
        return seed
    }
}

extension SplitMix64 {
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[below(items.count)] }
}

/// A durable config for a simulated data directory: small segments so tests
/// rotate, no snapshot policy (tests snapshot explicitly).
func durConfig(_ dir: String = "/data", mode: DurabilityMode = .strict, segmentBytes: Int = 16 << 10,
               keepSnapshots: Int = 3, truncateCorruption: Bool = false, pruneLog: Bool = false) -> DurableConfig {
    var c = DurableConfig(dataDir: dir)
    c.pruneLog = pruneLog
    c.mode = mode
    c.segmentBytes = segmentBytes
    c.snapshotEveryRecords = 0
    c.snapshotEverySeconds = 0
    c.keepSnapshots = keepSnapshots
    c.truncateCorruption = truncateCorruption
    return c
}

/// Collected log lines of one open.
final class LogLines: Sendable {
    private let lines = Locked<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { (all: inout [String]) -> Void in all.append(line) } }
    func contains(_ s: String) -> Bool { all.contains { $0.contains(s) } }
}

func openDurable(_ io: SimulatedFileIO, _ clock: ManualClock, _ config: DurableConfig = durConfig(),
                 log: LogLines? = nil, secrets: any SecretSource = SystemSecrets()) async throws -> DurableEngine {
    if let log {
        return try await DurableEngine.open(config, io: io, clock: clock, secrets: secrets, log: { line in log.append(line) })
    }
    return try await DurableEngine.open(config, io: io, clock: clock, secrets: secrets)
}

extension DurableEngine {
    /// The LSN of the last appended record.
    var lastLSN: UInt64 { writer.stats.nextLSN - 1 }
}

/// One decoded log record.
struct DurRecord: Sendable {
    var lsn: UInt64
    var type: UInt8
    var time: Int64
    var segment: String
    var offset: Int
    var length: Int
    var change: Change
    var typeName: String { Change.typeNames[type] ?? "type\(type)" }
}

/// How many audit seals the log in `dir` holds (one per appended batch).
func sealCount(_ io: any FileIO, _ dir: String = "/data") throws -> Int {
    var n = 0
    _ = try LogReader.scan(directory: DataDirectory(dir).wal, io: io) { r in if r.type == AuditSeal.recordType { n += 1 } }
    return n
}

/// Every change record of the log in `dir` (which must be readable without damage); seals are left out.
func logRecords(_ io: any FileIO, _ dir: String = "/data") throws -> [DurRecord] {
    var out: [DurRecord] = []
    _ = try LogReader.scan(directory: DataDirectory(dir).wal, io: io) { r in
        if r.type == AuditSeal.recordType { return }  // the audit chain's seals are not changes
        let change = try ChangeCodec.decode(type: r.type, payload: r.payload)
        out.append(DurRecord(lsn: r.lsn, type: r.type, time: r.time, segment: r.segment, offset: r.offset,
                             length: LogFormat.recordOverheadBytes + r.payload.count, change: change))
    }
    return out
}

func recoverDigest(_ io: any FileIO, _ dir: String = "/data", options: RecoveryOptions = RecoveryOptions()) throws -> (String, RecoveryReport) {
    let result = try Recovery.recover(DataDirectory(dir), io: io, options: options, now: monotonicSeconds)
    let problems = result.states.flatMap { $0.invariantViolations() }
    #expect(problems.isEmpty, "recovered state breaks invariants: \(problems.prefix(3))")
    return (Engine.digest(of: result.states, directory: result.directory), result.report)
}

/// Copies every file under `from` in `src` to `to` in `dst` (durably), skipping
/// paths for which `skip` is true.
func copyTree(_ src: SimulatedFileIO, _ from: String, to dst: SimulatedFileIO, _ to: String,
              skip: (String) -> Bool = { _ in false }) throws {
    try dst.createDirectory(to)
    for name in try src.listDirectory(from) {
        let path = FilePath.join(from, name)
        let target = FilePath.join(to, name)
        if skip(path) { continue }
        if let bytes = src.contents(path) {
            let fd = try dst.create(target)
            try dst.pwrite(fd, bytes, offset: 0)
            try dst.fsync(fd)
            try dst.close(fd)
        } else {
            try copyTree(src, path, to: dst, target, skip: skip)
        }
    }
    try dst.fsyncDirectory(to)
}

/// A short text for a reply, equal for equal outcomes on twin engines.
func outcome<T>(_ body: () async throws -> T) async -> String {
    do {
        let v = try await body()
        return "ok \(v)"
    } catch let e as EngineError {
        return "err \(e.code.rawValue)"
    } catch {
        return "other \(error)"
    }
}

/// A seeded mix of every kind of change, driven against one or more engines
/// (each with its own clock) so their replies and states can be compared.
struct DurWorkload {
    var rng: SplitMix64
    var deals: [String] = []
    var lots: [String: [String]] = [:]
    var holds: [String] = []
    var allocations: [String] = []
    var counter = 0
    var snapshots = 0

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func fresh(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)\(counter)"
    }

    /// A random amount of units with up to two decimals.
    mutating func amount(_ max: Int) -> Units {
        let whole = 1 + rng.below(max)
        if rng.chance(20) { return Units(raw: Int128(whole) * 100_000_000 + Int128(rng.below(100)) * 1_000_000) }
        return Units.whole(whole)
    }

    /// Runs one random operation on every engine; returns each engine's outcome.
    /// `snapshotOn` lists the indices of engines that take snapshots when the
    /// workload asks for one.
    mutating func step(_ engines: [DurableEngine], _ clocks: [ManualClock], snapshotOn: Set<Int> = [0]) async -> [String] {
        func all(_ body: (Engine) async -> String) async -> [String] {
            var out: [String] = []
            for d in engines { out.append(await body(d.engine)) }
            return out
        }
        let roll = rng.below(100)
        if deals.isEmpty || roll < 4 || (roll < 8 && deals.count < 4) {
            let id = fresh("d")
            let status: DealStatus = rng.chance(10) ? .draft : .open
            let priceValue: Price? = rng.chance(50) ? Price.whole(5 + rng.below(20)) : nil
            let r = await all { e in await outcome { try await e.createDeal(DealSpec(id: id, offerUnitPrice: priceValue, status: status)).id } }
            if r[0].hasPrefix("ok") { deals.append(id); lots[id] = [] }
            return r
        }
        let deal = rng.pick(deals)!
        switch roll {
        case ..<16:
            let lot = fresh("L")
            let spec = LotSpec(id: lot, unitsTotal: amount(400), unitCost: Price.whole(1 + rng.below(9)),
                               acquiredAt: rng.chance(30) ? CivilDate(days: Int32(19_000 + rng.below(1000))) : nil)
            let r = await all { e in await outcome { try await e.addLot(deal: deal, spec) } }
            if r[0].hasPrefix("ok") { lots[deal, default: []].append(lot) }
            return r
        case ..<52:
            var id: String? = nil
            if rng.chance(40) { id = rng.chance(15) ? (rng.pick(holds) ?? fresh("h-")) : fresh("h-") }
            let ttl: Int64? = rng.chance(30) ? nil : Int64(60 + rng.below(3600)) * 1000
            let req = HoldRequest(investor: "inv\(rng.below(6))", units: amount(60), price: Price.whole(5 + rng.below(10)),
                                  ttlMillis: ttl, id: id, partial: rng.chance(20))
            var ids: [String] = []
            var r: [String] = []
            for d in engines {
                do {
                    let receipt = try await d.engine.hold(deal: deal, req)
                    ids.append(receipt.id)
                    r.append("ok \(receipt)")
                } catch {
                    r.append("err \(error.code.rawValue)")
                }
            }
            if let first = ids.first, !holds.contains(first) { holds.append(first) }
            return r
        case ..<60:
            guard let h = rng.pick(holds) else { return [] }
            return await all { e in await outcome { try await e.release(hold: h) } }
        case ..<70:
            guard let h = rng.pick(holds) else { return [] }
            let id: String? = rng.chance(50) ? fresh("a-") : nil
            var r: [String] = []
            var made: String?
            for d in engines {
                do {
                    let a = try await d.engine.allocate(hold: h, id: id)
                    made = made ?? a
                    r.append("ok \(a)")
                } catch {
                    r.append("err \(error.code.rawValue)")
                }
            }
            if let made, !allocations.contains(made) { allocations.append(made) }
            return r
        case ..<78:
            guard let a = rng.pick(allocations) else { return [] }
            let which = rng.below(10)
            return await all { e in
                await outcome {
                    if which < 6 { try await e.approve(allocation: a) } else if which < 8 { try await e.reject(allocation: a) } else {
                        try await e.settle(allocation: a)
                    }
                }
            }
        case ..<79:
            let target: DealStatus = [.open, .open, .allocationPending, .allocationPending, .closed, .cancelled][rng.below(6)]
            return await all { e in await outcome { try await e.setStatus(deal: deal, target) } }
        case ..<83:
            guard let lot = rng.pick(lots[deal] ?? []) else { return [] }
            let total = amount(500)
            return await all { e in await outcome { try await e.resizeLot(deal: deal, lot: lot, unitsTotal: total) } }
        case ..<94:
            let delta = Int64(1 + rng.below(20 * 60)) * 1000
            for c in clocks { c.advance(millis: delta) }
            return await all { e in "swept \(await e.sweepExpired())" }
        case ..<97:
            let user = fresh("user")
            let investors = ["inv\(rng.below(6))"]
            return await all { e in await outcome { _ = try await e.createToken(user: user, role: "investor", investors: investors); return "token" } }
        default:
            snapshots += 1
            var r: [String] = []
            for (i, d) in engines.enumerated() {
                if snapshotOn.contains(i) {
                    r.append(await outcome { _ = try await d.snapshot(); return "snapshot" })
                } else {
                    r.append("ok snapshot")
                }
            }
            return r.map { $0.hasPrefix("ok") ? "ok snapshot" : $0 }
        }
    }
}

/// A small fixed state touching every kind of record, on one engine.
/// Returns the ids of its acknowledged holds.
@discardableResult
func buildFixture(_ d: DurableEngine, _ clock: ManualClock, prefix: String = "") async throws -> [String] {
    let e = d.engine
    try await e.createDeal(DealSpec(id: "\(prefix)d1", offerUnitPrice: Price.whole(10)))
    try await e.createDeal(DealSpec(id: "\(prefix)d2", status: .draft))
    try await e.addLot(deal: "\(prefix)d1", LotSpec(id: "\(prefix)L1", unitsTotal: Units.whole(100), unitCost: Price.whole(5),
                                                    acquiredAt: CivilDate(days: 19_500)))
    try await e.addLot(deal: "\(prefix)d1", LotSpec(id: "\(prefix)L2", unitsTotal: Units.whole(50), unitCost: Price.whole(6)))
    try await e.addLot(deal: "\(prefix)d2", LotSpec(id: "\(prefix)L3", unitsTotal: Units.whole(10), unitCost: Price.whole(1)))
    try await e.setStatus(deal: "\(prefix)d2", .open)
    var ids: [String] = []
    let h1 = try await e.hold(deal: "\(prefix)d1", HoldRequest(investor: "inv1", units: Units.whole(30), price: Price.whole(10), id: "\(prefix)h1"))
    ids.append(h1.id)
    let h2 = try await e.hold(deal: "\(prefix)d1", HoldRequest(investor: "inv2", units: Units.whole(90), price: Price.whole(11)))
    ids.append(h2.id)
    let h3 = try await e.hold(deal: "\(prefix)d1", HoldRequest(investor: "inv3", units: Units.whole(5), price: Price.whole(10), ttlMillis: 60_000))
    ids.append(h3.id)
    let h4 = try await e.hold(deal: "\(prefix)d2", HoldRequest(investor: "inv1", units: Units.whole(20), price: Price.whole(2), partial: true))
    ids.append(h4.id)
    let a1 = try await e.allocate(hold: h1.id, id: "\(prefix)a1")
    try await e.approve(allocation: a1)
    let a2 = try await e.allocate(hold: h4.id)
    try await e.reject(allocation: a2)
    try await e.settle(allocation: a1)
    try await e.release(hold: h2.id)
    clock.advance(millis: 2 * 60_000)
    #expect(await e.sweepExpired() == 1)  // h3
    try await e.resizeLot(deal: "\(prefix)d1", lot: "\(prefix)L2", unitsTotal: Units.whole(70))
    _ = try await e.createToken(user: "\(prefix)alice", role: "investor", investors: ["inv1"])
    return ids
}
