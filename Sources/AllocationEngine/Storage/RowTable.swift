import WAL

/// A deal's rows of one kind by slot (holds, allocations), with the ended
/// ones leaving memory for the history.
///
/// Slots keep their numbers forever (generated ids name them), but rows are
/// stored in chunks of 1024 and a chunk whose rows have all ended, the last of
/// them longer ago than the retention window (or beyond the deal's cap on ended
/// rows in memory), is written to the history and dropped. The few rows of such
/// a chunk still pending when it is dropped (at most a quarter of it) stay as
/// *stragglers*: the chunk's array is replaced by just those rows, in slot
/// order, with their slots beside it, so one long hold never pins 1023 ended
/// rows. Which chunk is dropped, and which rows stay, is logged
/// (`holds.archived`), so replay reproduces memory exactly.
///
/// A row is live while it may still change (a pending hold, an allocation
/// under review or approved: fees are computed from it); only ended rows leave.
///
/// Every access is one array element: `holds[i]` finds the chunk and the
/// element (a binary search among a dropped chunk's stragglers) and yields it
/// in place, so reading one field never copies the row.
///
/// Memory, for holds: a chunk in memory costs 1024 x 112 bytes whatever its
/// live count; a straggler 116 bytes; a dropped chunk about 60 bytes (its flags, empty
/// arrays and the history locations in `archived`).
public struct RowTable<Row: RetainedRow>: Sendable {
    static var chunkShift: Int { Row.chunkShift }
    static var chunkSize: Int { 1 << chunkShift }

    /// Per chunk: its rows, or for a dropped chunk its stragglers (by slot).
    private(set) var chunks: [[Row]] = []
    /// Per chunk: whether it was dropped, and then the slots of `chunks[c]`, ascending.
    private(set) var dropped: [Bool] = []
    private(set) var stragglerSlots: [[Int32]] = []
    /// Dropped chunks that still hold stragglers.
    private(set) var stragglerChunks = Set<Int32>()
    public private(set) var stragglerCount = 0
    /// Stragglers that have ended (and wait for their batch), so an archive
    /// pass does not scan every straggler to learn there is nothing to do:
    /// approved allocations stay as stragglers for the life of the deal.
    public private(set) var endedStragglers = 0
    /// Slots ever used (the next hold's slot).
    public private(set) var count = 0
    /// Per chunk: rows not yet ended, and the time the last one ended.
    private(set) var live: [Int32] = []
    private(set) var lastEnded: [Int64] = []
    /// Per dropped chunk: the history entries holding its rows (the chunk's,
    /// then one per batch of its stragglers archived later).
    public private(set) var archived: [Int32: [HistoryLocation]] = [:]
    /// Every chunk below this one is dropped (where the search for the next starts).
    private(set) var firstKept: Int32 = 0
    /// Rows in memory that have ended (full chunks and stragglers).
    public private(set) var endedInMemory = 0
    public private(set) var archivedRows = 0
    /// Ids callers chose for holds that left memory and that are not yet in
    /// the on-disk id runs (`CallerIDRuns`), in the order they left: a retry
    /// with the same `ID` finds its hold through the id map, rebuilt from these
    /// on load. `hold_ids.moved` drops a prefix once a run answers for it, so
    /// this list (and the id map's share of it) stays below the engine's
    /// threshold. Generated ids name their slot and need none.
    public private(set) var archivedCallerIDs: [ArchivedCallerID] = []

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Whether `slot` is in a chunk still wholly in memory (callers keep `slot < count`).
    @inline(__always)
    func isPresent(_ slot: Int) -> Bool {
        slot >= 0 && slot < count && !dropped[slot >> Self.chunkShift]
    }

