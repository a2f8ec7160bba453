import Glibc
import Synchronization
import WAL

/// Where an archived entry starts: history file number and byte offset.
public struct HistoryLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: UInt32
    public var offset: UInt64
    public init(file: UInt32, offset: UInt64) { self.file = file; self.offset = offset }
    public var description: String { "\(HistoryStore.fileName(file))@\(offset)" }
}

/// The engine's on-disk history of rows that left memory (`DIR/history/`):
/// append-only files of entries, each the final images of one deal's ended
/// holds, indexed by slot inside the entry so a point read is three small
/// `pread`s. Entries are written and fsynced here *before* the log record that
/// drops the rows from memory is appended, so a durable drop always names
/// durable rows; an entry written just before a crash and never named by the
/// log is unused space, never a problem. Layout: docs/wal-format.md.
///
/// Reads take no lock beyond the one that caches file handles: `pread` is
/// safe from any thread, and entries never change once written.
public final class HistoryStore: Sendable {
    public static let directoryName = "history"
    public static let defaultFileBytes = 256 << 20
    static let magic: UInt32 = 0x3148_4541 // "AEH1"
    static let headerBytes = 20
    static let indexEntryBytes = 16

    public let directory: String
    let io: any FileIO
    let fileBytes: Int
    private struct Tail: Sendable {
        var file: UInt32
        var fd: FileHandleID
        var size: Int
        var failed: String?
    }
    private let tail: Locked<Tail>
    private let readers = Locked<[UInt32: FileHandleID]>([:])
    private let totalBytes = Locked(0)

    public static func fileName(_ n: UInt32) -> String {
        let hex = String(n, radix: 16)
        return "h-" + String(repeating: "0", count: max(0, 8 - hex.count)) + hex + ".dat"
    }

    static func parseFileName(_ name: String) -> UInt32? {
        guard name.hasPrefix("h-"), name.hasSuffix(".dat"), name.count == 14 else { return nil }
        return UInt32(name.dropFirst(2).dropLast(4), radix: 16)
    }

    /// Opens (creating if missing) the history directory and appends after
    /// the newest file's end. No scan is needed: whatever a crash left at the
    /// end was never named by a durable log record.
    public init(directory: String, io: any FileIO, fileBytes: Int = HistoryStore.defaultFileBytes) throws(IOError) {
        self.directory = directory
        self.io = io
        self.fileBytes = fileBytes
        try io.createDirectory(directory)
        let files = try io.listDirectory(directory).compactMap(Self.parseFileName).sorted()
        var total = 0
        for f in files { total += (try? io.fileSize(path: FilePath.join(directory, Self.fileName(f)))) ?? 0 }
        let last = files.last ?? 1
        let path = FilePath.join(directory, Self.fileName(last))
        let fd = try io.openForAppend(path)
        let size = try io.fileSize(fd)
        if files.isEmpty { try io.fsyncDirectory(directory) }
        tail = Locked(Tail(file: last, fd: fd, size: size, failed: nil))
        totalBytes.withLock { $0 = total }
    }

    public var bytes: Int { totalBytes.withLock { $0 } }

    /// Appends entries and makes them durable (one `fdatasync` for all), then
    /// returns where each starts. After a write or sync error the store stops
    /// taking entries: rows then stay in memory, nothing is lost.
    public func append(_ entries: [[UInt8]]) throws(IOError) -> [HistoryLocation] {
        try tail.withLock { t throws(IOError) -> [HistoryLocation] in
            if let failed = t.failed { _ = failed
                throw IOError(errno: EIO, op: "history append (stopped after an earlier failure)", path: directory) }
            do throws(IOError) {
                var locations: [HistoryLocation] = []
                var written = 0
                for e in entries {
                    if t.size > 0 && t.size + e.count > fileBytes {
                        // Roll: the full file is already synced (every append syncs).
                        try io.close(t.fd)
                        t.file += 1
                        t.fd = try io.create(FilePath.join(directory, Self.fileName(t.file)))
                        t.size = 0
                        try io.fsyncDirectory(directory)
                    }
                    try io.pwrite(t.fd, e, offset: t.size)
                    locations.append(HistoryLocation(file: t.file, offset: UInt64(t.size)))
                    t.size += e.count
                    written += e.count
                }
                try io.fdatasync(t.fd)
                totalBytes.withLock { $0 += written }
                return locations
            } catch {
                t.failed = "\(error)"
                throw error
            }
        }
    }

