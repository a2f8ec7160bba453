import CLinux
import Dispatch
import Foundation
import Snapshot
import Synchronization
import WAL

public struct DurableConfig: Sendable {
    public var dataDir: String
    public var mode: DurabilityMode = .strict
    public var periodicIntervalMillis = 1000
    public var segmentBytes = LogConfig.defaultSegmentBytes
    /// Take a snapshot after this many records since the last one (0 = never by count).
    public var snapshotEveryRecords: UInt64 = 5_000_000
    /// ... or after this many seconds with at least one change (0 = never by time).
    public var snapshotEverySeconds: Double = 600
    /// Snapshots kept; log segments older than the oldest kept one are deleted.
    public var keepSnapshots = 3
    public var truncateCorruption = false
    /// Delete log segments wholly covered by the oldest kept snapshot (the
    /// behaviour before the history). Off by default: kept segments are the
    /// history that `dump`, point-in-time `replay` and `AUDIT.VERIFY` read.
    public var pruneLog = false
    /// When ended holds leave memory for the history.
    public var retention = RetentionPolicy()
    public var engine = EngineConfig()
    /// Called during recovery at open (see `RecoveryProgress`).
    public var recoveryProgress: RecoveryProgress?
    /// Open as a replica: nothing is decided here (no expiry sweep, no
    /// archiving, no seal of a torn batch): the primary's stream is the only
    /// change (docs/replication.md).
    public var startAsReplica = false
    /// `--min-replicas-to-write`: a change is acknowledged once this many
    /// replicas have it durable too (0: once durable here).
    public var minReplicasToWrite = 0
    /// How long a change waits for those replicas before it is answered `NOREPLICAS`.
    public var replicaAckTimeoutSeconds: Double = 10
    public init(dataDir: String) { self.dataDir = dataDir }
}

/// When an ended hold (released, expired, cancelled, allocated) leaves memory
/// for the on-disk history: once its chunk of 1024 rows has ended and the last
/// of them ended `endedMillis` ago, or sooner when its deal keeps more than
/// `maxEndedPerDeal` ended holds in memory, or when all deals together keep
/// more than `maxEndedTotal` (then each deal keeps at most its fair share, see
/// `fairShare`). Reads of it then go to the history.
///
/// The engine-wide cap is what makes memory independent of the hold rate:
/// with only the time window, the ended rows inside it are rate x window, so
/// a launch that speeds up from 80k to 120k holds/s would hold half as many
/// again. With it, ended holds in memory stay at most `maxEndedTotal` plus
/// what no rule can move (per deal, the chunk being filled and chunks with
/// more than a quarter still pending).
public struct RetentionPolicy: Sendable {
    public var enabled = true
    public var endedMillis: Int64 = 10_000
    public var maxEndedPerDeal = 65_536
    /// Ended holds in memory across all deals (about 112 B each).
    public var maxEndedTotal = 262_144
    /// How often the archiver looks (ms).
    public var intervalMillis = 250
    /// Caller ids of holds that left memory kept in memory (engine-wide)
    /// before they move to an on-disk id run (`CallerIDRuns`): about 110
    /// bytes each while in memory, 1.3 once on disk.
    public var callerIDsInMemory = 65_536
    public init() {}

    /// The largest per-deal cap `c` with `sum(min(n, c)) <= total` over the
    /// deals' ended rows `counts` (water-filling): deals under it keep all
    /// theirs, the rest are cut to it. nil when all fit (no engine-wide cut).
    public static func fairShare(_ counts: [Int], total: Int) -> Int? {
        var sum = 0
        for n in counts { sum += n }
        guard sum > total else { return nil }
        let sorted = counts.sorted()
        var remaining = total
        for (i, n) in sorted.enumerated() {
            let k = sorted.count - i
            if n * k > remaining { return remaining / k }
            remaining -= n
        }
        return remaining  // not reached: sum > total means some n * k > remaining
    }
}

