/// A deal's approval queue by slot (see `RowTable`): a decided approval has
/// ended and leaves memory for the history like an ended hold; a pending one
/// stays (it is what the queue is for). Approval ids are generated
/// (`p<deal>.<slot>`), so none has a caller's id to keep.
///
/// Memory: a chunk in memory costs 64 x 104 bytes (6.5 KiB) whatever its live
/// count; a pending straggler 108 bytes; a dropped chunk about 60 bytes.
public typealias ApprovalTable = RowTable<Approval>

extension Approval: RetainedRow {
    public var isLive: Bool { status == .pending }
    /// An approval names no investor slot.
    public var investor: Int32 { -1 }
    /// Unused (`keepsCallerIDs` is false): an approval's id is its slot.
    public var id: String { "" }
    public static var chunkShift: Int { 6 }
    public static var generatedPrefix: UInt8 { UInt8(ascii: "p") }
    public static var keepsCallerIDs: Bool { false }
    public static var rowName: String { "approval" }
    /// Three quarters, as for allocations: a pending straggler costs what it cost in its chunk.
    public static var maxLiveToLeave: Int { 48 }
    public static var stragglerBatch: Int { 64 }
}

/// An approval's row as read, with the id of its commitment or allocation
/// (a row from the history carries it, so it reads alone).
struct ApprovalRead {
    var approval: Approval
    var entityID: String
}

extension DealState {
    /// The id of an approval's commitment or allocation, from memory or the history.
    func approvalEntityID(_ a: Approval, index: EngineIndexes) -> String {
        a.entity == .commitment ? people.commitments[Int(a.entitySlot)].id : allocationID(a.entitySlot, index: index)
    }

    /// An approval's row, read from the history when it has left memory
    /// (only decided ones do).
    func approvalRow(_ slot: Int32, index: EngineIndexes) throws(EngineError) -> ApprovalRead {
        if people.approvals.isInMemory(slot) {
            let a = people.approvals[Int(slot)]
            return ApprovalRead(approval: a, entityID: approvalEntityID(a, index: index))
        }
        guard slot >= 0 && Int(slot) < people.approvals.count else {
            throw EngineError(.notFound, "approval #\(slot) not in deal \(info.id)")
        }
        guard let store = index.history.store else {
            throw EngineError(.corrupt, "approval #\(slot) of deal \(info.id) left memory but the engine has no history")
        }
        for location in people.approvals.locations(of: slot) {
            if let a = try store.row(ArchivedApproval.self, deal: ref, slot: slot, at: location) {
                return ApprovalRead(approval: a.approval, entityID: a.entityID)
            }
        }
        throw EngineError(.corrupt, "approval #\(slot) of deal \(info.id) left memory but is not in the history")
    }

    /// Reads approval rows in slot order for a listing: rows in memory as they
    /// are, a chunk that left memory read back whole from the history (one
    /// entry read per chunk, not one per row).
    struct ApprovalCursor {
        private var chunk = -1
        private var rows: [Int32: ArchivedApproval] = [:]

        mutating func row(_ slot: Int32, in s: DealState, index: EngineIndexes) throws(EngineError) -> ApprovalRead {
            if s.people.approvals.isInMemory(slot) {
                let a = s.people.approvals[Int(slot)]
                return ApprovalRead(approval: a, entityID: s.approvalEntityID(a, index: index))
            }
            let c = Int(slot) >> ApprovalTable.chunkShift
            if c != chunk {
                guard let store = index.history.store else {
                    throw EngineError(.corrupt, "approval #\(slot) of deal \(s.info.id) left memory but the engine has no history")
                }
                rows = [:]
                for location in s.people.approvals.locations(of: slot) {
                    for (slot, a) in try store.rows(ArchivedApproval.self, at: location).rows where Int(slot) >> ApprovalTable.chunkShift == c {
                        rows[slot] = a
                    }
                }
                chunk = c
            }
            guard let a = rows[slot] else {
                throw EngineError(.corrupt, "approval #\(slot) of deal \(s.info.id) left memory but is not in the history")
            }
            return ApprovalRead(approval: a.approval, entityID: a.entityID)
        }
    }
}
