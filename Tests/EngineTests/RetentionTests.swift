import Foundation
import Testing
@testable import AllocationEngine
@testable import WAL

/// Ended holds leaving memory for the history (HoldTable, HistoryStore,
/// DurableEngine.archiveDue): what stays, what leaves, that every read still
/// answers, and that replay and snapshots reproduce memory exactly.
@Suite struct RetentionTests {
    static let chunk = HoldTable.chunkSize

    func retentionConfig(window: Int64 = 1_000, maxEnded: Int = 1 << 20) -> DurableConfig {
        var c = durConfig(segmentBytes: 4 << 20)
        c.retention.endedMillis = window
        c.retention.maxEndedPerDeal = maxEnded
        return c
    }

    /// One deal, `count` one-unit holds in batches; every hold of the first
    /// chunk but `keepPending` is released, the first 20 carry caller ids.
    func fill(_ d: DurableEngine, count: Int, keepPending: Int, ttl: Int64 = 3_600_000) async throws -> [String] {
        _ = try await d.engine.createDeal(DealSpec(id: "r1", offerUnitPrice: Price.whole(10)))
        try await d.engine.addLot(deal: "r1", LotSpec(id: "r1-L1", unitsTotal: Units.whole(1_000_000), unitCost: Price.whole(5)))
        let actor = try #require(d.engine.deal("r1"))
        var ids: [String] = []
        var n = 0
        while n < count {
            var batch: [DealRequest] = []
            for i in n..<min(count, n + 1024) {
                batch.append(.hold(HoldRequest(investor: "inv\(i % 50)", units: Units.whole(1), price: Price.whole(10),
                                               ttlMillis: ttl, id: i < 20 ? "client-\(i)" : nil)))
            }
            for reply in await d.engine.submit(batch, to: actor) {
                guard case .hold(let r) = reply else { Issue.record("hold failed: \(reply)"); return ids }
                ids.append(r.id)
            }
            n += batch.count
        }
        // Release the first chunk except its last `keepPending` holds.
        var releases: [DealRequest] = []
        for id in ids.prefix(Self.chunk - keepPending) { releases.append(.release(hold: id)) }
        var i = 0
        while i < releases.count {
            _ = await d.engine.submit(Array(releases[i..<min(releases.count, i + 1024)]), to: actor)
            i += 1024
        }
        return ids
    }

    @Test func endedHoldsLeaveAfterTheWindowAndStayReadable() async throws {
        let io = SimulatedFileIO(seed: 0x7e7)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, retentionConfig())
        let ids = try await fill(d, count: Self.chunk + 100, keepPending: 10)
        let actor = try #require(d.engine.deal("r1"))

        // Just inside the window: nothing leaves.
        clock.advance(millis: 999)
        #expect(await d.archiveDue() == 0)
        // At the window: the first chunk leaves, its 10 pending holds stay as stragglers.
        clock.advance(millis: 1)
        #expect(await d.archiveDue() == Self.chunk - 10)
        let counts = await actor.retentionCounts()
        #expect(counts.archived == Self.chunk - 10)
        #expect(counts.holdsInMemory == 100 + 10)
        #expect(counts.pending == 110)
        #expect(await d.engine.invariantViolations().isEmpty)

        // Reads of archived holds answer from the history, generated and caller ids alike.
        let old = try await d.engine.holdFields(ids[5])
        #expect(old[field: "status"] == "cancelled" && old[field: "id"] == ids[5] && old[field: "investor"] == "inv5")
        #expect(try await d.engine.holdStatus("client-3") == "cancelled")
        // A pending straggler is still a live hold: it can be released.
        let straggler = ids[Self.chunk - 1]
        #expect(try await d.engine.holdStatus(straggler) == "pending")
        try await d.engine.release(hold: straggler)
        #expect(try await d.engine.holdStatus(straggler) == "cancelled")
        // Changing an archived hold: released again is a no-op, allocating it is refused.
        try await d.engine.release(hold: ids[7])
        await expectError(.conflict) { try await d.engine.allocate(hold: ids[7]) }
        // A retry of an archived caller id gets the original hold, not a second one.
        let retry = try await d.engine.hold(deal: "r1", HoldRequest(investor: "inv3", units: Units.whole(1), price: Price.whole(10),
                                                                  ttlMillis: 3_600_000, id: "client-3"))
        #expect(retry.id == "client-3")
        await expectError(.conflict) {
            try await d.engine.hold(deal: "r1", HoldRequest(investor: "inv3", units: Units.whole(2), price: Price.whole(10),
                                                          ttlMillis: 3_600_000, id: "client-3"))
        }
        #expect(await actor.retentionCounts().pending == 109)

