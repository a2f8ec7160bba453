import WAL

/// The payload of a snapshot file: every deal's state and the LSN it is
/// complete up to. Derived structures (lot order, id maps, expiry heap, sums)
/// are rebuilt on load, not stored, so they can never disagree with the rows.
public struct EngineImage: Sendable {
    /// Every record at or below this LSN is in the image; replay starts after it
    /// and skips, per deal, the records at or below that deal's own LSN.
    public var floorLSN: UInt64
    public var deals: [(state: DealState, lsn: UInt64)]
    /// The people directory and the LSN it is complete up to.
    public var directory: Directory
    public var directoryLSN: UInt64
    /// The audit chain's head at `floorLSN` (format 4; nil: not known, the chain anchors at the next seal).
    public var audit: AuditHead?
    /// Which deals each investor has rows in (format 7; `Holdings`): a deal
    /// forgets investors whose rows all left memory, so this is not derivable
    /// from the deals. Nil: derive it from the deals (older formats, which
    /// forgot no investor, and images built from states alone).
    public var investorDeals: [(String, [UInt32])]?
    public init(floorLSN: UInt64, deals: [(state: DealState, lsn: UInt64)], directory: Directory = Directory(), directoryLSN: UInt64 = 0,
                audit: AuditHead? = nil, investorDeals: [(String, [UInt32])]? = nil) {
        self.audit = audit
        self.investorDeals = investorDeals
        self.floorLSN = floorLSN
        self.deals = deals
        self.directory = directory
        self.directoryLSN = directoryLSN
    }
    /// The LSN after which the log must be replayed.
    /// Every part is captured after `floorLSN` is read, so this is `floorLSN`
    /// unless an image was put together differently.
    public var replayFrom: UInt64 { deals.reduce(min(floorLSN, directoryLSN)) { min($0, $1.lsn) } }
    /// The highest LSN any part of the image covers.
    public var newestLSN: UInt64 { deals.reduce(max(floorLSN, directoryLSN)) { max($0, $1.lsn) } }
}

public enum StateCodec {
    /// Bumped when the payload layout changes; older engines refuse newer images.
    /// 2: deals carry their KYC gate, creator and people section; the
    /// directory replaces the token list. Version 1 images still load.
    /// 3: deals carry their money section (fee plans, terms, fee events).
    /// 4: the engine-wide money ledger follows the directory; deals carry
    /// introductions, commissions, reconciled payments and statements.
    /// 5: holds are stored by chunk, some of which may have left memory for
    /// the history (with where their rows went); allocations carry their
    /// hold's id and lot split.
    /// 6: archived caller hold ids carry their history entry.
    /// 7: a deal's investor table may have freed slots (empty ids) and lists
    /// its free slots; the tail ends with every investor's deals (`Holdings`).
    /// 8: allocations are stored by chunk like holds (rejected ones may have
    /// left memory for the history).
    public static let formatVersion: UInt16 = 8

    public static func encode(_ image: EngineImage) -> [UInt8] {
        var w = ByteWriter(capacity: 1 << 16)
        encodeHead(floorLSN: image.floorLSN, dealCount: image.deals.count, into: &w)
        for (state, lsn) in image.deals { encodeDeal(state, lsn: lsn, into: &w) }
        encodeTail(directory: image.directory, directoryLSN: image.directoryLSN, audit: image.audit, into: &w)
        Holdings.encode(image.investorDeals ?? derivedInvestorDeals(image.deals.map(\.state)), into: &w)
        return w.bytes
    }

    // The payload in three parts, so a snapshot can be written one deal at a
    // time (DurableEngine.takeSnapshot): head, each deal, tail. `encode(_:)` is
    // exactly their concatenation.

    public static func encodeHead(floorLSN: UInt64, dealCount: Int, into w: inout ByteWriter) {
        w.u16(formatVersion)
        w.varint(floorLSN)
        w.varint(UInt64(dealCount))
    }

    /// `drain` is called between parts of the deal (after each chunk of holds,
    /// every 1024 allocations) so a caller streaming to a file can take the bytes
    /// so far and empty the writer: one large deal then never sits in memory encoded whole.
    public static func encodeDeal(_ state: DealState, lsn: UInt64, into w: inout ByteWriter, drain: (inout ByteWriter) -> Void = { _ in }) {
        w.varint(lsn)
        encode(state, into: &w, drain: drain)
    }

