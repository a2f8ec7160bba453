// Reading and recovering the log.
//
// Each segment is read with one `readAll` and parsed in place; the visitor
// sees records as views into that buffer (no per-record allocation).
// Where parsing stops early, the situation is classified as one named
// `RecoveryCase`, and `RecoveryCase.action(policy:)` is the decision table.

public enum CorruptionPolicy: Sendable {
    /// Damage before the end of the log throws `LogCorruption`.
    case stop
    /// Damage before the end of the log ends the scan there; everything after
    /// is reported as dropped (`LogScanSummary.truncated`, `droppedRecords`, `droppedBytes`).
    case truncate
}

/// One record, valid only during the `visit` call that receives it.
public struct LogRecordView {
    public let lsn: UInt64
    public let type: UInt8
    public let time: Int64
    public let payload: UnsafeRawBufferPointer
    public let segment: String
    public let offset: Int
}

/// Damage before the end of the log.
public struct LogCorruption: Error, Sendable, CustomStringConvertible {
    public let segment: String
    public let offset: Int
    /// The LSN expected at `offset`.
    public let lsn: UInt64
    public let recoveryCase: RecoveryCase
    public let reason: String

    public var description: String {
        "log corruption in \(segment) at byte offset \(offset) (expected LSN \(lsn)): \(reason) [\(recoveryCase)]; "
            + "acknowledged records may be damaged; recovering with the truncate policy drops everything from here on"
    }
}

/// The log was written by a newer version of this software, or is not a log.
public struct LogFormatError: Error, Sendable, CustomStringConvertible {
    public let segment: String
    public let message: String
    public var description: String { "\(segment): \(message)" }
}

/// Every way a scan of one position can end, named (STYLE.md: recovery as a decision table).
public enum RecoveryCase: String, Sendable {
    /// End of file, or only zeros (preallocated space) after the last valid record.
    case cleanEnd
    /// A damaged record with nothing valid after it in the last segment: a crash mid-write.
    case tornTail
    /// The last segment's header is short, zero or fails its checksum and no record follows: a crash while creating it.
    case tornSegmentHeader
    /// A damaged record followed by a valid record in the same segment.
    case damagedBeforeValidRecord
    /// A damaged record (or header) in a segment that is not the last one.
    case damagedBeforeLaterSegment
    /// A record whose checksum is valid but whose LSN is not the previous LSN + 1.
    case lsnOutOfSequence
    /// A segment whose first LSN does not continue the previous segment (or the requested start).
    case segmentGap
    /// A segment written by a newer format version.
    case newerVersion

    public enum Action: Sendable, Equatable {
        /// Stop here; the log ends cleanly.
        case endClean
        /// Stop here; report the cut bytes as a torn tail (not an error).
        case cutTornTail
        /// Stop here; report what is dropped (policy .truncate).
        case truncate
        /// Throw `LogCorruption`.
        case fail
        /// Throw `LogFormatError` regardless of policy.
        case refuse
    }

    /// The decision table.
    public func action(policy: CorruptionPolicy) -> Action {
        switch (self, policy) {
        case (.cleanEnd, _): .endClean
        case (.tornTail, _): .cutTornTail
        case (.tornSegmentHeader, _): .cutTornTail
        case (.newerVersion, _): .refuse
        case (.damagedBeforeValidRecord, .stop): .fail
        case (.damagedBeforeLaterSegment, .stop): .fail
        case (.lsnOutOfSequence, .stop): .fail
        case (.segmentGap, .stop): .fail
        case (.damagedBeforeValidRecord, .truncate): .truncate
        case (.damagedBeforeLaterSegment, .truncate): .truncate
        case (.lsnOutOfSequence, .truncate): .truncate
        case (.segmentGap, .truncate): .truncate
        }
    }
}

public struct LogScanSummary: Sendable {
    /// Records passed to `visit` (LSN >= fromLSN).
    public var records = 0
    /// Segment files read.
    public var segments = 0
    /// First and last LSN passed to `visit`.
    public var firstLSN: UInt64? = nil
    public var lastLSN: UInt64? = nil
    /// The LSN the next appended record must carry (1 for an empty log).
    public var nextLSN: UInt64 = 1
    /// Where the valid log ends: the writer resumes here.
    public var validEnd: (segment: String, offset: Int)? = nil
    /// Bytes cut from the end of the last segment (crash mid-write); not an error.
    public var tornTail: (segment: String, offset: Int, bytes: Int)? = nil
    /// Set when policy .truncate stopped the scan at damage.
    public var truncated: (segment: String, offset: Int, lsn: UInt64, recoveryCase: RecoveryCase)? = nil
    /// Valid-looking records found after a truncation point (best effort) and bytes dropped.
    public var droppedRecords = 0
    public var droppedBytes = 0
    /// True when the directory did not exist (nothing was ever logged there).
    public var directoryMissing = false
}

