// Where the log writer resumes: the last segment on disk, kept, cut at its
// torn tail, or replaced by a new one (the decision table of
// docs/wal-format.md, "Resuming the writer").
import Foundation

extension LogWriter {
    struct Resume {
        var fd: FileHandleID
        var path: String
        var offset: Int
        var salt: UInt32
        var firstLSN: UInt64
        var created: Bool
    }

    /// Resume decision table for the last segment on disk.
    static func openActiveSegment(config: LogConfig, io: any FileIO, nextLSN: UInt64) throws -> Resume {
        let segments = LogFormat.segments(in: try io.listDirectory(config.directory))
        guard let last = segments.last else {
            return try createSegment(config: config, io: io, firstLSN: nextLSN)
        }
        let path = FilePath.join(config.directory, last.name)
        let bytes = try io.readAll(path)
        let scan = try bytes.withUnsafeBytes { buffer in
            try LogReader.scanSegment(buffer, name: last.name, nameLSN: last.firstLSN, expectedFirstLSN: nil, isLast: true) { _, _, _, _, _ in }
        }
        if scan.stop == .newerVersion {
            throw LogFormatError(segment: path, message: "written by a newer log format version; refusing to append")
        }
        guard let header = scan.header, scan.stop != .segmentGap else {
            // Case: the last segment's header never landed (crash while creating it).
            // It holds no records, so it is replaced.
            guard nextLSN >= last.firstLSN else {
                throw LogError.lsnMismatch("engine resumes at LSN \(nextLSN) but segment \(last.name) starts later")
            }
            try io.unlink(path)
            try io.fsyncDirectory(config.directory)
            return try createSegment(config: config, io: io, firstLSN: nextLSN)
        }
        let logNext = scan.nextLSN
        if nextLSN < logNext {
            // Case: the engine is behind the log; appending would reuse LSNs.
            throw LogError.lsnMismatch("log holds records up to LSN \(logNext - 1) but the engine resumes at LSN \(nextLSN)")
        }
        // The valid records may exist only in the page cache: after a failed
        // fsync and a process restart, Linux shows them but has marked the
        // pages clean without writing them. Recovery has replayed them, so
        // they must be made durable before any record is acknowledged after
        // them. They are written to a new file (with whatever followed them,
        // a torn tail or damage the engine accepted with .truncate, left
        // out), synced, and renamed over the segment: rewriting the durable
        // records in place would put them at the mercy of a torn write if the
        // power went during recovery (found by the power-loss campaign, seed 26).
        let rewrite = path + LogFormat.rewriteSuffix
        let fd = try io.create(rewrite)
        try io.pwrite(fd, Array(bytes[0..<scan.validEnd]), offset: 0)
        if config.preallocate { try io.zeroFill(fd, length: max(config.segmentBytes, scan.validEnd)) }
        try io.fsync(fd)
        try io.rename(from: rewrite, to: path)
        try io.fsyncDirectory(config.directory)
        if nextLSN == logNext {
            // Case: continue in the last segment.
            return Resume(fd: fd, path: path, offset: scan.validEnd, salt: header.salt, firstLSN: header.firstLSN, created: false)
        }
        // Case: the engine is ahead of the log (its snapshot covers records the
        // log lost, e.g. mode none): start a new segment at nextLSN.
        try io.close(fd)
        return try createSegment(config: config, io: io, firstLSN: nextLSN)
    }

    /// Creates, reserves and syncs a segment file and its directory entry.
    static func createSegment(config: LogConfig, io: any FileIO, firstLSN: UInt64) throws(IOError) -> Resume {
        let name = LogFormat.segmentName(firstLSN: firstLSN)
        let path = FilePath.join(config.directory, name)
        let header = SegmentHeader(salt: UInt32.random(in: 1...UInt32.max), firstLSN: firstLSN)
        let fd = try io.create(path)
        try io.pwrite(fd, header.encode(), offset: 0)
        if config.preallocate { try io.zeroFill(fd, length: config.segmentBytes) }
        try io.fsync(fd)
        try io.fsyncDirectory(config.directory)
        return Resume(fd: fd, path: path, offset: LogFormat.segmentHeaderBytes, salt: header.salt, firstLSN: firstLSN, created: true)
    }
}