    /// The pairs the deals' own investor tables name, for an image built from
    /// states alone (which then must not have forgotten investors that matter).
    static func derivedInvestorDeals(_ states: [DealState]) -> [(String, [UInt32])] {
        var m: [String: [UInt32]] = [:]
        for s in states { for inv in s.investors where !inv.isEmpty { m[inv, default: []].append(s.info.number) } }
        return m.map { ($0.key, $0.value) }  // Holdings.encode puts them in its order
    }

    /// The tail without the investors' deals, which follow it: the streamed
    /// writer writes them from `Holdings` (`encodeInvestors`), `encode(_:)` from the image.
    public static func encodeTail(directory: Directory, directoryLSN: UInt64, audit: AuditHead?, into w: inout ByteWriter) {
        w.varint(directoryLSN)
        PeopleCodec.encode(directory, into: &w)
        MoneyCodec.encode(directory.ledger, into: &w)
        MoneyCodec.encode(directory.portfolio, into: &w)
        if let a = audit { w.u8(1); w.u64(a.seq); w.bytes(a.hash.bytes) } else { w.u8(0) }
    }

    static func encode(_ s: DealState, into w: inout ByteWriter, drain: (inout ByteWriter) -> Void = { _ in }) {
        ChangeCodec.encode(.dealCreated(s.info), into: &w)
        w.varint(UInt64(s.lots.count))
        for l in s.lots {
            w.string(l.id); w.varint128(UInt128(l.unitsTotal.raw)); w.zigzag(l.unitCost.raw); w.string(l.currency)
            ChangeCodec.optionalInt(l.acquiredAt.map { Int64($0.days) }, &w)
            ChangeCodec.optionalInt(l.lockupUntil.map { Int64($0.days) }, &w)
            ChangeCodec.optionalString(l.source, &w); w.zigzag(l.createdAt)
            w.varint128(UInt128(l.unitsRemaining.raw)); w.varint128(UInt128(l.unitsHeld.raw)); w.varint128(UInt128(l.unitsAllocated.raw))
        }
        w.varint(UInt64(s.investors.count))
        for (i, inv) in s.investors.enumerated() {
            let p = s.positions[i]
            w.string(inv); w.varint128(UInt128(p.units.raw)); w.zigzag128(p.costBasis.raw); w.zigzag(p.lastUpdated)
        }
        // Format 7: the freed slots (empty ids above), in the order they are reused from the end.
        w.varint(UInt64(s.freeInvestorSlots.count))
        for slot in s.freeInvestorSlots { w.varint(UInt64(slot)) }
        // Holds (format 5): the slot count, then per chunk whether it is in
        // memory (and its rows) and when its last row ended; the stragglers of
        // dropped chunks; where the dropped chunks' rows are in the history.
        encodeTable(s.holds.parts, into: &w, drain: drain) { h, w in encodeHold(h, into: &w) }
        // Allocations (format 8): the same layout, 64 rows a chunk.
        encodeTable(s.allocations.parts, into: &w, drain: drain) { a, w in encodeAllocation(a, into: &w) }
        PeopleCodec.encode(s.people, into: &w)
        MoneyCodec.encode(s.money, into: &w)
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> EngineImage {
        let result: Result<EngineImage, DecodeError> = bytes.withUnsafeBytes { raw in
            do throws(DecodeError) {
                var r = ByteReader(raw)
                let version = try r.u16()
                guard version <= formatVersion else {
                    throw DecodeError("snapshot state format \(version) is newer than this engine's \(formatVersion); upgrade the engine")
                }
                let floor = try r.varint()
                let dealCount = try count(&r, "deal")
                var deals: [(DealState, UInt64)] = []
                for _ in 0..<dealCount {
                    let lsn = try r.varint()
                    deals.append((try decodeDeal(&r, version: version), lsn))
                }
                let directoryLSN = try r.varint()
                var directory = Directory()
                var audit: AuditHead?
                var investorDeals: [(String, [UInt32])]?
                if version >= 2 {
                    directory = try PeopleCodec.decodeDirectory(&r)
                    if version >= 4 {
                        directory.ledger = try MoneyCodec.decodeLedger(&r)
                        directory.portfolio = try MoneyCodec.decodePortfolio(&r)
                        if try r.u8() == 1 {
                            let seq = try r.u64()
                            guard let h = SHA256.Digest(bytes: try r.bytes(count: 32)) else { throw DecodeError("audit head") }
                            audit = AuditHead(seq: seq, hash: h)
                        }
                        if version >= 7 { investorDeals = try Holdings.decodeInvestors(&r) }
                    }
                } else {
                    // Version 1 kept only tokens, in the first token layout.
                    let tokenCount = try count(&r, "token")
                    for _ in 0..<tokenCount {
                        guard let token = try PeopleCodec.decodeDirectory(type: 10, &r) else { throw DecodeError("token") }
                        do throws(EngineError) { try directory.apply(token, time: 0) } catch {
                            throw DecodeError("snapshot token: \(error)")
                        }
                    }
                }
                guard r.isAtEnd else { throw DecodeError("\(r.remaining) trailing bytes in snapshot state") }
                return .success(EngineImage(floorLSN: floor, deals: deals, directory: directory, directoryLSN: directoryLSN, audit: audit,
                                            investorDeals: investorDeals))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// A row table: the slot count, then per chunk when its last row ended and
    /// whether it is in memory (and its rows); the stragglers of dropped
    /// chunks; where the dropped chunks' rows are in the history; the count of
    /// rows that left; the caller ids of rows that left (format 6: each with
    /// the history entry of its row; always none for allocations).
    static func encodeTable<Row>(_ table: RowTable<Row>.Parts, into w: inout ByteWriter, drain: (inout ByteWriter) -> Void,
                                 row encodeRow: (Row, inout ByteWriter) -> Void) {
        w.varint(UInt64(table.count))
        w.varint(UInt64(table.chunks.count))
        for (c, chunk) in table.chunks.enumerated() {
            w.zigzag(table.lastEnded[c])
            if let chunk {
                w.u8(1)
                for h in chunk { encodeRow(h, &w) }
            } else {
                w.u8(0)
            }
            drain(&w)
        }
        w.varint(UInt64(table.stragglers.count))
        for (slot, h) in table.stragglers { w.varint(UInt64(slot)); encodeRow(h, &w) }
        w.varint(UInt64(table.archived.count))
        for (chunk, locations) in table.archived {
            w.varint(UInt64(chunk)); w.varint(UInt64(locations.count))
            for l in locations { w.varint(UInt64(l.file)); w.varint(l.offset) }
        }
        w.varint(UInt64(table.archivedRows))
        w.varint(UInt64(table.archivedCallerIDs.count))
        for a in table.archivedCallerIDs {
            w.varint(UInt64(a.slot)); w.string(a.id); w.varint(UInt64(a.location.file)); w.varint(a.location.offset)
        }
    }

    /// Reads what `encodeTable` wrote (format 5 and later for holds, 8 for allocations).
    static func decodeTable<Row>(_ r: inout ByteReader, version: UInt16,
                                 row decodeRow: (inout ByteReader) throws(DecodeError) -> Row) throws(DecodeError) -> RowTable<Row> {
        let name = Row.rowName
        let slots = try r.varint()
        guard slots <= UInt64(EngineLimits.maxRowsPerDeal) else { throw DecodeError("\(name) slot count \(slots)") }
        let chunkCount = try count(&r, "\(name) chunk")
        var chunks: [[Row]?] = []
        var lastEnded: [Int64] = []
        for c in 0..<chunkCount {
            lastEnded.append(try r.zigzag())
            switch try r.u8() {
            case 0: chunks.append(nil)
            case 1:
                let rowsInChunk = c == chunkCount - 1 ? Int(slots) - (c << RowTable<Row>.chunkShift) : RowTable<Row>.chunkSize
                guard rowsInChunk > 0 && rowsInChunk <= RowTable<Row>.chunkSize else { throw DecodeError("\(name) chunk \(c) of \(slots) slots") }
                var rows: [Row] = []
                rows.reserveCapacity(rowsInChunk)
                for _ in 0..<rowsInChunk { rows.append(try decodeRow(&r)) }
                chunks.append(rows)
            case let b: throw DecodeError("\(name) chunk flag \(b)")
            }
        }
        let stragglerCount = try count(&r, "straggler \(name)")
        var stragglers: [(Int32, Row)] = []
        for _ in 0..<stragglerCount {
            let slot = try index(&r, below: Int(slots), "straggler \(name) slot")
            stragglers.append((slot, try decodeRow(&r)))
        }
        let archivedCount = try count(&r, "archived \(name) chunk")
        var archived: [(Int32, [HistoryLocation])] = []
        for _ in 0..<archivedCount {
            let chunk = try index(&r, below: chunkCount, "archived \(name) chunk")
            let n = try count(&r, "history location")
            var locations: [HistoryLocation] = []
            for _ in 0..<n {
                let file = try r.varint()
                guard file <= UInt64(UInt32.max) else { throw DecodeError("history file \(file)") }
                locations.append(HistoryLocation(file: UInt32(file), offset: try r.varint()))
            }
            archived.append((chunk, locations))
        }
        let archivedRows = try r.varint()
        guard archivedRows <= slots else { throw DecodeError("archived rows \(archivedRows) of \(slots) slots") }
        let idCount = try count(&r, "archived \(name) id")
        var callerIDs: [ArchivedCallerID] = []
        callerIDs.reserveCapacity(idCount)
        for _ in 0..<idCount {
            let slot = try index(&r, below: Int(slots), "archived \(name) id slot")
            let id = try r.string()
            var location = HistoryLocation(file: ArchivedCallerID.unknownFile, offset: 0)
            if version >= 6 {
                let file = try r.varint()
                guard file < UInt64(ArchivedCallerID.unknownFile) else { throw DecodeError("history file \(file)") }
                location = HistoryLocation(file: UInt32(file), offset: try r.varint())
            }
            callerIDs.append(ArchivedCallerID(slot: slot, id: id, location: location))
        }
        return try RowTable<Row>(RowTable<Row>.Parts(count: Int(slots), chunks: chunks, stragglers: stragglers, archived: archived,
                                                     archivedRows: Int(archivedRows), lastEnded: lastEnded, archivedCallerIDs: callerIDs))
    }

    static func encodeAllocation(_ a: Allocation, into w: inout ByteWriter) {
        w.string(a.id); w.varint128(UInt128(a.units.raw)); w.zigzag(a.unitPrice.raw); w.zigzag(a.createdAt)
        w.zigzag(a.decidedAt); w.zigzag(a.settledAt); w.varint(UInt64(a.hold)); w.varint(UInt64(a.investor))
        w.u8(a.status.rawValue)
        ChangeCodec.optionalString(a.createdBy, &w); ChangeCodec.optionalString(a.decidedBy, &w)
        w.zigzag(Int64(a.approval))
        // Format 5: the hold's id and the lot split, so the allocation stands without its hold row.
        w.string(a.holdID)
        w.varint(UInt64(1 + a.moreParts.count))
        w.varint(UInt64(a.firstPart.lot)); w.varint128(UInt128(a.firstPart.units.raw))
        for p in a.moreParts { w.varint(UInt64(p.lot)); w.varint128(UInt128(p.units.raw)) }
    }

    static func decodeAllocation(_ r: inout ByteReader, version: UInt16, holds: HoldTable, lots: Int, investors: Int) throws(DecodeError) -> Allocation {
        let id = try r.string()
        let units = try ChangeCodec.units(&r)
        let price = Price(raw: try r.zigzag())
        let createdAt = try r.zigzag(), decidedAt = try r.zigzag(), settledAt = try r.zigzag()
        let hold = try index(&r, below: holds.count, "allocation hold")
        guard version >= 5 || holds.isInMemory(hold) else { throw DecodeError("allocation hold \(hold) missing") }
        let investor = try index(&r, below: investors, "allocation investor")
        let rawStatus = try r.u8()
        guard let status = AllocationStatus(rawValue: rawStatus) else { throw DecodeError("allocation status \(rawStatus)") }
        let createdBy = try ChangeCodec.optionalString(&r), decidedBy = try ChangeCodec.optionalString(&r)
        var approval: Int64 = -1
        if version >= 2 {
            approval = try r.zigzag()
            guard approval >= -1 && approval <= Int64(Int32.max) else { throw DecodeError("allocation approval \(approval)") }
        }
        var holdID: String, parts: [LotPart]
        if version >= 5 {
            holdID = try r.string()
            parts = try decodeParts(&r, lots: lots, "allocation")
        } else {
            // Before format 5 every hold is in the image: the allocation's split is its hold's.
            let h = holds[Int(hold)]
            holdID = h.id
            parts = h.parts
        }
        return Allocation(units: units, firstPart: parts[0], id: id, holdID: holdID, moreParts: Array(parts.dropFirst()),
                          unitPrice: price, createdAt: createdAt, decidedAt: decidedAt,
                          settledAt: settledAt, hold: hold, investor: investor, approval: Int32(approval), status: status,
                          createdBy: createdBy, decidedBy: decidedBy)
    }

    static func encodeHold(_ h: Hold, into w: inout ByteWriter) {
        w.string(h.id); w.varint(UInt64(h.investor)); w.varint128(UInt128(h.requested.raw)); w.zigzag(h.proposedUnitPrice.raw)
        w.zigzag(h.createdAt); w.zigzag(h.expiresAt); w.zigzag(Int64(h.allocation)); w.u8(h.status.rawValue)
        w.u8(h.partial ? 1 : 0)
        w.varint(UInt64(1 + h.moreParts.count))
        w.varint(UInt64(h.firstPart.lot)); w.varint128(UInt128(h.firstPart.units.raw))
        for p in h.moreParts { w.varint(UInt64(p.lot)); w.varint128(UInt128(p.units.raw)) }
        ChangeCodec.optionalString(h.createdBy, &w)
    }

    static func decodeHold(_ r: inout ByteReader, lots: Int, investors: Int) throws(DecodeError) -> Hold {
        let id = try r.string()
        let investor = try index(&r, below: investors, "hold investor")
        let requested = try ChangeCodec.units(&r)
        let price = Price(raw: try r.zigzag())
        let createdAt = try r.zigzag(), expiresAt = try r.zigzag()
        let allocation = try r.zigzag()
        guard allocation >= -1 && allocation <= Int64(Int32.max) else { throw DecodeError("hold allocation \(allocation)") }
        let rawStatus = try r.u8()
        guard let status = HoldStatus(rawValue: rawStatus) else { throw DecodeError("hold status \(rawStatus)") }
        let partial = try r.u8() != 0
        let parts = try decodeParts(&r, lots: lots, "hold")
        let createdBy = try ChangeCodec.optionalString(&r)
        return Hold(requested: requested, firstPart: parts[0], id: id, proposedUnitPrice: price, createdAt: createdAt,
                    expiresAt: expiresAt, moreParts: Array(parts.dropFirst()), investor: investor,
                    allocation: Int32(allocation), status: status, partial: partial, createdBy: createdBy)
    }

    static func decodeParts(_ r: inout ByteReader, lots: Int, _ what: String) throws(DecodeError) -> [LotPart] {
        let partCount = try count(&r, "\(what) part")
        guard partCount >= 1 else { throw DecodeError("\(what) without lots") }
        var parts: [LotPart] = []
        for _ in 0..<partCount {
            parts.append(LotPart(lot: try index(&r, below: lots, "\(what) lot"), units: try ChangeCodec.units(&r)))
        }
        return parts
    }

    static func count(_ r: inout ByteReader, _ what: String) throws(DecodeError) -> Int {
        let n = try r.varint()
        // Every row takes at least one byte, so a count beyond the bytes left is damage.
        guard n <= UInt64(r.remaining) else { throw DecodeError("\(what) count \(n) exceeds the payload") }
        return Int(n)
    }

    static func index(_ r: inout ByteReader, below limit: Int, _ what: String) throws(DecodeError) -> Int32 {
        let v = try r.varint()
        guard v < UInt64(limit) else { throw DecodeError("\(what) \(v) out of range (< \(limit))") }
        return Int32(v)
    }

    static func decodeDeal(_ r: inout ByteReader, version: UInt16) throws(DecodeError) -> DealState {
        // The deal's header has the layout of a deal.created record.
        guard case .dealCreated(let info) = try decodeDealInfo(&r, extras: version >= 2) else { throw DecodeError("deal header") }
        var s = DealState(info: info)
        let lotCount = try count(&r, "lot")
        for _ in 0..<lotCount {
            let id = try r.string()
            let total = try ChangeCodec.units(&r)
            let cost = Price(raw: try r.zigzag())
            let currency = try r.string()
            let acquired = try ChangeCodec.optionalInt(&r).map { CivilDate(days: Int32(truncatingIfNeeded: $0)) }
            let lockup = try ChangeCodec.optionalInt(&r).map { CivilDate(days: Int32(truncatingIfNeeded: $0)) }
            let source = try ChangeCodec.optionalString(&r)
            let createdAt = try r.zigzag()
            let remaining = try ChangeCodec.units(&r), held = try ChangeCodec.units(&r), allocated = try ChangeCodec.units(&r)
            guard s.lotByID[id] == nil else { throw DecodeError("duplicate lot \(id)") }
            s.lotByID[id] = Int32(s.lots.count)
            s.lots.append(Lot(id: id, unitsTotal: total, unitCost: cost, currency: currency, acquiredAt: acquired, lockupUntil: lockup,
                              source: source, createdAt: createdAt, unitsRemaining: remaining, unitsHeld: held, unitsAllocated: allocated))
            s.unitsTotal += total; s.unitsRemaining += remaining; s.unitsHeld += held; s.unitsAllocated += allocated
        }
        s.rebuildLotOrder()
        let investorCount = try count(&r, "investor")
        for slot in 0..<investorCount {
            let inv = try r.string()
            let p = Position(units: try ChangeCodec.units(&r), costBasis: ExactAmount(raw: try r.zigzag128()), lastUpdated: try r.zigzag())
            s.investors.append(inv)
            s.positions.append(p)
            if inv.isEmpty {
                // A freed slot (format 7): nothing may be left in it.
                guard version >= 7, p == Position() else { throw DecodeError("investor slot \(slot) without an id") }
            } else {
                guard s.investorSlot.updateValue(Int32(slot), forKey: IdKey(inv)) == nil else { throw DecodeError("duplicate investor \(inv)") }
            }
        }
        if version >= 7 {
            let freeCount = try count(&r, "free investor slot")
            var seen = Set<Int32>()
            for _ in 0..<freeCount {
                let slot = try index(&r, below: investorCount, "free investor slot")
                guard s.investors[Int(slot)].isEmpty, seen.insert(slot).inserted else { throw DecodeError("free investor slot \(slot) is in use or listed twice") }
                s.freeInvestorSlots.append(slot)
            }
            guard seen.count == s.investors.count - s.investorSlot.count else { throw DecodeError("freed investor slots missing from the free list") }
        }
        if version >= 5 {
            let (lots, investors) = (s.lots.count, s.investors.count)
            s.holds = try decodeTable(&r, version: version) { (r: inout ByteReader) throws(DecodeError) -> Hold in
                try decodeHold(&r, lots: lots, investors: investors)
            }
        } else {
            let holdCount = try count(&r, "hold")
            for _ in 0..<holdCount { s.holds.append(try decodeHold(&r, lots: s.lots.count, investors: s.investors.count)) }
        }
        s.holds.forEachInMemory { slot, h in
            if h.status == .pending {
                s.pendingHolds += 1
                s.expiry.push(at: h.expiresAt, slot: slot)
            }
        }
        let (holds, lots, investors) = (s.holds, s.lots.count, s.investors.count)
        if version >= 8 {
            s.allocations = try decodeTable(&r, version: version) { (r: inout ByteReader) throws(DecodeError) -> Allocation in
                try decodeAllocation(&r, version: version, holds: holds, lots: lots, investors: investors)
            }
        } else {
            let allocationCount = try count(&r, "allocation")
            for _ in 0..<allocationCount {
                s.allocations.append(try decodeAllocation(&r, version: version, holds: holds, lots: lots, investors: investors))
            }
        }
        if version >= 2 {
            s.people = try PeopleCodec.decodePeople(&r, allocations: s.allocations.count, version: version)
            var missing: String?
            let approvalCount = s.people.approvals.count
            s.allocations.forEachInMemory { _, a in if a.approval >= approvalCount { missing = a.id } }
            if let missing { throw DecodeError("allocation \(missing) names a missing approval") }
        }
        if version >= 3 {
            s.money = try MoneyCodec.decodeMoney(&r, allocations: s.allocations.count, version: version)
            // Fees and commissions name approved or settled allocations, which never leave memory.
            for e in s.money.feeEvents where !s.allocations.isInMemory(e.allocation) {
                throw DecodeError("fee event names allocation #\(e.allocation), which is not in memory")
            }
            for c in s.money.commissions where c.basis == .investedAmount && !s.allocations.isInMemory(c.source) {
                throw DecodeError("commission names allocation #\(c.source), which is not in memory")
            }
        }
        let allocationTotal = s.allocations.count
        var badHold: String?
        s.holds.forEachInMemory { _, h in
            if h.allocation >= Int32(allocationTotal) { badHold = h.id }
        }
        if let badHold { throw DecodeError("hold \(badHold) names a missing allocation") }
        // Before format 7 a deal kept every investor it ever had; now it keeps
        // those its rows in memory name, and checks that it does.
        try s.rebuildInvestorRefs(freeUnused: version < 7)
        return s
    }

    /// `extras`: whether the KYC flag and creator follow (true in snapshots
    /// from version 2; nil in a log record, where they follow unless the record ends).
    static func decodeDealInfo(_ r: inout ByteReader, extras: Bool?) throws(DecodeError) -> Change {
        // Reuse the deal.created layout; ChangeCodec.decode wants the exact
        // payload, so decode field by field here with the same order.
        let id = try r.string()
        let number = try r.varint()
        guard number <= UInt64(UInt32.max) else { throw DecodeError("deal number out of range") }
        var info = DealInfo(id: id, number: UInt32(number))
        info.name = try r.string(); info.dealType = try r.string(); info.vehicle = try ChangeCodec.optionalString(&r)
        info.currency = try r.string()
        info.offerUnitPrice = try ChangeCodec.optionalInt(&r).map(Price.init(raw:))
        info.openAt = try ChangeCodec.optionalInt(&r); info.closeAt = try ChangeCodec.optionalInt(&r)
        info.status = try ChangeCodec.dealStatus(&r); info.createdAt = try r.zigzag()
        if extras ?? !r.isAtEnd {
            let flags = try r.u8()
            guard flags <= 1 else { throw DecodeError("deal flags \(flags)") }
            info.kycRequired = flags == 1
            info.createdBy = try ChangeCodec.optionalString(&r)
        }
        return .dealCreated(info)
    }

    /// Puts every id of the image's rows into the global maps (a generated
    /// id must name its own row; any other id may appear once).
    public static func index(_ states: [DealState], into indexes: EngineIndexes) throws(DecodeError) {
        for s in states {
            func claim(_ ids: some Sequence<String>, _ index: IdIndex, _ what: String) throws(DecodeError) {
                for (slot, id) in ids.enumerated() where !index.claim(id, RowRef(deal: s.info.number, slot: Int32(slot))) {
                    throw DecodeError("\(what) \(id) appears twice or names another row")
                }
            }
            try claim(s.lots.lazy.map(\.id), indexes.lots, "lot id")
            var holdIDs: [(Int32, String)] = []
            s.holds.forEachInMemory { slot, h in holdIDs.append((slot, h.id)) }
            holdIDs.append(contentsOf: s.holds.archivedCallerIDs.map { ($0.slot, $0.id) })
            for (slot, id) in holdIDs where !indexes.holds.claim(id, RowRef(deal: s.info.number, slot: slot)) {
                throw DecodeError("hold id \(id) appears twice or names another row")
            }
            var allocationIDs: [(Int32, String)] = []
            s.allocations.forEachInMemory { slot, a in allocationIDs.append((slot, a.id)) }
            allocationIDs.append(contentsOf: s.allocations.archivedCallerIDs.map { ($0.slot, $0.id) })
            for (slot, id) in allocationIDs where !indexes.allocations.claim(id, RowRef(deal: s.info.number, slot: slot)) {
                throw DecodeError("allocation id \(id) appears twice or names another row")
            }
            try claim(s.people.commitments.lazy.map(\.id), indexes.commitments, "commitment id")
            try claim(s.people.invites.lazy.map(\.tokenHash), indexes.inviteTokens, "invite token")
            try claim(s.money.plans.lazy.map(\.id), indexes.feePlans, "fee plan id")
            try claim(s.money.invoices.lazy.map(\.id), indexes.invoices, "invoice id")
            try claim(s.money.payments.lazy.map(\.id), indexes.payments, "payment id")
            try claim(s.money.introductions.lazy.map(\.id), indexes.introductions, "introduction id")
            // Which deals each investor and introducer has rows in (statements and PORTFOLIO visit only those).
            for investor in s.investors where !investor.isEmpty { indexes.holdings.add(investor, deal: s.info.number) }
            for n in s.money.introductions { indexes.holdings.add(introducer: n.introducer, deal: s.info.number) }
            // The matched sums of bank transactions, from the live reconciled payments.
            for p in s.money.payments where !p.refunded {
                if let txn = p.bankTxn { indexes.bankMatches.add(txn, p.amount) }
            }
        }
    }
}