/// An engine with its data directory: recovered on open, logging every change,
/// snapshotting in the background, closed cleanly.
public final class DurableEngine: Sendable {
    public let engine: Engine
    public let writer: LogWriter
    public let recovery: RecoveryReport
    public let config: DurableConfig
    /// Rows that left memory.
    public let history: HistoryStore
    /// The replication rule (the sink's): role, min replicas, acknowledgements.
    public let gate: ReplicationGate
    /// Caller ids of holds that left memory, once moved out of memory too.
    public var holdIDRuns: CallerIDRuns { engine.indexes.holdIDRuns }
    let io: any FileIO
    let directory: DataDirectory
    let store: SnapshotStore
    let log: @Sendable (String) -> Void
    private let snapshotGate = SnapshotGate()
    private let background = Locked<Task<Void, Never>?>(nil)
    private let archiver = Locked<Task<Void, Never>?>(nil)
    private let archiveStats = Locked<ArchiveStats>(ArchiveStats())
    /// Returns freed heap to the kernel after archive passes (at most every 2 s).
    let heapTrimmer = HeapTrimmer()
    /// Encodes and writes history entries off the cooperative threads.
    private let historyQueue = DispatchQueue(label: "allocation-engine.history")
    /// Encodes and writes snapshot parts (one hop per deal: a queue, not a thread each).
    private let snapshotQueue = DispatchQueue(label: "allocation-engine.snapshot")

    public struct ArchiveStats: Sendable {
        public var entries = 0
        public var rows = 0
        /// Caller ids moved to on-disk runs by this process.
        public var idsMoved = 0
        public var lastError: String?
    }
    private let snapshotStats = Locked<SnapshotStats>(SnapshotStats())

    public struct SnapshotStats: Sendable {
        public var taken = 0
        public var lastLSN: UInt64 = 0
        public var lastBytes = 0
        public var lastSeconds = 0.0
        public var lastPath: String?
        public var lastError: String?
        public var recordsAtLast: UInt64 = 0
        public var timeAtLast = 0.0
        /// Where the last snapshot's time went (seconds; they sum to about `lastSeconds`).
        public var lastStages = SnapshotStages()
    }

    /// The parts of a snapshot's time, so an operator (and the soak) can see
    /// which one moves: waiting for the deals' actors to take their copies,
    /// encoding and appending the copies, waiting for the log to be durable up
    /// to the newest copy, and the tail (directory, audit, investors), fsync,
    /// rename and pruning.
    public struct SnapshotStages: Sendable {
        public var captureSeconds = 0.0
        public var encodeSeconds = 0.0
        /// Of `encodeSeconds`, the CPU time the snapshot's thread spent encoding
        /// and appending: the rest is waiting for a core (or for the disk).
        public var encodeCPUSeconds = 0.0
        public var durableWaitSeconds = 0.0
        public var finishSeconds = 0.0

        /// The stages by the names `INFO snapshot` (`last_snapshot_<name>_seconds`)
        /// and the metrics (`stage="<name>"`) use; all but `encode_cpu` sum to
        /// about the snapshot's time.
        public var named: [(name: String, seconds: Double)] {
            [("capture", captureSeconds), ("encode", encodeSeconds), ("encode_cpu", encodeCPUSeconds),
             ("durable_wait", durableWaitSeconds), ("finish", finishSeconds)]
        }
    }

