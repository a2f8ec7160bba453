// On-disk layout of log segments and records. docs/wal-format.md is the
// prose version of this file; keep them in step.
//
// Segment header (32 bytes):
//   0  magic     8 bytes "AEWALSEG"
//   8  version   u16
//  10  flags     u16 (0)
//  12  salt      u32 random per segment file
//  16  firstLSN  u64
//  24  reserved  u32 (0)
//  28  headerCRC u32 CRC32C of bytes 0..<28
//
// Record (25 bytes + payload):
//   0  length  u32 whole record, including this field and the CRC
//   4  lsn     u64
//  12  type    u8
//  13  time    i64 unix milliseconds
//  21  payload length - 25 bytes
//  -4  crc     u32 CRC32C(record bytes 0..<length-4, seed: segment salt)
//
// Records are salted, not chained: see docs/wal-format.md ("Why salted and not chained").

public enum LogFormat {
    public static let segmentMagic: [UInt8] = Array("AEWALSEG".utf8)
    /// Version written by this code; readers refuse anything newer.
    public static let version: UInt16 = 1
    public static let segmentHeaderBytes = 32
    /// length + lsn + type + time.
    public static let recordHeaderBytes = 4 + 8 + 1 + 8
    public static let recordTrailerBytes = 4
    public static let recordOverheadBytes = recordHeaderBytes + recordTrailerBytes
    /// Hard format limit on one record. A length field above this is damage,
    /// never a record, which bounds how far a corrupt length can send the reader.
    public static let maxRecordBytes = 64 << 20

    public static let segmentPrefix = "wal-"
    public static let segmentSuffix = ".log"
    /// Digits in a segment name: enough for any UInt64, so names sort by LSN.
    public static let nameDigits = 20

    public static func segmentName(firstLSN: UInt64) -> String {
        let digits = String(firstLSN)
        return segmentPrefix + String(repeating: "0", count: nameDigits - digits.count) + digits + segmentSuffix
    }

    public static func parseSegmentName(_ name: String) -> UInt64? {
        guard name.hasPrefix(segmentPrefix), name.hasSuffix(segmentSuffix) else { return nil }
        let digits = name.dropFirst(segmentPrefix.count).dropLast(segmentSuffix.count)
        guard digits.count == nameDigits, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }

    /// Segment files in `names`, sorted by first LSN.
    /// A segment's valid prefix being rewritten at start-up (LogSegmentOpen.swift);
    /// not a segment name, so a leftover from a crash is ignored and replaced.
    static let rewriteSuffix = ".rewrite"

    static func segments(in names: [String]) -> [(name: String, firstLSN: UInt64)] {
        names.compactMap { name in parseSegmentName(name).map { (name, $0) } }.sorted { $0.firstLSN < $1.firstLSN }
    }
}

struct SegmentHeader: Equatable, Sendable {
    var version: UInt16 = LogFormat.version
    var salt: UInt32
    var firstLSN: UInt64

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: LogFormat.segmentHeaderBytes)
        w.bytes(LogFormat.segmentMagic)
        w.u16(version)
        w.u16(0)
        w.u32(salt)
        w.u64(firstLSN)
        w.u32(0)
        w.u32(CRC32C.checksum(w.bytes))
        assert(w.count == LogFormat.segmentHeaderBytes)
        return w.bytes
    }

    enum Decoded {
        case valid(SegmentHeader)
        /// Fewer bytes than a header (a crash while creating the file).
        case short
        /// All zero (created and preallocated, header never landed).
        case zero
        case badMagic
        case badChecksum
        case newerVersion(UInt16)
    }

    static func decode(_ buffer: UnsafeRawBufferPointer) -> Decoded {
        guard buffer.count >= LogFormat.segmentHeaderBytes else { return .short }
        let header = UnsafeRawBufferPointer(rebasing: buffer[0..<LogFormat.segmentHeaderBytes])
        if header.allSatisfy({ $0 == 0 }) { return .zero }
        guard header.prefix(8).elementsEqual(LogFormat.segmentMagic) else { return .badMagic }
        var r = ByteReader(header)
        do {
            try r.skip(8)
            let version = try r.u16()
            // The version field sits at a fixed place in every version, so it
            // is checked before the checksum a newer layout may compute differently.
            if version > LogFormat.version { return .newerVersion(version) }
            _ = try r.u16()
            let salt = try r.u32()
            let first = try r.u64()
            _ = try r.u32()
            let stored = try r.u32()
            let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: header[0..<28]))
            guard stored == computed else { return .badChecksum }
            return .valid(SegmentHeader(version: version, salt: salt, firstLSN: first))
        } catch {
            return .short  // unreachable: 32 bytes were checked above
        }
    }
}
