import AllocationEngine
import Foundation
import Snapshot
import WAL

func describe(_ c: Change) -> String {
    switch c {
    case .dealCreated(let i):
        return "deal=\(i.id) number=\(i.number) name=\"\(i.name)\" currency=\(i.currency) status=\(i.status.name)"
            + (i.offerUnitPrice.map { " price=\($0)" } ?? "") + (i.openAt.map { " open_at=\($0)" } ?? "") + (i.closeAt.map { " close_at=\($0)" } ?? "")
    case .dealStatus(let d, let s): return "deal=\(d) status=\(s.name)"
    case .lotAdded(let d, let l):
        return "deal=\(d) lot=\(l.id) units=\(l.unitsTotal) unit_cost=\(l.unitCost) currency=\(l.currency)"
            + (l.acquiredAt.map { " acquired=\($0)" } ?? "") + (l.lockupUntil.map { " lockup=\($0)" } ?? "")
    case .lotResized(let d, let l, let u): return "deal=\(d) lot=#\(l) units_total=\(u)"
    case .holdPlaced(let d, let h):
        return "deal=\(d) hold=\(h.id) investor=\(h.investor) units=\(h.requested) price=\(h.price) expires_at=\(h.expiresAt)"
            + (h.partial ? " partial" : "") + " lots=" + h.parts.map { "#\($0.lot):\($0.units)" }.joined(separator: ",")
            + (h.createdBy.map { " by=\($0)" } ?? "")
    case .holdReleased(let d, let h): return "deal=\(d) hold=\(h)"
    case .holdExpired(let d, let h): return "deal=\(d) hold=\(h)"
    case .allocationCreated(let d, let h, let a, let by): return "deal=\(d) hold=\(h) allocation=\(a)" + (by.map { " by=\($0)" } ?? "")
    case .allocationStatus(let d, let a, let s, let by): return "deal=\(d) allocation=\(a) status=\(s.name)" + (by.map { " by=\($0)" } ?? "")
    case .directory(let c): return c.summary
    case .people(let d, let c): return "deal=\(d) " + c.summary
    case .money(let d, let c): return "deal=\(d) " + c.summary
    case .holdsArchived(let d, let leaving, let location), .allocationsArchived(let d, let leaving, let location),
         .approvalsArchived(let d, let leaving, let location):
        switch leaving {
        case .chunk(let c, let keep): return "deal=\(d) chunk=\(c) history=\(location) kept=\(keep.count)"
        case .stragglers(let slots): return "deal=\(d) stragglers=\(slots.count) history=\(location)"
        }
    case .holdIDsMoved(let d, let count, let run): return "deal=\(d) ids=\(count) run=\(CallerIDRuns.fileName(run))"
    case .group(let d, let cs):
        return "deal=\(d) changes=\(cs.count): " + cs.map { "[\(Change.typeNames[$0.recordType] ?? "?") \(describe($0))]" }.joined(separator: " ")
    }
}

func parseTime(_ text: String, _ flag: String) throws -> Int64 {
    if let v = Int64(text) { return v >= 100_000_000_000 ? v : v * 1000 }
    if let v = Double(text), v >= 0 { return Int64((v * 1000).rounded()) }
    throw UsageError("--\(flag) must be unix seconds (or milliseconds), got '\(text)'")
}