    /// Where the next entry goes: the newest file and its size. A replica
    /// asks for history bytes from its own end; records only name bytes
    /// written (and synced) before they were appended.
    public var end: HistoryLocation { tail.withLock { HistoryLocation(file: $0.file, offset: UInt64($0.size)) } }

    /// Up to `maxBytes` of history from `from` on, for a replica: the rest of
    /// that file, or, when it is complete, the next file from its start.
    /// Returns where the bytes belong and the bytes (empty when `from` is the end).
    public func shippable(from: HistoryLocation, maxBytes: Int) throws(EngineError) -> (HistoryLocation, [UInt8]) {
        let end = self.end
        var at = from
        if at.file < end.file {
            let size = (try? io.fileSize(path: FilePath.join(directory, Self.fileName(at.file)))) ?? 0
            if at.offset >= UInt64(size) { at = HistoryLocation(file: at.file + 1, offset: 0) }
        }
        guard at.file <= end.file else { throw EngineError(.conflict, "replica history \(from) is ahead of the primary's \(end)") }
        let limit: Int
        if at.file == end.file {
            guard at.offset <= end.offset else { throw EngineError(.conflict, "replica history \(from) is ahead of the primary's \(end)") }
            limit = Int(end.offset - at.offset)
        } else {
            let size = (try? io.fileSize(path: FilePath.join(directory, Self.fileName(at.file)))) ?? 0
            limit = max(0, size - Int(at.offset))
        }
        let n = min(limit, maxBytes)
        guard n > 0 else { return (at, []) }
        return (at, try read(at.file, offset: Int(at.offset), count: n))
    }

    /// Writes history bytes a primary shipped at the place they have there
    /// (so every location a record names means the same bytes here) and
    /// syncs them. Only a replica's follower calls this; nothing appends meanwhile.
    public func replicate(at location: HistoryLocation, _ bytes: [UInt8]) throws(IOError) {
        try tail.withLock { t throws(IOError) in
            if location.file != t.file {
                guard location.file == t.file + 1, location.offset == 0 else {
                    throw IOError(errno: EINVAL, op: "history replicate at \(location) after \(Self.fileName(t.file))@\(t.size)", path: directory)
                }
                try io.fdatasync(t.fd)
                try io.close(t.fd)
                t.file = location.file
                t.fd = try io.create(FilePath.join(directory, Self.fileName(t.file)))
                t.size = 0
                try io.fsyncDirectory(directory)
            }
            guard location.offset == UInt64(t.size) else {
                throw IOError(errno: EINVAL, op: "history replicate at \(location) but the file ends at \(t.size)", path: directory)
            }
            try io.pwrite(t.fd, bytes, offset: t.size)
            try io.fdatasync(t.fd)
            t.size += bytes.count
            totalBytes.withLock { $0 += bytes.count }
        }
    }

    public func close() {
        tail.withLock { t in try? io.close(t.fd) }
        readers.withLock { r in
            for fd in r.values { try? io.close(fd) }
            r.removeAll()
        }
    }

    private func reader(_ file: UInt32) throws(EngineError) -> FileHandleID {
        try readers.withLock { r throws(EngineError) -> FileHandleID in
            if let fd = r[file] { return fd }
            do {
                let fd = try io.open(FilePath.join(directory, Self.fileName(file)), readOnly: true)
                r[file] = fd
                return fd
            } catch {
                throw EngineError(.corrupt, "history file \(Self.fileName(file)) cannot be opened: \(error)")
            }
        }
    }