/// Result of checking the bytes at one offset of a segment.
enum RecordCheck {
    case valid(length: Int, lsn: UInt64)
    /// End of file, or nothing but zeros from here on.
    case end
    case damaged(String)
}

/// Where and why parsing of one segment stopped (used by the reader and by
/// the writer when it resumes the last segment).
struct SegmentScan {
    var header: SegmentHeader?
    var headerProblem: SegmentHeader.Decoded?
    var records = 0
    var lastLSN: UInt64? = nil
    /// Offset just past the last valid record (or the header).
    var validEnd: Int
    /// Why parsing stopped, with the byte offset and reason.
    var stop: RecoveryCase = .cleanEnd
    var stopReason = ""
    var nextLSN: UInt64
}

public enum LogReader {
    /// Scans the log in `directory`, calling `visit` for each record with LSN >= fromLSN.
    public static func scan(
        directory: String,
        io: any FileIO,
        fromLSN: UInt64 = 0,
        onCorruption: CorruptionPolicy = .stop,
        visit: (LogRecordView) throws -> Void
    ) throws -> LogScanSummary {
        var summary = LogScanSummary()
        guard io.fileExists(directory) else {
            summary.directoryMissing = true
            summary.nextLSN = max(1, fromLSN)
            return summary
        }
        let segments = LogFormat.segments(in: try io.listDirectory(directory))
        guard !segments.isEmpty else {
            summary.nextLSN = max(1, fromLSN)
            return summary
        }
        // Skip whole segments that end before fromLSN: start at the last
        // segment whose first LSN is <= fromLSN.
        var start = 0
        if fromLSN > 0 {
            for (index, segment) in segments.enumerated() where segment.firstLSN <= fromLSN { start = index }
        }
        var expected: UInt64? = nil
        if fromLSN > 0 && segments[start].firstLSN > fromLSN {
            // Records fromLSN ..< firstLSN are missing: a gap at the start.
            let name = segments[start].name
            let c = RecoveryCase.segmentGap
            let reason = "log starts at LSN \(segments[start].firstLSN) but records from LSN \(fromLSN) were requested"
            switch c.action(policy: onCorruption) {
            case .truncate:
                summary.truncated = (name, 0, fromLSN, c)
                summary.nextLSN = fromLSN
                try dropRest(segments[start...], directory: directory, io: io, into: &summary)
                return summary
            default:
                throw LogCorruption(segment: name, offset: 0, lsn: fromLSN, recoveryCase: c, reason: reason)
            }
        }

        for index in start..<segments.count {
            let (name, nameLSN) = segments[index]
            let path = FilePath.join(directory, name)
            let isLast = index == segments.count - 1
            let bytes = try io.readAll(path)
            summary.segments += 1
            var segmentStop: (RecoveryCase, SegmentScan)? = nil
            try bytes.withUnsafeBytes { buffer in
                let scan = try scanSegment(
                    buffer, name: name, nameLSN: nameLSN, expectedFirstLSN: expected, isLast: isLast
                ) { lsn, type, time, payload, offset in
                    guard lsn >= fromLSN else { return }
                    if summary.firstLSN == nil { summary.firstLSN = lsn }
                    summary.lastLSN = lsn
                    summary.records += 1
                    try visit(LogRecordView(lsn: lsn, type: type, time: time, payload: payload, segment: name, offset: offset))
                }
                segmentStop = (scan.stop, scan)
            }
            let (stopCase, scan) = segmentStop!
            expected = scan.nextLSN
            summary.nextLSN = max(scan.nextLSN, summary.nextLSN)
            switch stopCase.action(policy: onCorruption) {
            case .endClean:
                summary.validEnd = (name, scan.validEnd)
                continue
            case .cutTornTail:
                precondition(isLast, "a torn tail is only possible in the last segment")
                summary.validEnd = (name, scan.validEnd)
                summary.tornTail = (name, scan.validEnd, bytes.count - scan.validEnd)
                return summary
            case .refuse:
                throw LogFormatError(
                    segment: path,
                    message: "written by log format version \(scan.headerProblem.map(versionOf) ?? 0); this build reads up to version \(LogFormat.version); upgrade before recovering")
            case .fail:
                throw LogCorruption(segment: path, offset: scan.validEnd, lsn: scan.nextLSN, recoveryCase: stopCase, reason: scan.stopReason)
            case .truncate:
                if scan.validEnd > 0 { summary.validEnd = (name, scan.validEnd) }
                summary.truncated = (name, scan.validEnd, scan.nextLSN, stopCase)
                summary.droppedBytes += bytes.count - scan.validEnd
                if let header = scan.header {
                    summary.droppedRecords += bytes.withUnsafeBytes {
                        countRecoverable($0, from: scan.validEnd + 1, salt: header.salt, minLSN: scan.nextLSN)
                    }
                }
                try dropRest(segments[(index + 1)...], directory: directory, io: io, into: &summary)
                return summary
            }
        }
        return summary
    }

