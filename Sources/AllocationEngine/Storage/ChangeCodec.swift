import WAL

/// The binary payload of each change record in the log. The record type byte
/// (`Change.recordType`) says which layout follows; layouts are documented in
/// docs/wal-format.md and never change meaning (a new layout gets a new type).
public enum ChangeCodec {
    public static func encode(_ change: Change, into w: inout ByteWriter) {
        switch change {
        case .dealCreated(let info):
            w.string(info.id); w.varint(UInt64(info.number)); w.string(info.name); w.string(info.dealType)
            optionalString(info.vehicle, &w); w.string(info.currency)
            optionalInt(info.offerUnitPrice?.raw, &w); optionalInt(info.openAt, &w); optionalInt(info.closeAt, &w)
            w.u8(info.status.rawValue); w.zigzag(info.createdAt)
            // Added after the first format: a record without them is a deal without KYC gate or creator.
            w.u8(info.kycRequired ? 1 : 0); optionalString(info.createdBy, &w)
        case .dealStatus(let deal, let status):
            w.string(deal); w.u8(status.rawValue)
        case .lotAdded(let deal, let lot):
            w.string(deal); w.string(lot.id); w.varint128(UInt128(lot.unitsTotal.raw)); w.zigzag(lot.unitCost.raw)
            w.string(lot.currency); optionalInt(lot.acquiredAt.map { Int64($0.days) }, &w)
            optionalInt(lot.lockupUntil.map { Int64($0.days) }, &w); optionalString(lot.source, &w)
        case .lotResized(let deal, let lot, let units):
            w.string(deal); w.varint(UInt64(lot)); w.varint128(UInt128(units.raw))
        case .holdPlaced(let deal, let h):
            w.string(deal); w.string(h.id); w.string(h.investor); w.varint128(UInt128(h.requested.raw))
            w.zigzag(h.price.raw); w.zigzag(h.expiresAt); w.u8(h.partial ? 1 : 0)
            w.varint(UInt64(h.partCount))
            h.forEachPart { p in w.varint(UInt64(p.lot)); w.varint128(UInt128(p.units.raw)) }
            optionalString(h.createdBy, &w)
        case .holdReleased(let deal, let hold), .holdExpired(let deal, let hold):
            w.string(deal); w.string(hold)
        case .allocationCreated(let deal, let hold, let allocation, let by):
            w.string(deal); w.string(hold); w.string(allocation); optionalString(by, &w)
        case .allocationStatus(let deal, let allocation, let status, let by):
            w.string(deal); w.string(allocation); w.u8(status.rawValue); optionalString(by, &w)
        case .directory(let c):
            PeopleCodec.encode(c, into: &w)
        case .people(let deal, let c):
            w.string(deal); PeopleCodec.encode(c, into: &w)
        case .money(let deal, let c):
            w.string(deal); MoneyCodec.encode(c, into: &w)
        case .holdIDsMoved(let deal, let count, let run):
            w.string(deal); w.varint(UInt64(count)); w.varint(UInt64(run))
        case .holdsArchived(let deal, let leaving, let location), .allocationsArchived(let deal, let leaving, let location),
             .approvalsArchived(let deal, let leaving, let location):
            w.string(deal); w.varint(UInt64(location.file)); w.varint(location.offset)
            func slots(_ list: [Int32]) {
                // Sorted, so as deltas they take a byte or two each.
                w.varint(UInt64(list.count))
                var previous: Int64 = -1
                for s in list { w.varint(UInt64(Int64(s) - previous - 1)); previous = Int64(s) }
            }
            switch leaving {
            case .chunk(let c, let keep): w.u8(1); w.varint(UInt64(c)); slots(keep)
            case .stragglers(let list): w.u8(2); slots(list)
            }
        case .group(let deal, let changes):
            // Each member as a record of its own: type, length, payload.
            w.string(deal); w.varint(UInt64(changes.count))
            for c in changes {
                var inner = ByteWriter(capacity: 128)
                encode(c, into: &inner)
                w.u8(c.recordType); w.lengthPrefixed(inner.bytes)
            }
        }
    }