    private func read(_ file: UInt32, offset: Int, count: Int) throws(EngineError) -> [UInt8] {
        let fd = try reader(file)
        var buffer = [UInt8](repeating: 0, count: count)
        let n: Int
        do {
            n = try buffer.withUnsafeMutableBytes { b throws(IOError) -> Int in try io.pread(fd, into: b, offset: offset) }
        } catch {
            throw EngineError(.corrupt, "history \(Self.fileName(file))@\(offset): \(error)")
        }
        guard n == count else { throw EngineError(.corrupt, "history \(Self.fileName(file))@\(offset): \(n) of \(count) bytes") }
        return buffer
    }

    /// A little-endian u32 (the layout `ByteWriter.u32` writes).
    static func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }

    struct IndexEntry { var slot: Int32; var offset: UInt32; var length: UInt32; var crc: UInt32 }

    /// The entry's header and slot index, checked against their CRC.
    private func index(at loc: HistoryLocation) throws(EngineError) -> (deal: UInt32, entries: [IndexEntry]) {
        let header = try read(loc.file, offset: Int(loc.offset), count: Self.headerBytes)
        let magic = Self.le32(header, 0), length = Self.le32(header, 4), deal = Self.le32(header, 8)
        let count = Self.le32(header, 12), crc = Self.le32(header, 16)
        guard magic == Self.magic, count <= 1 << 20, Int(length) >= Self.headerBytes + Int(count) * Self.indexEntryBytes else {
            throw EngineError(.corrupt, "history entry at \(loc): bad header")
        }
        let indexBytes = try read(loc.file, offset: Int(loc.offset) + Self.headerBytes, count: Int(count) * Self.indexEntryBytes)
        var check = CRC32C.checksum(Array(header[0..<16]))
        check = CRC32C.checksum(indexBytes, seed: check)
        guard check == crc else { throw EngineError(.corrupt, "history entry at \(loc): index checksum mismatch") }
        var entries: [IndexEntry] = []
        entries.reserveCapacity(Int(count))
        for i in 0..<Int(count) {
            let o = i * Self.indexEntryBytes
            entries.append(IndexEntry(slot: Int32(bitPattern: Self.le32(indexBytes, o)), offset: Self.le32(indexBytes, o + 4),
                                      length: Self.le32(indexBytes, o + 8), crc: Self.le32(indexBytes, o + 12)))
        }
        for e in entries where Int(e.offset) + Int(e.length) > Int(length) {
            throw EngineError(.corrupt, "history entry at \(loc): row of slot \(e.slot) outside the entry")
        }
        return (deal, entries)
    }

    private func row<T: HistoryRow>(_ e: IndexEntry, at loc: HistoryLocation, as _: T.Type) throws(EngineError) -> T {
        let bytes = try read(loc.file, offset: Int(loc.offset) + Int(e.offset), count: Int(e.length))
        guard CRC32C.checksum(bytes) == e.crc else { throw EngineError(.corrupt, "history entry at \(loc): row of slot \(e.slot) checksum mismatch") }
        let decoded: Result<T, DecodeError> = bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            do throws(DecodeError) { return .success(try T.decode(&r)) } catch { return .failure(error) }
        }
        switch decoded {
        case .success(let a): return a
        case .failure(let error): throw EngineError(.corrupt, "history entry at \(loc): row of slot \(e.slot): \(error)")
        }
    }

    /// The archived row of `slot` of deal `deal` in the entry at `loc`, or nil if the entry does not hold it.
    public func row<T: HistoryRow>(_: T.Type, deal: UInt32, slot: Int32, at loc: HistoryLocation) throws(EngineError) -> T? {
        let (entryDeal, entries) = try index(at: loc)
        guard entryDeal == deal else { throw EngineError(.corrupt, "history entry at \(loc) is of deal #\(entryDeal), not #\(deal)") }
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].slot < slot { lo = mid + 1 } else { hi = mid }
        }
        guard lo < entries.count, entries[lo].slot == slot else { return nil }
        return try row(entries[lo], at: loc, as: T.self)
    }

    /// Every row of the entry at `loc`, in slot order.
    public func rows<T: HistoryRow>(_: T.Type, at loc: HistoryLocation) throws(EngineError) -> (deal: UInt32, rows: [(Int32, T)]) {
        let (deal, entries) = try index(at: loc)
        var rows: [(Int32, T)] = []
        rows.reserveCapacity(entries.count)
        for e in entries { rows.append((e.slot, try row(e, at: loc, as: T.self))) }
        return (deal, rows)
    }

    public func hold(deal: UInt32, slot: Int32, at loc: HistoryLocation) throws(EngineError) -> ArchivedHold? {
        try row(ArchivedHold.self, deal: deal, slot: slot, at: loc)
    }

    public func holds(at loc: HistoryLocation) throws(EngineError) -> (deal: UInt32, rows: [(Int32, ArchivedHold)]) {
        try rows(ArchivedHold.self, at: loc)
    }


    /// Encodes one entry: the rows of one deal, sorted by slot.
    public static func entry<T: HistoryRow>(deal: UInt32, rows: [(slot: Int32, hold: T)]) -> [UInt8] {
        var body = ByteWriter(capacity: rows.count * 72)
        var index = ByteWriter(capacity: rows.count * indexEntryBytes)
        let base = headerBytes + rows.count * indexEntryBytes
        for (slot, h) in rows {
            let start = body.count
            var one = ByteWriter(capacity: 96)
            h.encode(into: &one)
            body.bytes(one.bytes)
            index.u32(UInt32(bitPattern: slot)); index.u32(UInt32(base + start)); index.u32(UInt32(one.count))
            index.u32(CRC32C.checksum(one.bytes))
        }
        var header = ByteWriter(capacity: headerBytes + index.count + body.count)
        header.u32(magic); header.u32(UInt32(base + body.count)); header.u32(deal); header.u32(UInt32(rows.count))
        let crc = CRC32C.checksum(index.bytes, seed: CRC32C.checksum(header.bytes))
        header.u32(crc)
        header.bytes(index.bytes)
        header.bytes(body.bytes)
        return header.bytes
    }
}

