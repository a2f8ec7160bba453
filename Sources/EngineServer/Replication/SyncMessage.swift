import AllocationEngine
import WAL

/// One answer of a primary to a replica's `REPLSYNC` (a RESP bulk string of
/// this binary layout; docs/replication.md):
///
///     u8 version (1)
///     string primary replid, string replid2, u64 replid2_until
///     u64 the primary's acknowledged LSN (for the replica's lag)
///     u64 the LSN the records start at (the asked one)
///     varint history pieces; each: u32 file, u64 offset, bytes (varint length)
///     bytes: groups of log records (WAL/ReplicationStream.swift), varint length
struct SyncMessage {
    static let version: UInt8 = 1
    /// The most bytes of records, and of history, one answer carries.
    static let maxRecordBytes = 4 << 20
    static let maxHistoryBytes = 8 << 20

    var ids: ReplicationIDs
    var primaryLSN: UInt64
    var firstLSN: UInt64
    var history: [(HistoryLocation, [UInt8])]
    var records: [UInt8]

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: records.count + history.reduce(64) { $0 + $1.1.count + 24 })
        w.u8(Self.version)
        w.string(ids.id)
        w.string(ids.previousID)
        w.u64(ids.previousUntil)
        w.u64(primaryLSN)
        w.u64(firstLSN)
        w.varint(UInt64(history.count))
        for (loc, bytes) in history {
            w.u32(loc.file)
            w.u64(loc.offset)
            w.lengthPrefixed(bytes)
        }
        w.lengthPrefixed(records)
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(DecodeError) -> SyncMessage {
        let result: Result<SyncMessage, DecodeError> = bytes.withUnsafeBytes { b in
            do throws(DecodeError) { return .success(try decodeBuffer(b)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private static func decodeBuffer(_ b: UnsafeRawBufferPointer) throws(DecodeError) -> SyncMessage {
        do {
            var r = ByteReader(b)
            let v = try r.u8()
            guard v == version else { throw DecodeError("replication message version \(v); this engine reads \(version)") }
            let id = try r.string(), previous = try r.string()
            let until = try r.u64()
            let primaryLSN = try r.u64(), firstLSN = try r.u64()
            let n = try r.varint()
            guard n <= 1024 else { throw DecodeError("\(n) history pieces in one message") }
            var history: [(HistoryLocation, [UInt8])] = []
            for _ in 0..<n {
                let file = try r.u32(), offset = try r.u64()
                history.append((HistoryLocation(file: file, offset: offset), try r.lengthPrefixed(maxBytes: maxHistoryBytes)))
            }
            let records = try r.lengthPrefixed(maxBytes: maxRecordBytes + LogFormat.maxRecordBytes + 4096)
            return SyncMessage(ids: ReplicationIDs(id: id, previousID: previous, previousUntil: until),
                               primaryLSN: primaryLSN, firstLSN: firstLSN, history: history, records: records)
        }
    }
}
