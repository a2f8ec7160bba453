import Glibc
import Synchronization
import WAL

/// Caller-chosen hold ids whose holds left memory, kept on disk so that a
/// retry with the same `ID` finds its hold for the life of the engine while
/// memory keeps about 1.3 bytes per such id instead of the id itself.
///
/// An id reaches a run in three steps: its hold leaves memory for the history
/// (`holds.archived`, the id stays in the deal's list and the id map); when the
/// lists hold `DurableEngine`'s threshold, their ids are written to a new run,
/// synced and renamed into place; then each deal logs `hold_ids.moved` and
/// drops them from memory. A crash between the run and the records leaves the
/// ids in both places, which is harmless (the next run takes them again).
///
/// A run (`DIR/history/ids-NNNNNNNN.run`) is an immutable sorted array of
/// 24-byte records (the id's FNV-1a hash, deal, slot, and the history entry
/// holding the row), in blocks of 128, with a Bloom filter (10 bits an id, 7
/// probes: about 1 % false positives) and the first hash of each block kept in
/// memory. A lookup that misses costs a few memory probes per run; one that
/// hits reads one block (`pread`, page-cached) and confirms the id against the
/// history row, so a hash collision never answers for another id. Runs merge
/// pairwise like a binary counter (a run merges into the one before while that
/// is at most twice its size), so there are O(log n) of them. Layout:
/// docs/wal-format.md.
public final class CallerIDRuns: Sendable {
    public static let filePrefix = "ids-"
    public static let fileSuffix = ".run"
    static let magic: UInt32 = 0x3149_4541 // "AEI1"
    static let headerBytes = 32
    static let recordBytes = 24
    static let blockRecords = 128
    static let bitsPerID = 10
    static let probes = 7

    struct Record: Comparable {
        var hash: UInt64
        var deal: UInt32
        var slot: Int32
        var file: UInt32
        var offset: UInt32
        static func < (a: Record, b: Record) -> Bool {
            (a.hash, a.deal, a.slot, a.file, a.offset) < (b.hash, b.deal, b.slot, b.file, b.offset)
        }
        var location: HistoryLocation { HistoryLocation(file: file, offset: UInt64(offset)) }
    }

    /// One run file, open for reads; what it keeps in memory is its filter and fences.
    final class Run: Sendable {
        let number: UInt32
        let path: String
        let count: Int
        let fd: FileHandleID
        let bloom: [UInt64]
        let fences: [UInt64]
        let blockCRCs: [UInt32]
        let bytes: Int
        init(number: UInt32, path: String, count: Int, fd: FileHandleID, bloom: [UInt64], fences: [UInt64], blockCRCs: [UInt32], bytes: Int) {
            self.number = number; self.path = path; self.count = count; self.fd = fd
            self.bloom = bloom; self.fences = fences; self.blockCRCs = blockCRCs; self.bytes = bytes
        }
        var memoryBytes: Int { bloom.count * 8 + fences.count * 8 + blockCRCs.count * 4 + 96 }
    }

    private struct Place: Sendable {
        var directory: String
        var io: any FileIO
        var runs: [Run] = []
        var nextNumber: UInt32 = 1
    }
    private let place = Locked<Place?>(nil)
    /// Runs as readers see them (copied out under the lock, read without it).
    private let published = Locked<[Run]>([])
    /// Reads of the history rows that confirm a candidate.
    private let history: HistoryAccess

    public init(history: HistoryAccess) { self.history = history }

    public struct Stats: Sendable, Equatable {
        public var runs = 0
        public var ids = 0
        public var fileBytes = 0
        public var memoryBytes = 0
        public var lookupsOnDisk = 0
    }
    private let diskReads = Atomic<Int>(0)
    private let mergeError = Locked<String?>(nil)
    public var lastMergeError: String? { mergeError.withLock { $0 } }

    public var stats: Stats {
        let runs = published.withLock { $0 }
        var s = Stats()
        s.runs = runs.count
        for r in runs { s.ids += r.count; s.fileBytes += r.bytes; s.memoryBytes += r.memoryBytes }
        s.lookupsOnDisk = diskReads.load(ordering: .relaxed)
        return s
    }

