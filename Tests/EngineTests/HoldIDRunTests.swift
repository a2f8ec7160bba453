import Foundation
import Testing
@testable import AllocationEngine
@testable import WAL

/// Caller-chosen hold ids of holds that left memory moving on to the on-disk
/// id runs (`CallerIDRuns`, `DurableEngine.moveHoldIDsDue`): a retry still gets
/// its hold, memory forgets the id, replay and snapshots agree, crashes and
/// damage never turn a retry into a second booking.
@Suite struct HoldIDRunTests {
    static let chunk = HoldTable.chunkSize

    func config(idsInMemory: Int = 1 << 20) -> DurableConfig {
        var c = durConfig(segmentBytes: 4 << 20)
        c.retention.endedMillis = 1_000
        c.retention.callerIDsInMemory = idsInMemory
        return c
    }

    static func request(_ i: Int, units: Int = 1) -> HoldRequest {
        HoldRequest(investor: "inv\(i % 7)", units: Units.whole(units), price: Price.whole(10), ttlMillis: 3_600_000, id: "cid-\(i)")
    }

    /// `chunks` full chunks of holds with caller ids `cid-<from>...`, all released.
    func fillReleased(_ d: DurableEngine, from: Int, chunks: Int) async throws {
        if d.engine.deal("k1") == nil {
            _ = try await d.engine.createDeal(DealSpec(id: "k1", offerUnitPrice: Price.whole(10)))
            try await d.engine.addLot(deal: "k1", LotSpec(id: "k1-L1", unitsTotal: Units.whole(10_000_000), unitCost: Price.whole(5)))
        }
        let actor = try #require(d.engine.deal("k1"))
        let count = chunks * Self.chunk
        var i = from
        while i < from + count {
            let batch = (i..<min(from + count, i + 1024)).map { DealRequest.hold(Self.request($0)) }
            for reply in await d.engine.submit(batch, to: actor) {
                guard case .hold = reply else { Issue.record("hold failed: \(reply)"); return }
            }
            let releases = (i..<min(from + count, i + 1024)).map { DealRequest.release(hold: "cid-\($0)") }
            _ = await d.engine.submit(releases, to: actor)
            i += 1024
        }
    }