    public static func decode(type: UInt8, payload: UnsafeRawBufferPointer) throws(DecodeError) -> Change {
        var r = ByteReader(payload)
        let change: Change
        switch type {
        case 1:
            change = try StateCodec.decodeDealInfo(&r, extras: nil)
        case 2:
            change = .dealStatus(deal: try r.string(), status: try dealStatus(&r))
        case 3:
            let deal = try r.string()
            let id = try r.string()
            let units = try units(&r)
            let cost = Price(raw: try r.zigzag())
            let currency = try r.string()
            let acquired = try optionalInt(&r).map { CivilDate(days: Int32(truncatingIfNeeded: $0)) }
            let lockup = try optionalInt(&r).map { CivilDate(days: Int32(truncatingIfNeeded: $0)) }
            let source = try optionalString(&r)
            change = .lotAdded(deal: deal, lot: LotSpec(id: id, unitsTotal: units, unitCost: cost, currency: currency,
                                                      acquiredAt: acquired, lockupUntil: lockup, source: source))
        case 4:
            let deal = try r.string()
            let lot = try r.varint()
            guard lot <= UInt64(Int32.max) else { throw DecodeError("lot index out of range") }
            change = .lotResized(deal: deal, lot: Int32(lot), unitsTotal: try units(&r))
        case 5:
            let deal = try r.string()
            let id = try r.string()
            let investor = try r.string()
            let requested = try units(&r)
            let price = Price(raw: try r.zigzag())
            let expiresAt = try r.zigzag()
            let partial = try r.u8() != 0
            let count = try r.varint()
            guard count >= 1 && count <= UInt64(EngineLimits.maxLotsPerDeal) else { throw DecodeError("hold lot count \(count)") }
            var first = LotPart(lot: 0, units: .zero)
            var more: [LotPart] = []
            for i in 0..<count {
                let lot = try r.varint()
                guard lot <= UInt64(Int32.max) else { throw DecodeError("lot index out of range") }
                let part = LotPart(lot: Int32(lot), units: try units(&r))
                if i == 0 { first = part } else { more.append(part) }
            }
            let createdBy = try optionalString(&r)
            change = .holdPlaced(deal: deal, hold: HoldSpec(id: id, investor: investor, requested: requested, price: price,
                                                            expiresAt: expiresAt, partial: partial, firstPart: first, moreParts: more,
                                                            createdBy: createdBy))
        case 6: change = .holdReleased(deal: try r.string(), hold: try r.string())
        case 7: change = .holdExpired(deal: try r.string(), hold: try r.string())
        case 8:
            change = .allocationCreated(deal: try r.string(), hold: try r.string(), allocation: try r.string(), by: try optionalString(&r))
        case 101, 103, 104:
            let deal = try r.string()
            let file = try r.varint(), offset = try r.varint()
            guard file <= UInt64(UInt32.max) else { throw DecodeError("history file \(file)") }
            func slots() throws(DecodeError) -> [Int32] {
                let n = try StateCodec.count(&r, "archived slot")
                var out: [Int32] = []
                out.reserveCapacity(n)
                var previous: Int64 = -1
                for _ in 0..<n {
                    let d = try r.varint()
                    guard d < UInt64(Int32.max) else { throw DecodeError("archived slot delta \(d)") }
                    previous += Int64(d) + 1
                    guard previous <= Int64(Int32.max) else { throw DecodeError("archived slot \(previous)") }
                    out.append(Int32(previous))
                }
                return out
            }
            let kind = try r.u8()
            let leaving: ArchiveCandidate
            switch kind {
            case 1:
                let c = try r.varint()
                guard c <= UInt64(Int32.max) else { throw DecodeError("archived chunk \(c)") }
                leaving = .chunk(Int32(c), keep: try slots())
            case 2: leaving = .stragglers(try slots())
            default: throw DecodeError("\(Change.typeNames[type] ?? "archive") kind \(kind)")
            }
            let location = HistoryLocation(file: UInt32(file), offset: offset)
            change = type == 101 ? .holdsArchived(deal: deal, leaving, location: location)
                : type == 103 ? .allocationsArchived(deal: deal, leaving, location: location)
                : .approvalsArchived(deal: deal, leaving, location: location)
        case 102:
            let deal = try r.string()
            let count = try r.varint(), run = try r.varint()
            guard count <= UInt64(EngineLimits.maxRowsPerDeal), run <= UInt64(UInt32.max) else {
                throw DecodeError("hold_ids.moved of \(count) ids to run \(run)")
            }
            change = .holdIDsMoved(deal: deal, count: Int(count), run: UInt32(run))
        case 100:
            let deal = try r.string()
            let n = try StateCodec.count(&r, "grouped change")
            guard n >= 1 && n <= EngineLimits.maxGroupedChanges else { throw DecodeError("group of \(n) changes") }
            var changes: [Change] = []
            for _ in 0..<n {
                let type = try r.u8()
                guard type != 100 else { throw DecodeError("a group inside a group") }
                let payload = try r.lengthPrefixed(maxBytes: Int(UInt32.max))
                let decoded: Result<Change, DecodeError> = payload.withUnsafeBytes { p in
                    do throws(DecodeError) { return .success(try decode(type: type, payload: p)) } catch { return .failure(error) }
                }
                let c = try decoded.get()
                guard c.deal == deal else { throw DecodeError("a group of deal \(deal) holds a change of deal \(c.deal)") }
                changes.append(c)
            }
            change = .group(deal: deal, changes)
        case 9:
            let deal = try r.string()
            let allocation = try r.string()
            let raw = try r.u8()
            guard let status = AllocationStatus(rawValue: raw) else { throw DecodeError("allocation status \(raw)") }
            change = .allocationStatus(deal: deal, allocation: allocation, status: status, by: try optionalString(&r))
        default:
            if let c = try PeopleCodec.decodeDirectory(type: type, &r) {
                change = .directory(c)
            } else if DealPeopleChange.typeNames[type] != nil {
                let deal = try r.string()
                guard let c = try PeopleCodec.decodePeople(type: type, &r) else { throw DecodeError("record type \(type)") }
                change = .people(deal: deal, c)
            } else if DealMoneyChange.typeNames[type] != nil {
                let deal = try r.string()
                guard let c = try MoneyCodec.decode(type: type, &r) else { throw DecodeError("record type \(type)") }
                change = .money(deal: deal, c)
            } else {
                throw DecodeError("unknown change record type \(type)")
            }
        }
        guard r.isAtEnd else { throw DecodeError("\(r.remaining) trailing bytes after a type \(type) record") }
        return change
    }

