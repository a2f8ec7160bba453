import Foundation
import Synchronization
import TestSupport
import WAL
@testable import AllocationEngine
@testable import EngineServer

// The power-loss simulation (FoundationDB's simulation, SQLite's crash layer):
// the whole engine (deal actors, the log writer, snapshots, recovery, the
// server's request handler with its read barrier) runs in this process on
// `SimulatedFileIO` and a `ManualClock`, driven from one seed. The power goes
// out at a random file operation (or mid-round), everything not yet synced is
// dropped, kept in part or torn, and the engine recovers, sometimes crashing
// again during recovery. After every crash the durable state is checked:
//
//   1. acknowledged changes are never lost: the recovered log reaches every
//      LSN the old engine acknowledged, and every acknowledged hold,
//      allocation and approval (and every hold a reply showed) is there;
//   2. unacknowledged ones are whole or absent: the recovered state is a
//      state the live engine had (its digest after a batch, or after the
//      batch's changes without its seal), or, for a batch of several
//      changes, a replay of a prefix of them;
//   3. the inventory invariant holds, recomputed from the rows;
//   4. the recovered state (newest snapshot + log) equals a replay of the
//      durable log alone from its first record.
//
// Determinism: the driver is one task; the log writer is paused while a
// round's batches run (`LogWriter.pauseWriting`), so the round's records
// form exactly one group commit when it resumes; snapshots, sweeps and
// engine-wide commands run as batches whose end (or whose wait for the disk)
// the driver awaits before the next. The file operations, and so the crash
// points, follow from the seed.

/// `POWERLOSS_SEEDS` (default 20: the CI portion), `POWERLOSS_SEED` (the
/// first seed, default 1; a failure prints its seed: rerun it with
/// `POWERLOSS_SEED=<seed> POWERLOSS_SEEDS=1`), `POWERLOSS_CYCLES` (power
/// losses per seed, default 2).
enum PowerLossSettings {
    static func number(_ name: String) -> UInt64? {
        guard let s = ProcessInfo.processInfo.environment[name] else { return nil }
        if s.hasPrefix("0x") { return UInt64(s.dropFirst(2), radix: 16) }
        return UInt64(s)
    }
    static let seeds = Int(number("POWERLOSS_SEEDS") ?? 20)
    /// `POWERLOSS_FIRST_SEED` is the same as `POWERLOSS_SEED` (the name a
    /// shard of a long run reads better with: seeds are independent, so
    /// 10,000 seeds are any split into ranges `[first, first + seeds)`).
    static let firstSeed = number("POWERLOSS_FIRST_SEED") ?? number("POWERLOSS_SEED") ?? 1
    static let cycles = max(1, Int(number("POWERLOSS_CYCLES") ?? 2))
    /// `POWERLOSS_TRACE=1`: print every batch, crash and recovery of the run (for one seed).
    static let trace = ProcessInfo.processInfo.environment["POWERLOSS_TRACE"] != nil
}

/// One batch's replies, filled in by the handler's completion.
final class ReplyBox: Sendable {
    private let bytes = Locked<[UInt8]?>(nil)
    func set(_ b: [UInt8]) { bytes.withLock { $0 = b } }
    var value: [UInt8]? { bytes.withLock { $0 } }
}

/// What one seed did, summed over a campaign.
struct PowerLossTally: Sendable {
    var seeds = 0
    var powerLosses = 0
    var lossesDuringRecovery = 0
    var truncatingOpens = 0
    var batches = 0
    var commands = 0
    var acknowledged = 0
    var snapshots = 0
    var segments = 0

    mutating func add(_ o: PowerLossTally) {
        seeds += o.seeds; powerLosses += o.powerLosses; lossesDuringRecovery += o.lossesDuringRecovery
        truncatingOpens += o.truncatingOpens; batches += o.batches; commands += o.commands
        acknowledged += o.acknowledged; snapshots += o.snapshots; segments += o.segments
    }
}

/// One seed of the campaign.
final class PowerLossRun {
    /// The live state after a batch ran in memory (its records appended, perhaps not durable).
    struct Boundary {
        var lsn: UInt64
        var digest: String
        var label: String
        /// More than one change: a crash may keep a prefix of them.
        var multiple: Bool
    }