    private static func versionOf(_ decoded: SegmentHeader.Decoded) -> UInt16 {
        if case .newerVersion(let v) = decoded { return v }
        return 0
    }

    /// Counts what a truncation drops in later segments (best effort).
    private static func dropRest(
        _ rest: ArraySlice<(name: String, firstLSN: UInt64)>, directory: String, io: any FileIO, into summary: inout LogScanSummary
    ) throws {
        for (name, _) in rest {
            let bytes = try io.readAll(FilePath.join(directory, name))
            summary.droppedBytes += bytes.count
            bytes.withUnsafeBytes { buffer in
                if case .valid(let header) = SegmentHeader.decode(buffer) {
                    summary.droppedRecords += countRecoverable(
                        buffer, from: LogFormat.segmentHeaderBytes, salt: header.salt, minLSN: header.firstLSN)
                }
            }
        }
    }

    // MARK: Segment parsing (shared with LogWriter's resume)

    /// Parses one segment. `visit` receives (lsn, type, time, payload, offset).
    static func scanSegment(
        _ buffer: UnsafeRawBufferPointer,
        name: String,
        nameLSN: UInt64,
        expectedFirstLSN: UInt64?,
        isLast: Bool,
        visit: (UInt64, UInt8, Int64, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws -> SegmentScan {
        let decoded = SegmentHeader.decode(buffer)
        guard case .valid(let header) = decoded else {
            var scan = SegmentScan(header: nil, headerProblem: decoded, validEnd: 0, nextLSN: expectedFirstLSN ?? nameLSN)
            switch decoded {
            case .newerVersion(let v):
                scan.stop = .newerVersion
                scan.stopReason = "segment format version \(v) is newer than \(LogFormat.version)"
            case .badMagic where !isLast:
                scan.stop = .damagedBeforeLaterSegment
                scan.stopReason = "not a log segment (bad magic)"
            case .short, .zero, .badChecksum, .badMagic:
                // A segment is created as header + zeros and synced before any
                // record is written, so a bad header over an otherwise empty
                // last file is a crash during creation. Anything else is damage.
                let empty = buffer.count <= LogFormat.segmentHeaderBytes || isZero(buffer, from: LogFormat.segmentHeaderBytes)
                if isLast && empty {
                    scan.stop = .tornSegmentHeader
                } else if isLast {
                    scan.stop = .damagedBeforeValidRecord
                } else {
                    scan.stop = .damagedBeforeLaterSegment
                }
                scan.stopReason = "segment header is unreadable (\(decoded))"
            case .valid:
                preconditionFailure("unreachable")
            }
            return scan
        }
        var scan = SegmentScan(header: header, validEnd: LogFormat.segmentHeaderBytes, nextLSN: header.firstLSN)
        if header.firstLSN != nameLSN {
            scan.stop = .segmentGap
            scan.stopReason = "segment named for LSN \(nameLSN) but its header says \(header.firstLSN)"
            scan.validEnd = 0
            return scan
        }
        if let expectedFirstLSN, header.firstLSN != expectedFirstLSN {
            scan.stop = .segmentGap
            scan.stopReason = "segment starts at LSN \(header.firstLSN) but the previous segment ends before LSN \(expectedFirstLSN)"
            scan.validEnd = 0
            scan.nextLSN = expectedFirstLSN
            return scan
        }
        var offset = LogFormat.segmentHeaderBytes
        var expected = header.firstLSN
        while true {
            switch checkRecord(buffer, at: offset, salt: header.salt) {
            case .valid(let length, let lsn):
                guard lsn == expected else {
                    scan.stop = .lsnOutOfSequence
                    scan.stopReason = "record has LSN \(lsn), expected \(expected)"
                    return scan
                }
                let type = buffer[offset + 12]
                let time = Int64(bitPattern: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset + 13, as: UInt64.self)))
                let payload = UnsafeRawBufferPointer(
                    rebasing: buffer[(offset + LogFormat.recordHeaderBytes)..<(offset + length - LogFormat.recordTrailerBytes)])
                try visit(lsn, type, time, payload, offset)
                scan.records += 1
                scan.lastLSN = lsn
                expected = lsn + 1
                offset += length
                scan.validEnd = offset
                scan.nextLSN = expected
            case .end:
                scan.stop = .cleanEnd
                return scan
            case .damaged(let reason):
                scan.stopReason = reason
                if !isLast {
                    scan.stop = .damagedBeforeLaterSegment
                } else if findValidRecord(buffer, from: offset + 1, salt: header.salt, minLSN: expected) != nil {
                    scan.stop = .damagedBeforeValidRecord
                } else {
                    scan.stop = .tornTail
                }
                return scan
            }
        }
    }

