import AllocationEngine
import Foundation
import Snapshot
import WAL

/// A full resync from the primary's newest snapshot, for a replica whose
/// place in the log the primary no longer keeps (`--prune-log` deleted the
/// segments it needs; docs/replication.md, "Full resync from a snapshot").
///
/// The primary's side is `REPLSNAPSHOT LIST` (its history ids, its
/// acknowledged LSN, its newest snapshot and its caller-id runs, with sizes)
/// and `REPLSNAPSHOT READ snapshot|run <name> <offset>` (up to 4 MiB of one
/// of those files). Both only read immutable files under fixed names.
///
/// The replica's side runs at start, before recovery, on an empty data
/// directory: it copies the snapshot and the id runs, then takes the records
/// from the snapshot's LSN on (and the history bytes before them) through
/// `REPLSYNC`, as the follower would, into a log that starts right after the
/// snapshot, until it has everything the primary had acknowledged when the
/// copy began. Recovery then opens that directory like any other (a snapshot
/// and the log after it: the per-deal replay rules are recovery's own), and
/// the follower goes on from the log's end under the primary's history id.
/// A snapshot is taken per deal while the deals keep changing, so its deals
/// are at different LSNs; that is why the log must start at the snapshot's
/// (lowest) LSN and not at its newest.
enum SnapshotTransfer {
    /// The most bytes of a file one `REPLSNAPSHOT READ` answers.
    static let maxPieceBytes = 4 << 20

    /// A file the copy takes, by name (in its fixed directory) and size.
    struct File: Equatable {
        var name: String
        var size: Int
    }

    struct Listing: Equatable {
        var ids: ReplicationIDs
        /// The primary's acknowledged LSN when it answered.
        var lsn: UInt64
        var snapshot: File?
        var runs: [File]

        func encoded() -> [UInt8] {
            var text = String(decoding: ids.encoded(), as: UTF8.self)
            text += "lsn \(lsn)\n"
            if let s = snapshot { text += "snapshot \(s.name) \(s.size)\n" }
            for r in runs { text += "run \(r.name) \(r.size)\n" }
            return Array(text.utf8)
        }