    /// Where a straggler is in its dropped chunk's array.
    @inline(__always)
    func stragglerIndex(_ c: Int, _ slot: Int32) -> Int? {
        let slots = stragglerSlots[c]
        var lo = 0, hi = slots.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if slots[mid] < slot { lo = mid + 1 } else { hi = mid }
        }
        return lo < slots.count && slots[lo] == slot ? lo : nil
    }

    /// Rows in memory.
    public var inMemory: Int {
        var n = 0
        for chunk in chunks { n += chunk.count }
        return n
    }

    @inline(__always)
    public func isInMemory(_ slot: Int32) -> Bool {
        let s = Int(slot)
        guard s >= 0 && s < count else { return false }
        let c = s >> Self.chunkShift
        return !dropped[c] || stragglerIndex(c, slot) != nil
    }

    /// The row of an in-memory slot (`isInMemory` first: a dropped slot traps).
    /// One yield of one array element, so the access stays in place.
    @inline(__always)
    public subscript(slot: Int) -> Row {
        _read {
            let c = slot >> Self.chunkShift
            let e = dropped[c] ? stragglerIndex(c, Int32(slot))! : slot & (Self.chunkSize - 1)
            yield chunks[c][e]
        }
        _modify {
            let c = slot >> Self.chunkShift
            let e = dropped[c] ? stragglerIndex(c, Int32(slot))! : slot & (Self.chunkSize - 1)
            yield &chunks[c][e]
        }
    }

    /// The row of a slot known to be in a chunk in memory (a hold just placed).
    @inline(__always)
    public subscript(present slot: Int) -> Row {
        _read {
            precondition(isPresent(slot), "\(Row.rowName) slot not in a chunk in memory")
            yield chunks[slot >> Self.chunkShift][slot & (Self.chunkSize - 1)]
        }
    }

    /// Takes the row by move (`__owned`), so appending does not copy it.
    public mutating func append(_ h: __owned Row) {
        let c = count >> Self.chunkShift
        if count & (Self.chunkSize - 1) == 0 {
            // The first chunk grows on demand, so a deal with a handful of holds
            // stays small; once a deal has filled one, each next chunk is
            // reserved whole, sparing the copies (and unmaps) of growing it.
            var chunk: [Row] = []
            if !chunks.isEmpty { chunk.reserveCapacity(Self.chunkSize) }
            chunks.append(chunk)
            dropped.append(false)
            stragglerSlots.append([])
            live.append(0)
            lastEnded.append(0)
        }
        if h.isLive { live[c] += 1 } else { endedInMemory += 1; lastEnded[c] = max(lastEnded[c], h.createdAt) }
        chunks[c].append(h)
        count += 1
    }

    /// Records that the hold at `slot` ended (released, expired, cancelled, allocated).
    @inline(__always)
    public mutating func ended(_ slot: Int32, at time: Int64) {
        let c = Int(slot) >> Self.chunkShift
        live[c] -= 1
        if time > lastEnded[c] { lastEnded[c] = time }
        endedInMemory += 1
        if dropped[c] { endedStragglers += 1 }
    }

    /// Every row in memory, in slot order.
    public func forEachInMemory(_ body: (Int32, Row) throws -> Void) rethrows {
        for c in 0..<chunks.count {
            if dropped[c] {
                for (i, h) in chunks[c].enumerated() { try body(stragglerSlots[c][i], h) }
            } else {
                let base = c << Self.chunkShift
                for (i, h) in chunks[c].enumerated() { try body(Int32(base + i), h) }
            }
        }
    }

    /// The retention counters recounted from the rows (for the invariant
    /// check): nil when they agree, else what differs.
    public func counterMismatch() -> String? {
        var ended = 0, endedStraggling = 0, straggling = 0
        for c in 0..<chunks.count {
            var liveHere: Int32 = 0
            for h in chunks[c] {
                if h.isLive { liveHere += 1 } else { ended += 1; if dropped[c] { endedStraggling += 1 } }
            }
            if dropped[c] { straggling += chunks[c].count }
            if liveHere != live[c] { return "chunk \(c): \(live[c]) live counted, \(liveHere) found" }
        }
        if ended != endedInMemory { return "\(endedInMemory) ended rows in memory counted, \(ended) found" }
        if straggling != stragglerCount { return "\(stragglerCount) stragglers counted, \(straggling) found" }
        if endedStraggling != endedStragglers { return "\(endedStragglers) ended stragglers counted, \(endedStraggling) found" }
        return nil
    }

    /// Every row in memory, in slot order (a copy: for tools and tests).
    public func inMemoryRows() -> [Row] {
        var out: [Row] = []
        forEachInMemory { _, r in out.append(r) }
        return out
    }

    /// The stragglers, in slot order.
    public var stragglers: [(Int32, Row)] {
        var out: [(Int32, Row)] = []
        for c in stragglerChunks.sorted() {
            for (i, h) in chunks[Int(c)].enumerated() { out.append((stragglerSlots[Int(c)][i], h)) }
        }
        return out
    }

    /// The slots of pending rows in memory (all pending rows are).
    public func pendingSlots() -> [Int32] {
        var out: [Int32] = []
        forEachInMemory { s, h in if h.isLive { out.append(s) } }
        return out
    }

    // MARK: - Leaving memory

    public typealias Candidate = ArchiveCandidate

    /// The oldest chunk that may leave memory: full, its last row ended at or
    /// before `endedBefore` (or the deal over `maxEnded` ended rows in memory),
    /// and at most `Row.maxLiveToLeave` of it still live. Else ended
    /// stragglers, once `Row.stragglerBatch` of them (or all) have ended.
    /// `after`: chunks up to it are already planned.
    public func candidate(endedBefore: Int64, maxEnded: Int, after: Int32 = -1) -> Candidate? {
        let fullChunks = count >> Self.chunkShift
        // Chunks already planned (`after`) count as gone for the cap.
        let planned = after >= firstKept ? Int(after - firstKept + 1) * Self.chunkSize : 0
        let overCap = endedInMemory - planned > maxEnded
        var c = max(Int(firstKept), Int(after) + 1)
        while c < fullChunks {
            if !dropped[c] {
                if (lastEnded[c] <= endedBefore || overCap) && Int(live[c]) <= Row.maxLiveToLeave {
                    var keep: [Int32] = []
                    if live[c] > 0 {
                        let base = c << Self.chunkShift
                        for (i, h) in chunks[c].enumerated() where h.isLive { keep.append(Int32(base + i)) }
                    }
                    return .chunk(Int32(c), keep: keep)
                }
                // Chunks fill in time order: a later one rarely qualifies when this one does not.
                if !overCap { break }
            }
            c += 1
        }
        if endedStragglers >= Row.stragglerBatch || (endedStragglers > 0 && endedStragglers == stragglerCount) {
            var ended: [Int32] = []
            for c in stragglerChunks {
                for (i, h) in chunks[Int(c)].enumerated() where !h.isLive { ended.append(stragglerSlots[Int(c)][i]) }
            }
            if ended.count >= Row.stragglerBatch || (!ended.isEmpty && ended.count == stragglerCount) { return .stragglers(ended.sorted()) }
        }
        return nil
    }

    /// The ended rows a candidate sends to the history, in slot order.
    public func rowsLeaving(_ candidate: Candidate) -> [(slot: Int32, row: Row)] {
        switch candidate {
        case .chunk(let c, let keep):
            let base = Int(c) << Self.chunkShift
            var out: [(slot: Int32, row: Row)] = []
            out.reserveCapacity(Self.chunkSize - keep.count)
            var k = 0
            for (i, h) in chunks[Int(c)].enumerated() {
                if k < keep.count && keep[k] == Int32(base + i) { k += 1; continue }
                out.append((Int32(base + i), h))
            }
            return out
        case .stragglers(let slots):
            return slots.map { ($0, self[Int($0)]) }
        }
    }

    /// Drops what a candidate named once its rows are durable in the history
    /// at `location`. Replay calls it with logged candidates, so it checks
    /// that every row leaving has ended and throws instead of trusting its input.
    /// Returns the investor slot of every row that left (one per row), for the
    /// deal to drop their references.
    public mutating func archive(_ candidate: Candidate, at location: HistoryLocation) throws(EngineError) -> [Int32] {
        var investorsLeaving: [Int32] = []
        switch candidate {
        case .chunk(let c, let keep):
            let ci = Int(c)
            guard ci >= 0 && ci < count >> Self.chunkShift, !dropped[ci] else {
                throw EngineError(.corrupt, "\(Row.rowName) chunk \(c) cannot leave memory: not a full chunk in memory")
            }
            let base = ci << Self.chunkShift
            var k = 0
            var callerIDs: [ArchivedCallerID] = []
            var keepRows: [Row] = []
            keepRows.reserveCapacity(keep.count)
            var pendingKept: Int32 = 0
            for (i, h) in chunks[ci].enumerated() {
                let s = base + i
                if k < keep.count && keep[k] == Int32(s) {
                    keepRows.append(h)
                    if h.isLive { pendingKept += 1 } else { endedStragglers += 1 }
                    k += 1
                } else if h.isLive {
                    throw EngineError(.corrupt, "\(Row.rowName) \(h.id) is live; its chunk cannot leave memory without it")
                } else {
                    if h.investor >= 0 { investorsLeaving.append(h.investor) }
                    if Row.keepsCallerIDs && GeneratedID.parse(h.id, prefix: Row.generatedPrefix) == nil {
                        callerIDs.append(ArchivedCallerID(slot: Int32(s), id: h.id, location: location))
                    }
                }
            }
            guard k == keep.count else { throw EngineError(.corrupt, "\(Row.rowName) chunk \(c): kept slots outside the chunk or unsorted") }
            archivedCallerIDs.append(contentsOf: callerIDs)
            let leaving = Self.chunkSize - keepRows.count
            endedInMemory -= leaving
            archivedRows += leaving
            live[ci] = pendingKept
            chunks[ci] = keepRows
            stragglerSlots[ci] = keep
            dropped[ci] = true
            if !keep.isEmpty {
                stragglerChunks.insert(c)
                stragglerCount += keep.count
            }
            archived[c, default: []].append(location)
            while Int(firstKept) < count >> Self.chunkShift && dropped[Int(firstKept)] { firstKept += 1 }
        case .stragglers(let slots):
            var byChunk: [Int32: Set<Int32>] = [:]
            // Strictly ascending (as `candidate` makes them): a slot named twice would leave twice.
            for (i, s) in slots.enumerated() where i > 0 && slots[i - 1] >= s {
                throw EngineError(.corrupt, "straggler \(Row.rowName) slots not in ascending order at \(s)")
            }
            for s in slots {
                guard isInMemory(s), dropped[Int(s) >> Self.chunkShift], !self[Int(s)].isLive else {
                    throw EngineError(.corrupt, "straggler \(Row.rowName) slot \(s) cannot leave memory: missing or live")
                }
                if Row.keepsCallerIDs && GeneratedID.parse(self[Int(s)].id, prefix: Row.generatedPrefix) == nil {
                    archivedCallerIDs.append(ArchivedCallerID(slot: s, id: self[Int(s)].id, location: location))
                }
                byChunk[Int32(Int(s) >> Self.chunkShift), default: []].insert(s)
                if self[Int(s)].investor >= 0 { investorsLeaving.append(self[Int(s)].investor) }
            }
            for (c, leaving) in byChunk {
                let ci = Int(c)
                var rows: [Row] = [], kept: [Int32] = []
                for (i, h) in chunks[ci].enumerated() where !leaving.contains(stragglerSlots[ci][i]) {
                    rows.append(h)
                    kept.append(stragglerSlots[ci][i])
                }
                stragglerCount -= chunks[ci].count - rows.count
                chunks[ci] = rows
                stragglerSlots[ci] = kept
                if rows.isEmpty { stragglerChunks.remove(c) }
                archived[c, default: []].append(location)
            }
            endedInMemory -= slots.count
            endedStragglers -= slots.count
            archivedRows += slots.count
        }
        return investorsLeaving
    }

    /// Drops the first `n` archived caller ids (now answered by an id run) and
    /// returns them, for the id map to forget. Replay calls it with a logged
    /// count, so it checks instead of trusting it.
    public mutating func dropArchivedCallerIDs(first n: Int) throws(EngineError) -> ArraySlice<ArchivedCallerID> {
        guard n >= 0 && n <= archivedCallerIDs.count else {
            throw EngineError(.corrupt, "\(n) archived \(Row.rowName) ids cannot move to disk: \(archivedCallerIDs.count) are in memory")
        }
        let gone = archivedCallerIDs[0..<n]
        archivedCallerIDs.removeFirst(n)
        return gone
    }

    /// The history entries that may hold an archived slot, newest first.
    public func locations(of slot: Int32) -> [HistoryLocation] {
        (archived[Int32(Int(slot) >> Self.chunkShift)] ?? []).reversed()
    }

    // MARK: - Snapshots

    /// The table's parts, for the snapshot codec and the digest.
    public struct Parts: Sendable {
        public var count: Int
        public var chunks: [[Row]?]
        public var stragglers: [(Int32, Row)]
        public var archived: [(Int32, [HistoryLocation])]
        public var archivedRows: Int
        /// Per chunk, when its last row ended (the retention clock).
        public var lastEnded: [Int64]
        public var archivedCallerIDs: [ArchivedCallerID]
    }

    public var parts: Parts {
        var parts: [[Row]?] = []
        for c in 0..<chunks.count { parts.append(dropped[c] ? nil : chunks[c]) }
        return Parts(count: count, chunks: parts, stragglers: stragglers,
                     archived: archived.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, archivedRows: archivedRows,
                     lastEnded: lastEnded, archivedCallerIDs: archivedCallerIDs)
    }

    /// Rebuilds a table (snapshot load), recomputing the per-chunk counters.
    public init(_ p: Parts) throws(DecodeError) {
        let expectedChunks = (p.count + Self.chunkSize - 1) >> Self.chunkShift
        guard p.chunks.count == expectedChunks else { throw DecodeError("\(Row.rowName) table: \(p.chunks.count) chunks for \(p.count) slots") }
        guard p.lastEnded.count == expectedChunks else { throw DecodeError("\(Row.rowName) table: \(p.lastEnded.count) chunk end times for \(expectedChunks) chunks") }
        for (c, chunk) in p.chunks.enumerated() {
            let want = c == expectedChunks - 1 ? p.count - (c << Self.chunkShift) : Self.chunkSize
            if let chunk {
                guard chunk.count == want else { throw DecodeError("\(Row.rowName) chunk \(c) has \(chunk.count) rows, not \(want)") }
            } else {
                guard want == Self.chunkSize else { throw DecodeError("\(Row.rowName) chunk \(c) is dropped but not full") }
            }
        }
        count = p.count
        chunks = p.chunks.map { $0 ?? [] }
        dropped = p.chunks.map { $0 == nil }
        stragglerSlots = Array(repeating: [], count: expectedChunks)
        live = Array(repeating: 0, count: expectedChunks)
        lastEnded = p.lastEnded
        for (c, chunk) in p.chunks.enumerated() {
            guard let chunk else { continue }
            for h in chunk {
                if h.isLive { live[c] += 1 } else { endedInMemory += 1 }
            }
        }
        var previous: Int32 = -1
        for (s, h) in p.stragglers {
            guard s > previous, s >= 0 && Int(s) < p.count, p.chunks[Int(s) >> Self.chunkShift] == nil else {
                throw DecodeError("straggler \(Row.rowName) slot \(s) is not in a dropped chunk, or out of order")
            }
            previous = s
            let c = Int(s) >> Self.chunkShift
            chunks[c].append(h)
            stragglerSlots[c].append(s)
            stragglerChunks.insert(Int32(c))
            stragglerCount += 1
            if h.isLive { live[c] += 1 } else { endedInMemory += 1; endedStragglers += 1 }
        }
        for (c, locs) in p.archived {
            guard c >= 0 && Int(c) < expectedChunks, p.chunks[Int(c)] == nil else { throw DecodeError("archived \(Row.rowName) chunk \(c) is in memory") }
            archived[c] = locs
        }
        archivedRows = p.archivedRows
        for a in p.archivedCallerIDs where a.slot < 0 || Int(a.slot) >= p.count {
            throw DecodeError("archived \(Row.rowName) id of slot \(a.slot) out of range")
        }
        archivedCallerIDs = p.archivedCallerIDs
        while Int(firstKept) < p.count >> Self.chunkShift && dropped[Int(firstKept)] { firstKept += 1 }
    }
}

