import Foundation
import Testing
@testable import WAL

/// The single segment file of a small simulated log.
func onlySegment(_ io: SimulatedFileIO) throws -> String {
    let segments = LogFormat.segments(in: try io.listDirectory("/wal"))
    return "/wal/" + segments.last!.name
}

/// Byte offset of record `lsn` in a segment written by appendRange (first LSN `first`).
func offsetOf(_ lsn: UInt64, first: UInt64 = 1) -> Int {
    var offset = LogFormat.segmentHeaderBytes
    for i in first..<lsn { offset += LogFormat.recordOverheadBytes + payloadFor(i).count }
    return offset
}

@Suite struct WALFailureTests {
    @Test func fdatasyncFailureFailStops() async throws {
        let io = SimulatedFileIO(seed: 21)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        try await log.durable(try appendRange(log, 1...5))
        io.inject(.failFdatasync(nth: 1))
        let lsn = try log.append(type: 1, time: 0) { $0.bytes([1]) }
        await #expect(throws: LogError.self) { try await log.durable(lsn) }
        #expect(log.failure?.contains("fdatasync") == true)
        #expect(log.stats.durableLSN == 5)
        #expect(throws: LogError.self) { try log.append(type: 1, time: 0) { _ in } }
        // Never retried: exactly one fdatasync after the failure point.
        let syncs = io.counts.fdatasyncs
        try? await Task.sleep(nanoseconds: 5_000_000)
        #expect(io.counts.fdatasyncs == syncs)
        // Late waiters are told, not left hanging.
        await #expect(throws: LogError.self) { try await log.durable(lsn) }
        #expect(throws: LogError.self) { try log.close() }
    }

    @Test func writeFailureAcknowledgesNothingOfTheBatch() async throws {
        let io = SimulatedFileIO(seed: 22)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        try await log.durable(try appendRange(log, 1...3))
        io.inject(.failWrite(nth: 1))
        let lsn = try log.append(type: 1, time: 0) { $0.bytes([1, 2]) }
        await #expect(throws: LogError.self) { try await log.durable(lsn) }
        #expect(log.stats.durableLSN == 3)
        #expect(log.failure != nil)
        try? log.close()
        io.crash(mode: .keepRandomPrefix)
        expectRecords(try readLog("/wal", io).0, 1...3)
    }

    @Test func shortWriteThenCrashRecoversSyncedPrefix() async throws {
        for seed in UInt64(1)...8 {
            let io = SimulatedFileIO(seed: seed)
            let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
            try await log.durable(try appendRange(log, 1...20))
            io.inject(.shortWrite(nth: 1, keepBytes: Int(seed) * 7))
            var last: UInt64 = 0
            for i in UInt64(21)...30 {
                // Appends start failing as soon as the writer thread fail-stops.
                if let lsn = try? log.append(type: UInt8(i % 7), time: Int64(i) * 1000, payload: { $0.bytes(payloadFor(i)) }) {
                    last = lsn
                }
            }
            #expect(last >= 21)
            await #expect(throws: LogError.self) { try await log.durable(last) }
            try? log.close()
            io.crash(mode: .keepRandomPrefix)
            let (records, summary) = try readLog("/wal", io)
            // Every acknowledged record survives; whole unacknowledged records may too.
            #expect(records.count >= 20)
            expectRecords(records, 1...UInt64(records.count))
            // The partial record is cut as a torn tail, and the writer resumes after it.
            let resumed = try LogWriter(config: simConfig(), io: io, nextLSN: summary.nextLSN)
            try await resumed.durable(try appendRange(resumed, summary.nextLSN...(summary.nextLSN + 4)))
            try resumed.close()
            expectRecords(try readLog("/wal", io).0, 1...(summary.nextLSN + 4))
        }
    }

    @Test func diskFullFailStops() async throws {
        let io = SimulatedFileIO(seed: 23)
        let config = LogConfig(directory: "/wal", segmentBytes: 8192, preallocate: false, maxBatchBytes: 4096, maxRecordBytes: 1024)
        let log = try LogWriter(config: config, io: io, nextLSN: 1)
        io.inject(.diskFull(capacityBytes: 1000))
        var failed = false
        for i in UInt64(1)...100 {
            do {
                let lsn = try log.append(type: 0, time: 0) { $0.bytes([UInt8](repeating: UInt8(i), count: 40)) }
                try await log.durable(lsn)
            } catch {
                failed = true
                break
            }
        }
        #expect(failed)
        #expect(log.failure?.contains("No space") == true)
        try? log.close()
    }