/// A row's lot split as history rows keep it: `var` count, then per part
/// `var` lot position and `var128` units.
func encodeHistoryParts(_ first: LotPart, _ more: [LotPart], _ w: inout ByteWriter) {
    w.varint(UInt64(1 + more.count))
    w.varint(UInt64(first.lot)); w.varint128(UInt128(first.units.raw))
    for p in more { w.varint(UInt64(p.lot)); w.varint128(UInt128(p.units.raw)) }
}

/// Reads what `encodeHistoryParts` wrote (at least one part).
func historyParts(_ r: inout ByteReader, _ what: String) throws(DecodeError) -> [LotPart] {
    let n = try r.varint()
    guard n >= 1 && n <= UInt64(EngineLimits.maxLotsPerDeal) else { throw DecodeError("\(what) part count \(n)") }
    var parts: [LotPart] = []
    for _ in 0..<n {
        let lot = try r.varint()
        guard lot <= UInt64(Int32.max) else { throw DecodeError("lot index \(lot)") }
        parts.append(LotPart(lot: Int32(lot), units: try ChangeCodec.units(&r)))
    }
    return parts
}

/// A row as the history keeps it; its first byte names its kind.
public protocol HistoryRow: Sendable {
    func encode(into w: inout ByteWriter)
    static func decode(_ r: inout ByteReader) throws(DecodeError) -> Self
}

/// An ended hold as the history keeps it: the row, with its investor's id
/// (the deal's investor table is kept in memory, but the history reads alone).
public struct ArchivedHold: HistoryRow, Hashable {
    public var hold: Hold
    public var investorID: String
    public var allocationID: String?

