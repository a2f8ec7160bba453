import Snapshot
import WAL

/// The layout of a data directory: `wal/` holds the log segments, `snapshots/`
/// the snapshot files, `LOCK` keeps a second server out.
public struct DataDirectory: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }
    public var wal: String { FilePath.join(path, "wal") }
    public var snapshots: String { FilePath.join(path, "snapshots") }
    public var lockFile: String { FilePath.join(path, "LOCK") }
    /// Rows that left memory (`HistoryStore`).
    public var history: String { FilePath.join(path, HistoryStore.directoryName) }
}

public struct RecoveryOptions: Sendable {
    /// Cut the log at a damaged record before its end instead of refusing to start.
    public var truncateCorruption = false
    /// Point-in-time: stop after this LSN / before the first record later than this time.
    public var toLSN: UInt64?
    public var toTime: Int64?
    public init(truncateCorruption: Bool = false, toLSN: UInt64? = nil, toTime: Int64? = nil) {
        self.truncateCorruption = truncateCorruption
        self.toLSN = toLSN
        self.toTime = toTime
    }
}

/// Progress of replay, for a reporter: (records replayed, LSN reached, segment
/// file name, byte offset in it). Called every 4096 records replayed.
public typealias RecoveryProgress = @Sendable (_ records: Int, _ lsn: UInt64, _ segment: String, _ offset: Int) -> Void

public struct RecoveryReport: Sendable {
    public var snapshotPath: String?
    public var snapshotLSN: UInt64 = 0
    public var skippedSnapshots: [String] = []
    public var recordsReplayed = 0
    public var recordsSkipped = 0
    public var lastLSN: UInt64 = 0
    /// The LSN the log writer continues with.
    public var nextLSN: UInt64 = 1
    public var tornTail: String?
    public var truncated: String?
    /// The segment holding the damaged record the log was cut at.
    public var truncatedSegment: String?
    public var droppedRecords = 0
    public var segments = 0
    public var seconds = 0.0
    /// Whether replay stopped at --to-lsn / --to-time before the end of the log.
    public var stoppedEarly = false
    /// Things an operator should know that did not stop recovery.
    public var warnings: [String] = []
}

public struct RecoveryError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Rebuilds the engine's state from a data directory: the newest snapshot that
/// loads (older ones when it is damaged), then every later record of the log,
/// applied with its logged time. Nothing here reads the clock or decides: a
/// record that does not apply is damage, reported with its LSN and place.
public enum Recovery {
    public struct Result: Sendable {
        public var states: [DealState]
        public var indexes: EngineIndexes
        public var directory: Directory
        public var report: RecoveryReport
        /// The audit chain's head after the log, and a seal for entries after the last seal (to append on open).
        public var audit: AuditHead = .genesis
        public var unsealed: AuditSeal?
    }

