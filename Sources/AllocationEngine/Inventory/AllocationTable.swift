/// A deal's allocations by slot (see `RowTable`): a rejected allocation has
/// ended and leaves memory for the history like an ended hold.
///
/// Approved and settled allocations stay: they are the deal's book. The
/// position of their investor sums them, and management and performance fees
/// are computed from each of them for the life of the investment
/// (`decideFees`, `decideExitFees`), so they are live state, at most one per
/// hold that was allocated.
///
/// Memory: a chunk in memory costs 64 x 160 bytes (10 KiB) whatever its live
/// count; a straggler (an approved row of a chunk that left) 164 bytes; a
/// dropped chunk about 60 bytes. 64 rows a chunk, not the holds' 1024: a deal
/// of a launch makes hundreds of allocations, not millions, and a chunk only
/// leaves once it is full.
public typealias AllocationTable = RowTable<Allocation>

extension Allocation: RetainedRow {
    /// Under review, approved or settled: only a rejected allocation has ended.
    public var isLive: Bool { status != .rejected }
    public static var chunkShift: Int { 6 }
    public static var generatedPrefix: UInt8 { UInt8(ascii: "a") }
    /// A caller's id of a rejected allocation that left memory is listed
    /// (`archivedCallerIDs`, kept in the snapshot) and stays in the id map, so
    /// the id is never given to another allocation and a read still finds it:
    /// about 40 bytes plus the id each. Allocations are few; the hold ids'
    /// on-disk runs are for millions.
    public static var keepsCallerIDs: Bool { true }
    public static var rowName: String { "allocation" }
    /// Three quarters: a launch approves most allocations, and the approved
    /// rows of a chunk that left cost what they cost in it (a straggler is a
    /// row and its slot), so a chunk leaves once a quarter of it is rejected.
    public static var maxLiveToLeave: Int { 48 }
    public static var stragglerBatch: Int { 64 }
}

/// An allocation's row as read, with its investor's id (a row from the
/// history keeps the slot it had, which may name another investor by now).
struct AllocationRead {
    var allocation: Allocation
    var investor: String
}

extension DealState {
    /// An allocation's row, read from the history when it has left memory
    /// (only rejected ones do).
    func allocationRow(_ slot: Int32, index: EngineIndexes) throws(EngineError) -> AllocationRead {
        if allocations.isInMemory(slot) {
            let a = allocations[Int(slot)]
            return AllocationRead(allocation: a, investor: investors[Int(a.investor)])
        }
        guard slot >= 0 && Int(slot) < allocations.count else {
            throw EngineError(.notFound, "allocation #\(slot) not in deal \(info.id)")
        }
        guard let store = index.history.store else {
            throw EngineError(.corrupt, "allocation #\(slot) of deal \(info.id) left memory but the engine has no history")
        }
        for location in allocations.locations(of: slot) {
            if let a = try store.row(ArchivedAllocation.self, deal: ref, slot: slot, at: location) {
                return AllocationRead(allocation: a.allocation, investor: a.investorID)
            }
        }
        throw EngineError(.corrupt, "allocation #\(slot) of deal \(info.id) left memory but is not in the history")
    }

    /// An allocation's id: from memory, else the history. A view that cannot
    /// read the history shows the slot instead of failing the whole reply.
    func allocationID(_ slot: Int32, index: EngineIndexes) -> String {
        if allocations.isInMemory(slot) { return allocations[Int(slot)].id }
        return (try? allocationRow(slot, index: index).allocation.id) ?? "#\(slot)"
    }
}
