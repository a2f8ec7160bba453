import Foundation
import Synchronization
import Testing
@testable import WAL

struct Rec: Equatable {
    var lsn: UInt64
    var type: UInt8
    var time: Int64
    var payload: [UInt8]
}

func payloadFor(_ i: UInt64) -> [UInt8] {
    (0..<(Int(i % 50) + 1)).map { UInt8(truncatingIfNeeded: Int(i) &* 31 &+ $0) }
}

func readLog(_ dir: String, _ io: any FileIO, from: UInt64 = 0, policy: CorruptionPolicy = .stop) throws -> ([Rec], LogScanSummary) {
    var records: [Rec] = []
    let summary = try LogReader.scan(directory: dir, io: io, fromLSN: from, onCorruption: policy) { r in
        records.append(Rec(lsn: r.lsn, type: r.type, time: r.time, payload: Array(r.payload)))
    }
    return (records, summary)
}

/// Appends records 'from...to' with deterministic payloads; returns the last LSN.
@discardableResult
func appendRange(_ log: LogWriter, _ range: ClosedRange<UInt64>) throws -> UInt64 {
    var last: UInt64 = 0
    for i in range {
        last = try log.append(type: UInt8(i % 7), time: Int64(i) * 1000) { $0.bytes(payloadFor(i)) }
        #expect(last == i)
    }
    return last
}