    public init(hold: Hold, investorID: String, allocationID: String?) {
        self.hold = hold
        self.investorID = investorID
        self.allocationID = allocationID
    }

    static let kindHold: UInt8 = 1

    public func encode(into w: inout ByteWriter) {
        let h = hold
        w.u8(Self.kindHold)
        w.string(h.id); w.string(investorID); w.varint(UInt64(h.investor)); w.varint128(UInt128(h.requested.raw))
        w.zigzag(h.proposedUnitPrice.raw); w.zigzag(h.createdAt); w.zigzag(h.expiresAt); w.zigzag(Int64(h.allocation))
        w.u8(h.status.rawValue); w.u8(h.partial ? 1 : 0)
        encodeHistoryParts(h.firstPart, h.moreParts, &w)
        ChangeCodec.optionalString(h.createdBy, &w)
        ChangeCodec.optionalString(allocationID, &w)
    }

    public static func decode(_ r: inout ByteReader) throws(DecodeError) -> ArchivedHold {
        guard try r.u8() == kindHold else { throw DecodeError("not a hold row") }
        let id = try r.string(), investorID = try r.string()
        let investor = try r.varint()
        guard investor <= UInt64(Int32.max) else { throw DecodeError("investor slot \(investor)") }
        let requested = try ChangeCodec.units(&r)
        let price = Price(raw: try r.zigzag())
        let createdAt = try r.zigzag(), expiresAt = try r.zigzag(), allocation = try r.zigzag()
        guard allocation >= -1 && allocation <= Int64(Int32.max) else { throw DecodeError("hold allocation \(allocation)") }
        let rawStatus = try r.u8()
        guard let status = HoldStatus(rawValue: rawStatus), status != .pending else { throw DecodeError("archived hold status \(rawStatus)") }
        let partial = try r.u8() != 0
        let parts = try historyParts(&r, "hold")
        let createdBy = try ChangeCodec.optionalString(&r)
        let allocationID = try ChangeCodec.optionalString(&r)
        let h = Hold(requested: requested, firstPart: parts[0], id: id, proposedUnitPrice: price, createdAt: createdAt, expiresAt: expiresAt,
                     moreParts: Array(parts.dropFirst()), investor: Int32(investor), allocation: Int32(allocation), status: status,
                     partial: partial, createdBy: createdBy)
        return ArchivedHold(hold: h, investorID: investorID, allocationID: allocationID)
    }
}

/// A decided approval as the history keeps it, with the id of its commitment
/// or allocation.
public struct ArchivedApproval: HistoryRow, Hashable {
    public var approval: Approval
    public var entityID: String

    public init(approval: Approval, entityID: String) {
        self.approval = approval
        self.entityID = entityID
    }

    static let kindApproval: UInt8 = 3

    public func encode(into w: inout ByteWriter) {
        let a = approval
        w.u8(Self.kindApproval)
        w.u8(a.entity.rawValue); w.varint(UInt64(a.entitySlot)); w.string(entityID); w.u8(a.status.rawValue); w.u8(a.priority.rawValue)
        ChangeCodec.optionalString(a.requestedBy, &w); ChangeCodec.optionalString(a.assignedTo, &w); ChangeCodec.optionalString(a.decidedBy, &w)
        w.zigzag(a.decidedAt); ChangeCodec.optionalString(a.notes, &w); w.zigzag(a.createdAt); w.zigzag(a.slaBreachAt)
    }