    public static func fileName(_ n: UInt32) -> String {
        let hex = String(n, radix: 16)
        return filePrefix + String(repeating: "0", count: max(0, 8 - hex.count)) + hex + fileSuffix
    }

    static func parseFileName(_ name: String) -> UInt32? {
        guard name.hasPrefix(filePrefix), name.hasSuffix(fileSuffix), name.count == filePrefix.count + 8 + fileSuffix.count else { return nil }
        return UInt32(name.dropFirst(filePrefix.count).dropLast(fileSuffix.count), radix: 16)
    }

    /// Opens every run in `directory` (the history directory), removing
    /// leftovers of a write or merge a crash cut short. A damaged run is an
    /// error naming it: its ids left memory, so starting without it could let
    /// a retry book twice.
    public func open(directory: String, io: any FileIO) throws(EngineError) {
        var runs: [Run] = []
        var next: UInt32 = 1
        do {
            for name in try io.listDirectory(directory) {
                if name.hasPrefix(Self.filePrefix) && name.hasSuffix(".tmp") {
                    try io.unlink(FilePath.join(directory, name))
                    continue
                }
                guard let n = Self.parseFileName(name) else { continue }
                runs.append(try Self.load(number: n, path: FilePath.join(directory, name), io: io))
                next = max(next, n + 1)
            }
        } catch let e as EngineError {
            throw e
        } catch {
            throw EngineError(.corrupt, "hold id runs in \(directory): \(error)")
        }
        runs.sort { $0.number < $1.number }
        place.withLock { $0 = Place(directory: directory, io: io, runs: runs, nextNumber: next) }
        published.withLock { $0 = runs }
    }

    public var isOpen: Bool { place.withLock { $0 != nil } }

    public func close() {
        place.withLock { p in
            if let p { for r in p.runs { try? p.io.close(r.fd) } }
            p = nil
        }
        published.withLock { $0 = [] }
    }

    // MARK: - Lookup

    @inline(__always)
    static func probeStart(_ hash: UInt64) -> (UInt64, UInt64) {
        var x = hash
        x ^= x >> 33; x &*= 0xff51_afd7_ed55_8ccd; x ^= x >> 33; x &*= 0xc4ce_b9fe_1a85_ec53; x ^= x >> 33
        return (x, (x >> 29 | x << 35) | 1)
    }

    @inline(__always)
    static func mayContain(_ bloom: [UInt64], _ hash: UInt64) -> Bool {
        let bits = UInt64(bloom.count * 64)
        guard bits > 0 else { return false }
        var (h, step) = probeStart(hash)
        for _ in 0..<probes {
            let b = h % bits
            if bloom[Int(b >> 6)] & (1 << (b & 63)) == 0 { return false }
            h &+= step
        }
        return true
    }

    static func setBloom(_ bloom: inout [UInt64], _ hash: UInt64) {
        let bits = UInt64(bloom.count * 64)
        var (h, step) = probeStart(hash)
        for _ in 0..<probes {
            let b = h % bits
            bloom[Int(b >> 6)] |= 1 << (b & 63)
            h &+= step
        }
    }

    /// What `find` answers when a block it must read is damaged: a row of no
    /// deal, so the id counts as used (a hold with it is refused as a
    /// conflict) rather than as fresh (which could book a retry twice).
    public static let unreadable = RowRef(deal: UInt32.max, slot: -1)

    /// The row of a caller id that left memory, or nil if no run has it.
    public func find(_ key: IdKey) -> RowRef? {
        let runs = published.withLock { $0 }
        guard !runs.isEmpty else { return nil }
        for run in runs.reversed() where Self.mayContain(run.bloom, key.hash) {
            diskReads.wrappingAdd(1, ordering: .relaxed)
            guard let found = candidates(in: run, hash: key.hash) else { return Self.unreadable }
            for r in found where confirm(r, id: key.string) { return RowRef(deal: r.deal, slot: r.slot) }
        }
        return nil
    }