    /// Opens (creating if missing) a data directory, recovers its state, expires
    /// holds whose time passed while the engine was down, and starts the log.
    public static func open(_ config: DurableConfig, io: any FileIO = PosixFileIO(), clock: any EngineClock = SystemClock(),
                            secrets: any SecretSource = SystemSecrets(),
                            log: @escaping @Sendable (String) -> Void = { _ in }) async throws -> DurableEngine {
        let engineConfig = try config.engine.validated()
        let dir = DataDirectory(config.dataDir)
        try io.createDirectory(dir.path)
        try io.createDirectory(dir.wal)
        try io.createDirectory(dir.snapshots)
        // Rows that left memory are read back from here, recovery's state
        // included; replay checks caller hold ids against the on-disk id runs.
        let history = try HistoryStore(directory: dir.history, io: io)
        let historyAccess = HistoryAccess()
        historyAccess.attach(history)
        let holdIDRuns = CallerIDRuns(history: historyAccess)
        try holdIDRuns.open(directory: dir.history, io: io)
        let result = try Recovery.recover(dir, io: io, options: RecoveryOptions(truncateCorruption: config.truncateCorruption),
                                          now: monotonicSeconds, onProgress: config.recoveryProgress,
                                          history: historyAccess, holdIDRuns: holdIDRuns)
        let r = result.report
        for s in r.skippedSnapshots { log("snapshot skipped: \(s)") }
        for w in r.warnings { log("WARNING: \(w)") }
        if let t = r.tornTail { log("torn record at the end of the log cut off: \(t)") }
        if let t = r.truncated {
            log("log TRUNCATED at damaged record \(t): \(r.droppedRecords) records dropped")
            if let segment = r.truncatedSegment { try setAsideSegments(after: segment, in: dir, io: io, log: log) }
        }
        log("recovered \(r.recordsReplayed) records after snapshot LSN \(r.snapshotLSN) in \(String(format: "%.3f", r.seconds)) s: \(result.states.count) deals, next LSN \(r.nextLSN)")
        if config.mode == .none { log("WARNING: durability mode 'none': changes are never fsynced; a crash loses them. For tests and benchmarks only.") }
        let logConfig = LogConfig(directory: dir.wal, mode: config.mode, periodicIntervalMillis: config.periodicIntervalMillis,
                                  segmentBytes: config.segmentBytes)
        // The audit chain goes on from recovery's head, computed on the writer's thread.
        let sealer = AuditSealer(head: result.audit, sealLSN: r.nextLSN - 1)
        let writer = try LogWriter(config: logConfig, io: io, nextLSN: r.nextLSN, finisher: sealer)
        let gate = ReplicationGate(minReplicas: config.minReplicasToWrite, ackTimeoutSeconds: config.replicaAckTimeoutSeconds)
        if config.startAsReplica { gate.setReplica(true) }
        let sink = WALChangeSink(writer: writer, sealer: sealer, gate: gate)
        if let seal = result.unsealed, !config.startAsReplica {
            // Entries after the last seal (a torn batch, or a log from before the chain): sealed now, so the chain goes on.
            try sink.appendSeal(seal, time: clock.nowMillis())
            log("audit: sealed \(seal.hashes.count) entries found after the last seal")
        }
        let engine = Engine(config: engineConfig, clock: clock, sink: sink,
                            restoring: result.states, indexes: result.indexes, directory: result.directory, secrets: secrets)
        let durable = DurableEngine(engine: engine, writer: writer, recovery: r, config: config, history: history, io: io, directory: dir, gate: gate, log: log)
        if !config.startAsReplica {
            let expired = await engine.sweepExpired()
            if expired > 0 { log("expired \(expired) holds whose time passed while the engine was down") }
        }
        return durable
    }

    /// After an operator-approved truncation, the segments after the damaged one
    /// hold records that were dropped: rename them (`.dropped`, kept for
    /// forensics) so the log continues from the cut.
    static func setAsideSegments(after damaged: String, in dir: DataDirectory, io: any FileIO, log: (String) -> Void) throws {
        guard let damagedLSN = LogFormat.parseSegmentName(damaged) else { return }
        var moved = 0
        for name in try io.listDirectory(dir.wal) {
            guard let first = LogFormat.parseSegmentName(name), first > damagedLSN else { continue }
            try io.rename(from: FilePath.join(dir.wal, name), to: FilePath.join(dir.wal, name + ".dropped"))
            moved += 1
        }
        if moved > 0 {
            try io.fsyncDirectory(dir.wal)
            log("set aside \(moved) log segments after the damaged one as *.dropped")
        }
    }

    init(engine: Engine, writer: LogWriter, recovery: RecoveryReport, config: DurableConfig, history: HistoryStore, io: any FileIO,
         directory: DataDirectory, gate: ReplicationGate, log: @escaping @Sendable (String) -> Void) {
        self.gate = gate
        self.history = history
        self.engine = engine
        self.writer = writer
        self.recovery = recovery
        self.config = config
        self.io = io
        self.directory = directory
        self.store = SnapshotStore(directory: directory.snapshots, io: io, keep: config.keepSnapshots)
        self.log = log
        snapshotStats.withLock {
            $0.recordsAtLast = recovery.nextLSN - 1
            $0.timeAtLast = monotonicSeconds()
        }
    }

    /// Starts the snapshot policy (every N records or T seconds) and, on a
    /// primary, the expiry ticker and the archiver.
    public func startBackground() {
        if !gate.isReplica { startPrimaryDuties() }
        startSnapshots()
    }