        static func decode(_ bytes: [UInt8]) -> Listing? {
            guard let ids = ReplicationIDs.decode(bytes) else { return nil }
            var listing = Listing(ids: ids, lsn: 0, snapshot: nil, runs: [])
            var sawLSN = false
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                let f = line.split(separator: " ")
                switch f.first {
                case "lsn":
                    guard f.count == 2, let n = UInt64(f[1]) else { return nil }
                    listing.lsn = n; sawLSN = true
                case "snapshot":
                    guard f.count == 3, SnapshotFormat.parseName(String(f[1])) != nil, let size = Int(f[2]), size >= 0 else { return nil }
                    listing.snapshot = File(name: String(f[1]), size: size)
                case "run":
                    guard f.count == 3, isRunName(String(f[1])), let size = Int(f[2]), size >= 0 else { return nil }
                    listing.runs.append(File(name: String(f[1]), size: size))
                default: continue
                }
            }
            return sawLSN ? listing : nil
        }
    }

    /// `ids-<digits>.run`: the only run names read or written (no path can
    /// be smuggled through a name).
    static func isRunName(_ name: String) -> Bool {
        guard name.hasPrefix(CallerIDRuns.filePrefix), name.hasSuffix(CallerIDRuns.fileSuffix) else { return false }
        let digits = name.dropFirst(CallerIDRuns.filePrefix.count).dropLast(CallerIDRuns.fileSuffix.count)
        return !digits.isEmpty && digits.count <= 12 && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    // MARK: The primary's side

    static func listing(dataDir: String, ids: ReplicationIDs, acknowledged: UInt64, io: any FileIO = PosixFileIO()) -> Listing {
        let dir = DataDirectory(dataDir)
        var listing = Listing(ids: ids, lsn: acknowledged, snapshot: nil, runs: [])
        // The newest complete snapshot (the store lists no temp files).
        if let newest = try? SnapshotStore(directory: dir.snapshots, io: io).list().first,
           let size = try? io.fileSize(path: newest.path) {
            listing.snapshot = File(name: newest.name, size: size)
        }
        for name in ((try? io.listDirectory(dir.history)) ?? []).filter(isRunName).sorted() {
            if let size = try? io.fileSize(path: FilePath.join(dir.history, name)) { listing.runs.append(File(name: name, size: size)) }
        }
        return listing
    }

    struct Refusal: Error {
        let code: String
        let message: String
    }

    /// Up to `maxPieceBytes` of a snapshot or an id run, from `offset`.
    static func piece(dataDir: String, kind: String, name: String, offset: Int, io: any FileIO = PosixFileIO()) throws(Refusal) -> [UInt8] {
        let dir = DataDirectory(dataDir)
        let path: String
        switch kind {
        case "snapshot":
            guard SnapshotFormat.parseName(name) != nil else { throw Refusal(code: "ERR", message: "not a snapshot name: \(name.prefix(64))") }
            path = FilePath.join(dir.snapshots, name)
        case "run":
            guard isRunName(name) else { throw Refusal(code: "ERR", message: "not an id run name: \(name.prefix(64))") }
            path = FilePath.join(dir.history, name)
        default:
            throw Refusal(code: "ERR", message: "REPLSNAPSHOT READ takes snapshot or run, not \(kind.prefix(32))")
        }
        guard offset >= 0 else { throw Refusal(code: "ERR", message: "negative offset") }
        let fd: FileHandleID
        // A snapshot pruned meanwhile: the replica starts its copy over.
        do { fd = try io.open(path, readOnly: true) } catch {
            throw Refusal(code: "NOTFOUND", message: "\(name) is no longer on this primary (\(error)): list again")
        }
        defer { try? io.close(fd) }
        do {
            var out = [UInt8](repeating: 0, count: max(0, min(maxPieceBytes, try io.fileSize(fd) - offset)))
            let n = try out.withUnsafeMutableBytes { (b) throws(IOError) -> Int in try io.pread(fd, into: b, offset: offset) }
            out.removeSubrange(n...)
            return out
        } catch {
            throw Refusal(code: "ERR", message: "reading \(name): \(error)")
        }
    }

    // MARK: The replica's side

    struct Failure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// `DIR/bootstrap`: present while a copy from the primary is under way.
    /// Its data (a partial copy of the primary's) is removed at the next
    /// start and the copy begins again; it never holds data of its own.
    static func bootstrapMarker(_ dataDir: String) -> String { FilePath.join(dataDir, "bootstrap") }

    static let copiedParts = ["wal", "snapshots", HistoryStore.directoryName, "replication"]

    /// Marks the directory as being bootstrapped (before anything is copied).
    static func markBootstrap(dataDir: String) throws {
        try PosixFileIO().writeWhole(Array("copying the primary's snapshot\n".utf8), to: bootstrapMarker(dataDir))
    }

    static func needsBootstrap(dataDir: String) -> Bool { FileManager.default.fileExists(atPath: bootstrapMarker(dataDir)) }

    static func syncDirectory(_ path: String) { try? PosixFileIO().fsyncDirectory(path) }

    /// Removes a partial copy (only the parts a copy writes).
    static func clearCopy(dataDir: String) throws {
        let fm = FileManager.default
        for part in copiedParts where fm.fileExists(atPath: FilePath.join(dataDir, part)) {
            try fm.removeItem(atPath: FilePath.join(dataDir, part))
        }
        syncDirectory(dataDir)
    }

    /// Copies the primary's newest snapshot, its id runs, and the log and
    /// history after the snapshot into `dataDir`, retrying (after clearing
    /// the partial copy) until it succeeds or `shouldStop` says so. Returns
    /// the LSN the copied log ends at, or nil when stopped.
    static func bootstrap(dataDir: String, host: String, port: Int, auth: String?, listeningPort: Int,
                          segmentBytes: Int, log: @escaping @Sendable (String) -> Void,
                          shouldStop: @Sendable () -> Bool = { false }) -> UInt64? {
        var reported: String?
        while !shouldStop() {
            do {
                try clearCopy(dataDir: dataDir)
                let end = try copyOnce(dataDir: dataDir, host: host, port: port, auth: auth, listeningPort: listeningPort,
                                       segmentBytes: segmentBytes, log: log)
                try? FileManager.default.removeItem(atPath: bootstrapMarker(dataDir))
                syncDirectory(dataDir)
                return end
            } catch {
                let message = "\(error)"
                if message != reported { log("replication: copy of the primary's snapshot failed, retrying every second: \(message)"); reported = message }
                Thread.sleep(forTimeInterval: 1)
            }
        }
        return nil
    }

    private static func copyOnce(dataDir: String, host: String, port: Int, auth: String?, listeningPort: Int,
                                 segmentBytes: Int, log: @Sendable (String) -> Void) throws -> UInt64 {
        let started = monotonicSeconds()
        let link = try PrimaryLink(host: host, port: port, timeoutSeconds: 10)
        if let auth, case .error(let e) = try link.call(["AUTH", auth]) { throw Failure(message: "AUTH refused: \(e)") }
        guard case .bulk(let listBytes?) = try link.call(["REPLSNAPSHOT", "LIST"]) else { throw Failure(message: "REPLSNAPSHOT LIST refused") }
        guard let listing = Listing.decode(listBytes) else { throw Failure(message: "REPLSNAPSHOT LIST: an answer this replica cannot read") }
        guard let snapshot = listing.snapshot, let snapshotLSN = SnapshotFormat.parseName(snapshot.name) else {
            throw Failure(message: "the primary has no snapshot to copy (take one there with SNAPSHOT)")
        }
        log("replication: copying the primary's snapshot \(snapshot.name) (\(snapshot.size) bytes), \(listing.runs.count) id runs, and its log from LSN \(snapshotLSN + 1) to \(listing.lsn)")
        let dir = DataDirectory(dataDir)
        let fm = FileManager.default
        for d in [dir.path, dir.wal, dir.snapshots, dir.history] { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) }
        // The runs first, then the snapshot: the snapshot's state names ids in them.
        for run in listing.runs { try copyFile(link, kind: "run", run, into: dir.history) }
        try copyFile(link, kind: "snapshot", snapshot, into: dir.snapshots)
        // Checked now (its checksums), not found damaged by recovery later.
        do { _ = try SnapshotFormat.decode(try PosixFileIO().readAll(FilePath.join(dir.snapshots, snapshot.name)), path: snapshot.name) } catch {
            throw Failure(message: "the copied snapshot does not verify: \(error)")
        }
        try DurableEngine.saveReplicationIDs(listing.ids, dataDir: dataDir, io: PosixFileIO())

        // The log from the snapshot's LSN on, and the history bytes before it.
        let history = try HistoryStore(directory: dir.history, io: PosixFileIO())
        defer { history.close() }
        let config = LogConfig(directory: dir.wal, mode: .strict, periodicIntervalMillis: 10, segmentBytes: segmentBytes)
        let writer = try LogWriter(config: config, io: PosixFileIO(), nextLSN: snapshotLSN + 1)
        defer { try? writer.close() }
        var next = snapshotLSN + 1
        // Until the log reaches what the primary had acknowledged at the
        // listing, and an answer carried less history than an answer may
        // (so the history is complete up to the primary's end).
        var historyDone = false
        while next <= listing.lsn || !historyDone {
            let end = history.end
            let reply = try link.call(["REPLSYNC", listing.ids.id, String(next), String(end.file), String(end.offset), String(listeningPort)])
            guard case .bulk(let bytes?) = reply else {
                if case .error(let e) = reply { throw Failure(message: "REPLSYNC from LSN \(next) refused: \(e)") }
                throw Failure(message: "unexpected reply to REPLSYNC")
            }
            let message: SyncMessage
            do { message = try SyncMessage.decode(bytes) } catch { throw Failure(message: "bad REPLSYNC reply: \(error)") }
            guard message.ids.id == listing.ids.id else { throw Failure(message: "the primary's history changed during the copy") }
            let records = try ShippedRecords.parse(message.records, firstLSN: next)
            for (location, piece) in message.history where !piece.isEmpty { try history.replicate(at: location, piece) }
            historyDone = message.history.reduce(0) { $0 + $1.1.count } < SyncMessage.maxHistoryBytes
            guard let last = records.last?.lsn else { continue }
            guard let appended = try writer.appendShipped(records), appended == last else {
                throw Failure(message: "the copied log did not take LSNs \(next) to \(last)")
            }
            // Durable before the next request, which acknowledges it to the primary.
            if let e = writer.waitDurable(last) { throw Failure(message: "the copied log failed: \(e)") }
            next = last + 1
        }
        log("replication: copied the primary's snapshot \(snapshot.name) and \(next - snapshotLSN - 1) records in \(String(format: "%.1f", monotonicSeconds() - started)) s; recovering from them")
        return next - 1
    }

    /// Copies one file in pieces to `<name>.part`, syncs it, checks its
    /// size, and renames it into place (recovery never reads a part file).
    private static func copyFile(_ link: PrimaryLink, kind: String, _ file: File, into directory: String,
                                 io: any FileIO = PosixFileIO()) throws {
        let path = FilePath.join(directory, file.name), part = path + ".part"
        let fd = try io.create(part)
        var closed = false
        defer { if !closed { try? io.close(fd) } }
        var offset = 0
        while offset < file.size {
            guard case .bulk(let bytes?) = try link.call(["REPLSNAPSHOT", "READ", kind, file.name, String(offset)]) else {
                throw Failure(message: "the primary stopped serving \(file.name) at offset \(offset)")
            }
            guard !bytes.isEmpty else { throw Failure(message: "\(file.name) ended at \(offset) bytes on the primary, not \(file.size)") }
            try io.pwrite(fd, bytes, offset: offset)
            offset += bytes.count
        }
        guard offset == file.size else { throw Failure(message: "\(file.name): \(offset) bytes copied, \(file.size) listed") }
        try io.fsync(fd)
        try io.close(fd)
        closed = true
        try io.rename(from: part, to: path)
        try io.fsyncDirectory(directory)
    }
}