enum VerifyCommand {
    static func run(_ args: [String]) throws -> Int32 {
        let o = try Options(command: "allocation-engine verify", specs: [], arguments: args)
        if o.wantsHelp {
            print(o.helpText(summary: "Checks every snapshot (checksum, format, invariants) and every log segment (headers, CRC, LSN continuity), then replays the whole directory. Exits 1 on damage.",
                             usage: "allocation-engine verify DIR"))
            return 0
        }
        guard o.positional.count == 1 else { throw UsageError("usage: allocation-engine verify DIR") }
        let dir = DataDirectory(o.positional[0])
        let io = PosixFileIO()
        guard io.fileExists(dir.path) else { printError("\(dir.path): no such directory"); return 1 }
        var damaged = false

        let store = SnapshotStore(directory: dir.snapshots, io: io)
        let snapshots = (try? store.list()) ?? []
        for info in snapshots {
            do {
                let decoded = try SnapshotFormat.decode(try io.readAll(info.path), path: info.path)
                let image = try StateCodec.decode(decoded.payload)
                let problems = image.deals.flatMap { $0.state.invariantViolations() }
                if problems.isEmpty {
                    print("snapshot \(info.name): ok, LSN \(image.replayFrom), \(image.deals.count) deals, \(decoded.payload.count) bytes")
                } else {
                    damaged = true
                    print("snapshot \(info.name): BROKEN INVARIANTS: \(problems.prefix(5).joined(separator: "; "))")
                }
            } catch {
                damaged = true
                print("snapshot \(info.name): DAMAGED: \(error)")
            }
        }

        var records = 0
        var decodeFailures = 0
        let summary: LogScanSummary
        let progress = ProgressReporter("verify", walDirectory: dir.wal)
        progress.begin("log scan")
        do {
            summary = try LogReader.scan(directory: dir.wal, io: io) { record in
                records += 1
                if records & 4095 == 0 { progress.update(records: records, segment: record.segment, offset: record.offset) }
                if record.type == AuditSeal.recordType { return }  // checked with the chain below
                do { _ = try ChangeCodec.decode(type: record.type, payload: record.payload) } catch {
                    decodeFailures += 1
                    if decodeFailures <= 10 { progress.clearLine(); print("record LSN \(record.lsn) in \(record.segment) at \(record.offset): UNDECODABLE: \(error)") }
                }
            }
        } catch {
            progress.clearLine()
            print("log: DAMAGED: \(error)")
            return 1
        }
        progress.end(records: records)
        if decodeFailures > 0 { damaged = true }
        let range = summary.firstLSN.map { "\($0)...\(summary.lastLSN ?? $0)" } ?? "empty"
        print("log: \(summary.segments) segments, \(records) records, LSN \(range)")
        if let t = summary.tornTail { print("log: torn record at the end cut off on recovery: \(t.segment) offset \(t.offset) (\(t.bytes) bytes); nothing acknowledged is lost") }

        do {
            let a = try AuditLog.verify(dir, io: io)
            print("audit: \(a.entries) entries in \(a.seals) seals from LSN \(a.firstLSN ?? 0), head \(a.head.seq) \(a.head.hash)"
                  + (a.anchorsChecked > 0 ? ", \(a.anchorsChecked) snapshot heads matched" : "")
                  + (a.unsealed > 0 ? ", \(a.unsealed) entries after the last seal (sealed on the next start)" : ""))
        } catch {
            damaged = true
            print("audit: CORRUPT: \(error)")
        }

        do {
            progress.begin("replay")
            let result = try Recovery.recover(dir, io: io, now: monotonicSeconds) { records, _, segment, offset in
                progress.update(records: records, segment: segment, offset: offset)
            }
            progress.end(records: result.report.recordsReplayed, seconds: result.report.seconds)
            progress.summary()
            let holds = result.states.reduce(0) { $0 + $1.holds.count }
            let pending = result.states.reduce(0) { $0 + $1.pendingHolds }
            let allocations = result.states.reduce(0) { $0 + $1.allocations.count }
            let problems = result.states.flatMap { $0.invariantViolations() }
            print("state: \(result.states.count) deals, \(holds) holds (\(pending) pending), \(allocations) allocations, next LSN \(result.report.nextLSN)")
            print("digest: \(Engine.digest(of: result.states, directory: result.directory))")
            if !problems.isEmpty {
                damaged = true
                print("state: BROKEN INVARIANTS: \(problems.prefix(5).joined(separator: "; "))")
            } else {
                print("invariant: holds for every lot")
            }
            // Every history entry the state names must read back whole (each row's CRC).
            if result.states.contains(where: { $0.holds.archivedRows > 0 || $0.allocations.archivedRows > 0 || $0.people.approvals.archivedRows > 0 }) {
                let store = try HistoryStore(directory: dir.history, io: io)
                var entries = 0, rows = 0, bad: [String] = []
                // An entry of stragglers is named by each chunk it has rows of: read it once.
                func check<T: HistoryRow>(_ archived: [Int32: [HistoryLocation]], _: T.Type, of s: DealState) {
                    for l in Set(archived.values.joined()).sorted(by: { ($0.file, $0.offset) < ($1.file, $1.offset) }) {
                        do {
                            let e = try store.rows(T.self, at: l)
                            if e.deal != s.info.number { bad.append("\(l): of deal #\(e.deal), named by \(s.info.id)") }
                            entries += 1
                            rows += e.rows.count
                        } catch {
                            bad.append("\(l): \(error)")
                        }
                    }
                }
                for s in result.states {
                    check(s.holds.archived, ArchivedHold.self, of: s)
                    check(s.allocations.archived, ArchivedAllocation.self, of: s)
                    check(s.people.approvals.archived, ArchivedApproval.self, of: s)
                }
                // The on-disk id runs: every block read back against its CRC.
                if io.fileExists(dir.history) {
                    let access = HistoryAccess()
                    access.attach(store)
                    let runs = CallerIDRuns(history: access)
                    do {
                        try runs.open(directory: dir.history, io: io)
                        let ids = try runs.allRecords()
                        if !ids.isEmpty { print("hold id runs: \(runs.stats.runs) runs, \(ids.count) ids, all readable") }
                    } catch {
                        bad.append("\(error)")
                    }
                    runs.close()
                }
                store.close()
                if bad.isEmpty {
                    print("history: \(entries) entries, \(rows) archived rows (holds, rejected allocations, decided approvals), all readable")
                } else {
                    damaged = true
                    print("history: DAMAGED: \(bad.prefix(5).joined(separator: "; "))")
                }
            }
        } catch {
            progress.clearLine()
            print("replay: FAILED: \(error)")
            return 1
        }
        print(damaged ? "verify: DAMAGE FOUND" : "verify: ok")
        return damaged ? 1 : 0
    }
}