    @Test func idsMoveToDiskAndRetriesStillGetTheirHold() async throws {
        let io = SimulatedFileIO(seed: 0x1d5)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        try await fillReleased(d, from: 0, chunks: 3)
        clock.advance(millis: 2_000)
        #expect(await d.archiveDue() == 3 * Self.chunk)
        #expect(d.engine.indexes.holds.countInMemory == 3 * Self.chunk)
        // Below the threshold nothing moves; forced, all of them do.
        #expect(await d.moveHoldIDsDue() == 0)
        #expect(await d.moveHoldIDsDue(force: true) == 3 * Self.chunk)
        #expect(d.engine.indexes.holds.countInMemory == 0)
        #expect(d.holdIDRuns.stats.runs == 1 && d.holdIDRuns.stats.ids == 3 * Self.chunk)
        #expect(await d.engine.deal("k1")!.archivedCallerIDCount == 0)

        // Reads by caller id and retries answer from disk.
        #expect(try await d.engine.holdStatus("cid-5") == "cancelled")
        #expect(try await d.engine.hold(deal: "k1", Self.request(5)).id == "cid-5")
        await expectError(.conflict) { try await d.engine.hold(deal: "k1", Self.request(5, units: 2)) }
        try await d.engine.release(hold: "cid-1000")
        // A fresh id is a new hold; nothing was booked twice.
        #expect(try await d.engine.hold(deal: "k1", Self.request(999_999)).id == "cid-999999")
        #expect(await d.engine.deal("k1")!.retentionCounts().pending == 1)
        #expect(await d.engine.invariantViolations().isEmpty)

        // More ids leave: runs merge (binary counter), every id still answers.
        // The pending cid-999999 took a slot: the new holds' last one is in a
        // chunk not yet full, and the pending one stays as a straggler.
        try await fillReleased(d, from: 10_000, chunks: 3)
        clock.advance(millis: 2_000)
        #expect(await d.archiveDue() == 3 * Self.chunk - 1)
        #expect(await d.moveHoldIDsDue(force: true) == 3 * Self.chunk - 1)
        #expect(d.holdIDRuns.stats.runs == 1 && d.holdIDRuns.stats.ids == 6 * Self.chunk - 1)
        #expect(d.engine.indexes.holds.countInMemory == 2)
        for i in [0, 77, 3 * Self.chunk - 1, 10_000, 10_000 + 3 * Self.chunk - 1] {
            #expect(try await d.engine.hold(deal: "k1", Self.request(i)).id == "cid-\(i)")
        }
        #expect(await d.engine.deal("k1")!.retentionCounts().pending == 1)

        // Restart from the log alone, then from a snapshot: same state, ids still on disk only.
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, config())
        #expect(await r.engine.digest() == live)
        #expect(r.engine.indexes.holds.countInMemory == 2)
        #expect(try await r.engine.hold(deal: "k1", Self.request(10_010)).id == "cid-10010")
        try await r.snapshot()
        try await r.close()
        let s = try await openDurable(io, clock, config())
        #expect(s.recovery.snapshotPath != nil)
        #expect(await s.engine.digest() == live)
        #expect(s.engine.indexes.holds.countInMemory == 2)
        #expect(try await s.engine.hold(deal: "k1", Self.request(42)).id == "cid-42")
        await expectError(.conflict) { try await s.engine.hold(deal: "k1", Self.request(42, units: 3)) }
        #expect(await s.engine.deal("k1")!.retentionCounts().pending == 1)
        try await s.close()
    }

    @Test func theThresholdMovesIdsWithoutBeingAsked() async throws {
        let io = SimulatedFileIO(seed: 0x1d6)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config(idsInMemory: Self.chunk))
        try await fillReleased(d, from: 0, chunks: 2)
        clock.advance(millis: 2_000)
        #expect(await d.archiveDue() == 2 * Self.chunk)
        #expect(await d.moveHoldIDsDue() == 2 * Self.chunk)
        #expect(d.engine.indexes.holds.countInMemory == 0)
        try await d.close()
    }

    /// A crash after the run is synced but before the deals logged the move:
    /// the ids are in memory and on disk; the next move takes them again.
    @Test(arguments: [SimulatedFileIO.CrashMode.dropUnsynced, .randomSubset])
    func aCrashBetweenTheRunAndItsRecordsLosesNoID(mode: SimulatedFileIO.CrashMode) async throws {
        let io = SimulatedFileIO(seed: 0x1d7)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        try await fillReleased(d, from: 0, chunks: 1)
        clock.advance(millis: 2_000)
        #expect(await d.archiveDue() == Self.chunk)
        let acknowledged = await d.engine.digest()
        // The run alone (what moveHoldIDsDue writes before the records).
        let actor = try #require(d.engine.deal("k1"))
        let entries = await actor.archivedCallerIDs(history: d.history).map {
            CallerIDRuns.Entry(id: $0.id, deal: actor.number, slot: $0.slot, location: $0.location)
        }
        try d.holdIDRuns.add(entries)
        io.crash(mode: mode)
        let r = try await openDurable(io, clock, config())
        #expect(await r.engine.digest() == acknowledged)
        #expect(r.engine.indexes.holds.countInMemory == Self.chunk)
        #expect(try await r.engine.hold(deal: "k1", Self.request(9)).id == "cid-9")
        #expect(await r.moveHoldIDsDue(force: true) == Self.chunk)
        #expect(r.engine.indexes.holds.countInMemory == 0)
        // Merged with the first run, duplicates dropped.
        #expect(r.holdIDRuns.lastMergeError == nil)
        #expect(r.holdIDRuns.stats.ids == Self.chunk, "\((try? io.listDirectory("/data/history")) ?? [])")
        #expect(try await r.engine.hold(deal: "k1", Self.request(9)).id == "cid-9")
        #expect(await r.engine.deal("k1")!.retentionCounts().pending == 0)
        try await r.close()
    }

    @Test func aDamagedRunIsRefusedNeverTakenAsFresh() async throws {
        let io = SimulatedFileIO(seed: 0x1d8)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, config())
        try await fillReleased(d, from: 0, chunks: 1)
        clock.advance(millis: 2_000)
        #expect(await d.archiveDue() == Self.chunk)
        #expect(await d.moveHoldIDsDue(force: true) == Self.chunk)
        try await d.close()
        let path = "/data/history/" + CallerIDRuns.fileName(1)
        #expect(try io.listDirectory("/data/history").contains(CallerIDRuns.fileName(1)), "\((try? io.listDirectory("/data/history")) ?? [])")
        // A damaged record block: the engine opens, but a retry is refused, not booked.
        io.damage(path, at: CallerIDRuns.headerBytes + 5)
        let r = try await openDurable(io, clock, config())
        var refused = 0
        for i in 0..<Self.chunk where i % 97 == 0 {
            if (try? await r.engine.hold(deal: "k1", Self.request(i))) == nil { refused += 1 }
        }
        #expect(refused > 0)
        #expect(await r.engine.deal("k1")!.retentionCounts().pending == 0)
        try await r.close()
        // Damaged filter or fences: the engine refuses to start and names the file.
        let size = try io.fileSize(path: path)
        io.damage(path, at: size - 3)
        do {
            _ = try await openDurable(io, clock, config())
            Issue.record("opened with a damaged id run")
        } catch {
            #expect("\(error)".contains(CallerIDRuns.fileName(1)), "\(error)")
        }
    }

    @Test func idTableRemovalKeepsEveryOtherKeyFindable() {
        var t = IdTable()
        var rng = SplitMix64(seed: 11)
        var live: [String: UInt64] = [:]
        for step in 0..<20_000 {
            let k = "k\(rng.next() % 3_000)"
            if rng.next() % 3 == 0, let v = live[k] {
                let removed = t.remove(IdKey(k), ifValue: v)
                #expect(removed)
                live[k] = nil
            } else if live[k] == nil {
                let previous = t.insertIfAbsent(IdKey(k), UInt64(step))
                #expect(previous == nil)
                live[k] = UInt64(step)
            }
        }
        #expect(t.count == live.count)
        for (k, v) in live { #expect(t.find(IdKey(k)) == v) }
        let removedAbsent = t.remove(IdKey("absent"), ifValue: 0)
        #expect(!removedAbsent)
    }
}