    /// Checks the record at `offset` (CRC and bounds; not LSN sequence).
    @inline(__always)
    static func checkRecord(_ buffer: UnsafeRawBufferPointer, at offset: Int, salt: UInt32) -> RecordCheck {
        let remaining = buffer.count - offset
        if remaining == 0 { return .end }
        if remaining < 4 {
            return isZero(buffer, from: offset) ? .end : .damaged("\(remaining) stray bytes at end of file")
        }
        let length = Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        if length == 0 {
            return isZero(buffer, from: offset) ? .end : .damaged("zero length field followed by non-zero bytes")
        }
        if length < LogFormat.recordOverheadBytes {
            return .damaged("length \(length) is below the minimum record size \(LogFormat.recordOverheadBytes)")
        }
        if length > LogFormat.maxRecordBytes {
            return .damaged("length \(length) exceeds the record limit \(LogFormat.maxRecordBytes)")
        }
        if length > remaining {
            return .damaged("length \(length) runs past the end of the file (\(remaining) bytes left)")
        }
        let stored = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset + length - 4, as: UInt32.self))
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + length - 4)]), seed: salt)
        if stored != computed { return .damaged("checksum mismatch (stored \(hex(stored)), computed \(hex(computed)))") }
        let lsn = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self))
        return .valid(length: length, lsn: lsn)
    }

    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

    static func isZero(_ buffer: UnsafeRawBufferPointer, from offset: Int) -> Bool {
        var i = offset
        let n = buffer.count
        while i + 8 <= n {
            if buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < n {
            if buffer[i] != 0 { return false }
            i += 1
        }
        return true
    }

    /// Searches byte by byte for a checksum-valid record with a plausible LSN
    /// (>= minLSN and no larger than the bytes left could hold). Only used on
    /// the damage path, to tell a torn tail from damage in the middle.
    static func findValidRecord(_ buffer: UnsafeRawBufferPointer, from start: Int, salt: UInt32, minLSN: UInt64) -> Int? {
        let n = buffer.count
        guard start < n else { return nil }
        let maxLSN = minLSN &+ UInt64((n - start) / LogFormat.recordOverheadBytes + 1)
        var p = start
        while p + LogFormat.recordOverheadBytes <= n {
            let length = Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: p, as: UInt32.self)))
            if length >= LogFormat.recordOverheadBytes && length <= n - p && length <= LogFormat.maxRecordBytes {
                let lsn = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: p + 4, as: UInt64.self))
                if lsn >= minLSN && lsn <= maxLSN, case .valid = checkRecord(buffer, at: p, salt: salt) {
                    return p
                }
            }
            p += 1
        }
        return nil
    }

    /// Counts checksum-valid records from `start` on, resynchronising after damage.
    static func countRecoverable(_ buffer: UnsafeRawBufferPointer, from start: Int, salt: UInt32, minLSN: UInt64) -> Int {
        var count = 0
        var p = start
        while let found = findValidRecord(buffer, from: p, salt: salt, minLSN: minLSN) {
            count += 1
            let length = Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: found, as: UInt32.self)))
            p = found + length
        }
        return count
    }
}