enum DumpCommand {
    static let specs: [Options.Spec] = [
        .init(name: "from-lsn", value: "N", help: "first LSN to print"),
        .init(name: "to-lsn", value: "N", help: "last LSN to print"),
        .init(name: "from-time", value: "T", help: "records accepted at or after T (unix seconds or ms)"),
        .init(name: "to-time", value: "T", help: "records accepted at or before T"),
        .init(name: "deal", value: "ID", help: "only this deal's records"),
        .init(name: "type", value: "NAME", help: "only this record type (e.g. hold.placed)"),
        .init(name: "limit", value: "N", help: "print at most N records"),
    ]

    static func run(_ args: [String]) throws -> Int32 {
        let o = try Options(command: "allocation-engine dump", specs: specs, arguments: args)
        if o.wantsHelp {
            print(o.helpText(summary: "Prints log records, one per line: LSN, time (ms), type, fields.",
                             usage: "allocation-engine dump DIR [filters]"))
            return 0
        }
        guard o.positional.count == 1 else { throw UsageError("usage: allocation-engine dump DIR [filters]") }
        let dir = DataDirectory(o.positional[0])
        let fromLSN = UInt64(try o.int("from-lsn", default: 0, range: 0...Int.max))
        let toLSN = UInt64(try o.int("to-lsn", default: Int.max, range: 0...Int.max))
        let fromTime = try o.string("from-time").map { try parseTime($0, "from-time") } ?? Int64.min
        let toTime = try o.string("to-time").map { try parseTime($0, "to-time") } ?? Int64.max
        let limit = try o.int("limit", default: Int.max, range: 1...Int.max)
        let deal = o.string("deal")
        var typeFilter: UInt8?
        if let name = o.string("type") {
            guard let t = Change.typeNames.first(where: { $0.value == name })?.key else {
                throw UsageError("unknown record type '\(name)': one of \(Change.typeNames.values.sorted().joined(separator: ", "))")
            }
            typeFilter = t
        }
        struct Done: Error {}
        var printed = 0
        var scanned = 0
        // Redrawn in place only when the records themselves do not go to the same terminal.
        let progress = ProgressReporter("dump", walDirectory: dir.wal, live: isatty(2) != 0 && isatty(1) == 0)
        progress.begin()
        defer { progress.clearLine() }
        do {
            _ = try LogReader.scan(directory: dir.wal, io: PosixFileIO(), fromLSN: fromLSN) { r in
                if r.lsn > toLSN { throw Done() }
                scanned += 1
                if scanned & 4095 == 0 { progress.update(records: scanned, segment: r.segment, offset: r.offset) }
                guard r.time >= fromTime, r.time <= toTime else { return }
                if let typeFilter, r.type != typeFilter { return }
                let text: String
                if r.type == AuditSeal.recordType {
                    if deal != nil { return }
                    let seal = try? AuditSeal.decode(r.payload)
                    print("\(r.lsn) \(r.time) audit.seal " + (seal.map { "entries=\($0.firstSeq)..\($0.firstSeq + UInt64($0.hashes.count) - 1) head=\($0.hashes.last!)" } ?? "UNDECODABLE"))
                    printed += 1
                    if printed >= limit { throw Done() }
                    return
                }
                do {
                    let change = try ChangeCodec.decode(type: r.type, payload: r.payload)
                    if let deal, change.deal != deal { return }
                    text = describe(change)
                } catch {
                    text = "UNDECODABLE \(error)"
                }
                print("\(r.lsn) \(r.time) \(Change.typeNames[r.type] ?? "type\(r.type)") \(text)")
                printed += 1
                if printed >= limit { throw Done() }
            }
        } catch is Done {}
        progress.end(records: scanned)
        progress.summary()
        return 0
    }
}

