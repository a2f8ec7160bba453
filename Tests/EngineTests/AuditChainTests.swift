import Testing
import WAL
@testable import AllocationEngine

// The audit chain (issue 9): a record rewritten on purpose with its CRC
// recomputed (which CRCs cannot see) is named by verify and by recovery;
// history cut at a snapshot still links; the encoding is the documented one.

private let dataDir = DataDirectory("/data")

/// Builds a small history: two deals, holds, an allocation, an expiry.
private func history(_ io: SimulatedFileIO, _ clock: ManualClock, config: DurableConfig = durConfig()) async throws -> DurableEngine {
    let d = try await openDurable(io, clock, config)
    for deal in ["d1", "d2"] {
        try await d.engine.createDeal(DealSpec(id: deal))
        try await d.engine.addLot(deal: deal, LotSpec(id: "\(deal)-L1", unitsTotal: Units.whole(1000), unitCost: Price.whole(1)))
    }
    for i in 0..<20 {
        _ = try await d.engine.hold(deal: i % 2 == 0 ? "d1" : "d2", HoldRequest(investor: "inv\(i % 3)", units: Units.whole(1 + i), price: Price.whole(10), ttlMillis: 60_000, id: "hold-\(i)"))
    }
    let a = try await d.engine.allocate(hold: "hold-0")
    try await d.engine.approve(allocation: a)
    clock.advance(millis: 61_000)
    _ = await d.engine.sweepExpired()
    return d
}

/// Rewrites bytes of the record at `lsn` (at `offset` into its payload) and recomputes its CRC.
private func rewrite(_ io: SimulatedFileIO, lsn: UInt64, find old: [UInt8], replace new: [UInt8]) throws {
    var target: (segment: String, offset: Int, length: Int)?
    _ = try LogReader.scan(directory: dataDir.wal, io: io) { r in
        if r.lsn == lsn { target = (r.segment, r.offset, LogFormat.recordOverheadBytes + r.payload.count) }
    }
    let t = try #require(target)
    let path = FilePath.join(dataDir.wal, t.segment)
    var bytes = try #require(io.contents(path))
    let salt = UInt32(bytes[12]) | UInt32(bytes[13]) << 8 | UInt32(bytes[14]) << 16 | UInt32(bytes[15]) << 24
    let payloadStart = t.offset + LogFormat.recordHeaderBytes
    let payloadEnd = t.offset + t.length - 4
    let region = Array(bytes[payloadStart..<payloadEnd])
    let at = try #require((0...(region.count - old.count)).first { Array(region[$0..<($0 + old.count)]) == old }, "bytes to rewrite not found")
    for (k, b) in new.enumerated() { bytes[payloadStart + at + k] = b }
    let crc = CRC32C.checksum(Array(bytes[t.offset..<(t.offset + t.length - 4)]), seed: salt)
    for k in 0..<4 { bytes[t.offset + t.length - 4 + k] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k))) }
    io.corrupt(path, at: 0, with: bytes)
}