func expectRecords(_ records: [Rec], _ range: ClosedRange<UInt64>) {
    #expect(records.count == range.count)
    for (r, i) in zip(records, range) {
        #expect(r == Rec(lsn: i, type: UInt8(i % 7), time: Int64(i) * 1000, payload: payloadFor(i)))
    }
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

func simConfig(_ mode: DurabilityMode = .strict, segmentBytes: Int = 64 << 10) -> LogConfig {
    LogConfig(directory: "/wal", mode: mode, segmentBytes: segmentBytes, maxBatchBytes: segmentBytes / 2,
              maxRecordBytes: segmentBytes / 4)
}

/// Polls until the writer thread has handed `lsn` to the file layer.
func waitWritten(_ log: LogWriter, _ lsn: UInt64) async {
    while log.stats.writtenLSN < lsn { try? await Task.sleep(nanoseconds: 200_000) }
}

@Suite struct WALRoundTripTests {
    @Test func posixRoundTripAndResume() async throws {
        let dir = makeTempDirectory("roundtrip")
        defer { removeTree(dir) }
        let io = PosixFileIO()
        let config = LogConfig(directory: dir, segmentBytes: 1 << 20)
        let log = try LogWriter(config: config, io: io, nextLSN: 1)
        let last = try appendRange(log, 1...500)
        try await log.durable(last)
        #expect(log.stats.durableLSN >= 500)
        try log.close()
        try log.close()  // idempotent
        #expect(throws: LogError.closed) { try log.append(type: 1, time: 0) { _ in } }

        var (records, summary) = try readLog(dir, io)
        expectRecords(records, 1...500)
        #expect(summary.nextLSN == 501 && summary.tornTail == nil && summary.segments == 1)

        let again = try LogWriter(config: config, io: io, nextLSN: summary.nextLSN)
        try await again.durable(try appendRange(again, 501...600))
        try again.close()
        (records, summary) = try readLog(dir, io)
        expectRecords(records, 1...600)
        (records, _) = try readLog(dir, io, from: 550)
        expectRecords(records, 550...600)
        #expect(try WALBench.scanThroughput(directory: dir) > 0)
    }

    @Test func simulatedRoundTripAllModes() async throws {
        for mode in [DurabilityMode.strict, .periodic, .none] {
            let io = SimulatedFileIO(seed: 11)
            let log = try LogWriter(config: simConfig(mode), io: io, nextLSN: 1)
            try await log.durable(try appendRange(log, 1...300))
            try log.close()
            let (records, summary) = try readLog("/wal", io)
            expectRecords(records, 1...300)
            #expect(summary.lastLSN == 300)
        }
    }

    @Test func appendBatchUnderOneLock() async throws {
        let io = SimulatedFileIO(seed: 12)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        let last = try log.appendBatch { appender in
            for i in UInt64(1)...10 {
                let lsn = appender.append(type: UInt8(i % 7), time: Int64(i) * 1000) { $0.bytes(payloadFor(i)) }
                #expect(lsn == i)
            }
        }
        #expect(last == 10)
        #expect(try log.appendBatch { _ in } == nil)
        // An oversized record rolls the whole batch back.
        #expect(throws: LogError.self) {
            _ = try log.appendBatch { appender in
                _ = appender.append(type: 1, time: 0) { $0.bytes([1, 2, 3]) }
                _ = appender.append(type: 1, time: 0) { $0.bytes([UInt8](repeating: 0, count: 1 << 15)) }
            }
        }
        #expect(throws: LogError.self) { try log.append(type: 1, time: 0) { $0.bytes([UInt8](repeating: 0, count: 1 << 15)) } }
        try await log.durable(try appendRange(log, 11...20))
        try log.close()
        let (records, _) = try readLog("/wal", io)
        expectRecords(records, 1...20)
    }

    @Test func groupCommitBatchesConcurrentAppenders() async throws {
        let dir = makeTempDirectory("group")
        defer { removeTree(dir) }
        let log = try LogWriter(config: LogConfig(directory: dir, segmentBytes: 8 << 20), io: PosixFileIO(), nextLSN: 1)
        let callbacks = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    for _ in 0..<100 {
                        let lsn = try log.append(type: 1, time: 0) { $0.bytes([UInt8](repeating: 7, count: 64)) }
                        try await log.durable(lsn)
                        log.whenDurable(lsn) { result in
                            if case .success = result { callbacks.value.add(1, ordering: .relaxed) }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let stats = log.stats
        try log.close()
        #expect(callbacks.value.load(ordering: .relaxed) == 1600)
        #expect(stats.recordsAppended == 1600)
        #expect(stats.durableLSN == 1600)
        #expect(stats.recordsPerFsync > 1.5, "records per fsync \(stats.recordsPerFsync)")
        #expect(stats.fsyncs < 1600)
    }

    @Test func rotationAndDeleteSegments() async throws {
        let io = SimulatedFileIO(seed: 13)
        let config = LogConfig(directory: "/wal", segmentBytes: 4096, maxBatchBytes: 2048, maxRecordBytes: 1024)
        let log = try LogWriter(config: config, io: io, nextLSN: 1)
        for i in UInt64(1)...400 {
            _ = try log.append(type: 0, time: Int64(i)) { $0.bytes([UInt8](repeating: UInt8(i % 256), count: 60)) }
            if i % 37 == 0 { try await log.durable(i) }
        }
        try await log.durable(400)
        let segments = try io.listDirectory("/wal")
        #expect(segments.count > 5)
        var (records, summary) = try readLog("/wal", io)
        #expect(records.map(\.lsn) == Array(1...400))
        #expect(summary.segments == segments.count)
        for name in segments { #expect(try io.fileSize(path: "/wal/" + name) <= 4096) }

        let deleted = try log.deleteSegments(coveredBy: 200)
        #expect(!deleted.isEmpty)
        let remaining = LogFormat.segments(in: try io.listDirectory("/wal"))
        #expect(remaining.first!.firstLSN <= 201)
        #expect(remaining.first!.firstLSN > 1)
        (records, summary) = try readLog("/wal", io, from: 201)
        #expect(records.map(\.lsn) == Array(201...400))
        // Asking for records that were deleted is a gap, not silence.
        #expect(throws: LogCorruption.self) { try readLog("/wal", io, from: 1) }
        // Never the active segment.
        try log.deleteSegments(coveredBy: 10_000)
        #expect(LogFormat.segments(in: try io.listDirectory("/wal")).count == 1)
        try await log.durable(try log.append(type: 0, time: 0) { _ in })
        try log.close()
        #expect(try readLog("/wal", io, from: 401).0.map(\.lsn) == [401])
    }

    @Test func emptyAndMissingDirectory() throws {
        let io = SimulatedFileIO()
        var (records, summary) = try readLog("/nope", io)
        #expect(records.isEmpty && summary.directoryMissing && summary.nextLSN == 1)
        try io.createDirectory("/empty")
        (records, summary) = try readLog("/empty", io)
        #expect(records.isEmpty && !summary.directoryMissing && summary.nextLSN == 1 && summary.segments == 0)
        let log = try LogWriter(config: LogConfig(directory: "/empty", segmentBytes: 8192, maxBatchBytes: 4096, maxRecordBytes: 1024), io: io, nextLSN: 1)
        try log.close()
        (records, summary) = try readLog("/empty", io)
        #expect(records.isEmpty && summary.segments == 1 && summary.nextLSN == 1 && summary.tornTail == nil)
    }

    @Test func configLimitsAreChecked() {
        #expect(throws: LogError.self) { try LogConfig(directory: "/x", segmentBytes: 100).validate() }
        #expect(throws: LogError.self) { try LogConfig(directory: "/x", maxBatchBytes: 100, maxRecordBytes: 1000).validate() }
        #expect(throws: LogError.self) { try LogConfig(directory: "").validate() }
        #expect(throws: Never.self) { try LogConfig(directory: "/x").validate() }
    }

    @Test func writerRefusesToReuseLSNs() async throws {
        let io = SimulatedFileIO(seed: 14)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        try await log.durable(try appendRange(log, 1...10))
        try log.close()
        #expect(throws: LogError.self) { try LogWriter(config: simConfig(), io: io, nextLSN: 5) }
        // Engine ahead of the log (its snapshot covers LSN 20): a new segment starts at 21.
        let ahead = try LogWriter(config: simConfig(), io: io, nextLSN: 21)
        try await ahead.durable(try ahead.append(type: 0, time: 0) { _ in })
        try ahead.close()
        #expect(try readLog("/wal", io, from: 21).0.map(\.lsn) == [21])
    }
}