    // MARK: - Pieces

    static func optionalString(_ s: String?, _ w: inout ByteWriter) {
        if let s { w.u8(1); w.string(s) } else { w.u8(0) }
    }
    static func optionalInt(_ v: Int64?, _ w: inout ByteWriter) {
        if let v { w.u8(1); w.zigzag(v) } else { w.u8(0) }
    }
    static func optionalString(_ r: inout ByteReader) throws(DecodeError) -> String? {
        switch try r.u8() {
        case 0: return nil
        case 1: return try r.string()
        case let f: throw DecodeError("bad optional flag \(f)")
        }
    }
    static func optionalInt(_ r: inout ByteReader) throws(DecodeError) -> Int64? {
        switch try r.u8() {
        case 0: return nil
        case 1: return try r.zigzag()
        case let f: throw DecodeError("bad optional flag \(f)")
        }
    }
    static func units(_ r: inout ByteReader) throws(DecodeError) -> Units {
        let v = try r.varint128()
        guard v <= UInt128(NumberLimits.maxUnitsRaw) * 1_000_000 else { throw DecodeError("units out of range") }
        return Units(raw: Int128(v))
    }
    static func dealStatus(_ r: inout ByteReader) throws(DecodeError) -> DealStatus {
        let raw = try r.u8()
        guard let s = DealStatus(rawValue: raw) else { throw DecodeError("deal status \(raw)") }
        return s
    }
}