extension RowTable where Row == Hold {
    /// Fills in where the history holds the rows of ids loaded from a format-5
    /// snapshot (which did not record it), by reading the candidate entries.
    public mutating func resolveCallerIDLocations(deal: UInt32, store: HistoryStore) {
        for i in archivedCallerIDs.indices where archivedCallerIDs[i].location.file == ArchivedCallerID.unknownFile {
            let slot = archivedCallerIDs[i].slot
            for loc in locations(of: slot) {
                if let row = try? store.hold(deal: deal, slot: slot, at: loc), row.hold.id == archivedCallerIDs[i].id {
                    archivedCallerIDs[i].location = loc
                    break
                }
            }
        }
    }
}

/// What the retention rule lets leave memory now (the same for every table).
public enum ArchiveCandidate: Hashable, Sendable {
    /// A full chunk: its ended rows go to the history; `keep` (live) stay as stragglers.
    case chunk(Int32, keep: [Int32])
    /// Stragglers that have ended since their chunk left.
    case stragglers([Int32])
}

/// A row a `RowTable` keeps: it knows whether it may still change (`isLive`:
/// then it never leaves memory) and which investor slot it names.
public protocol RetainedRow: Sendable {
    var isLive: Bool { get }
    var investor: Int32 { get }
    var id: String { get }
    /// When the row was made: the retention clock of a row appended already ended.
    var createdAt: Int64 { get }
    /// log2 of the rows a chunk holds.
    static var chunkShift: Int { get }
    /// The first byte of the ids the engine generates for the row (`h`, `a`).
    static var generatedPrefix: UInt8 { get }
    /// Whether caller-chosen ids of rows that left are listed (`archivedCallerIDs`)
    /// for the on-disk id runs; otherwise the id map keeps them.
    static var keepsCallerIDs: Bool { get }
    /// For messages.
    static var rowName: String { get }
    /// A full chunk leaves only with at most this many rows still live (they
    /// stay as stragglers).
    static var maxLiveToLeave: Int { get }
    /// Ended stragglers leave in batches of this many (or when all have ended).
    static var stragglerBatch: Int { get }
}