enum ReplayCommand {
    static let specs: [Options.Spec] = [
        .init(name: "to-lsn", value: "N", help: "replay up to and including LSN N"),
        .init(name: "to-time", value: "T", help: "replay records accepted at or before T (unix seconds or ms)"),
        .init(name: "out", value: "DIR2", help: "write the rebuilt state as a new data directory the server can start from"),
        .init(name: "truncate-corrupt", value: nil, help: "stop at a damaged record instead of failing"),
    ]

    static func run(_ args: [String], writeOut: Bool) throws -> Int32 {
        let name = writeOut ? "replay" : "digest"
        let o = try Options(command: "allocation-engine \(name)", specs: writeOut ? specs : Array(specs.prefix(2)), arguments: args)
        if o.wantsHelp {
            print(o.helpText(summary: writeOut
                             ? "Rebuilds the state of DIR up to a point (point-in-time recovery) into a new data directory, printing its digest and inventory."
                             : "Prints the state digest and per-deal inventory of DIR (optionally as of an LSN or time).",
                             usage: writeOut ? "allocation-engine replay DIR (--to-lsn N | --to-time T) --out DIR2" : "allocation-engine digest DIR [--to-lsn N | --to-time T]"))
            return 0
        }
        guard o.positional.count == 1 else { throw UsageError("usage: allocation-engine \(name) DIR ...") }
        var options = RecoveryOptions()
        if let t = o.string("to-lsn") {
            guard let v = UInt64(t) else { throw UsageError("--to-lsn must be a number, got '\(t)'") }
            options.toLSN = v
        }
        if let t = o.string("to-time") { options.toTime = try parseTime(t, "to-time") }
        options.truncateCorruption = o.flag("truncate-corrupt")
        var out: DataDirectory?
        if writeOut {
            guard options.toLSN != nil || options.toTime != nil else { throw UsageError("replay needs --to-lsn N or --to-time T") }
            guard let path = o.string("out") else { throw UsageError("replay needs --out DIR2") }
            let io = PosixFileIO()
            if io.fileExists(path), !((try? io.listDirectory(path)) ?? []).isEmpty {
                throw UsageError("--out \(path) exists and is not empty; choose a new directory")
            }
            out = DataDirectory(path)
        }
        let dir = DataDirectory(o.positional[0])
        let io = PosixFileIO()
        guard io.fileExists(dir.path) else { throw UsageError("\(dir.path): no such directory") }
        let progress = ProgressReporter(name, walDirectory: dir.wal)
        progress.begin()
        let result: Recovery.Result
        do {
            result = try Recovery.recover(dir, io: io, options: options, now: monotonicSeconds) { records, _, segment, offset in
                progress.update(records: records, segment: segment, offset: offset)
            }
        } catch {
            progress.clearLine()
            throw error
        }
        let r = result.report
        progress.end(records: r.recordsReplayed, seconds: r.seconds)
        progress.summary()
        let rate = Double(r.recordsReplayed) / max(r.seconds, 1e-9)
        print("replayed \(r.recordsReplayed) records after snapshot LSN \(r.snapshotLSN) in \(String(format: "%.3f", r.seconds)) s (\(Int(rate)) records/s); last LSN \(r.lastLSN)")
        for s in r.skippedSnapshots { print("snapshot skipped: \(s)") }
        if let t = r.truncated { print("log truncated at \(t): \(r.droppedRecords) records dropped") }
        print("digest: \(Engine.digest(of: result.states, directory: result.directory))")
        for s in result.states.sorted(by: { $0.info.id < $1.info.id }) {
            let inv = s.inventory()
            print("deal \(s.info.id) \(s.info.status.name): total \(inv.unitsTotal) remaining \(inv.unitsRemaining) held \(inv.unitsHeld) allocated \(inv.unitsAllocated) pending_holds \(inv.holdsPending) utilization \(inv.utilizationPercent)%")
        }
        let problems = result.states.flatMap { $0.invariantViolations() }
        if !problems.isEmpty {
            print("BROKEN INVARIANTS: \(problems.prefix(5).joined(separator: "; "))")
            return 1
        }
        if let out {
            try io.createDirectory(out.path)
            try io.createDirectory(out.wal)
            let lsn = r.lastLSN
            let image = EngineImage(floorLSN: lsn, deals: result.states.map { ($0, lsn) }, directory: result.directory, directoryLSN: lsn,
                                    investorDeals: result.indexes.holdings.investorDeals())
            // The rebuilt state names rows in the history by file and offset: copy the files as they are.
            var copied = 0
            if io.fileExists(dir.history) {
                try io.createDirectory(out.history)
                for name in try io.listDirectory(dir.history).sorted() where name.hasSuffix(".dat") {
                    let bytes = try io.readAll(FilePath.join(dir.history, name))
                    let fd = try io.create(FilePath.join(out.history, name))
                    try io.write(fd, bytes)
                    try io.fsync(fd)
                    try io.close(fd)
                    copied += bytes.count
                }
                // Caller ids in the id runs whose holds have left memory in the
                // rebuilt state (not those of holds after the target point).
                let access = HistoryAccess()
                let runs = CallerIDRuns(history: access)
                try runs.open(directory: dir.history, io: io)
                let byNumber = Dictionary(result.states.map { ($0.info.number, $0) }, uniquingKeysWith: { a, _ in a })
                let keep = try runs.allRecords().filter { r in
                    guard let s = byNumber[r.deal] else { return false }
                    return Int(r.slot) < s.holds.count && !s.holds.isInMemory(r.slot)
                }
                runs.close()
                try CallerIDRuns.writeRun(keep, directory: out.history, io: io)
                try io.fsyncDirectory(out.history)
            }
            let path = try SnapshotStore(directory: out.snapshots, io: io).write(lsn: lsn, time: 0, payload: StateCodec.encode(image))
            if copied > 0 { print("copied the history (\(copied) bytes) to \(out.history)") }
            print("wrote \(out.path): snapshot \(path) at LSN \(lsn); start it with: allocation-engine serve --data-dir \(out.path)")
        }
        return 0
    }
}