    public static func recover(_ dir: DataDirectory, io: any FileIO, options: RecoveryOptions = RecoveryOptions(),
                               now: () -> Double, onProgress: RecoveryProgress? = nil,
                               history: HistoryAccess = HistoryAccess(), holdIDRuns: CallerIDRuns? = nil) throws -> Result {
        let started = now()
        var report = RecoveryReport()
        var indexes = EngineIndexes(history: history, holdIDRuns: holdIDRuns)
        var states: [DealState] = []
        var directory = Directory()
        var accessSkipUpTo: UInt64 = 0
        var verifier = AuditVerifier(from: .genesis)
        /// Records at or below this LSN are in the snapshot's audit head.
        var auditFrom: UInt64 = 0
        var dealIndex: [IdKey: Int] = [:]
        /// Per deal (parallel to `states`): records at or below this LSN are in its snapshot copy.
        var skipUpTo: [UInt64] = []

        // 1. Snapshot: newest that decodes and, for point-in-time, lies entirely before the target.
        var replayFrom: UInt64 = 0
        /// The highest LSN the accepted snapshot covers (LSNs up to it are never handed out again).
        var snapshotNewest: UInt64 = 0
        let store = SnapshotStore(directory: dir.snapshots, io: io)
        for info in try store.list() {
            do {
                let bytes = try io.readAll(info.path)
                let decoded = try SnapshotFormat.decode(bytes, path: info.path)
                let image = try StateCodec.decode(decoded.payload)
                let newest = image.newestLSN
                if let to = options.toLSN, newest > to {
                    report.skippedSnapshots.append("\(info.name): reaches past LSN \(to)")
                    continue
                }
                if let toTime = options.toTime, decoded.time > toTime {
                    report.skippedSnapshots.append("\(info.name): taken after the target time")
                    continue
                }
                let candidate = image.deals.map(\.state)
                let problems = candidate.flatMap { $0.invariantViolations() }
                guard problems.isEmpty else {
                    report.skippedSnapshots.append("\(info.name): state breaks invariants: \(problems.prefix(3).joined(separator: "; "))")
                    continue
                }
                let candidateIndexes = EngineIndexes(history: history, holdIDRuns: holdIDRuns)
                try StateCodec.index(candidate, into: candidateIndexes)
                // The investors the deals have forgotten (format 7).
                if let pairs = image.investorDeals { candidateIndexes.holdings.add(investors: pairs) }
                // Accepted.
                states = candidate
                for (i, entry) in image.deals.enumerated() {
                    dealIndex[IdKey(entry.state.info.id)] = i
                    skipUpTo.append(entry.lsn)
                }
                indexes = candidateIndexes
                directory = image.directory
                accessSkipUpTo = image.directoryLSN
                // The chain goes on from the snapshot's head (an image without one anchors at the next seal).
                verifier = AuditVerifier(from: image.audit ?? .genesis, anchored: image.audit != nil)
                auditFrom = image.audit != nil ? image.floorLSN : 0
                replayFrom = image.replayFrom
                snapshotNewest = image.newestLSN
                report.snapshotPath = info.path
                report.snapshotLSN = replayFrom
                break
            } catch let e as SnapshotError {
                if case .newerVersion = e { throw RecoveryError("\(e)") }
                report.skippedSnapshots.append("\(info.name): \(e)")
            } catch let e as DecodeError {
                if e.message.contains("newer than this engine") { throw RecoveryError("\(info.path): \(e.message)") }
                report.skippedSnapshots.append("\(info.name): \(e)")
            } catch {
                report.skippedSnapshots.append("\(info.name): \(error)")
            }
        }

        // 2. The log after the snapshot.
        struct Stop: Error {}
        var replayed = 0
        var lastLSN = replayFrom
        var lastDeal: (id: String, index: Int)?
        let summary: LogScanSummary
        do {
            summary = try LogReader.scan(directory: dir.wal, io: io, fromLSN: replayFrom + 1,
                                         onCorruption: options.truncateCorruption ? .truncate : .stop) { record in
                if let to = options.toLSN, record.lsn > to { throw Stop() }
                if let t = options.toTime, record.time > t { throw Stop() }
                if lastLSN == replayFrom && record.lsn != replayFrom + 1 {
                    throw RecoveryError("the log starts at LSN \(record.lsn) (\(record.segment)) but the state needs every record after LSN \(replayFrom): "
                        + (report.snapshotPath == nil ? "no usable snapshot covers the records before it (snapshots missing or damaged)" : "records are missing"))
                }
                if record.type == AuditSeal.recordType {
                    lastLSN = record.lsn
                    guard record.lsn > auditFrom else { return }
                    do {
                        try verifier.seal(try AuditSeal.decode(record.payload), lsn: record.lsn)
                    } catch {
                        throw RecoveryError("\(record.segment) offset \(record.offset) LSN \(record.lsn): audit chain broken: \(error). The engine will not start on a rewritten log; 'allocation-engine verify' names the entry.")
                    }
                    return
                }
                let change: Change
                do {
                    change = try ChangeCodec.decode(type: record.type, payload: record.payload)
                } catch {
                    throw RecoveryError("\(record.segment) offset \(record.offset) LSN \(record.lsn): undecodable record: \(error)")
                }
                lastLSN = record.lsn
                if record.lsn > auditFrom {
                    verifier.change(AuditEntry(seq: record.lsn, time: record.time, type: record.type, change: change, payload: record.payload))
                }
                if case .directory(let dc) = change {
                    if record.lsn <= accessSkipUpTo { report.recordsSkipped += 1; return }
                    do { try directory.apply(dc, time: record.time) } catch {
                        throw RecoveryError("\(record.segment) offset \(record.offset) LSN \(record.lsn): record does not apply: \(error)")
                    }
                } else if case .dealCreated(let info) = change {
                    let key = IdKey(info.id)
                    guard dealIndex[key] == nil else {
                        if let i = dealIndex[key], record.lsn <= skipUpTo[i] { report.recordsSkipped += 1; return }
                        throw RecoveryError("\(record.segment) offset \(record.offset) LSN \(record.lsn): deal \(info.id) created twice")
                    }
                    dealIndex[key] = states.count
                    states.append(DealState(info: info))
                    skipUpTo.append(0)
                } else {
                    // Consecutive records mostly belong to one deal: skip the map then.
                    let i: Int
                    if let last = lastDeal, last.id == change.deal {
                        i = last.index
                    } else if let found = dealIndex[IdKey(change.deal)] {
                        i = found
                        lastDeal = (change.deal, found)
                    } else {
                        throw RecoveryError("\(record.segment) offset \(record.offset) LSN \(record.lsn): change to unknown deal \(change.deal)")
                    }
                    if record.lsn <= skipUpTo[i] { report.recordsSkipped += 1; return }
                    do {
                        try states[i].apply(change, time: record.time, index: indexes, indexNew: true)
                    } catch {
                        throw RecoveryError("\(record.segment) offset \(record.offset) LSN \(record.lsn): record does not apply: \(error)")
                    }
                }
                replayed += 1
                if replayed & 4095 == 0 { onProgress?(replayed, record.lsn, record.segment, record.offset) }
            }
        } catch is Stop {
            report.stoppedEarly = true
            report.recordsReplayed = replayed
            report.lastLSN = lastLSN
            report.nextLSN = lastLSN + 1
            report.seconds = now() - started
            var r = Result(states: states, indexes: indexes, directory: directory, report: report)
            r.unsealed = verifier.adoptUnsealed()
            r.audit = verifier.head
            return r
        } catch let e as LogCorruption where e.recoveryCase == .segmentGap && e.offset == 0 && lastLSN == replayFrom {
            // The log's oldest kept segment starts after the state we have: the
            // snapshots that covered the records before it are gone or damaged.
            throw RecoveryError("the log starts after LSN \(replayFrom + 1) (\(e.segment)) and no usable snapshot covers the records before it: "
                + (report.skippedSnapshots.isEmpty ? "the snapshots directory is empty" : "snapshots skipped: \(report.skippedSnapshots.joined(separator: "; "))")
                + ". Restore the snapshots directory (or an older copy of the data directory); the engine will not start without that state.")
        } catch let e as LogCorruption {
            throw RecoveryError("damaged log: \(e).\nThe engine will not start on a damaged log. To cut the log at the damage and drop every record after it, start with --truncate-corrupt (inspect first with 'allocation-engine verify' and 'dump'; copy the data directory before).")
        }
        report.recordsReplayed = replayed
        report.segments = summary.segments
        if summary.segments == 0 && replayFrom > 0 {
            report.warnings.append("no log segments found beside snapshot LSN \(replayFrom): any change after that snapshot is lost (was the wal directory removed?)")
        }
        report.lastLSN = max(summary.lastLSN ?? 0, replayFrom)
        report.nextLSN = max(summary.nextLSN, replayFrom + 1)
        if snapshotNewest >= report.nextLSN {
            // The snapshot holds changes past the log's end (a log that lost its
            // tail: durability periodic or none, or a snapshot from before they
            // waited for the log). Its deals skip records up to their LSN, so
            // those LSNs must never be handed out again.
            report.warnings.append("snapshot covers records up to LSN \(snapshotNewest) but the log ends at LSN \(report.nextLSN - 1): the log continues after the snapshot")
            report.nextLSN = snapshotNewest + 1
        }
        if let t = summary.tornTail { report.tornTail = "\(t.segment) at offset \(t.offset) (\(t.bytes) bytes cut)" }
        if let t = summary.truncated {
            report.truncated = "\(t.segment) at offset \(t.offset), LSN \(t.lsn) (\(t.recoveryCase.rawValue))"
            report.truncatedSegment = t.segment
            report.droppedRecords = summary.droppedRecords
        }
        report.seconds = now() - started
        if verifier.unsealedLegacy > 0 {
            report.warnings.append("\(verifier.unsealedLegacy) records written before the audit chain are not sealed")
        }
        var r = Result(states: states, indexes: indexes, directory: directory, report: report)
        r.unsealed = verifier.adoptUnsealed()
        r.audit = verifier.head
        return r
    }
}
