/// A stable hash of the whole state: equal states give equal digests, whatever
/// the process, platform or history that built them. Two 64-bit FNV-1a lanes
/// over a canonical field-by-field walk (deals by id; rows in slot order, which
/// is the order they were applied and so the same after replay).
public struct StateHasher {
    private var a: UInt64 = 0xcbf2_9ce4_8422_2325
    private var b: UInt64 = 0x8422_2325_cbf2_9ce4
    public init() {}

    @inline(__always)
    public mutating func byte(_ v: UInt8) {
        a = (a ^ UInt64(v)) &* 0x0000_0100_0000_01B3
        b = (b ^ UInt64(v)) &* 0x0000_0100_0000_01B3 ^ (b >> 29)
    }
    /// A whole word per step (not byte by byte: the digest walks every row).
    public mutating func int(_ v: Int64) {
        let x = UInt64(bitPattern: v)
        a = (a ^ x) &* 0x0000_0100_0000_01B3
        a ^= a >> 32
        b = (b ^ (x &* 0x9E37_79B9_7F4A_7C15)) &* 0x0000_0100_0000_01B3 ^ (b >> 29)
    }
    public mutating func int128(_ v: Int128) {
        int(Int64(truncatingIfNeeded: v))
        int(Int64(truncatingIfNeeded: v >> 64))
    }
    public mutating func string(_ s: String?) {
        guard var s else { byte(0xFF); return }
        s.withUTF8 { bytes in
            int(Int64(bytes.count))
            for c in bytes { byte(c) }
        }
    }
    public var hex: String {
        func h(_ v: UInt64) -> String { let s = String(v, radix: 16); return String(repeating: "0", count: 16 - s.count) + s }
        return h(a) + h(b)
    }
}

extension DealState {
    public func hash(into h: inout StateHasher) {
        h.string(info.id); h.int(Int64(info.number)); h.string(info.name); h.string(info.dealType); h.string(info.vehicle)
        h.string(info.currency); h.int(info.offerUnitPrice?.raw ?? -1); h.int(info.openAt ?? -1); h.int(info.closeAt ?? -1)
        h.byte(info.status.rawValue); h.int(info.createdAt)
        h.int(Int64(lots.count))
        for l in lots {
            h.string(l.id); h.int128(l.unitsTotal.raw); h.int(l.unitCost.raw); h.string(l.currency)
            h.int(Int64(l.acquiredAt?.days ?? Int32.min)); h.int(Int64(l.lockupUntil?.days ?? Int32.min)); h.string(l.source)
            h.int(l.createdAt); h.int128(l.unitsRemaining.raw); h.int128(l.unitsHeld.raw); h.int128(l.unitsAllocated.raw)
        }
        h.int(Int64(holds.count))
        holds.forEachInMemory { _, x in
            h.string(x.id); h.int(Int64(x.investor)); h.int128(x.requested.raw); h.int(x.proposedUnitPrice.raw)
            h.int(x.createdAt); h.int(x.expiresAt); h.byte(x.status.rawValue); h.byte(x.partial ? 1 : 0); h.int(Int64(x.allocation))
            h.int(Int64(x.firstPart.lot)); h.int128(x.firstPart.units.raw)
            for p in x.moreParts { h.int(Int64(p.lot)); h.int128(p.units.raw) }
            h.string(x.createdBy)
        }
        // Which rows left memory, and where they went (nothing for a deal that never archived).
        for (chunk, locations) in holds.archived.sorted(by: { $0.key < $1.key }) {
            h.int(Int64(chunk))
            for l in locations { h.int(Int64(l.file)); h.int(Int64(l.offset)) }
        }
        for (slot, _) in holds.stragglers { h.int(Int64(slot)) }
        h.int(Int64(allocations.count))
        allocations.forEachInMemory { _, a in
            h.string(a.id); h.int128(a.units.raw); h.int(a.unitPrice.raw); h.int(a.createdAt); h.int(a.decidedAt)
            h.int(a.settledAt); h.int(Int64(a.hold)); h.int(Int64(a.investor)); h.byte(a.status.rawValue)
            h.string(a.createdBy); h.string(a.decidedBy); h.string(a.holdID)
            h.int(Int64(a.firstPart.lot)); h.int128(a.firstPart.units.raw)
            for p in a.moreParts { h.int(Int64(p.lot)); h.int128(p.units.raw) }
        }
        // Rejected allocations that left memory (nothing for a deal that never archived any).
        for (chunk, locations) in allocations.archived.sorted(by: { $0.key < $1.key }) {
            h.int(Int64(chunk))
            for l in locations { h.int(Int64(l.file)); h.int(Int64(l.offset)) }
        }
        for (slot, _) in allocations.stragglers { h.int(Int64(slot)) }
        h.int(Int64(investors.count))
        for (i, inv) in investors.enumerated() {
            h.string(inv); h.int128(positions[i].units.raw); h.int128(positions[i].costBasis.raw); h.int(positions[i].lastUpdated)
        }
        // The free slots in reuse order: they decide the slot of the next new investor.
        h.int(Int64(freeInvestorSlots.count))
        for slot in freeInvestorSlots { h.int(Int64(slot)) }
        h.byte(info.kycRequired ? 1 : 0); h.string(info.createdBy)
        allocations.forEachInMemory { _, a in h.int(Int64(a.approval)) }
        people.hash(into: &h)
        money.hash(into: &h)
    }
}