        // The statement lists archived holds too.
        guard case .page(_, let rows) = await d.engine.submit([.statement(.investor("inv3", part: .holds, cursor: 0, count: 1000))], to: actor)[0]
        else { Issue.record("statement page"); return }
        #expect(rows.contains { $0[field: "id"] == "client-3" })
        #expect(rows.count == ids.indices.filter { $0 % 50 == 3 }.count)

        // Restart from the log alone, then snapshot + log: the same memory, the same reads.
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, retentionConfig())
        #expect(await r.engine.digest() == live)
        #expect(try await r.engine.holdStatus("client-3") == "cancelled")
        #expect(await r.engine.deal("r1")!.retentionCounts().archived == Self.chunk - 10)
        try await r.snapshot()
        try await r.close()
        let s = try await openDurable(io, clock, retentionConfig())
        #expect(s.recovery.snapshotPath != nil)
        #expect(await s.engine.digest() == live)
        #expect(try await s.engine.holdStatus(ids[5]) == "cancelled")
        #expect(try await s.engine.hold(deal: "r1", HoldRequest(investor: "inv3", units: Units.whole(1), price: Price.whole(10),
                                                                ttlMillis: 3_600_000, id: "client-3")).id == "client-3")
        #expect(await s.engine.invariantViolations().isEmpty)
        try await s.close()
    }

    @Test func aChunkWithTooManyLiveHoldsStaysAndTheCapForcesOlderOnesOut() async throws {
        let io = SimulatedFileIO(seed: 0x7e8)
        let clock = ManualClock()
        // More than a quarter pending: the chunk stays however old.
        let d = try await openDurable(io, clock, retentionConfig(window: 1_000))
        _ = try await fill(d, count: Self.chunk, keepPending: Self.chunk / 4 + 1)
        clock.advance(millis: 60_000)
        #expect(await d.archiveDue() == 0)
        try await d.close()

        // The per-deal cap sends a chunk out before the window ends.
        let io2 = SimulatedFileIO(seed: 0x7e9)
        let d2 = try await openDurable(io2, clock, retentionConfig(window: 3_600_000, maxEnded: Self.chunk / 2))
        _ = try await fill(d2, count: Self.chunk + 1, keepPending: 0)
        #expect(await d2.archiveDue() == Self.chunk)
        #expect(await d2.engine.invariantViolations().isEmpty)
        try await d2.close()
    }

    @Test func theFairShareCutsOnlyTheDealsOverIt() {
        // All fit: no engine-wide cut.
        #expect(RetentionPolicy.fairShare([10, 20, 30], total: 60) == nil)
        #expect(RetentionPolicy.fairShare([], total: 0) == nil)
        // One hot deal over: the quiet ones keep theirs, the hot one gets the rest.
        #expect(RetentionPolicy.fairShare([10, 20, 1000], total: 100) == 70)
        // All over: an even split.
        #expect(RetentionPolicy.fairShare([500, 500, 500, 500], total: 100) == 25)
        // The share always fits the total and is the largest that does.
        var rng = SplitMix64(seed: 0xfa1)
        for _ in 0..<500 {
            let counts = (0..<Int(rng.next() % 20 + 1)).map { _ in Int(rng.next() % 5000) }
            let total = Int(rng.next() % 20_000)
            guard let c = RetentionPolicy.fairShare(counts, total: total) else {
                #expect(counts.reduce(0, +) <= total); continue
            }
            #expect(counts.reduce(0) { $0 + min($1, c) } <= total)
            #expect(counts.reduce(0) { $0 + min($1, c + 1) } > total)
        }
    }

    @Test func theEngineWideCapSendsChunksOutBeforeTheWindow() async throws {
        let io = SimulatedFileIO(seed: 0x7f0)
        let clock = ManualClock()
        var config = retentionConfig(window: 3_600_000)
        config.retention.maxEndedTotal = Self.chunk
        let d = try await openDurable(io, clock, config)
        // Deal r1: a full chunk released (1024 ended), one more hold pending.
        _ = try await fill(d, count: Self.chunk + 1, keepPending: 0)
        // Deal r2: a few ended holds, under its share.
        _ = try await d.engine.createDeal(DealSpec(id: "r2", offerUnitPrice: Price.whole(10)))
        try await d.engine.addLot(deal: "r2", LotSpec(id: "r2-L1", unitsTotal: Units.whole(1000), unitCost: Price.whole(5)))
        for i in 0..<8 {
            let h = try await d.engine.hold(deal: "r2", HoldRequest(investor: "q\(i)", units: Units.whole(1), price: Price.whole(10), ttlMillis: 60_000))
            try await d.engine.release(hold: h.id)
        }
        // 1032 ended in memory against a cap of 1024: r1 is cut to 1016, so its chunk leaves; r2 keeps its 8.
        #expect(await d.archiveDue() == Self.chunk)
        #expect(await d.engine.deal("r1")!.endedHoldsInMemory == 0)
        #expect(await d.engine.deal("r2")!.endedHoldsInMemory == 8)
        // Under the cap now: nothing more leaves before the window.
        #expect(await d.archiveDue() == 0)
        #expect(await d.engine.invariantViolations().isEmpty)
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, config)
        #expect(await r.engine.digest() == live)
        try await r.close()
    }

    @Test func stragglersLeaveOnceEnded() async throws {
        let io = SimulatedFileIO(seed: 0x7ea)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, retentionConfig())
        let ids = try await fill(d, count: Self.chunk + 1, keepPending: 5)
        clock.advance(millis: 2_000)
        #expect(await d.archiveDue() == Self.chunk - 5)
        for id in ids[(Self.chunk - 5)..<Self.chunk] { try await d.engine.release(hold: id) }
        // All stragglers ended: they leave in one entry.
        #expect(await d.archiveDue() == 5)
        let actor = try #require(d.engine.deal("r1"))
        #expect(await actor.retentionCounts().holdsInMemory == 1)
        for id in ids[(Self.chunk - 5)..<Self.chunk] { #expect(try await d.engine.holdStatus(id) == "cancelled") }
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, retentionConfig())
        #expect(await r.engine.digest() == live)
        #expect(try await r.engine.holdStatus(ids[Self.chunk - 2]) == "cancelled")
        try await r.close()
    }

    @Test func aFailedHistoryWriteKeepsEveryRowInMemory() async throws {
        let io = SimulatedFileIO(seed: 0x7eb)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, retentionConfig())
        let ids = try await fill(d, count: Self.chunk + 1, keepPending: 0)
        clock.advance(millis: 2_000)
        // The next fdatasync is the history's: it fails, nothing leaves, every read still answers.
        io.inject(.failFdatasync(nth: 1))
        #expect(await d.archiveDue() == 0)
        io.clearFaults()
        #expect(d.archiving.lastError != nil)
        #expect(await d.engine.deal("r1")!.retentionCounts().archived == 0)
        #expect(try await d.engine.holdStatus(ids[1]) == "cancelled")
        // The history stops after a failure (like the log): rows stay in memory until a restart.
        #expect(await d.archiveDue() == 0)
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, retentionConfig())
        #expect(await r.engine.digest() == live)
        #expect(await r.archiveDue() == Self.chunk)
        #expect(try await r.engine.holdStatus(ids[1]) == "cancelled")
        try await r.close()
    }

    @Test(arguments: [SimulatedFileIO.CrashMode.dropUnsynced, .tearLastWrite, .randomSubset])
    func aCrashAroundTheHistoryLosesNothing(mode: SimulatedFileIO.CrashMode) async throws {
        let io = SimulatedFileIO(seed: 0x7ec)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, retentionConfig())
        let ids = try await fill(d, count: 2 * Self.chunk + 1, keepPending: 0)
        // The second chunk ends too, later: a first pass archives chunk 0.
        clock.advance(millis: 2_000)
        #expect(await d.archiveDue() == Self.chunk)
        for id in ids[Self.chunk..<(Self.chunk + Self.chunk / 2)] { try await d.engine.release(hold: id) }
        let acknowledged = await d.engine.digest()
        try await d.close()
        // A history append cut by the crash: bytes written after the last synced
        // entry and never named by the log (some, all or none survive the crash).
        let file = "/data/history/" + HistoryStore.fileName(1)
        let fd = try io.openForAppend(file)
        let end = try io.fileSize(fd)
        let junk = HistoryStore.entry(deal: 1, rows: [(slot: Int32, hold: ArchivedHold)]())
        try io.pwrite(fd, junk + [UInt8](repeating: 0xAB, count: 3_000), offset: end)
        try io.close(fd)
        io.crash(mode: mode)
        let r = try await openDurable(io, clock, retentionConfig())
        #expect(await r.engine.digest() == acknowledged)
        #expect(try await r.engine.holdStatus(ids[3]) == "cancelled")
        #expect(try await r.engine.holdStatus(ids[Self.chunk + 3]) == "cancelled")
        #expect(await r.engine.invariantViolations().isEmpty)
        // The history goes on after whatever the crash left at its end.
        for id in ids[(Self.chunk + Self.chunk / 2)..<(2 * Self.chunk)] { try await r.engine.release(hold: id) }
        clock.advance(millis: 2_000)
        #expect(await r.archiveDue() == Self.chunk)
        #expect(try await r.engine.holdStatus(ids[Self.chunk + 3]) == "cancelled")
        let after = await r.engine.digest()
        try await r.close()
        let again = try await openDurable(io, clock, retentionConfig())
        #expect(await again.engine.digest() == after)
        try await again.close()
    }

    /// A launch's holds with one TTL expire in one batch: more entries than
    /// one audit seal may cover (found by the soak: a 1.1 MB seal stopped the log).
    @Test func expiringMoreHoldsThanOneSealCoversAtOnce() async throws {
        let io = SimulatedFileIO(seed: 0x7ee)
        let clock = ManualClock()
        let d = try await openDurable(io, clock, retentionConfig())
        _ = try await fill(d, count: 2 * AuditSeal.maxEntriesPerSeal + 5, keepPending: 0, ttl: 1_000)
        clock.advance(millis: 1_000)
        let expired = await d.engine.sweepExpired()
        // The first chunk was released by `fill`; the rest expire now, in one batch.
        #expect(expired == 2 * AuditSeal.maxEntriesPerSeal + 5 - Self.chunk)
        #expect(expired > AuditSeal.maxEntriesPerSeal)
        #expect(d.engine.sink?.admission == .open)
        #expect(await d.archiveDue() > 0)
        let live = await d.engine.digest()
        try await d.close()
        let r = try await openDurable(io, clock, retentionConfig())
        #expect(await r.engine.digest() == live)
        let audit = try AuditLog.verify(DataDirectory("/data"), io: io)
        #expect(audit.unsealed == 0 && audit.seals > 2)
        try await r.close()
    }

    @Test func historyEntriesRejectDamage() throws {
        let io = SimulatedFileIO(seed: 0x7ed)
        let store = try HistoryStore(directory: "/h", io: io)
        let h = Hold(requested: Units.whole(3), firstPart: LotPart(lot: 0, units: Units.whole(3)), id: "h7.12",
                     proposedUnitPrice: Price.whole(10), createdAt: 5, expiresAt: 9, moreParts: [], investor: 2, allocation: -1,
                     status: .expired, partial: false, createdBy: "u1")
        let entry = HistoryStore.entry(deal: 7, rows: [(slot: Int32(11), hold: ArchivedHold(hold: h, investorID: "inv-x", allocationID: nil))])
        let loc = try store.append([entry])[0]
        #expect(try store.hold(deal: 7, slot: 11, at: loc)?.hold == h)
        #expect(try store.hold(deal: 7, slot: 12, at: loc) == nil)
        #expect(throws: EngineError.self) { try store.hold(deal: 8, slot: 11, at: loc) }
        // A flipped byte in the row or the index is refused, never misread.
        let path = "/h/" + HistoryStore.fileName(loc.file)
        io.damage(path, at: Int(loc.offset) + entry.count - 3)
        #expect(throws: EngineError.self) { try store.hold(deal: 7, slot: 11, at: loc) }
        io.damage(path, at: Int(loc.offset) + HistoryStore.headerBytes + 1)
        #expect(throws: EngineError.self) { try store.hold(deal: 7, slot: 11, at: loc) }
    }

    @Test func theHeapTrimmerRunsAtMostOncePerWindow() {
        let t = HeapTrimmer(minimumSeconds: 2)
        // glibc has malloc_trim: the first call runs, one within the window does not, one after it does.
        #expect(t.trimIfDue(now: 100))
        #expect(!t.trimIfDue(now: 101.5))
        #expect(t.trimIfDue(now: 102))
    }
}