    @Test func fsyncFaultLoopDuringRotation() async throws {
        // SQLite-style fault loop: fail the nth fsync (segment creation,
        // directory sync) for n = 1, 2, ... until a run completes. Every run
        // must end with the acknowledged records recoverable.
        var n = 1
        while n < 40 {
            let io = SimulatedFileIO(seed: UInt64(n))
            let config = LogConfig(directory: "/wal", segmentBytes: 4096, maxBatchBytes: 2048, maxRecordBytes: 1024)
            let log = try LogWriter(config: config, io: io, nextLSN: 1)
            io.inject(.failFsync(nth: n))
            var acknowledged: UInt64 = 0
            for i in UInt64(1)...120 {
                do {
                    _ = try log.append(type: 0, time: 0) { $0.bytes([UInt8](repeating: 1, count: 100)) }
                    try await log.durable(i)
                    acknowledged = i
                } catch { break }
            }
            try? log.close()
            io.crash(mode: .dropUnsynced)
            let (records, _) = try readLog("/wal", io)
            #expect(records.count >= Int(acknowledged), "n=\(n)")
            #expect(records.map(\.lsn) == Array(1...UInt64(max(1, records.count))).prefix(records.count).map { $0 })
            if acknowledged == 120 { break }
            n += 1
        }
        #expect(n > 1)
    }
}

