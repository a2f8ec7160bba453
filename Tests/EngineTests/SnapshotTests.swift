import Testing
import WAL
@testable import Snapshot

@Suite struct SnapshotTests {
    @Test func writeListLoadPrune() throws {
        let io = SimulatedFileIO(seed: 41)
        let store = SnapshotStore(directory: "/snap", io: io, keep: 2)
        #expect(try store.loadNewestValid() == nil)
        for lsn in [UInt64(10), 30, 20, 40] {
            let path = try store.write(lsn: lsn, time: Int64(lsn) * 7, payload: [UInt8](repeating: UInt8(lsn), count: Int(lsn)))
            #expect(path == "/snap/" + SnapshotFormat.name(lsn: lsn))
        }
        #expect(try store.list().map(\.lsn) == [40, 30, 20, 10])
        let loaded = try #require(try store.loadNewestValid())
        #expect(loaded.lsn == 40 && loaded.time == 280 && loaded.payload == [UInt8](repeating: 40, count: 40))
        #expect(loaded.skipped.isEmpty)
        try store.prune()
        #expect(try store.list().map(\.lsn) == [40, 30])
    }

    @Test func damagedNewestFallsBackToOlder() throws {
        let io = SimulatedFileIO(seed: 42)
        let store = SnapshotStore(directory: "/snap", io: io)
        try store.write(lsn: 1, time: 0, payload: [1, 2, 3])
        let newest = try store.write(lsn: 2, time: 0, payload: [4, 5, 6])
        io.corrupt(newest, at: SnapshotFormat.headerBytes + 1, with: [0xFF])
        let loaded = try #require(try store.loadNewestValid())
        #expect(loaded.lsn == 1 && loaded.payload == [1, 2, 3])
        #expect(loaded.skipped.count == 1)
        #expect(loaded.skipped.first?.path == newest)
        #expect(loaded.skipped.first?.reason.contains("checksum") == true)
    }

    @Test func newerVersionIsRefused() throws {
        let io = SimulatedFileIO(seed: 43)
        let store = SnapshotStore(directory: "/snap", io: io)
        try store.write(lsn: 1, time: 0, payload: [1])
        let newest = try store.write(lsn: 2, time: 0, payload: [2])
        io.corrupt(newest, at: 8, with: [9, 0])
        #expect(throws: SnapshotError.self) { try store.loadNewestValid() }
    }

    @Test func writeIsAtomicAndDurable() throws {
        let io = SimulatedFileIO(seed: 44)
        let store = SnapshotStore(directory: "/snap", io: io)
        try store.write(lsn: 5, time: 0, payload: [5])
        io.crash(mode: .dropUnsynced)
        #expect(try store.loadNewestValid()?.lsn == 5)
        // A crash after the temp write but before the rename leaves only a temp
        // file, which is never listed and is removed by prune.
        let fd = try io.create("/snap/" + SnapshotFormat.name(lsn: 9) + SnapshotFormat.tempSuffix)
        try io.pwrite(fd, [1, 2, 3], offset: 0)
        try io.close(fd)
        #expect(try store.list().map(\.lsn) == [5])
        try store.prune()
        #expect(try io.listDirectory("/snap") == [SnapshotFormat.name(lsn: 5)])
        // A failed fsync fails the write and leaves no snapshot under the final name.
        io.inject(.failFsync(nth: 1))
        #expect(throws: IOError.self) { try store.write(lsn: 6, time: 0, payload: [6]) }
        #expect(try store.list().map(\.lsn) == [5])
    }

    @Test func truncatedFileIsDamaged() {
        let bytes = SnapshotFormat.encode(lsn: 3, time: 1, payload: [1, 2, 3, 4])
        #expect(throws: SnapshotError.self) { try SnapshotFormat.decode(Array(bytes.dropLast(2)), path: "x") }
        #expect(throws: SnapshotError.self) { try SnapshotFormat.decode([], path: "x") }
        #expect(throws: Never.self) { try SnapshotFormat.decode(bytes, path: "x") }
    }
}

/// The streamed writer (one deal at a time): the same file as the one-piece
/// writer, the same atomicity, and nothing under a final name until published.
@Suite struct SnapshotStreamTests {
    @Test func crcCombineEqualsTheChecksumOfTheConcatenation() {
        var rng = SystemRandomNumberGenerator()
        for (a, b) in [(0, 0), (0, 7), (5, 0), (1, 1), (13, 1000), (40, 1 << 16), (3, 12345)] {
            let x = (0..<a).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let y = (0..<b).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(CRC32C.combine(CRC32C.checksum(x), CRC32C.checksum(y), lengthB: y.count) == CRC32C.checksum(x + y), "lengths \(a), \(b)")
        }
    }

    @Test func streamedFileIsByteForByteTheOnePieceFile() throws {
        let io = SimulatedFileIO(seed: 51)
        let store = SnapshotStore(directory: "/snap", io: io)
        // Parts around the gathering threshold: small ones gathered, a large one written through.
        let parts: [[UInt8]] = [[1, 2, 3], [UInt8](repeating: 7, count: 5000), [UInt8](repeating: 9, count: SnapshotStream.bufferBytes + 3),
                                [], [UInt8](repeating: 4, count: SnapshotStream.bufferBytes - 1), [5]]
        let stream = try store.begin()
        for p in parts { try stream.append(p) }
        try stream.finish(lsn: 77, time: 123)
        // Finished but not published: recovery sees nothing.
        #expect(try store.list().isEmpty)
        let path = try stream.publish()
        let payload = parts.flatMap { $0 }
        #expect(try io.readAll(path) == SnapshotFormat.encode(lsn: 77, time: 123, payload: payload))
        let loaded = try #require(try store.loadNewestValid())
        #expect(loaded.lsn == 77 && loaded.time == 123 && loaded.payload == payload)
        #expect(try io.listDirectory("/snap") == [SnapshotFormat.name(lsn: 77)])
    }

    @Test func abortOrCrashBeforePublishLeavesTheOldSnapshots() throws {
        let io = SimulatedFileIO(seed: 52)
        let store = SnapshotStore(directory: "/snap", io: io)
        try store.write(lsn: 5, time: 0, payload: [5])
        let aborted = try store.begin()
        try aborted.append([1, 2, 3])
        aborted.abort()
        #expect(try io.listDirectory("/snap") == [SnapshotFormat.name(lsn: 5)])
        #expect(throws: IOError.self) { try aborted.append([4]) }
        // A crash after finish (fsynced temp) but before the rename: only a temp file, pruned.
        let crashed = try store.begin()
        try crashed.append([UInt8](repeating: 1, count: 100))
        try crashed.finish(lsn: 9, time: 0)
        io.crash(mode: .dropUnsynced)
        #expect(try store.loadNewestValid()?.lsn == 5)
        try store.prune()
        #expect(try io.listDirectory("/snap") == [SnapshotFormat.name(lsn: 5)])
        // A failed fsync fails finish; publish then refuses.
        let failing = try store.begin()
        try failing.append([6])
        io.inject(.failFsync(nth: 1))
        #expect(throws: IOError.self) { try failing.finish(lsn: 6, time: 0) }
        #expect(throws: IOError.self) { _ = try failing.publish() }
        failing.abort()
        #expect(try store.loadNewestValid()?.lsn == 5)
    }
}