    /// Every record of every run, each block checked (the verify tool, and
    /// `replay --out`, which writes the runs a rebuilt directory needs).
    public func allRecords() throws(EngineError) -> [(deal: UInt32, slot: Int32, location: HistoryLocation, hash: UInt64)] {
        let runs = published.withLock { $0 }
        guard let io = place.withLock({ $0?.io }) else { return [] }
        var out: [(deal: UInt32, slot: Int32, location: HistoryLocation, hash: UInt64)] = []
        for run in runs {
            var reader = try RunReader(run, io: io)
            while let r = try reader.next() { out.append((r.deal, r.slot, r.location, r.hash)) }
        }
        return out
    }

    /// Writes one run of `records` into `directory` (a new data directory's
    /// history), for `replay --out`.
    public static func writeRun(_ records: [(deal: UInt32, slot: Int32, location: HistoryLocation, hash: UInt64)],
                                directory: String, io: any FileIO) throws(EngineError) {
        var sorted: [Record] = []
        for r in records {
            guard r.location.offset <= UInt64(UInt32.max) else { continue }
            sorted.append(Record(hash: r.hash, deal: r.deal, slot: r.slot, file: r.location.file, offset: UInt32(r.location.offset)))
        }
        sorted.sort()
        var unique: [Record] = []
        for r in sorted where unique.last != r { unique.append(r) }
        guard !unique.isEmpty else { return }
        let run = try write(number: 1, directory: directory, io: io, count: unique.count) { emit in
            for r in unique { emit(r) }
        }
        try? io.close(run.fd)
    }

    /// Whether the history row a record names carries `id`. When the history
    /// cannot be read the answer is yes: the id was used (it is in a run), and
    /// refusing a fresh request is safer than booking a retry twice.
    private func confirm(_ r: Record, id: String) -> Bool {
        guard let store = history.store else { return true }
        do {
            guard let row = try store.hold(deal: r.deal, slot: r.slot, at: r.location) else { return false }
            return row.hold.id == id
        } catch {
            return true
        }
    }