@Suite("Audit chain") struct AuditChainTests {
    @Test func theEncodingIsTheDocumentedOne() throws {
        // Recomputed here the way docs/wal-format.md says, by hand.
        let payload: [UInt8] = [1, 2, 3]
        let change = Change.holdReleased(deal: "d1", hold: "h-1")
        let entry = payload.withUnsafeBytes { AuditEntry(seq: 7, time: 1_000, type: 6, change: change, payload: $0) }
        var b: [UInt8] = Array(repeating: 0, count: 32)
        func be<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { b.append(contentsOf: $0) } }
        be(UInt64(7)); be(Int64(1_000)); b.append(6)
        b.append(contentsOf: SHA256.hash(payload))
        #expect(entry.entity == "hold" && entry.entityID == "h-1" && entry.action == "hold.released")
        #expect(entry.hash(after: .zero).bytes == SHA256.hash(b))
        #expect(entry.changeDigest.bytes == SHA256.hash(payload))
        // The buffer digest agrees with the byte-array one at every length around the block edges.
        for n in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let m = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            #expect(SHA256.digest(m).bytes == SHA256.hash(m), "length \(n)")
        }
    }

    /// The SHA-extension compression (when this CPU has it) and the portable one
    /// agree on the FIPS 180-4 vectors and on random messages of every length up
    /// to five blocks.
    @Test func hardwareAndPortableDigestsAgree() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ]
        for (text, hex) in vectors {
            for hw in [false, true] where !hw || SHA256.hardware {
                let d = Array(text.utf8).withUnsafeBytes { SHA256.digest($0, hardware: hw) }
                #expect(d.description == hex, "\(hw ? "hardware" : "portable") digest of \"\(text)\"")
            }
        }
        // On a CPU that has the extensions (Linux names the flag sha_ni) they are used.
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8), info.contains(" sha_ni") {
            #expect(SHA256.hardware, "the CPU has sha_ni but the SHA extensions are not used")
        }
        let million = [UInt8](repeating: 0x61, count: 1_000_000)
        #expect(million.withUnsafeBytes { SHA256.digest($0) }.description == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        guard SHA256.hardware else { return }
        var rng = SystemRandomNumberGenerator()
        for n in 0...320 {
            let m = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let hw = m.withUnsafeBytes { SHA256.digest($0, hardware: true) }
            let sw = m.withUnsafeBytes { SHA256.digest($0, hardware: false) }
            #expect(hw == sw, "length \(n)")
        }
    }

    @Test func aCleanHistoryVerifiesAndRecoveryContinuesTheChain() async throws {
        let io = SimulatedFileIO(seed: 0xa0d1)
        let clock = ManualClock()
        let d = try await history(io, clock)
        let head = try #require(d.engine.sink?.auditHeadAndLSN).0
        try await d.close()
        let report = try AuditLog.verify(dataDir, io: io)
        let changes = try logRecords(io).count
        #expect(report.head == head && report.unsealed == 0 && report.entries == changes)
        // Reopened: the chain goes on from the same head.
        let r = try await openDurable(io, clock)
        #expect(r.engine.sink?.auditHeadAndLSN?.0 == head)
        _ = try await r.engine.hold(deal: "d1", HoldRequest(investor: "inv9", units: Units.whole(1), price: Price.whole(10)))
        try await r.close()
        let after = try AuditLog.verify(dataDir, io: io)
        #expect(after.entries == report.entries + 1 && after.head.seq > head.seq)
    }

    @Test(arguments: [("entity id", Array("hold-7".utf8), Array("hold-X".utf8)),
                      ("investor", Array("inv1".utf8), Array("inw1".utf8))])
    func aRewrittenRecordIsNamed(what: String, old: [UInt8], new: [UInt8]) async throws {
        let io = SimulatedFileIO(seed: 0xa0d2)
        let clock = ManualClock()
        try await history(io, clock).close()
        let target = try #require(try logRecords(io).first {
            if case .holdPlaced(_, let h) = $0.change { return h.id == "hold-7" }
            return false
        })
        try rewrite(io, lsn: target.lsn, find: old, replace: new)
        // The CRC is right: the log reads without damage, the edit decodes...
        let edited = try #require(try logRecords(io).first { $0.lsn == target.lsn })
        #expect(edited.change != target.change, "\(what) should have changed")
        // ...and the chain names the entry.
        let e = try #require(throws: EngineError.self) { try AuditLog.verify(dataDir, io: io) }
        #expect(e.code == .corrupt && e.message.contains("entry \(target.lsn) "), "\(e)")
        let r = try #require(throws: RecoveryError.self) { try Recovery.recover(dataDir, io: io, now: { 0 }) }
        #expect(r.message.contains("audit chain broken") && r.message.contains("entry \(target.lsn) "), "\(r)")
        await #expect(throws: (any Error).self) { try await openDurable(io, clock) }
    }

    @Test func aRewrittenSealIsNamed() async throws {
        let io = SimulatedFileIO(seed: 0xa0d3)
        let clock = ManualClock()
        try await history(io, clock).close()
        // Rewrite a change and recompute its seal too: the next seal's link breaks.
        let target = try #require(try logRecords(io).first {
            if case .holdPlaced(_, let h) = $0.change { return h.id == "hold-3" }
            return false
        })
        try rewrite(io, lsn: target.lsn, find: Array("inv0".utf8), replace: Array("inv2".utf8))
        var sealLSN: UInt64 = 0
        var payload: [UInt8] = []
        _ = try LogReader.scan(directory: dataDir.wal, io: io) { r in
            if sealLSN == 0, r.type == AuditSeal.recordType, r.lsn > target.lsn { sealLSN = r.lsn; payload = Array(r.payload) }
        }
        var seal = try payload.withUnsafeBytes { try AuditSeal.decode($0) }
        let change = try #require(try logRecords(io).first { $0.lsn == target.lsn })
        var encoded = ByteWriter(capacity: 64)
        ChangeCodec.encode(change.change, into: &encoded)
        let forged = encoded.bytes.withUnsafeBytes { AuditEntry(seq: target.lsn, time: change.time, type: change.type, change: change.change, payload: $0) }
        seal.hashes[0] = forged.hash(after: seal.prev)
        var w = ByteWriter(capacity: 64)
        seal.encode(into: &w)
        try rewrite(io, lsn: sealLSN, find: Array(payload[payload.count - 32..<payload.count]), replace: Array(w.bytes[w.bytes.count - 32..<w.bytes.count]))
        let e = try #require(throws: EngineError.self) { try AuditLog.verify(dataDir, io: io) }
        #expect(e.code == .corrupt && e.message.contains("history was rewritten"), "\(e)")
    }

    @Test func historyCutAtASnapshotStillLinks() async throws {
        let io = SimulatedFileIO(seed: 0xa0d4)
        let clock = ManualClock()
        let config = durConfig(segmentBytes: 4 << 10, keepSnapshots: 1, pruneLog: true)
        let d = try await history(io, clock, config: config)
        try await d.snapshot()
        for i in 0..<60 { _ = try await d.engine.hold(deal: "d2", HoldRequest(investor: "inv\(i)", units: Units.whole(1), price: Price.whole(10))) }
        try await d.snapshot()
        let head = try #require(d.engine.sink?.auditHeadAndLSN).0
        try await d.close()
        // The first segments are gone: the retained log starts after LSN 1.
        var first: UInt64 = 0
        _ = try LogReader.scan(directory: dataDir.wal, io: io) { r in if first == 0 { first = r.lsn } }
        #expect(first > 1, "the snapshot should have deleted the oldest segments")
        let report = try AuditLog.verify(dataDir, io: io)
        #expect(report.head == head && report.anchorsChecked >= 1)
        let r = try await openDurable(io, clock, config)
        #expect(r.engine.sink?.auditHeadAndLSN?.0 == head)
        try await r.close()
    }

    /// A seal carries 32 bytes per entry; a batch larger than one record can seal
    /// (here an expiry sweep of 300 holds, with 16 KiB segments: 4 KiB records) is
    /// sealed in parts instead of fail-stopping the log (found by the soak: 36k
    /// holds expiring in one tick of a hot deal made a 1.2 MB seal, over the 1 MiB limit).
    @Test func aBatchTooLargeForOneSealIsSealedInParts() async throws {
        let io = SimulatedFileIO(seed: 0xa0d6)
        let clock = ManualClock()
        let d = try await openDurable(io, clock)
        try await d.engine.createDeal(DealSpec(id: "d1"))
        try await d.engine.addLot(deal: "d1", LotSpec(id: "d1-L1", unitsTotal: Units.whole(1000), unitCost: Price.whole(1)))
        for i in 0..<300 {
            _ = try await d.engine.hold(deal: "d1", HoldRequest(investor: "inv\(i % 7)", units: Units.whole(1), price: Price.whole(10), ttlMillis: 1_000))
        }
        clock.advance(millis: 2_000)
        #expect(await d.engine.sweepExpired() == 300)
        #expect(d.engine.sink?.admission == .open, "the log must not fail-stop")
        _ = try await d.engine.hold(deal: "d1", HoldRequest(investor: "inv1", units: Units.whole(1), price: Price.whole(10)))
        let head = try #require(d.engine.sink?.auditHeadAndLSN).0
        try await d.close()
        let report = try AuditLog.verify(dataDir, io: io)
        let changes = try logRecords(io).count
        #expect(report.head == head && report.unsealed == 0 && report.entries == changes)
        #expect(report.seals >= 300 + 3 + 2, "the sweep's batch is sealed in parts: \(report.seals) seals")
        let r = try await openDurable(io, clock)
        #expect(r.engine.sink?.auditHeadAndLSN?.0 == head)
        try await r.close()
    }

    @Test func aTornSealIsSealedOnTheNextStart() async throws {
        let io = SimulatedFileIO(seed: 0xa0d5)
        let clock = ManualClock()
        try await history(io, clock).close()
        // Cut the last record (the last batch's seal) in half: its changes were never acknowledged,
        // but they passed their CRCs and are kept; the engine seals them when it opens.
        var last: (segment: String, offset: Int, length: Int)?
        _ = try LogReader.scan(directory: dataDir.wal, io: io) { r in last = (r.segment, r.offset, LogFormat.recordOverheadBytes + r.payload.count) }
        let l = try #require(last)
        let path = FilePath.join(dataDir.wal, l.segment)
        let fd = try io.open(path, readOnly: false)
        try io.truncate(fd, length: l.offset + l.length / 2)
        let r = try await openDurable(io, clock)
        let head = try #require(r.engine.sink?.auditHeadAndLSN).0
        try await r.close()
        let report = try AuditLog.verify(dataDir, io: io)
        #expect(report.unsealed == 0 && report.head == head)
    }
}
