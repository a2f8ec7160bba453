// What the log writer is configured with, how it fails, and what it counts:
// the values callers and tools see, apart from the writer's machinery
// (LogWriter.swift).
import Foundation

public enum DurabilityMode: String, Sendable {
    /// Acknowledge after the fdatasync that covers the record. Loses nothing acknowledged.
    case strict
    /// Acknowledge at once; fdatasync at most every `periodicIntervalMillis` in the background.
    /// An OS crash or power loss loses up to about one interval of acknowledged records.
    case periodic
    /// Acknowledge at once; never fdatasync records (segment creation is still synced).
    /// An OS crash or power loss loses whatever the kernel had not written back.
    case none
}

public struct LogConfig: Sendable {
    public var directory: String
    public var mode: DurabilityMode
    public var periodicIntervalMillis: Int
    /// A segment is rotated before it would grow past this size.
    public var segmentBytes: Int
    /// Write each segment full of zeros (and sync) at creation, so later fdatasyncs
    /// overwrite allocated, written blocks (measured ~10x cheaper than fallocate here).
    public var preallocate: Bool
    /// Pending bytes are cut into chunks of at most this size; one chunk is one write call.
    public var maxBatchBytes: Int
    /// Largest payload one record may carry.
    public var maxRecordBytes: Int
    /// `append` refuses with `.overloaded` when this many bytes wait for the writer
    /// thread; `appendBatch` callers check `isOverloaded` before deciding work.
    public var maxPendingBytes: Int

    public static let defaultSegmentBytes = 64 << 20
    public static let defaultMaxBatchBytes = 4 << 20
    public static let defaultMaxRecordBytes = 1 << 20
    public static let defaultMaxPendingBytes = 256 << 20
    /// Smallest segment: a header plus a few records; smaller only adds rotations.
    public static let minSegmentBytes = 4096

    public init(
        directory: String,
        mode: DurabilityMode = .strict,
        periodicIntervalMillis: Int = 1000,
        segmentBytes: Int = LogConfig.defaultSegmentBytes,
        preallocate: Bool = true,
        maxBatchBytes: Int? = nil,
        maxRecordBytes: Int? = nil,
        maxPendingBytes: Int = LogConfig.defaultMaxPendingBytes
    ) {
        self.directory = directory
        self.mode = mode
        self.periodicIntervalMillis = periodicIntervalMillis
        self.segmentBytes = segmentBytes
        self.preallocate = preallocate
        // Defaults scale down with small segments: a batch is at most a quarter
        // segment, a record at most a batch.
        let batch = maxBatchBytes ?? min(LogConfig.defaultMaxBatchBytes, segmentBytes / 4)
        self.maxBatchBytes = batch
        self.maxRecordBytes = maxRecordBytes ?? min(LogConfig.defaultMaxRecordBytes, batch - LogFormat.recordOverheadBytes)
        self.maxPendingBytes = maxPendingBytes
    }

    /// Limits checked against each other at start-up.
    public func validate() throws(LogError) {
        func check(_ ok: Bool, _ message: String) throws(LogError) {
            if !ok { throw LogError.invalidConfig(message) }
        }
        try check(!directory.isEmpty, "directory is empty")
        try check(periodicIntervalMillis >= 1, "periodicIntervalMillis must be >= 1")
        try check(segmentBytes >= LogConfig.minSegmentBytes, "segmentBytes must be >= \(LogConfig.minSegmentBytes)")
        try check(maxRecordBytes >= 0, "maxRecordBytes must be >= 0")
        try check(maxRecordBytes + LogFormat.recordOverheadBytes <= LogFormat.maxRecordBytes,
                  "maxRecordBytes exceeds the format limit \(LogFormat.maxRecordBytes - LogFormat.recordOverheadBytes)")
        try check(maxRecordBytes + LogFormat.recordOverheadBytes <= maxBatchBytes,
                  "a maximal record must fit in one batch (maxBatchBytes)")
        try check(maxBatchBytes <= segmentBytes - LogFormat.segmentHeaderBytes,
                  "maxBatchBytes must fit in a segment after its header")
        try check(maxPendingBytes >= maxBatchBytes, "maxPendingBytes must be >= maxBatchBytes")
    }
}

public enum LogError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The log fail-stopped after an I/O error; nothing from the failed batch on is acknowledged.
    case failed(String)
    case closed
    case recordTooLarge(bytes: Int, limit: Int)
    case overloaded(pendingBytes: Int, limit: Int)
    case invalidConfig(String)
    /// The engine's next LSN does not fit the log on disk.
    case lsnMismatch(String)

    public var description: String {
        switch self {
        case .failed(let reason): "log failed (fail-stop): \(reason)"
        case .closed: "log is closed"
        case .recordTooLarge(let bytes, let limit): "record payload of \(bytes) bytes exceeds limit \(limit)"
        case .overloaded(let pending, let limit): "log overloaded: \(pending) bytes pending (limit \(limit))"
        case .invalidConfig(let message): "invalid log config: \(message)"
        case .lsnMismatch(let message): "LSN mismatch: \(message)"
        }
    }
}

public struct LogStats: Sendable {
    public var recordsAppended: UInt64 = 0
    public var nextLSN: UInt64 = 1
    /// Highest LSN handed to the kernel.
    public var writtenLSN: UInt64 = 0
    /// Highest LSN covered by a completed fdatasync (or segment sync).
    public var durableLSN: UInt64 = 0
    public var batches: UInt64 = 0
    public var fsyncs: UInt64 = 0
    /// Records made durable per fdatasync, averaged over the log's life.
    public var recordsPerFsync: Double = 0
    public var bytesWritten: UInt64 = 0
    /// fdatasync calls per second over the recent window.
    public var fsyncsPerSecond: Double = 0
    public var lastBatchRecords: Int = 0
    public var lastBatchBytes: Int = 0
    public var pendingBytes: Int = 0
    public var segmentsCreated: Int = 0
    public var failure: String? = nil
}