    /// The records of `run` with this hash; nil when a block is unreadable.
    private func candidates(in run: Run, hash: UInt64) -> [Record]? {
        guard run.count > 0, let io = place.withLock({ $0?.io }) else { return [] }
        // The last block whose first hash is below `hash` may end with it; equal
        // hashes can run on over several blocks.
        var lo = 0, hi = run.fences.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if run.fences[mid] < hash { lo = mid + 1 } else { hi = mid }
        }
        var block = max(0, lo - 1)
        var out: [Record] = []
        while block < run.fences.count {
            guard let records = try? readBlock(run, block, io: io) else { return nil }
            var passed = false
            for r in records {
                if r.hash == hash { out.append(r) } else if r.hash > hash { passed = true; break }
            }
            if passed { break }
            block += 1
            if block < run.fences.count && run.fences[block] > hash { break }
        }
        return out
    }

    private func readBlock(_ run: Run, _ block: Int, io: any FileIO) throws(EngineError) -> [Record] {
        let first = block * Self.blockRecords
        let n = min(Self.blockRecords, run.count - first)
        var buffer = [UInt8](repeating: 0, count: n * Self.recordBytes)
        let offset = Self.headerBytes + first * Self.recordBytes
        let got: Int
        do {
            got = try buffer.withUnsafeMutableBytes { b throws(IOError) -> Int in try io.pread(run.fd, into: b, offset: offset) }
        } catch {
            throw EngineError(.corrupt, "hold id run \(run.path): \(error)")
        }
        guard got == buffer.count, CRC32C.checksum(buffer) == run.blockCRCs[block] else {
            throw EngineError(.corrupt, "hold id run \(run.path): block \(block) is damaged")
        }
        return Self.decodeRecords(buffer)
    }

    static func decodeRecords(_ b: [UInt8]) -> [Record] {
        var out: [Record] = []
        out.reserveCapacity(b.count / recordBytes)
        var o = 0
        while o + recordBytes <= b.count {
            out.append(Record(hash: le64(b, o), deal: HistoryStore.le32(b, o + 8), slot: Int32(bitPattern: HistoryStore.le32(b, o + 12)),
                              file: HistoryStore.le32(b, o + 16), offset: HistoryStore.le32(b, o + 20)))
            o += recordBytes
        }
        return out
    }

    static func le64(_ b: [UInt8], _ o: Int) -> UInt64 {
        UInt64(HistoryStore.le32(b, o)) | UInt64(HistoryStore.le32(b, o + 4)) << 32
    }

    // MARK: - Writing

    /// One id on its way to a run.
    public struct Entry: Sendable {
        public var id: String
        public var deal: UInt32
        public var slot: Int32
        public var location: HistoryLocation
        public init(id: String, deal: UInt32, slot: Int32, location: HistoryLocation) {
            self.id = id; self.deal = deal; self.slot = slot; self.location = location
        }
    }

    /// Writes `entries` as a new run (synced and renamed into place, the
    /// directory synced) and publishes it, then merges runs while the rule
    /// says so. When this returns, every id given is answered from disk.
    /// Returns the new run's number.
    @discardableResult
    public func add(_ entries: [Entry]) throws(EngineError) -> UInt32 {
        guard !entries.isEmpty else { throw EngineError(.invalid, "an empty hold id run") }
        var records: [Record] = []
        records.reserveCapacity(entries.count)
        for e in entries {
            guard e.location.offset <= UInt64(UInt32.max) else {
                throw EngineError(.limit, "history offset \(e.location.offset) beyond what a hold id run records")
            }
            records.append(Record(hash: IdKey(e.id).hash, deal: e.deal, slot: e.slot, file: e.location.file, offset: UInt32(e.location.offset)))
        }
        records.sort()
        guard let (directory, io, number) = place.withLock({ p -> (String, any FileIO, UInt32)? in
            guard let current = p else { return nil }
            p!.nextNumber += 1
            return (current.directory, current.io, current.nextNumber)
        }) else { throw EngineError(.readOnly, "hold id runs are not open") }
        let run = try Self.write(number: number, directory: directory, io: io, count: records.count) { emit in
            for r in records { emit(r) }
        }
        publish(adding: run, removing: [])
        // A failed merge leaves the runs as they were (every one still
        // answers); it is reported and tried again after the next run.
        do { try mergeWhileDue(); mergeError.withLock { $0 = nil } } catch { mergeError.withLock { $0 = "\(error)" } }
        return number
    }

    private func publish(adding run: Run, removing: [Run]) {
        let gone = Set(removing.map(\.number))
        let runs = place.withLock { p -> [Run] in
            guard p != nil else { return [] }
            p!.runs.removeAll { gone.contains($0.number) }
            p!.runs.append(run)
            p!.runs.sort { $0.number < $1.number }
            return p!.runs
        }
        published.withLock { $0 = runs }
    }

    /// Merges the newest run into the one before it while that one is at most
    /// twice its size (a binary counter: O(log n) runs, each id rewritten
    /// O(log n) times). The merged run is in place before its inputs go.
    private func mergeWhileDue() throws(EngineError) {
        while true {
            guard let (a, b, directory, io, number) = place.withLock({ p -> (Run, Run, String, any FileIO, UInt32)? in
                guard let current = p, current.runs.count >= 2 else { return nil }
                let a = current.runs[current.runs.count - 2], b = current.runs[current.runs.count - 1]
                guard a.count <= 2 * b.count else { return nil }
                p!.nextNumber += 1
                return (a, b, current.directory, current.io, current.nextNumber)
            }) else { return }
            var ra = try RunReader(a, io: io), rb = try RunReader(b, io: io)
            let merged = try Self.write(number: number, directory: directory, io: io, count: a.count + b.count) { emit throws(EngineError) in
                var x = try ra.next(), y = try rb.next()
                var last: Record?
                while x != nil || y != nil {
                    let takeA: Bool
                    if let x, let y { takeA = x <= y } else { takeA = x != nil }
                    let r = takeA ? x! : y!
                    if takeA { x = try ra.next() } else { y = try rb.next() }
                    if r != last { emit(r); last = r }
                }
            }
            publish(adding: merged, removing: [a, b])
            for old in [a, b] {
                // Readers that copied the old list may still read these: an
                // unlinked file stays readable through the open descriptor,
                // which is closed with the process.
                try? io.unlink(old.path)
            }
            try? io.fsyncDirectory(directory)
        }
    }

    /// Reads a run's records in order, 64 KiB at a time, checking each block.
    struct RunReader {
        let run: Run
        let io: any FileIO
        var block = 0
        var buffer: [Record] = []
        var index = 0
        init(_ run: Run, io: any FileIO) throws(EngineError) { self.run = run; self.io = io }
        mutating func next() throws(EngineError) -> Record? {
            if index == buffer.count {
                guard block < run.fences.count else { return nil }
                buffer = []
                index = 0
                let end = min(run.fences.count, block + 21)
                while block < end {
                    let first = block * CallerIDRuns.blockRecords
                    let n = min(CallerIDRuns.blockRecords, run.count - first)
                    var bytes = [UInt8](repeating: 0, count: n * CallerIDRuns.recordBytes)
                    let got: Int
                    do {
                        got = try bytes.withUnsafeMutableBytes { b throws(IOError) -> Int in
                            try io.pread(run.fd, into: b, offset: CallerIDRuns.headerBytes + first * CallerIDRuns.recordBytes)
                        }
                    } catch { throw EngineError(.corrupt, "hold id run \(run.path): \(error)") }
                    guard got == bytes.count, CRC32C.checksum(bytes) == run.blockCRCs[block] else {
                        throw EngineError(.corrupt, "hold id run \(run.path): block \(block) is damaged")
                    }
                    buffer += CallerIDRuns.decodeRecords(bytes)
                    block += 1
                }
            }
            defer { index += 1 }
            return buffer[index]
        }
    }

    /// Writes a run from records given in ascending order (at most `count`),
    /// to a temporary name, synced, then renamed into place.
    /// Layout: header | records in blocks | fences | block CRCs | Bloom filter.
    static func write(number: UInt32, directory: String, io: any FileIO, count: Int,
                      _ produce: (_ emit: (Record) -> Void) throws(EngineError) -> Void) throws(EngineError) -> Run {
        let path = FilePath.join(directory, fileName(number))
        let temp = path + ".tmp"
        var bloom = [UInt64](repeating: 0, count: max(1, (count * bitsPerID + 63) / 64))
        var fences: [UInt64] = [], crcs: [UInt32] = []
        var written = 0
        var block = ByteWriter(capacity: blockRecords * recordBytes)
        var pending = ByteWriter(capacity: 1 << 16)
        var failure: IOError?
        let fd: FileHandleID
        do { fd = try io.create(temp) } catch { throw EngineError(.readOnly, "hold id run \(temp): \(error)") }
        var offset = headerBytes
        func flushPending() {
            guard failure == nil, pending.count > 0 else { return }
            do { try io.pwrite(fd, pending.bytes, offset: offset) } catch { failure = error }
            offset += pending.count
            pending = ByteWriter(capacity: 1 << 16)
        }
        func endBlock() {
            guard block.count > 0 else { return }
            crcs.append(CRC32C.checksum(block.bytes))
            pending.bytes(block.bytes)
            block = ByteWriter(capacity: blockRecords * recordBytes)
            if pending.count >= 1 << 16 { flushPending() }
        }
        do {
            try produce { r in
                if written % blockRecords == 0 { endBlock(); fences.append(r.hash) }
                block.u64(r.hash); block.u32(r.deal); block.u32(UInt32(bitPattern: r.slot)); block.u32(r.file); block.u32(r.offset)
                setBloom(&bloom, r.hash)
                written += 1
            }
        } catch {
            try? io.close(fd); try? io.unlink(temp)
            throw error
        }
        precondition(written <= count, "a hold id run got more records than it was sized for")
        endBlock()
        flushPending()
        var meta = ByteWriter(capacity: fences.count * 12 + bloom.count * 8)
        for f in fences { meta.u64(f) }
        for c in crcs { meta.u32(c) }
        for w in bloom { meta.u64(w) }
        var header = ByteWriter(capacity: headerBytes)
        header.u32(magic); header.u32(1); header.u64(UInt64(written)); header.u32(UInt32(fences.count)); header.u32(UInt32(bloom.count))
        header.u32(UInt32(probes))
        header.u32(CRC32C.checksum(meta.bytes, seed: CRC32C.checksum(header.bytes)))
        do {
            if let failure { throw failure }
            try io.pwrite(fd, meta.bytes, offset: offset)
            try io.pwrite(fd, header.bytes, offset: 0)
            try io.fdatasync(fd)
            try io.close(fd)
            try io.rename(from: temp, to: path)
            try io.fsyncDirectory(directory)
        } catch {
            try? io.close(fd); try? io.unlink(temp)
            throw EngineError(.readOnly, "hold id run \(path): \(error)")
        }
        return try load(number: number, path: path, io: io)
    }

    /// Opens a run: header and the in-memory parts (fences, block CRCs,
    /// filter), checked against the header's CRC. Records are read on demand.
    static func load(number: UInt32, path: String, io: any FileIO) throws(EngineError) -> Run {
        func damaged(_ why: String) -> EngineError {
            EngineError(.corrupt, "hold id run \(path) is damaged (\(why)); the ids of holds that left memory are in it. Restore the file from a backup of the data directory")
        }
        let fd: FileHandleID
        do { fd = try io.open(path, readOnly: true) } catch { throw EngineError(.corrupt, "hold id run \(path): \(error)") }
        func read(_ count: Int, at offset: Int) throws(EngineError) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: count)
            let got: Int
            do { got = try b.withUnsafeMutableBytes { p throws(IOError) -> Int in try io.pread(fd, into: p, offset: offset) } } catch {
                throw damaged("\(error)")
            }
            guard got == count else { throw damaged("short read") }
            return b
        }
        do throws(EngineError) {
            let size: Int
            do { size = try io.fileSize(fd) } catch { throw damaged("\(error)") }
            guard size >= headerBytes else { throw damaged("shorter than its header") }
            let h = try read(headerBytes, at: 0)
            guard HistoryStore.le32(h, 0) == magic, HistoryStore.le32(h, 4) == 1 else { throw damaged("bad magic or version") }
            let count = le64(h, 8)
            let blocks = Int(HistoryStore.le32(h, 16)), words = Int(HistoryStore.le32(h, 20)), k = HistoryStore.le32(h, 24)
            let crc = HistoryStore.le32(h, 28)
            guard k == UInt32(probes), count <= UInt64(Int32.max), blocks == (Int(count) + blockRecords - 1) / blockRecords,
                  // A merge sizes its filter before dropping duplicates, so it may be larger than the count needs.
                  words >= 1, words <= 1 << 26 else { throw damaged("bad header") }
            let recordsEnd = headerBytes + Int(count) * recordBytes
            let metaBytes = blocks * 12 + words * 8
            guard size == recordsEnd + metaBytes else { throw damaged("size \(size), expected \(recordsEnd + metaBytes)") }
            let meta = try read(metaBytes, at: recordsEnd)
            guard CRC32C.checksum(meta, seed: CRC32C.checksum(Array(h[0..<28]))) == crc else { throw damaged("checksum mismatch") }
            var fences: [UInt64] = [], crcs: [UInt32] = [], bloom: [UInt64] = []
            fences.reserveCapacity(blocks); crcs.reserveCapacity(blocks); bloom.reserveCapacity(words)
            for i in 0..<blocks { fences.append(le64(meta, i * 8)) }
            for i in 0..<blocks { crcs.append(HistoryStore.le32(meta, blocks * 8 + i * 4)) }
            for i in 0..<words { bloom.append(le64(meta, blocks * 12 + i * 8)) }
            return Run(number: number, path: path, count: Int(count), fd: fd, bloom: bloom, fences: fences, blockCRCs: crcs, bytes: size)
        } catch {
            try? io.close(fd)
            throw error
        }
    }
}