@Suite struct WALCrashRecoveryTests {
    @Test func crashDropsUnsyncedAndReaderRecoversSyncedPrefix() async throws {
        for mode in SimulatedFileIO.CrashMode.allCases {
            for seed in UInt64(1)...6 {
                let io = SimulatedFileIO(seed: seed)
                let strict = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
                try await strict.durable(try appendRange(strict, 1...50))
                try strict.close()
                // Written but never synced (mode none, several batches).
                let loose = try LogWriter(config: simConfig(.none), io: io, nextLSN: 51)
                for start in stride(from: UInt64(51), through: 91, by: 10) {
                    try appendRange(loose, start...(start + 9))
                    await waitWritten(loose, start + 9)
                }
                io.crash(mode: mode)
                try? loose.close()

                // .truncate always yields an intact prefix containing every acknowledged record.
                let (records, summary) = try readLog("/wal", io, policy: .truncate)
                #expect(records.count >= 50 && records.count <= 100, "\(mode) seed \(seed)")
                expectRecords(records, 1...UInt64(records.count))
                if mode == .dropUnsynced { #expect(records.count == 50) }
                if mode != .randomSubset {
                    // In-order loss never looks like damage in the middle.
                    #expect(throws: Never.self) { try readLog("/wal", io) }
                    #expect(summary.truncated == nil)
                }
                // Resume and keep going from the recovered end.
                let resumed = try LogWriter(config: simConfig(), io: io, nextLSN: summary.nextLSN)
                try await resumed.durable(try resumed.append(type: 0, time: 0) { _ in })
                try resumed.close()
                #expect(try readLog("/wal", io).1.nextLSN == summary.nextLSN + 1)
            }
        }
    }

    @Test func tornTailIsCutNotAnError() async throws {
        let io = SimulatedFileIO(seed: 31)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        try await log.durable(try appendRange(log, 1...20))
        try log.close()
        let path = try onlySegment(io)
        let end = offsetOf(21)
        // A record whose length runs past the end of the file.
        io.corrupt(path, at: end, with: [0xFF, 0xFF, 0x00, 0x00, 21, 0, 0, 0])
        var (records, summary) = try readLog("/wal", io)
        expectRecords(records, 1...20)
        #expect(summary.tornTail?.offset == end)
        #expect(summary.validEnd?.offset == end)
        // A complete-looking record with a bad checksum at the end.
        io.corrupt(path, at: end, with: [40, 0, 0, 0, 21, 0, 0, 0, 0] + [UInt8](repeating: 9, count: 31))
        (records, summary) = try readLog("/wal", io)
        expectRecords(records, 1...20)
        #expect(summary.tornTail != nil)
        let resumed = try LogWriter(config: simConfig(), io: io, nextLSN: 21)
        try await resumed.durable(try appendRange(resumed, 21...30))
        try resumed.close()
        (records, summary) = try readLog("/wal", io)
        expectRecords(records, 1...30)
        #expect(summary.tornTail == nil)
    }

    @Test func damagedMiddleRecordNamesFileOffsetAndLSN() async throws {
        let io = SimulatedFileIO(seed: 32)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        try await log.durable(try appendRange(log, 1...20))
        try log.close()
        let path = try onlySegment(io)
        let offset = offsetOf(5)
        io.damage(path, at: offset + LogFormat.recordHeaderBytes)
        do {
            _ = try readLog("/wal", io)
            Issue.record("expected LogCorruption")
        } catch let error as LogCorruption {
            #expect(error.segment == path)
            #expect(error.offset == offset)
            #expect(error.lsn == 5)
            #expect(error.recoveryCase == .damagedBeforeValidRecord)
            #expect(error.description.contains("offset \(offset)"))
        }
        let (records, summary) = try readLog("/wal", io, policy: .truncate)
        expectRecords(records, 1...4)
        #expect(summary.truncated?.offset == offset)
        #expect(summary.truncated?.lsn == 5)
        #expect(summary.droppedRecords == 15)
        #expect(summary.nextLSN == 5)
        // The writer accepts the truncation when told to resume at LSN 5.
        let resumed = try LogWriter(config: simConfig(), io: io, nextLSN: 5)
        try await resumed.durable(try appendRange(resumed, 5...8))
        try resumed.close()
        expectRecords(try readLog("/wal", io).0, 1...8)
    }

    @Test func damageInEarlierSegmentIsAnError() async throws {
        let io = SimulatedFileIO(seed: 33)
        let config = LogConfig(directory: "/wal", segmentBytes: 4096, maxBatchBytes: 2048, maxRecordBytes: 1024)
        let log = try LogWriter(config: config, io: io, nextLSN: 1)
        for i in UInt64(1)...200 { _ = try log.append(type: 0, time: 0) { $0.bytes([UInt8](repeating: UInt8(i % 200), count: 50)) } }
        try await log.durable(200)
        try log.close()
        let segments = LogFormat.segments(in: try io.listDirectory("/wal"))
        #expect(segments.count >= 3)
        // Damage the last record of the first segment: nothing valid follows it
        // in that file, but a later segment exists, so it is not a torn tail.
        let first = "/wal/" + segments[0].name
        let lastOffset = LogFormat.segmentHeaderBytes + Int(segments[1].firstLSN - 2) * 75
        io.damage(first, at: lastOffset + 30, count: 2)
        #expect(throws: LogCorruption.self) { try readLog("/wal", io) }
        let (records, summary) = try readLog("/wal", io, policy: .truncate)
        #expect(records.count == Int(segments[1].firstLSN - 2))
        #expect(summary.truncated?.recoveryCase == .damagedBeforeLaterSegment)
        #expect(summary.droppedRecords > 0)
    }

    @Test func newerFormatVersionIsRefused() async throws {
        let io = SimulatedFileIO(seed: 34)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        try await log.durable(try appendRange(log, 1...3))
        try log.close()
        io.corrupt(try onlySegment(io), at: 8, with: [2, 0])
        #expect(throws: LogFormatError.self) { try readLog("/wal", io) }
        #expect(throws: LogFormatError.self) { try readLog("/wal", io, policy: .truncate) }
        #expect(throws: LogFormatError.self) { try LogWriter(config: simConfig(), io: io, nextLSN: 4) }
    }

    @Test func tornSegmentHeaderInLastSegment() async throws {
        let io = SimulatedFileIO(seed: 35)
        let log = try LogWriter(config: simConfig(), io: io, nextLSN: 1)
        try await log.durable(try appendRange(log, 1...3))
        try log.close()
        // A crash while creating the next segment left a short file.
        let fd = try io.create("/wal/" + LogFormat.segmentName(firstLSN: 4))
        try io.pwrite(fd, [0x41, 0x45], offset: 0)
        try io.close(fd)
        let (records, summary) = try readLog("/wal", io)
        expectRecords(records, 1...3)
        #expect(summary.tornTail?.offset == 0)
        #expect(summary.nextLSN == 4)
        let resumed = try LogWriter(config: simConfig(), io: io, nextLSN: 4)
        try await resumed.durable(try appendRange(resumed, 4...6))
        try resumed.close()
        expectRecords(try readLog("/wal", io).0, 1...6)
    }
}
