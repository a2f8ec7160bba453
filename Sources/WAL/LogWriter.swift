// The log writer: appends are encoded under a mutex into a pending buffer;
// one dedicated writer thread (not the Swift concurrency pool: it blocks in
// fdatasync) takes everything pending, writes it with one write call per
// segment chunk and one fdatasync, and completes every waiter of the batch.
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Appends many records under one lock acquisition (see `LogWriter.appendBatch`).
public struct LogAppender: ~Copyable {
    fileprivate var state: LogWriter.State
    fileprivate let config: LogConfig
    fileprivate var appended: UInt64? = nil
    fileprivate var tooLarge: Int? = nil

    fileprivate init(state: consuming LogWriter.State, config: LogConfig) {
        self.state = state
        self.config = config
    }

    /// Appends one record and returns its LSN. A payload over the record limit
    /// makes the whole `appendBatch` throw `.recordTooLarge` and append nothing.
    public mutating func append(type: UInt8, time: Int64, payload: (inout ByteWriter) -> Void) -> UInt64 {
        if tooLarge != nil { return 0 }
        switch state.encode(type: type, time: time, config: config, payload: payload) {
        case .success(let lsn):
            appended = lsn
            return lsn
        case .failure(let tooLargeRecord):
            tooLarge = tooLargeRecord.bytes
            return 0
        }
    }
}

/// Work done on each chunk of records on the writer thread, in LSN order, just
/// before it is written (off the appenders' path): it may rewrite record
/// payloads in place if it recomputes their CRCs with `salt` (the audit
/// chain fills in its seals here).
public protocol ChunkFinisher: Sendable {
    func finish(_ chunk: inout [UInt8], salt: UInt32)
}

public final class LogWriter: Sendable {
    /// Fsync timestamps kept for the fsyncs-per-second window.
    static let fsyncWindowSamples = 128
    static let fsyncWindowNanos: UInt64 = 1_000_000_000

    struct Chunk {
        /// Non-nil: this chunk starts a new segment with this header.
        var newSegment: SegmentHeader?
        var writer: ByteWriter
        var records = 0
        var lastLSN: UInt64 = 0
    }

    struct Waiter {
        var lsn: UInt64
        var callback: @Sendable (Result<Void, LogError>) -> Void
    }

    struct State: ~Copyable {
        var nextLSN: UInt64
        // The segment the next record goes to, as the appender sees it
        // (may be ahead of the file the writer thread has open).
        var segmentSalt: UInt32
        var segmentOffset: Int
        var sealed: [Chunk] = []
        var open: Chunk
        var pendingBytes = 0
        var pendingRecords = 0
        var writtenLSN: UInt64
        var durableLSN: UInt64
        var waiters: [Waiter] = []
        var failure: String? = nil
        var closeRequested = false
        var threadExited = false
        var writerIdle = false
        /// Set by `pauseWriting` (the deterministic simulation): the writer
        /// thread takes nothing until `resumeWriting`.
        var paused = false
        /// First LSN of the segment file the writer thread has open.
        var fileSegmentFirstLSN: UInt64
        var stats = LogStats()
        var recordsSynced: UInt64 = 0
        var fsyncTimes: [UInt64] = []
        var rng: SystemRandomNumberGenerator = SystemRandomNumberGenerator()

        init(nextLSN: UInt64, salt: UInt32, offset: Int, fileFirstLSN: UInt64, chunkCapacity: Int) {
            self.nextLSN = nextLSN
            self.segmentSalt = salt
            self.segmentOffset = offset
            self.open = Chunk(newSegment: nil, writer: ByteWriter(capacity: chunkCapacity))
            self.writtenLSN = nextLSN - 1
            self.durableLSN = nextLSN - 1
            self.fileSegmentFirstLSN = fileFirstLSN
        }