extension Hold: RetainedRow {
    public var isLive: Bool { status == .pending }
    /// 1024 rows (112 KiB) a chunk: small enough that a thousand quiet deals,
    /// each with a chunk being filled and one waiting out the window, stay
    /// within a few hundred MiB; large enough that a hot deal at 150k holds/s
    /// writes about 150 history entries a second.
    public static var chunkShift: Int { 10 }
    public static var generatedPrefix: UInt8 { UInt8(ascii: "h") }
    public static var keepsCallerIDs: Bool { true }
    public static var rowName: String { "hold" }
    /// A quarter: the pending holds of a chunk that left are found by a binary
    /// search among its stragglers, so the hot path wants few of them.
    public static var maxLiveToLeave: Int { 256 }
    public static var stragglerBatch: Int { 1024 }
}

/// A deal's holds by slot (see `RowTable`).
public typealias HoldTable = RowTable<Hold>

/// A caller's id of a hold that left memory, with the history entry that has
/// its row (where a lookup through the on-disk id runs confirms it).
public struct ArchivedCallerID: Sendable, Hashable {
    public var slot: Int32
    public var id: String
    public var location: HistoryLocation
    /// A format-5 snapshot's ids, until `resolveCallerIDLocations` finds their entries.
    public static let unknownFile = UInt32.max
    public init(slot: Int32, id: String, location: HistoryLocation) {
        self.slot = slot; self.id = id; self.location = location
    }
}
