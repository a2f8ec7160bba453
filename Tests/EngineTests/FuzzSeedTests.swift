import Foundation
import Testing
import WAL
import Snapshot
@testable import AllocationEngine

/// The fuzzers' seeds (Fuzz/corpus, docs/fuzzing.md) are real files of a data
/// directory. A seed the current format no longer reads would leave the
/// fuzzer mutating garbage that never gets past the header checks, silently:
/// these tests recover from each seed as the `log` and `snapshot` targets do
/// and check it still reaches the deals inside.
@Suite struct FuzzSeedTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")

    /// A seed's bytes after its mode byte, and the mode byte.
    static func seed(_ path: String) throws -> (mode: UInt8, bytes: [UInt8]) {
        let data = try [UInt8](Data(contentsOf: corpus.appendingPathComponent(path)))
        let mode = try #require(data.first)
        return (mode, Array(data[1...]))
    }

    static func recover(file: [UInt8], named name: String, in sub: (DataDirectory) -> String) throws -> Recovery.Result {
        let io = SimulatedFileIO(seed: 3)
        let dir = DataDirectory("/data")
        try io.createDirectory("/data")
        try io.createDirectory(dir.wal)
        try io.createDirectory(dir.snapshots)
        let fd = try io.create(sub(dir) + "/" + name)
        try io.write(fd, file)
        try io.fsync(fd)
        try io.close(fd)
        return try Recovery.recover(dir, io: io, now: { 0 })
    }

    @Test func logSegmentSeedsReplayTheirDeals() throws {
        let whole = try Self.seed("log/segment-real")
        #expect(whole.mode & 1 == 0)
        let result = try Self.recover(file: whole.bytes, named: LogFormat.segmentName(firstLSN: 1), in: \.wal)
        #expect(result.states.map(\.info.id).sorted() == ["deal-1", "deal-2"])
        #expect(result.report.recordsReplayed > 10)
        #expect(result.report.tornTail == nil)
        for state in result.states { #expect(state.invariantViolations().isEmpty) }

        let torn = try Self.seed("log/segment-torn")
        let cut = try Self.recover(file: torn.bytes, named: LogFormat.segmentName(firstLSN: 1), in: \.wal)
        #expect(cut.report.tornTail != nil)
        // The cut record is the last commit's audit seal: the log ends one LSN earlier.
        #expect(cut.report.lastLSN == result.report.lastLSN - 1)
    }

    @Test func recordListSeedHoldsDecodableChanges() throws {
        let list = try Self.seed("log/records-real")
        #expect(list.mode & 1 == 1)
        // `type u8, length u16 LE, payload`, as the log target reads it.
        var i = 0
        var decoded = 0
        while i + 3 <= list.bytes.count {
            let type = list.bytes[i]
            let length = Int(list.bytes[i + 1]) | Int(list.bytes[i + 2]) << 8
            let payload = Array(list.bytes[(i + 3)..<(i + 3 + length)])
            let change = try payload.withUnsafeBytes { raw in try ChangeCodec.decode(type: type, payload: raw) }
            #expect(change.recordType == type)
            decoded += 1
            i += 3 + length
        }
        #expect(i == list.bytes.count && decoded > 10)
    }

    @Test func snapshotSeedsLoadTheirDeal() throws {
        let file = try Self.seed("snapshot/snap-real")
        #expect(file.mode & 1 == 0)
        let result = try Self.recover(file: file.bytes, named: SnapshotFormat.name(lsn: 18), in: \.snapshots)
        #expect(result.report.snapshotPath != nil && result.report.skippedSnapshots.isEmpty)
        #expect(result.states.map(\.info.id) == ["deal-1"])

        let state = try Self.seed("snapshot/state-real")
        #expect(state.mode & 1 == 1)
        #expect(state.bytes == Array(file.bytes[SnapshotFormat.headerBytes..<(file.bytes.count - SnapshotFormat.trailerBytes)]))
        let image = try StateCodec.decode(state.bytes)
        // The seed is format 6 (written before deals freed investor slots and
        // before allocations were stored by chunk): it loads, and its state
        // written again in today's format loads to the same state and writes
        // the same bytes once more.
        #expect(state.bytes[0] == 6 && StateCodec.formatVersion == 8)
        let again = StateCodec.encode(image)
        let reloaded = try StateCodec.decode(again)
        #expect(Engine.digest(of: reloaded.deals.map(\.state), directory: reloaded.directory)
                == Engine.digest(of: image.deals.map(\.state), directory: image.directory))
        #expect(StateCodec.encode(reloaded) == again)
    }
}