        /// Encodes one record into the open chunk. Failure carries the payload size.
        mutating func encode(
            type: UInt8, time: Int64, config: LogConfig, payload: (inout ByteWriter) -> Void
        ) -> Result<UInt64, RecordTooLarge> {
            let lsn = nextLSN
            let start = open.writer.count
            open.writer.u32(0)
            open.writer.u64(lsn)
            open.writer.u8(type)
            open.writer.i64(time)
            payload(&open.writer)
            precondition(open.writer.count >= start + LogFormat.recordHeaderBytes, "payload closure removed bytes")
            open.writer.u32(0)
            let length = open.writer.count - start
            let payloadBytes = length - LogFormat.recordOverheadBytes
            if payloadBytes > config.maxRecordBytes {
                open.writer.bytes.removeLast(length)
                return .failure(RecordTooLarge(bytes: payloadBytes))
            }
            open.writer.patchU32(UInt32(length), at: start)
            let needsRotation = segmentOffset + length > config.segmentBytes
            let chunkFull = open.writer.count > config.maxBatchBytes && start > 0
            if needsRotation || chunkFull {
                // Move this record into a fresh chunk (rare: once per segment or batch limit).
                let record = Array(open.writer.bytes[start...])
                open.writer.bytes.removeLast(length)
                if open.records > 0 || open.newSegment != nil { sealed.append(open) }
                open = Chunk(newSegment: nil, writer: ByteWriter(capacity: max(config.maxBatchBytes / 4, length)))
                if needsRotation {
                    segmentSalt = UInt32.random(in: 1...UInt32.max, using: &rng)
                    open.newSegment = SegmentHeader(salt: segmentSalt, firstLSN: lsn)
                    segmentOffset = LogFormat.segmentHeaderBytes
                }
                open.writer.bytes(record)
            }
            let end = open.writer.count
            let crc = open.writer.bytes.withUnsafeBytes { buffer in
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[(end - length)..<(end - 4)]), seed: segmentSalt)
            }
            open.writer.patchU32(crc, at: end - 4)
            open.records += 1
            open.lastLSN = lsn
            segmentOffset += length
            pendingBytes += length
            pendingRecords += 1
            nextLSN = lsn + 1
            stats.recordsAppended += 1
            return .success(lsn)
        }
    }

    struct RecordTooLarge: Error { var bytes: Int }

    /// File state touched only by the writer thread (and by init/close when the thread is not running).
    struct FileState {
        var fd: FileHandleID?
        var path: String
        var offset: Int
        var dirty = false
        /// The open segment's salt (a finisher recomputes CRCs with it).
        var salt: UInt32 = 0
    }

    public let config: LogConfig
    /// Sees each chunk's bytes on the writer thread just before they are written.
    let finisher: (any ChunkFinisher)?
    let io: any FileIO
    let clock: @Sendable () -> UInt64
    let state: Locked<State>
    let file: Locked<FileState>
    let wakeup = DispatchSemaphore(value: 0)
    let exited = DispatchSemaphore(value: 0)
    /// Called once, on the thread that saw it, when the log fail-stops.
    let failureObservers = Locked<[@Sendable (String) -> Void]>([])
    /// Sees every chunk as written (finished: seals filled, CRCs final), on
    /// the writer thread, before its fdatasync: the replication backlog.
    let chunkTap = Locked<(@Sendable (_ bytes: [UInt8], _ salt: UInt32) -> Void)?>(nil)

    /// Installs (or, with nil, removes) the observer of written chunks. The
    /// records it sees may not be durable yet: compare with `durableLSN`.
    public func setChunkTap(_ tap: (@Sendable (_ bytes: [UInt8], _ salt: UInt32) -> Void)?) {
        chunkTap.withLock { $0 = tap }
    }

    /// The highest LSN acknowledged as durable by the log's mode (strict:
    /// fsynced; periodic and none: written).
    public var acknowledgedLSN: UInt64 {
        let strict = config.mode == .strict
        return state.withLock { strict ? $0.durableLSN : $0.writtenLSN }
    }

    public static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Opens the log for appending at `nextLSN` (1 for a new log; after
    /// recovery, `LogScanSummary.nextLSN` or the snapshot's LSN + 1 if later).
    /// Torn bytes after the last valid record of the last segment are cut.
    /// `clock` returns monotonic nanoseconds (for the periodic interval and stats).
    public init(config: LogConfig, io: any FileIO, nextLSN: UInt64, clock: (@Sendable () -> UInt64)? = nil,
                finisher: (any ChunkFinisher)? = nil) throws {
        try config.validate()
        precondition(nextLSN >= 1, "LSNs start at 1")
        self.config = config
        self.finisher = finisher
        self.io = io
        self.clock = clock ?? LogWriter.monotonicNanos
        try io.createDirectory(config.directory)

        let resume = try LogWriter.openActiveSegment(config: config, io: io, nextLSN: nextLSN)
        state = Locked(State(nextLSN: nextLSN, salt: resume.salt, offset: resume.offset,
                            fileFirstLSN: resume.firstLSN, chunkCapacity: min(config.maxBatchBytes, 1 << 16)))
        file = Locked(FileState(fd: resume.fd, path: resume.path, offset: resume.offset, salt: resume.salt))
        state.withLock { s in
            s.stats.segmentsCreated = resume.created ? 1 : 0
            s.stats.nextLSN = nextLSN
            s.stats.writtenLSN = nextLSN - 1
            s.stats.durableLSN = nextLSN - 1
        }
        if config.mode == .none {
            LogWriter.warn("WARNING: write-ahead log in \(config.directory) runs with durability mode 'none': records are never fsynced; an OS crash or power loss can lose any acknowledged record.")
        }
        let thread = Thread { [self] in self.run() }
        thread.name = "wal-writer"
        thread.start()
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    // MARK: Appending

    /// Appends one record; returns its LSN. Cheap: encodes under the mutex.
    /// `payload` runs under the log's lock and must not call back into the log.
    public func append(type: UInt8, time: Int64, payload: (inout ByteWriter) -> Void) throws(LogError) -> UInt64 {
        let config = self.config
        let (result, signal) = state.withLock { s -> (Result<UInt64, LogError>, Bool) in
            if let failure = s.failure { return (.failure(.failed(failure)), false) }
            if s.closeRequested { return (.failure(.closed), false) }
            if s.pendingBytes >= config.maxPendingBytes {
                return (.failure(.overloaded(pendingBytes: s.pendingBytes, limit: config.maxPendingBytes)), false)
            }
            switch s.encode(type: type, time: time, config: config, payload: payload) {
            case .success(let lsn):
                let signal = s.writerIdle
                s.writerIdle = false
                return (.success(lsn), signal)
            case .failure(let tooLarge):
                return (.failure(.recordTooLarge(bytes: tooLarge.bytes, limit: config.maxRecordBytes)), false)
            }
        }
        if signal { wakeup.signal() }
        return try result.get()
    }

    /// True while more than `maxPendingBytes` wait for the writer thread: the
    /// moment to refuse new work before deciding it (see `appendBatch`).
    public var isOverloaded: Bool { admission.overloaded }

    /// The failure (if any) and the overload state, read under one lock: what
    /// a caller checks before deciding a batch.
    public var admission: (failure: String?, overloaded: Bool) {
        let limit = config.maxPendingBytes
        return state.withLock { ($0.failure, $0.pendingBytes >= limit) }
    }

    /// Appends many records under one lock acquisition; returns the last LSN (nil if none).
    /// If any payload is over the limit, nothing of the batch is appended and this throws.
    public func appendBatch(_ body: (inout LogAppender) -> Void) throws(LogError) -> UInt64? {
        let config = self.config
        let (result, signal) = state.withLock { s -> (Result<UInt64?, LogError>, Bool) in
            if let failure = s.failure { return (.failure(.failed(failure)), false) }
            if s.closeRequested { return (.failure(.closed), false) }
            // No pending-bytes check here: a batch caller has already applied its
            // changes in memory, so refusing now would lose them. Callers admit
            // work up front with `isOverloaded` instead.
            // Move the state into the appender and back (State is ~Copyable: no copy is made).
            let snapshot = (s.nextLSN, s.segmentSalt, s.segmentOffset, s.sealed.count, s.open.writer.count,
                            s.open.records, s.open.lastLSN, s.open.newSegment, s.pendingBytes, s.pendingRecords,
                            s.stats.recordsAppended)
            var appender = LogAppender(state: LogWriter.takeState(&s), config: config)
            body(&appender)
            let appended = appender.appended
            let tooLarge = appender.tooLarge
            s = appender.state
            if let tooLarge {
                // Roll back to exactly the state before the batch.
                if s.sealed.count > snapshot.3 {
                    s.open = s.sealed[snapshot.3]
                    s.sealed.removeLast(s.sealed.count - snapshot.3)
                }
                s.open.writer.bytes.removeLast(s.open.writer.count - snapshot.4)
                (s.nextLSN, s.segmentSalt, s.segmentOffset) = (snapshot.0, snapshot.1, snapshot.2)
                (s.open.records, s.open.lastLSN, s.open.newSegment) = (snapshot.5, snapshot.6, snapshot.7)
                (s.pendingBytes, s.pendingRecords, s.stats.recordsAppended) = (snapshot.8, snapshot.9, snapshot.10)
                return (.failure(.recordTooLarge(bytes: tooLarge, limit: config.maxRecordBytes)), false)
            }
            let signal = appended != nil && s.writerIdle
            if signal { s.writerIdle = false }
            return (.success(appended), signal)
        }
        if signal { wakeup.signal() }
        return try result.get()
    }

    /// Moves the state out, leaving an empty placeholder that is overwritten at once.
    private static func takeState(_ s: inout State) -> State {
        let placeholder = State(nextLSN: 1, salt: 0, offset: 0, fileFirstLSN: 0, chunkCapacity: 0)
        return exchange(&s, with: placeholder)
    }

    // MARK: Durability

    /// Calls back once every record up to `lsn` is durable under the mode
    /// (strict: after the covering fdatasync, on the writer thread; periodic
    /// and none: at once). Immediately, on the caller's thread, if already so.
    public func whenDurable(_ lsn: UInt64, _ callback: @escaping @Sendable (Result<Void, LogError>) -> Void) {
        let mode = config.mode
        let now: Result<Void, LogError>? = state.withLock { s in
            if let failure = s.failure { return .failure(.failed(failure)) }
            let acknowledged = mode == .strict ? s.durableLSN : s.nextLSN - 1
            if lsn <= acknowledged { return .success(()) }
            if s.threadExited { return .failure(.closed) }
            s.waiters.append(Waiter(lsn: lsn, callback: callback))
            return nil
        }
        if let now { callback(now) }
    }

    /// Blocks the calling thread (never a cooperative one) until `lsn` is
    /// durable; the log's failure, if it failed.
    public func waitDurable(_ lsn: UInt64) -> LogError? {
        guard lsn > 0 else { return nil }
        let done = DispatchSemaphore(value: 0)
        let outcome = Locked<LogError?>(nil)
        whenDurable(lsn) { result in
            if case .failure(let e) = result { outcome.withLock { $0 = e } }
            done.signal()
        }
        done.wait()
        return outcome.withLock { $0 }
    }

    /// Appends records another log wrote (a replica's copy of its primary's),
    /// type, time and payload unchanged, as one batch: their LSNs are this
    /// log's next ones (callers check that the first is). The last LSN.
    public func appendShipped(_ records: [ShippedRecord]) throws(LogError) -> UInt64? {
        guard !records.isEmpty else { return nil }
        return try appendBatch { appender in
            for r in records { _ = appender.append(type: r.type, time: r.time) { w in w.bytes(r.payload) } }
        }
    }

    public func durable(_ lsn: UInt64) async throws(LogError) {
        let result: Result<Void, LogError> = await withCheckedContinuation { continuation in
            whenDurable(lsn) { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    public var failure: String? { state.withLock { $0.failure } }

    /// Callbacks waiting for an LSN to become durable (the simulation waits
    /// for a batch to reach this point before it lets the writer go on).
    public var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// The LSN of the last record appended (durable or not): one lock, no stats.
    public var lastAppendedLSN: UInt64 { state.withLock { $0.nextLSN - 1 } }

    /// Runs `observer` with the reason once the log fail-stops (at once if it
    /// already has). The server uses it to stop answering and exit.
    public func onFailStop(_ observer: @escaping @Sendable (String) -> Void) {
        let already: String? = failureObservers.withLock { observers in
            if let failure = state.withLock({ $0.failure }) { return failure }
            observers.append(observer)
            return nil
        }
        if let already { observer(already) }
    }

    // MARK: Deterministic simulation

    /// Stops the writer thread from taking appended records until
    /// `resumeWriting`, so a simulation decides exactly which records form one
    /// write and one fdatasync (group commit) and replays the same I/O from a
    /// seed. Not used by the server.
    public func pauseWriting() {
        state.withLock { $0.paused = true }
    }

    /// Lets the writer take everything appended while paused, as one group.
    public func resumeWriting() {
        state.withLock { $0.paused = false }
        wakeup.signal()
    }

    public var stats: LogStats {
        let now = clock()
        return state.withLock { s in
            var stats = s.stats
            stats.nextLSN = s.nextLSN
            stats.writtenLSN = s.writtenLSN
            stats.durableLSN = s.durableLSN
            stats.pendingBytes = s.pendingBytes
            stats.failure = s.failure
            stats.recordsPerFsync = stats.fsyncs == 0 ? 0 : Double(s.recordsSynced) / Double(stats.fsyncs)
            let recent = s.fsyncTimes.filter { now &- $0 <= LogWriter.fsyncWindowNanos }
            if recent.count == LogWriter.fsyncWindowSamples, let oldest = recent.min(), now > oldest {
                stats.fsyncsPerSecond = Double(recent.count) / (Double(now - oldest) / 1e9)
            } else {
                stats.fsyncsPerSecond = Double(recent.count) / (Double(LogWriter.fsyncWindowNanos) / 1e9)
            }
            return stats
        }
    }

    // MARK: Writer thread

    enum Work {
        case write([Chunk], records: Int, bytes: Int, lastLSN: UInt64)
        case syncOnly
        case sleep(timeoutNanos: UInt64?)
        case exit
    }

    func nextWork() -> Work {
        let mode = config.mode
        let intervalNanos = UInt64(config.periodicIntervalMillis) * 1_000_000
        let now = clock()
        let lastSync = lastSyncNanos.withLock { $0 }
        return state.withLock { s in
            if s.failure != nil { return .exit }
            if s.paused && !s.closeRequested {
                s.writerIdle = true
                return .sleep(timeoutNanos: nil)
            }
            if s.open.records > 0 || s.open.newSegment != nil {
                s.sealed.append(s.open)
                s.open = Chunk(newSegment: nil, writer: ByteWriter(capacity: min(config.maxBatchBytes, max(1 << 16, s.open.writer.count))))
            }
            if !s.sealed.isEmpty {
                let chunks = s.sealed
                s.sealed = []
                let work = Work.write(chunks, records: s.pendingRecords, bytes: s.pendingBytes, lastLSN: chunks.last!.lastLSN)
                s.pendingRecords = 0
                s.pendingBytes = 0
                return work
            }
            let unsynced = s.durableLSN < s.writtenLSN
            if mode == .periodic && unsynced && (now &- lastSync >= intervalNanos || s.closeRequested) { return .syncOnly }
            if s.closeRequested { return .exit }
            s.writerIdle = true
            if mode == .periodic && unsynced { return .sleep(timeoutNanos: intervalNanos - min(intervalNanos, now &- lastSync)) }
            return .sleep(timeoutNanos: nil)
        }
    }

    /// Monotonic time of the last fdatasync (writer thread only, plus stats).
    let lastSyncNanos = Locked<UInt64>(0)

    func run() {
        lastSyncNanos.withLock { $0 = clock() }
        loop: while true {
            switch nextWork() {
            case .exit:
                break loop
            case .sleep(let timeout):
                if let timeout {
                    _ = wakeup.wait(timeout: .now() + .nanoseconds(Int(min(timeout, UInt64(Int.max)))))
                } else {
                    wakeup.wait()
                }
            case .syncOnly:
                do throws(IOError) {
                    let upTo = state.withLock { $0.writtenLSN }
                    try syncActive()
                    complete(durable: upTo, records: 0, written: nil)
                } catch {
                    failStop("\(error)")
                }
            case .write(let chunks, let records, let bytes, let lastLSN):
                do throws(IOError) {
                    let tap = chunkTap.withLock { $0 }
                    for chunk in chunks {
                        if let header = chunk.newSegment { try rotate(to: header) }
                        if let finisher {
                            var finished = chunk
                            finisher.finish(&finished.writer.bytes, salt: file.withLock { $0.salt })
                            try writeChunk(finished)
                            tap?(finished.writer.bytes, file.withLock { $0.salt })
                        } else {
                            try writeChunk(chunk)
                            tap?(chunk.writer.bytes, file.withLock { $0.salt })
                        }
                    }
                    state.withLock { s in
                        s.writtenLSN = lastLSN
                        s.stats.batches += 1
                        s.stats.bytesWritten += UInt64(bytes)
                        s.stats.lastBatchRecords = records
                        s.stats.lastBatchBytes = bytes
                    }
                    let syncNow: Bool
                    switch config.mode {
                    case .strict: syncNow = true
                    case .periodic:
                        let now = clock()
                        syncNow = now &- lastSyncNanos.withLock { $0 } >= UInt64(config.periodicIntervalMillis) * 1_000_000
                    case .none: syncNow = false
                    }
                    if syncNow { try syncActive() }
                    complete(durable: syncNow ? lastLSN : nil, records: syncNow ? records : 0, written: lastLSN)
                } catch {
                    failStop("\(error)")
                }
            }
        }
        // Exit: fail whatever still waits (appends after a failure, or LSNs never appended).
        let (waiters, failure) = state.withLock { s in
            s.threadExited = true
            let waiters = s.waiters
            s.waiters = []
            return (waiters, s.failure)
        }
        for waiter in waiters { waiter.callback(.failure(failure.map { .failed($0) } ?? .closed)) }
        exited.signal()
    }

    private func writeChunk(_ chunk: Chunk) throws(IOError) {
        try file.withLock { (f) throws(IOError) in
            guard let fd = f.fd else { preconditionFailure("writer has no open segment") }
            try withBytes(chunk.writer.bytes) { (buffer) throws(IOError) in try io.pwrite(fd, buffer, offset: f.offset) }
            f.offset += chunk.writer.count
            f.dirty = true
        }
    }

    private func syncActive() throws(IOError) {
        try file.withLock { (f) throws(IOError) in
            guard let fd = f.fd else { return }
            try io.fdatasync(fd)
            f.dirty = false
        }
        let now = clock()
        lastSyncNanos.withLock { $0 = now }
        state.withLock { s in
            s.stats.fsyncs += 1
            if s.fsyncTimes.count == LogWriter.fsyncWindowSamples { s.fsyncTimes.removeFirst() }
            s.fsyncTimes.append(now)
        }
    }

    /// Closes the current segment (synced, in every mode, so that a later
    /// segment on disk always means the earlier ones are complete) and opens a new one.
    private func rotate(to header: SegmentHeader) throws(IOError) {
        let previousDirty = file.withLock { $0.dirty }
        if previousDirty { try syncActive() }
        let durableBefore = state.withLock { $0.writtenLSN }
        let name = LogFormat.segmentName(firstLSN: header.firstLSN)
        let path = FilePath.join(config.directory, name)
        try file.withLock { (f) throws(IOError) in
            if let fd = f.fd { try io.close(fd) }
            f.fd = nil
            let fd = try io.create(path)
            f.fd = fd
            f.path = path
            f.salt = header.salt
            try io.pwrite(fd, header.encode(), offset: 0)
            if config.preallocate { try io.zeroFill(fd, length: config.segmentBytes) }
            try io.fsync(fd)
            try io.fsyncDirectory(config.directory)
            f.offset = LogFormat.segmentHeaderBytes
            f.dirty = false
        }
        // Records written to the previous segment are durable now.
        complete(durable: durableBefore, records: 0, written: nil)
        state.withLock { s in
            s.fileSegmentFirstLSN = header.firstLSN
            s.stats.segmentsCreated += 1
        }
    }

    /// Marks LSNs durable and runs the callbacks that became due, outside the lock.
    private func complete(durable: UInt64?, records: Int, written: UInt64?) {
        let mode = config.mode
        let ready: [Waiter] = state.withLock { s in
            if let written { s.writtenLSN = max(s.writtenLSN, written) }
            if let durable, durable > s.durableLSN {
                s.recordsSynced += records == 0 ? durable - s.durableLSN : UInt64(records)
                s.durableLSN = durable
            }
            let acknowledged = mode == .strict ? s.durableLSN : s.writtenLSN
            guard s.waiters.contains(where: { $0.lsn <= acknowledged }) else { return [] }
            var ready: [Waiter] = []
            s.waiters.removeAll { waiter in
                if waiter.lsn <= acknowledged { ready.append(waiter); return true }
                return false
            }
            return ready
        }
        for waiter in ready { waiter.callback(.success(())) }
    }

    /// Fail-stop: nothing from here on is acknowledged; appends are refused;
    /// the failed fsync is never retried.
    private func failStop(_ reason: String) {
        let message = "\(reason); the log is fail-stopped: restart the process and recover from disk"
        let (waiters, first) = state.withLock { s in
            let first = s.failure == nil
            if first { s.failure = message }
            let waiters = s.waiters
            s.waiters = []
            s.sealed = []
            s.open = Chunk(newSegment: nil, writer: ByteWriter(capacity: 0))
            s.pendingBytes = 0
            s.pendingRecords = 0
            return (waiters, first)
        }
        LogWriter.warn("ERROR: write-ahead log: \(message)")
        for waiter in waiters { waiter.callback(.failure(.failed(message))) }
        if first {
            let observers = failureObservers.withLock { o in
                defer { o = [] }
                return o
            }
            for observer in observers { observer(message) }
        }
    }

    // MARK: Maintenance

    /// Deletes segments whose every record has LSN <= `lsn` (never the active one).
    /// Returns the deleted file names.
    @discardableResult
    public func deleteSegments(coveredBy lsn: UInt64) throws -> [String] {
        let active = state.withLock { $0.fileSegmentFirstLSN }
        let segments = LogFormat.segments(in: try io.listDirectory(config.directory))
        var deleted: [String] = []
        for index in segments.indices.dropLast() {
            let segment = segments[index]
            let next = segments[index + 1]
            guard segment.firstLSN < active, next.firstLSN <= active, next.firstLSN - 1 <= lsn else { break }
            try io.unlink(FilePath.join(config.directory, segment.name))
            deleted.append(segment.name)
        }
        if !deleted.isEmpty { try io.fsyncDirectory(config.directory) }
        return deleted
    }

    /// Flushes and (strict/periodic) fsyncs everything appended, stops the
    /// writer thread and closes the segment. Idempotent. Must not be called
    /// from a durability callback (it waits for the writer thread).
    public func close() throws {
        let first = state.withLock { s -> Bool in
            if s.closeRequested { return false }
            s.closeRequested = true
            return true
        }
        if first { wakeup.signal() }
        exited.wait()
        exited.signal()  // let later close() calls pass
        if first {
            let unsynced = file.withLock { $0.dirty } && config.mode != .none && failure == nil
            if unsynced { try syncActive() }
            try file.withLock { (f) throws(IOError) in
                if let fd = f.fd { try io.close(fd) }
                f.fd = nil
            }
        }
        if let failure { throw LogError.failed(failure) }
    }

    deinit {
        // The writer thread holds a strong reference to self while it runs, so
        // deinit only happens after it exited; release the descriptor if close() was skipped.
        file.withLock { f in
            if let fd = f.fd { try? io.close(fd) }
        }
    }
}
