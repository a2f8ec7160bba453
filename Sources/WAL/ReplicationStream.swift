import Synchronization

// What a primary sends its replicas: log records exactly as the log holds
// them, in groups that carry the salt their CRCs were computed with, so a
// replica checks every record it takes as recovery checks the disk.
//
// A group: salt u32, byte count u32, then that many bytes of whole records
// (the log's record layout, LogFormat.swift). docs/replication.md has the
// prose version.

/// One record a replica received, checked.
public struct ShippedRecord: Sendable {
    public let lsn: UInt64
    public let type: UInt8
    public let time: Int64
    public let payload: [UInt8]
    public init(lsn: UInt64, type: UInt8, time: Int64, payload: [UInt8]) {
        self.lsn = lsn
        self.type = type
        self.time = time
        self.payload = payload
    }
}

public struct ShippedRecordsError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

public enum ShippedRecords {
    /// Appends a group of framed records (as the log wrote them, CRCs seeded with `salt`).
    public static func appendGroup(_ records: UnsafeRawBufferPointer, salt: UInt32, to out: inout [UInt8]) {
        var w = ByteWriter(capacity: 8)
        w.u32(salt)
        w.u32(UInt32(records.count))
        out.append(contentsOf: w.bytes)
        out.append(contentsOf: records)
    }

    /// Frames one record the way the log does (salt 0), for records read back from segments.
    public static func frame(lsn: UInt64, type: UInt8, time: Int64, payload: UnsafeRawBufferPointer, into w: inout ByteWriter) {
        let start = w.count
        w.u32(UInt32(LogFormat.recordOverheadBytes + payload.count))
        w.u64(lsn)
        w.u8(type)
        w.u64(UInt64(bitPattern: time))
        w.bytes(payload)
        let crc = w.bytes.withUnsafeBytes { b in CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[start..<w.count]), seed: 0) }
        w.u32(crc)
    }

    /// Every record of `bytes` (groups), each checked against its CRC and
    /// the LSN sequence, which must start at `firstLSN`.
    public static func parse(_ bytes: [UInt8], firstLSN: UInt64) throws(ShippedRecordsError) -> [ShippedRecord] {
        var out: [ShippedRecord] = []
        var expected = firstLSN
        let failure: String? = bytes.withUnsafeBytes { buf -> String? in
            var off = 0
            while off < buf.count {
                guard buf.count - off >= 8 else { return "a group header cut at offset \(off)" }
                let salt = UInt32(littleEndian: buf.loadUnaligned(fromByteOffset: off, as: UInt32.self))
                let n = Int(UInt32(littleEndian: buf.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self)))
                off += 8
                guard n <= buf.count - off else { return "a group of \(n) bytes runs past the end (\(buf.count - off) left)" }
                let group = UnsafeRawBufferPointer(rebasing: buf[off..<(off + n)])
                var r = 0
                while r < group.count {
                    switch LogReader.checkRecord(group, at: r, salt: salt) {
                    case .end: return "zero bytes inside a group at offset \(off + r)"
                    case .damaged(let why): return "record at offset \(off + r): \(why)"
                    case .valid(let length, let lsn):
                        guard lsn == expected else { return "record LSN \(lsn) where \(expected) was expected" }
                        let type = group[r + 12]
                        let time = Int64(bitPattern: UInt64(littleEndian: group.loadUnaligned(fromByteOffset: r + 13, as: UInt64.self)))
                        let payload = Array(group[(r + LogFormat.recordHeaderBytes)..<(r + length - LogFormat.recordTrailerBytes)])
                        out.append(ShippedRecord(lsn: lsn, type: type, time: time, payload: payload))
                        expected += 1
                        r += length
                    }
                }
                off += n
            }
            return nil
        }
        if let failure { throw ShippedRecordsError(message: failure) }
        return out
    }
}