    let seed: UInt64
    var rng: SplitMix64
    let io: SimulatedFileIO
    let clock = ManualClock()
    let secrets: SeededSecrets
    let dir = "/data"
    /// Skip one fdatasync (and cut the power before the next): proves the checks catch it.
    let skipOneFdatasync: Bool
    var durable: DurableEngine?
    var handler: EngineRequestHandler?
    var sessions: [Session] = []
    var workload: PowerLossWorkload
    var ackedLSN: UInt64 = 0
    var boundaries: [Boundary] = []
    /// Recovery itself appended records before a crash cut it short.
    var recoveryWrote = false
    /// Crash modes armed or used since the last open (`randomSubset` may
    /// persist a later unsynced write without an earlier one).
    var modesSinceOpen: Set<SimulatedFileIO.CrashMode> = []
    var ackedHolds: [String] = []
    var ackedAllocations: [String] = []
    var ackedApprovals: Set<String> = []
    var shownHolds: [String] = []
    var problems: [String] = []
    var tally = PowerLossTally()
    var cutPending = false
    /// A batch generated for a round that could not take it, sent first in the next.
    var deferredBatch: [[String]]?
    /// The last events of the run, printed if the seed hangs (`SeedWatchdog`).
    let recent: RecentEvents

    init(seed: UInt64, skipOneFdatasync: Bool = false, recent: RecentEvents = RecentEvents(watched: false)) {
        self.seed = seed
        self.recent = recent
        self.skipOneFdatasync = skipOneFdatasync
        rng = SplitMix64(seed: seed)
        io = SimulatedFileIO(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        secrets = SeededSecrets(seed: seed)
        workload = PowerLossWorkload()
    }

    var config: DurableConfig {
        var c = DurableConfig(dataDir: dir)
        c.mode = .strict
        c.segmentBytes = 8 << 10  // segment rolls every few rounds
        c.snapshotEveryRecords = 0
        c.snapshotEverySeconds = 0
        c.keepSnapshots = 2
        c.retention.enabled = false
        return c
    }

    func trace(_ message: @autoclosure () -> String) {
        if PowerLossSettings.trace {
            print("[powerloss \(seed)] \(message())")
        } else if recent.isWatched {
            recent.note(message())
        }
    }

    func problem(_ message: String) {
        if problems.count < 10 { problems.append("seed \(seed): \(message)") }
    }

    static let modes = SimulatedFileIO.CrashMode.allCases

    /// Runs the seed; returns what went wrong (empty: every check passed).
    func run() async -> [String] {
        tally.seeds = 1
        do {
            try await open(truncate: false)
        } catch {
            problem("first open failed: \(error)")
            return problems
        }
        for _ in 0..<PowerLossSettings.cycles {
            if skipOneFdatasync { io.inject(.skipFdatasync(nth: 1 + rng.below(6))) }
            io.inject(.powerLoss(nth: 1 + rng.below(60), mode: randomMode()))
            var rounds = 0
            while !io.isPoweredOff && problems.isEmpty {
                rounds += 1
                await round(cutPower: rounds >= 12 || cutPending)
            }
            if !problems.isEmpty { break }
            await recoverAfterPowerLoss()
            if !problems.isEmpty || durable == nil { break }
        }
        if let d = durable, problems.isEmpty {
            // A clean stop and start shows the same state.
            let live = await d.engine.digest()
            do {
                try await d.close()
                let r = try await DurableEngine.open(config, io: io, clock: clock, secrets: secrets)
                if await r.engine.digest() != live { problem("a clean restart changed the state") }
                try await r.close()
            } catch {
                problem("clean restart failed: \(error)")
            }
        } else {
            // A stall may have left a round's writer paused; close waits for
            // the log to flush, so let it write first.
            durable?.writer.resumeWriting()
            try? await durable?.close()
        }
        tally.segments = (try? io.listDirectory(DataDirectory(dir).wal).count) ?? 0
        return problems
    }

    // MARK: Opening

    func open(truncate: Bool) async throws {
        var c = config
        c.truncateCorruption = truncate
        let d = try await DurableEngine.open(c, io: io, clock: clock, secrets: secrets)
        // The seal recovery appends is not waited for by open.
        try await d.writer.durable(d.writer.lastAppendedLSN)
        durable = d
        let h = EngineRequestHandler(engine: d.engine, durable: d)
        handler = h
        sessions = (0..<3).map { Session(id: UInt64($0 + 1), remoteAddress: "127.0.0.1:\(40000 + $0)", isLoopback: true, loopIndex: 0) }
        ackedLSN = d.writer.lastAppendedLSN
        boundaries = [Boundary(lsn: ackedLSN, digest: await d.engine.digest(), label: "open", multiple: false)]
        recoveryWrote = false
        modesSinceOpen = []
    }

    func randomMode() -> SimulatedFileIO.CrashMode {
        let mode = Self.modes[rng.below(Self.modes.count)]
        modesSinceOpen.insert(mode)
        return mode
    }

    /// Polls until `condition` holds (the engine's own threads do the work).
    func waitUntil(_ what: @autoclosure () -> String, _ condition: () -> Bool) async -> Bool {
        var spins = 0
        let deadline = Date().addingTimeInterval(60)
        while !condition() {
            spins += 1
            if spins < 50 { await Task.yield() } else { try? await Task.sleep(for: .microseconds(200)) }
            if spins % 1000 == 0 && Date() > deadline {
                problem("stalled for 60 s waiting for \(what())")
                return false
            }
        }
        return true
    }

    // MARK: Traffic

    /// One group commit's worth of traffic: a few batches from different
    /// connections run in memory while the writer is paused, then the writer
    /// takes them all. With `cutPower` the power goes out before it does.
    func round(cutPower: Bool) async {
        guard let d = durable, let h = handler else { return }
        d.writer.pauseWriting()
        var pending: [(ReplyBox, [[String]])] = []
        let batchCount = 1 + rng.below(3)
        var snapshotInRound = false
        for b in 0..<batchCount {
            let commands = deferredBatch.take() ?? workload.batch(&rng, clock: clock)
            // Snapshots run one at a time (`SnapshotGate`): a second SNAPSHOT
            // in the round would wait for the first, which waits for the disk,
            // which waits for this round to end; it neither answers nor
            // reaches the disk, and the round deadlocks (seed 26). It opens
            // the next round instead.
            if commands == [["SNAPSHOT"]] {
                if snapshotInRound {
                    deferredBatch = commands
                    break
                }
                snapshotInRound = true
            }
            let box = ReplyBox()
            let before = d.writer.waitingCount
            trace("send \(commands.map { $0.joined(separator: " ") }.joined(separator: "; "))")
            h.handle(commands.map { RESPCommand(strings: $0) }, session: sessions[b]) { bytes, _ in box.set(bytes) }
            // The loop's part: a round ends after every read (batches held for it start now).
            h.roundEnded(loop: 0)
            // The batch has run in memory once it answered or waits for the disk.
            let writer = d.writer
            guard await waitUntil("batch \(commands)", { box.value != nil || writer.waitingCount > before }) else { return }
            let last = boundaries.last?.lsn ?? 0
            let lsn = d.writer.lastAppendedLSN
            boundaries.append(Boundary(lsn: lsn, digest: await d.engine.digest(), label: commands.map { $0.joined(separator: " ") }.joined(separator: "; "),
                                       multiple: commands.count > 1 || lsn - last > 2))
            trace("batch \(boundaries.last!.label) -> LSN \(lsn) ops \(io.counts.operations)")
            pending.append((box, commands))
            tally.batches += 1
            tally.commands += commands.count
        }
        if cutPower {
            trace("cut power before the writer resumes")
            io.cutPower(mode: randomMode())
            cutPending = false
        }
        d.writer.resumeWriting()
        for (box, commands) in pending {
            guard await waitUntil("the replies of \(commands)", { box.value != nil }) else { return }
            let replies = RESPValue.decodeAll(box.value!)
            trace("replies \(replies)")
            learn(commands, replies)
        }
        if skipOneFdatasync && io.counts.skippedFdatasyncs > 0 && !io.isPoweredOff { cutPending = true }
    }

    /// Notes what the replies acknowledged (a success reply is sent only once
    /// everything it may show is durable).
    func learn(_ commands: [[String]], _ replies: [RESPValue]) {
        guard replies.count == commands.count else {
            problem("\(commands.count) commands got \(replies.count) replies")
            return
        }
        for (c, r) in zip(commands, replies) {
            if case .error(let e) = r {
                if e.hasPrefix("ERR") || e.hasPrefix("CORRUPT") { problem("\(c.joined(separator: " ")): \(e)") }
                continue
            }
            tally.acknowledged += 1
            switch c[0] {
            case "HOLD":
                if let id = r.array?.first?.string { ackedHolds.append(id); workload.holds.append(id) }
            case "HOLD.GET":
                shownHolds.append(c[1])
            case "ALLOCATE":
                if let id = r.string { ackedAllocations.append(id); workload.allocations.append(id) }
            case "APPROVE":
                ackedApprovals.insert(c[1])
            case "INVOICE.CREATE":
                if let id = r.string { workload.invoices.append(id) }
            case "SNAPSHOT":
                tally.snapshots += 1
            default:
                break
            }
        }
    }

    // MARK: After a power loss

    func recoverAfterPowerLoss() async {
        guard let d = durable else { return }
        tally.powerLosses += 1
        // What the old engine acknowledged: every LSN its fdatasyncs covered.
        ackedLSN = max(ackedLSN, d.writer.stats.durableLSN)
        trace("power lost at op \(io.counts.operations), modes \(modesSinceOpen); acknowledged up to LSN \(ackedLSN), appended \(d.writer.lastAppendedLSN)")
        try? await d.close()
        durable = nil
        handler = nil
        if rng.chance(40) { clock.advance(millis: Int64(1 + rng.below(3600)) * 1000) }  // time passes while it is down
        io.powerOn()
        var attempts = 0
        while problems.isEmpty {
            attempts += 1
            guard let truncate = checkDurableState(), problems.isEmpty else { return }
            if attempts <= 3 && rng.chance(35) {
                // The power goes out again, during recovery.
                io.inject(.powerLoss(nth: 1 + rng.below(12), mode: randomMode()))
            }
            let lastLive = boundaries.map(\.lsn).max() ?? 0
            do {
                try await open(truncate: truncate)
                io.clearFaults()
                if truncate { tally.truncatingOpens += 1 }
                break
            } catch {
                if !io.isPoweredOff {
                    problem("recovery failed without a power loss: \(error)")
                    return
                }
                tally.lossesDuringRecovery += 1
                io.powerOn()
                // Recovery may have appended (a seal, expiries) before the power went.
                if let report = try? Recovery.recover(DataDirectory(dir), io: io, options: RecoveryOptions(truncateCorruption: true), now: monotonicSeconds).report,
                   report.lastLSN > lastLive {
                    recoveryWrote = true
                }
            }
        }
        guard problems.isEmpty, durable != nil else { return }
        await checkLedger()
    }

    /// Checks 1 (by LSN), 2, 3 and 4 on the durable state, without writing.
    /// Returns whether opening needs `truncateCorruption` (nil: stop).
    func checkDurableState() -> Bool? {
        var options = RecoveryOptions()
        let result: Recovery.Result
        do {
            result = try Recovery.recover(DataDirectory(dir), io: io, options: options, now: monotonicSeconds)
        } catch {
            // Only a crash that persists a later unsynced write without an
            // earlier one leaves a valid record after a hole; recovery cannot
            // tell that from damage and refuses, so the operator cuts the log.
            guard modesSinceOpen.contains(.randomSubset), let cut = try? Recovery.recover(DataDirectory(dir), io: io, options: RecoveryOptions(truncateCorruption: true), now: monotonicSeconds) else {
                problem("recovery refused: \(error)")
                return nil
            }
            options.truncateCorruption = true
            result = cut
        }
        let lsn = result.report.lastLSN
        let digest = Engine.digest(of: result.states, directory: result.directory)
        trace("recovered to LSN \(lsn) (snapshot \(result.report.snapshotLSN), torn \(result.report.tornTail ?? "-"), truncate \(options.truncateCorruption))")
        for v in result.states.flatMap({ $0.invariantViolations() }).prefix(3) { problem("recovered state breaks the invariant: \(v)") }
        if lsn < ackedLSN {
            problem("acknowledged changes lost: the durable log ends at LSN \(lsn) but LSN \(ackedLSN) was acknowledged")
        }
        if let reference = replayOfTheLog(toLSN: lsn, truncate: options.truncateCorruption), reference != digest {
            problem("the recovered state (snapshot LSN \(result.report.snapshotLSN) + log) differs from a replay of the durable log alone to LSN \(lsn)")
        }
        // 2: a state the live engine had.
        if let i = boundaries.lastIndex(where: { $0.lsn <= lsn }) {
            let here = boundaries[i]
            let next = boundaries[(i + 1)...].first { $0.lsn > here.lsn }
            let matches = digest == here.digest || next.map { $0.digest == digest } == true
            if !matches {
                if let next, !next.multiple {
                    problem("the state recovered at LSN \(lsn) is no state the live engine had: after [\(here.label)] (LSN \(here.lsn)) and before [\(next.label)] (LSN \(next.lsn)) were applied whole")
                } else if next == nil && !recoveryWrote {
                    problem("the state recovered at LSN \(lsn) is past everything the live engine appended (LSN \(here.lsn))")
                }
            }
        }
        return options.truncateCorruption
    }

    /// The digest of a replay of the log alone (no snapshot), from its first record to `lsn`.
    func replayOfTheLog(toLSN lsn: UInt64, truncate: Bool) -> String? {
        let copy = SimulatedFileIO(seed: 1)
        let wal = DataDirectory(dir).wal
        do {
            try copy.createDirectory(wal)
            try copy.createDirectory(DataDirectory(dir).snapshots)
            for name in try io.listDirectory(wal) {
                guard let bytes = io.contents(FilePath.join(wal, name)) else { continue }
                let fd = try copy.create(FilePath.join(wal, name))
                try copy.pwrite(fd, bytes, offset: 0)
                try copy.close(fd)
            }
            let r = try Recovery.recover(DataDirectory(dir), io: copy, options: RecoveryOptions(truncateCorruption: truncate, toLSN: lsn), now: monotonicSeconds)
            if r.report.lastLSN != lsn {
                problem("the durable log alone replays to LSN \(r.report.lastLSN), not \(lsn): snapshot ahead of the log")
            }
            return Engine.digest(of: r.states, directory: r.directory)
        } catch {
            problem("the durable log alone does not replay to LSN \(lsn): \(error)")
            return nil
        }
    }

    /// Check 1 by row: every acknowledged hold, allocation and approval, and
    /// every hold a reply showed, answers after recovery. Then check 3 on the
    /// reopened engine.
    func checkLedger() async {
        guard let d = durable else { return }
        let holds = Array(Set(ackedHolds + shownHolds)).sorted()
        let allocations = ackedAllocations
        var commands = holds.map { ["HOLD.GET", $0] } + allocations.map { ["ALLOCATION.GET", $0] }
        while !commands.isEmpty {
            let batch = Array(commands.prefix(500))
            commands.removeFirst(batch.count)
            let replies = await send(batch)
            for (c, r) in zip(batch, replies) {
                if case .error(let e) = r {
                    problem("\(c[0]) \(c[1]) after recovery: \(e) (acknowledged before the power loss)")
                    continue
                }
                if c[0] == "ALLOCATION.GET" && ackedApprovals.contains(c[1]) {
                    let status = r.fields["status"]
                    if status != "approved" && status != "settled" { problem("approval of \(c[1]) lost: \(r.fields)") }
                }
            }
        }
        for p in await conservationProblems(d.engine).prefix(3) { problem("after recovery: \(p)") }
    }

    /// One batch through the handler, writer running; its replies.
    func send(_ commands: [[String]]) async -> [RESPValue] {
        guard let h = handler else { return [] }
        let box = ReplyBox()
        h.handle(commands.map { RESPCommand(strings: $0) }, session: sessions[0]) { bytes, _ in box.set(bytes) }
        h.roundEnded(loop: 0)
        guard await waitUntil("\(commands.count) reads", { box.value != nil }) else { return [] }
        return RESPValue.decodeAll(box.value!)
    }
}