    /// Becomes a replica: stops everything that decides changes here (expiry,
    /// archiving, moving ids) and waits for a pass in flight, then refuses
    /// every change but the primary's stream.
    public func becomeReplica() async {
        gate.setReplica(true)
        engine.stopExpiryTicker()
        let task = archiver.withLock { t -> Task<Void, Never>? in
            defer { t = nil }
            return t
        }
        task?.cancel()
        await task?.value
    }

    /// Becomes a primary (`REPLICAOF NO ONE`): expires what came due while
    /// following, then decides changes again.
    public func becomePrimary() async {
        gate.setReplica(false)
        let expired = await engine.sweepExpired()
        if expired > 0 { log("promoted: expired \(expired) holds that came due while this server was a replica") }
        startPrimaryDuties()
    }

    private func startPrimaryDuties() {
        engine.startExpiryTicker()
        if config.retention.enabled {
            archiver.withLock { task in
                guard task == nil else { return }
                let interval = config.retention.intervalMillis
                task = Task { [weak self] in
                    var pass = 0
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(interval))
                        guard let self else { return }
                        // Rows that left free their chunks: give the pages back (HeapTrimmer).
                        // A blocking walk of malloc's arenas: on a queue, not a cooperative thread.
                        if await self.archiveDue() > 0 {
                            let trimmer = self.heapTrimmer
                            DispatchQueue.global(qos: .utility).async { trimmer.trimIfDue(now: monotonicSeconds()) }
                        }
                        // Ids are counted about once a second (a look at every deal).
                        pass += 1
                        if pass % 4 == 0 { _ = await self.moveHoldIDsDue() }
                    }
                }
            }
        }
    }

    private func startSnapshots() {
        background.withLock { task in
            guard task == nil else { return }
            task = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(500))
                    guard let self else { return }
                    await self.snapshotIfDue()
                }
            }
        }
    }

    func snapshotIfDue() async {
        let appended = writer.stats.nextLSN - 1
        let due = snapshotStats.withLock { s -> Bool in
            let records = appended - min(appended, s.recordsAtLast)
            if config.snapshotEveryRecords > 0 && records >= config.snapshotEveryRecords { return true }
            if config.snapshotEverySeconds > 0 && records > 0 && monotonicSeconds() - s.timeAtLast >= config.snapshotEverySeconds { return true }
            return false
        }
        if due {
            do { _ = try await snapshot() } catch { log("snapshot failed: \(error)") }
        }
    }

    /// One pass of the retention rule: asks every deal what may leave memory,
    /// writes those rows to the history (encoded and synced on the history
    /// queue, one `fdatasync` for the pass), then has each deal drop them
    /// with a logged change. Returns the rows that left. A failure leaves
    /// every row in memory and is reported; the next pass tries again.
    @discardableResult
    public func archiveDue() async -> Int {
        // A replica's rows leave memory when the primary's records say so.
        guard !gate.isReplica else { return 0 }
        let policy = config.retention
        let now = engine.clock.nowMillis()
        var plans: [ArchivePlan] = []
        let deals = engine.allDeals
        var ended: [Int] = []
        ended.reserveCapacity(deals.count)
        for deal in deals { ended.append(await deal.endedHoldsInMemory) }
        let share = RetentionPolicy.fairShare(ended, total: policy.maxEndedTotal)
        for deal in deals {
            plans += await deal.archivePlans(endedBefore: now - policy.endedMillis, maxEnded: policy.maxEndedPerDeal,
                                             maxEndedHolds: share, limit: 64)
            // A pass holds at most this many chunks' rows (copy-on-write references, written within the pass).
            if plans.count >= 256 { break }
        }
        guard !plans.isEmpty else { return 0 }
        let store = history
        let locations: [HistoryLocation]
        do {
            let batch = plans
            locations = try await withCheckedThrowingContinuation { (k: CheckedContinuation<[HistoryLocation], any Error>) in
                historyQueue.async {
                    k.resume(with: Result { () throws -> [HistoryLocation] in try store.append(batch.map { $0.entry() }) })
                }
            }
        } catch {
            let first = archiveStats.withLock { s -> Bool in
                defer { s.lastError = "\(error)" }
                return s.lastError == nil
            }
            if first { log("ERROR: history write failed; ended holds stay in memory until a restart: \(error)") }
            return 0
        }
        var rows = 0
        for (plan, location) in zip(plans, locations) where await plan.deal.commitArchive(plan, at: location) != nil {
            rows += plan.rowCount
        }
        archiveStats.withLock { s in
            s.entries += plans.count
            s.rows += rows
            s.lastError = nil
        }
        return rows
    }

    public var archiving: ArchiveStats { archiveStats.withLock { $0 } }

    /// Moves the caller ids of holds that left memory to a new on-disk id run
    /// once the deals hold `callerIDsInMemory` of them (or now, with `force`):
    /// the run is written and synced on the history queue, then each deal logs
    /// `hold_ids.moved` and forgets them. Returns the ids moved. On a failure
    /// they stay in memory (reported like a history failure) and the next
    /// look tries again.
    @discardableResult
    public func moveHoldIDsDue(force: Bool = false) async -> Int {
        guard !gate.isReplica else { return 0 }
        let runs = holdIDRuns
        guard runs.isOpen else { return 0 }
        var total = 0
        var holding: [DealActor] = []
        for deal in engine.allDeals {
            let n = await deal.archivedCallerIDCount
            if n > 0 { holding.append(deal); total += n }
        }
        guard total > 0, force || total >= config.retention.callerIDsInMemory else { return 0 }
        var entries: [CallerIDRuns.Entry] = []
        entries.reserveCapacity(total)
        var counts: [(DealActor, Int)] = []
        for deal in holding {
            var n = 0
            // A prefix: ids whose row could not be found (a damaged history) stay in memory.
            for a in await deal.archivedCallerIDs(history: history) {
                guard a.location.file != ArchivedCallerID.unknownFile else { break }
                entries.append(CallerIDRuns.Entry(id: a.id, deal: deal.number, slot: a.slot, location: a.location))
                n += 1
            }
            if n > 0 { counts.append((deal, n)) }
        }
        guard !entries.isEmpty else { return 0 }
        let run: UInt32
        do {
            let batch = entries
            run = try await withCheckedThrowingContinuation { (k: CheckedContinuation<UInt32, any Error>) in
                historyQueue.async { k.resume(with: Result { () throws -> UInt32 in try runs.add(batch) }) }
            }
        } catch {
            archiveStats.withLock { $0.lastError = "hold id run: \(error)" }
            log("ERROR: hold id run write failed; the ids stay in memory: \(error)")
            return 0
        }
        var moved = 0
        for (deal, n) in counts where await deal.commitHoldIDsMoved(count: n, run: run) != nil { moved += n }
        archiveStats.withLock { $0.idsMoved += moved }
        return moved
    }

    /// Why the engine stopped taking and answering commands, if it did: a
    /// write or fsync of the log failed (or an append after its batch was
    /// applied). Memory may then hold changes the disk does not, so the only
    /// way back is recovery from disk: `serve` exits (code 74) for its
    /// supervisor to restart it.
    public var durabilityFailure: String? { engine.sink?.failureReason }

    /// Runs `observer` once, with the reason, when the engine fails as
    /// `durabilityFailure` describes (at once if it already has).
    public func onDurabilityFailure(_ observer: @escaping @Sendable (String) -> Void) {
        if let sink = engine.sink as? WALChangeSink { sink.onFailure(observer) } else { writer.onFailStop(observer) }
    }

    /// `AUDIT.VERIFY`: the whole retained log against its seals and the
    /// snapshots' heads, read on a thread of its own.
    public func verifyAudit() async throws -> AuditLog.Report {
        try await Self.offThread { [self] () throws -> AuditLog.Report in try AuditLog.verify(directory, io: io) }
    }

    /// `AUDIT.LIST`: a page of entries read from the log on disk.
    public func auditPage(from: UInt64, count: Int, filter: AuditLog.Filter) async throws -> (String, [[Field]]) {
        try await Self.offThread { [self] () throws -> (String, [[Field]]) in
            let r = try AuditLog.list(directory, io: io, from: from, count: count, filter: filter)
            return (r.cursor, r.rows)
        }
    }

    /// Writes a snapshot now (one at a time; a request during one waits for it
    /// and then takes its own). Hold traffic goes on: each deal is copied in its
    /// actor (copy-on-write) and encoded outside it.
    @discardableResult
    public func snapshot() async throws -> SnapshotStats {
        let stats = try await takeSnapshot()
        // The capture's copy-on-write copies and the encoded payload are freed
        // now; give the pages back to the kernel (glibc keeps freed heap, and
        // resident memory would otherwise stay at each snapshot's peak).
        _ = try? await Self.offThread { () throws -> Int32 in malloc_trim(0) }
        return stats
    }

    /// Deals copied and encoded together (see `takeSnapshot`): a snapshot keeps at
    /// most this many deals' copy-on-write copies alive at a time.
    static let snapshotGroup = 32

    /// Writes the image a group of deals at a time: each deal is copied in its
    /// actor (copy-on-write: cheap, and only paid for by changes while the copy
    /// is alive), encoded on the snapshot's own thread and appended to the file,
    /// then dropped, so a snapshot holds at most `snapshotGroup` deals' copies
    /// and about a MiB of encoded bytes at a time, not the whole image (and not
    /// its bytes twice).
    private func takeSnapshot() async throws -> SnapshotStats {
        try await snapshotGate.run { [self] in
            let started = monotonicSeconds()
            let (floor, audit, actors) = engine.snapshotPlan()
            let time = engine.clock.nowMillis()
            do {
                let stream = try await Self.on(snapshotQueue) { [store] () throws -> SnapshotStream in try store.begin() }
                do {
                    try await Self.on(snapshotQueue) { () throws -> Void in
                        var w = ByteWriter(capacity: 32)
                        StateCodec.encodeHead(floorLSN: floor, dealCount: actors.count, into: &w)
                        try stream.append(w.bytes)
                    }
                    var replayFrom = floor
                    var newest = floor
                    var stages = SnapshotStages()
                    // Deals go in groups: the group's copies are taken at once (one
                    // actor hop each, in parallel) and encoded in one hop to the
                    // snapshot's queue. One hop there and back per deal put each
                    // deal's turn behind the hot path's jobs twice: measured under
                    // the 1,000-deal soak, 0.19 s of encoding took 0.8 to 2.1 s.
                    var next = 0
                    while next < actors.count {
                        let group = Array(actors[next..<min(next + Self.snapshotGroup, actors.count)])
                        next += group.count
                        let t0 = monotonicSeconds()
                        let parts = await withTaskGroup(of: (Int, DealState, UInt64).self) { tasks in
                            for (i, actor) in group.enumerated() {
                                tasks.addTask { let p = await actor.capture(); return (i, p.state, p.lsn) }
                            }
                            var parts = [(state: DealState, lsn: UInt64)?](repeating: nil, count: group.count)
                            for await (i, state, lsn) in tasks { parts[i] = (state, lsn) }
                            return parts.map { $0! }
                        }
                        let t1 = monotonicSeconds()
                        stages.captureSeconds += t1 - t0
                        for part in parts {
                            replayFrom = min(replayFrom, part.lsn)
                            newest = max(newest, part.lsn)
                        }
                        stages.encodeCPUSeconds += try await Self.on(snapshotQueue) { () throws -> Double in
                            let cpu0 = threadCPUSeconds()
                            var w = ByteWriter(capacity: 1 << 12)
                            var failure: (any Error)?
                            for part in parts {
                                // A large deal goes out in pieces of about a MiB as it is encoded.
                                StateCodec.encodeDeal(part.state, lsn: part.lsn, into: &w) { w in
                                    guard failure == nil, w.bytes.count >= SnapshotStream.bufferBytes else { return }
                                    do { try stream.append(w.bytes) } catch { failure = error }
                                    w.bytes.removeAll(keepingCapacity: true)
                                }
                                if let failure { throw failure }
                            }
                            try stream.append(w.bytes)
                            return threadCPUSeconds() - cpu0
                        }
                        stages.encodeSeconds += monotonicSeconds() - t1
                    }
                    let (directory, directoryLSN) = engine.captureDirectory()
                    replayFrom = min(replayFrom, directoryLSN)
                    newest = max(newest, directoryLSN)
                    let lsn = replayFrom
                    let last = newest
                    let beforeTail = monotonicSeconds()
                    let (path, payloadBytes, durableWait) = try await Self.on(snapshotQueue) { [self] () throws -> (String, Int, Double) in
                        var w = ByteWriter(capacity: 1 << 12)
                        StateCodec.encodeTail(directory: directory, directoryLSN: directoryLSN, audit: audit, into: &w)
                        // After every deal's copy: a superset of the pairs each copy names (see Holdings).
                        self.engine.indexes.holdings.encodeInvestors(into: &w)
                        try stream.append(w.bytes)
                        // The copies may hold changes whose records are not durable yet
                        // (appended, waiting for the group commit). A snapshot is a
                        // cache of a durable log prefix, never ahead of it: published
                        // first, a power loss would leave state the log lost, and the
                        // LSNs after the log's end would be handed out again (found by
                        // the power-loss campaign, seeds 43 and 112). Until `publish`
                        // the file is only a temp file, which recovery never reads.
                        let beforeWait = monotonicSeconds()
                        if let failure = self.writer.waitDurable(last) {
                            throw RecoveryError("snapshot not written: the log failed before its state was durable: \(failure)")
                        }
                        let durableWait = monotonicSeconds() - beforeWait
                        try stream.finish(lsn: lsn, time: time)
                        let path = try stream.publish()
                        try store.prune()
                        // Segments wholly covered by the oldest kept snapshot are history; deleted only with --prune-log.
                        if config.pruneLog, let oldest = try store.list().last {
                            let deleted = try self.writer.deleteSegments(coveredBy: oldest.lsn)
                            if !deleted.isEmpty { log("deleted \(deleted.count) log segments covered by snapshot LSN \(oldest.lsn)") }
                        }
                        return (path, stream.payloadBytes, durableWait)
                    }
                    let seconds = monotonicSeconds() - started
                    stages.durableWaitSeconds = durableWait
                    stages.finishSeconds = monotonicSeconds() - beforeTail - durableWait
                    log("snapshot written: \(path), LSN \(lsn), \(actors.count) deals, \(payloadBytes) bytes in \(String(format: "%.3f", seconds)) s ("
                        + stages.named.map { "\($0.name) \(String(format: "%.3f", $0.seconds))" }.joined(separator: ", ") + ")")
                    return snapshotStats.withLock { s in
                        s.taken += 1
                        s.lastLSN = lsn
                        s.lastBytes = payloadBytes
                        s.lastSeconds = seconds
                        s.lastStages = stages
                        s.lastPath = path
                        s.lastError = nil
                        s.recordsAtLast = floor
                        s.timeAtLast = monotonicSeconds()
                        return s
                    }
                } catch {
                    stream.abort()
                    throw error
                }
            } catch {
                snapshotStats.withLock { $0.lastError = "\(error)" }
                throw error
            }
        }
    }

    public var snapshots: SnapshotStats { snapshotStats.withLock { $0 } }

    /// Blocks the calling (non-cooperative) thread until `lsn` is durable;
    /// the failure if it never will be.
    /// Runs blocking work on a new thread and waits for it without holding a
    /// cooperative thread.
    /// Runs blocking work on `queue`, off the cooperative threads.
    static func on<T: Sendable>(_ queue: DispatchQueue, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    static func offThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try work() }) }
            thread.start()
        }
    }

    /// Stops background work, waits for the log to flush and sync, closes it.
    public func close() async throws {
        engine.stopExpiryTicker()
        let archiving = archiver.withLock { t -> Task<Void, Never>? in
            let current = t
            t = nil
            return current
        }
        archiving?.cancel()
        _ = await archiving?.value
        let task = background.withLock { t -> Task<Void, Never>? in
            let current = t
            t = nil
            return current
        }
        task?.cancel()
        let last = writer.stats.nextLSN - 1
        if last > 0 && writer.failure == nil { try? await writer.durable(last) }
        try writer.close()
        history.close()
        holdIDRuns.close()
    }
}

/// Serializes snapshots.
actor SnapshotGate {
    private var running = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        while running { await withCheckedContinuation { waiters.append($0) } }
        running = true
        defer {
            running = false
            if !waiters.isEmpty { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}

/// CPU time the calling thread has used, seconds.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