/// The primary's recent log in memory, so replicas that keep up are served
/// without reading the disk. Bounded by bytes (`capacity`): the oldest chunks
/// go first; a replica behind them is served from the segments, and one
/// behind the segments needs a full resync.
public final class ReplicationBacklog: Sendable {
    struct Chunk {
        var salt: UInt32
        var bytes: [UInt8]
        var firstLSN: UInt64
        var lastLSN: UInt64
    }
    struct State {
        var chunks: [Chunk] = []
        var head = 0
        var bytes = 0
    }
    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int) { self.capacity = max(1 << 16, capacity) }

    /// Takes one written chunk (the log writer's tap).
    public func add(_ bytes: [UInt8], salt: UInt32) {
        guard bytes.count >= LogFormat.recordOverheadBytes else { return }
        let (first, last) = bytes.withUnsafeBytes { b -> (UInt64, UInt64) in
            let first = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 4, as: UInt64.self))
            var off = 0, last = first
            while off + LogFormat.recordOverheadBytes <= b.count {
                let length = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: off, as: UInt32.self)))
                guard length >= LogFormat.recordOverheadBytes else { break }
                last = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: off + 4, as: UInt64.self))
                off += length
            }
            return (first, last)
        }
        state.withLock { s in
            s.chunks.append(Chunk(salt: salt, bytes: bytes, firstLSN: first, lastLSN: last))
            s.bytes += bytes.count
            while s.bytes > capacity && s.chunks.count - s.head > 1 {
                s.bytes -= s.chunks[s.head].bytes.count
                s.chunks[s.head].bytes = []
                s.head += 1
            }
            if s.head > 64 && s.head * 2 > s.chunks.count {
                s.chunks.removeFirst(s.head)
                s.head = 0
            }
        }
    }

    public var bytes: Int { state.withLock { $0.bytes } }
    /// The oldest LSN the backlog holds (nil when empty).
    public var firstLSN: UInt64? { state.withLock { s in s.head < s.chunks.count ? s.chunks[s.head].firstLSN : nil } }

    public enum Collected: Sendable {
        /// Groups of records from the asked LSN on (possibly empty: nothing new yet).
        case records([UInt8], lastLSN: UInt64)
        /// The asked LSN is older than the backlog.
        case tooOld
    }

    /// Records from `lsn` through at most `upTo`, about `maxBytes` of them (at
    /// least one record when there is one).
    public func collect(from lsn: UInt64, upTo: UInt64, maxBytes: Int) -> Collected {
        state.withLock { s -> Collected in
            guard s.head < s.chunks.count else { return lsn > upTo ? .records([], lastLSN: lsn - 1) : .tooOld }
            if lsn < s.chunks[s.head].firstLSN { return .tooOld }
            var out: [UInt8] = []
            var last = lsn - 1
            // The first chunk that may hold `lsn` (chunks are in LSN order).
            var lo = s.head, hi = s.chunks.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if s.chunks[mid].lastLSN < lsn { lo = mid + 1 } else { hi = mid }
            }
            var i = lo
            while i < s.chunks.count && out.count < maxBytes && last < upTo {
                let c = s.chunks[i]
                c.bytes.withUnsafeBytes { b in
                    var off = 0, start = -1, end = 0
                    while off + LogFormat.recordOverheadBytes <= b.count {
                        let length = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: off, as: UInt32.self)))
                        guard length >= LogFormat.recordOverheadBytes, off + length <= b.count else { break }
                        let r = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: off + 4, as: UInt64.self))
                        if r > upTo || (start >= 0 && out.count + (off + length - start) > maxBytes) { break }
                        if r == last + 1 {
                            if start < 0 { start = off }
                            end = off + length
                            last = r
                        }
                        off += length
                    }
                    if start >= 0 { ShippedRecords.appendGroup(UnsafeRawBufferPointer(rebasing: b[start..<end]), salt: c.salt, to: &out) }
                }
                i += 1
            }
            return .records(out, lastLSN: last)
        }
    }
}