    public static func decode(_ r: inout ByteReader) throws(DecodeError) -> ArchivedApproval {
        guard try r.u8() == kindApproval else { throw DecodeError("not an approval row") }
        let rawEntity = try r.u8()
        guard let entity = ApprovalEntity(rawValue: rawEntity) else { throw DecodeError("approval entity \(rawEntity)") }
        let entitySlot = try r.varint()
        guard entitySlot <= UInt64(Int32.max) else { throw DecodeError("approval entity slot \(entitySlot)") }
        let entityID = try r.string()
        let rawStatus = try r.u8(), rawPriority = try r.u8()
        guard let status = ApprovalStatus(rawValue: rawStatus), status != .pending else { throw DecodeError("archived approval status \(rawStatus)") }
        guard let priority = ApprovalPriority(rawValue: rawPriority) else { throw DecodeError("approval priority \(rawPriority)") }
        var a = Approval(entity: entity, entitySlot: Int32(entitySlot), createdAt: 0, slaBreachAt: 0)
        a.status = status
        a.priority = priority
        a.requestedBy = try ChangeCodec.optionalString(&r); a.assignedTo = try ChangeCodec.optionalString(&r)
        a.decidedBy = try ChangeCodec.optionalString(&r)
        a.decidedAt = try r.zigzag(); a.notes = try ChangeCodec.optionalString(&r); a.createdAt = try r.zigzag(); a.slaBreachAt = try r.zigzag()
        return ArchivedApproval(approval: a, entityID: entityID)
    }
}

/// A rejected allocation as the history keeps it, with its investor's id.
public struct ArchivedAllocation: HistoryRow, Hashable {
    public var allocation: Allocation
    public var investorID: String

    public init(allocation: Allocation, investorID: String) {
        self.allocation = allocation
        self.investorID = investorID
    }

    static let kindAllocation: UInt8 = 2

    public func encode(into w: inout ByteWriter) {
        let a = allocation
        w.u8(Self.kindAllocation)
        w.string(a.id); w.string(investorID); w.varint(UInt64(a.investor)); w.string(a.holdID); w.varint(UInt64(a.hold))
        w.varint128(UInt128(a.units.raw)); w.zigzag(a.unitPrice.raw)
        w.zigzag(a.createdAt); w.zigzag(a.decidedAt); w.zigzag(a.settledAt); w.zigzag(Int64(a.approval)); w.u8(a.status.rawValue)
        encodeHistoryParts(a.firstPart, a.moreParts, &w)
        ChangeCodec.optionalString(a.createdBy, &w)
        ChangeCodec.optionalString(a.decidedBy, &w)
    }

    public static func decode(_ r: inout ByteReader) throws(DecodeError) -> ArchivedAllocation {
        guard try r.u8() == kindAllocation else { throw DecodeError("not an allocation row") }
        let id = try r.string(), investorID = try r.string()
        let investor = try r.varint()
        guard investor <= UInt64(Int32.max) else { throw DecodeError("investor slot \(investor)") }
        let holdID = try r.string()
        let hold = try r.varint()
        guard hold <= UInt64(Int32.max) else { throw DecodeError("allocation hold slot \(hold)") }
        let units = try ChangeCodec.units(&r)
        let price = Price(raw: try r.zigzag())
        let createdAt = try r.zigzag(), decidedAt = try r.zigzag(), settledAt = try r.zigzag(), approval = try r.zigzag()
        guard approval >= -1 && approval <= Int64(Int32.max) else { throw DecodeError("allocation approval \(approval)") }
        let rawStatus = try r.u8()
        guard let status = AllocationStatus(rawValue: rawStatus), status == .rejected else { throw DecodeError("archived allocation status \(rawStatus)") }
        let parts = try historyParts(&r, "allocation")
        let createdBy = try ChangeCodec.optionalString(&r)
        let decidedBy = try ChangeCodec.optionalString(&r)
        let a = Allocation(units: units, firstPart: parts[0], id: id, holdID: holdID, moreParts: Array(parts.dropFirst()), unitPrice: price,
                           createdAt: createdAt, decidedAt: decidedAt, settledAt: settledAt, hold: Int32(hold), investor: Int32(investor),
                           approval: Int32(approval), status: status, createdBy: createdBy, decidedBy: decidedBy)
        return ArchivedAllocation(allocation: a, investorID: investorID)
    }
}
