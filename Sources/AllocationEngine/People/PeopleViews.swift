/// Read views of the people rows with the seed's column names, as field/value pairs.
extension DealState {
    public func memberFields(_ slot: Int32) -> [Field] {
        let m = people.members[Int(slot)]
        return [
            Field("deal", info.id), Field("user", m.user), Field("role", m.role.rawValue), Field("investor", m.investor),
            Field("invited_by", m.invitedBy), Field("invited_at", String(m.invitedAt)), Field("accepted_at", m.acceptedAt.map { String($0) }),
        ]
    }

    /// Never the token: only its hash is kept, and not shown either.
    public func inviteFields(_ slot: Int32, now: Int64) -> [Field] {
        let i = people.invites[Int(slot)]
        return [
            Field("id", i.id), Field("deal", info.id), Field("role", i.role.rawValue), Field("status", i.status(now: now)),
            Field("expires_at", String(i.expiresAt)), Field("max_uses", String(i.maxUses)), Field("used_count", String(i.usedCount)),
            Field("created_by", i.createdBy), Field("created_at", String(i.createdAt)),
        ]
    }

    public func commitmentFields(_ slot: Int32) -> [Field] {
        let c = people.commitments[Int(slot)]
        return [
            Field("id", c.id), Field("deal", info.id), Field("investor", c.investor),
            Field("requested_units", c.units?.description), Field("requested_amount", c.amount?.description),
            Field("status", c.status.name), Field("created_by", c.createdBy), Field("created_at", String(c.createdAt)),
            Field("approval", c.approval >= 0 ? approvalID(c.approval) : nil),
        ]
    }

    func approvalFields(_ slot: Int32, _ read: ApprovalRead, now: Int64) -> [Field] {
        let a = read.approval, entityID = read.entityID
        return [
            Field("id", approvalID(slot)), Field("deal", info.id), Field("entity_type", a.entity.name), Field("entity_id", entityID),
            Field("status", a.status.name), Field("priority", a.priority.name), Field("requested_by", a.requestedBy),
            Field("assigned_to", a.assignedTo), Field("decided_by", a.decidedBy),
            Field("decided_at", a.status == .pending ? nil : String(a.decidedAt)), Field("notes", a.notes),
            Field("created_at", String(a.createdAt)), Field("sla_breach_at", String(a.slaBreachAt)),
            Field("breached", a.status == .pending && now >= a.slaBreachAt ? "1" : "0"),
        ]
    }

    /// Whether a user sees this deal at all: staff always, others as members.
    public func visible(to principal: Principal?) -> Bool {
        guard let p = principal, !p.isStaff else { return true }
        return people.memberSlot[p.user] != nil
    }
}

extension Directory {
    public func userFields(_ id: String) -> [Field]? {
        guard let u = users[id] else { return nil }
        return [
            Field("id", u.id), Field("role", u.role.rawValue), Field("name", u.name), Field("email", u.email),
            Field("title", u.title), Field("investors", items: u.investors), Field("created_at", String(u.createdAt)),
        ]
    }

    public func investorFields(_ id: String) -> [Field]? {
        guard let i = investors[id] else { return nil }
        return [
            Field("id", i.id), Field("legal_name", i.legalName), Field("type", i.type), Field("country", i.country),
            Field("kyc_status", i.kycStatus.rawValue), Field("users", items: i.users), Field("created_at", String(i.createdAt)),
        ]
    }

    public func vehicleFields(_ id: String) -> [Field]? {
        guard let v = vehicles[id] else { return nil }
        return [
            Field("id", v.id), Field("name", v.name), Field("type", v.type?.rawValue), Field("domicile", v.domicile),
            Field("currency", v.currency), Field("created_at", String(v.createdAt)),
        ]
    }

    public func subscriptionFields(_ id: String) -> [Field]? {
        guard let s = subscriptions[id] else { return nil }
        return [
            Field("id", s.id), Field("investor", s.investor), Field("vehicle", s.vehicle), Field("commitment", s.commitment.description),
            Field("currency", s.currency), Field("status", s.status.rawValue), Field("created_at", String(s.createdAt)),
        ]
    }

    public func sourceFields(_ id: String) -> [Field]? {
        guard let s = sources[id] else { return nil }
        return [Field("id", s.id), Field("kind", s.kind.rawValue), Field("counterparty_name", s.counterparty), Field("notes", s.notes)]
    }
}

/// The order of the approval queue across deals: oldest first, ties by deal
/// number and slot.
public struct ApprovalKey: Comparable, Sendable, Hashable {
    public var createdAt: Int64
    public var deal: UInt32
    /// -1: before every slot of the deal.
    public var slot: Int32
    public init(createdAt: Int64, deal: UInt32, slot: Int32) {
        self.createdAt = createdAt
        self.deal = deal
        self.slot = slot
    }
    /// From a list cursor (decimal text); "0" or anything unreadable is the start.
    public init(cursor: String) { self.init(packed: UInt128(cursor) ?? 0) }
    /// The list cursor of this key.
    public var cursor: String { String(packed) }
    /// Cursor 0 is the start (before everything).
    init(packed: UInt128) {
        if packed == 0 {
            self.init(createdAt: .min, deal: 0, slot: -1)
        } else {
            self.init(createdAt: Int64(truncatingIfNeeded: UInt64(truncatingIfNeeded: packed >> 64)),
                      deal: UInt32(truncatingIfNeeded: packed >> 32),
                      slot: Int32(truncatingIfNeeded: Int64(UInt32(truncatingIfNeeded: packed)) - 1))
        }
    }
    var packed: UInt128 {
        UInt128(UInt64(bitPattern: createdAt)) << 64 | UInt128(deal) << 32 | UInt128(UInt32(bitPattern: slot + 1))
    }
    public static func < (a: ApprovalKey, b: ApprovalKey) -> Bool {
        (a.createdAt, a.deal, a.slot) < (b.createdAt, b.deal, b.slot)
    }
}

extension DealState {
    /// This deal's approvals after `key` in queue order, matching `filter`: at
    /// most `count` rows, at most `budget` rows examined. `frontier` is the
    /// key of the last row examined when the deal was not examined to its end
    /// (nil when it was), so a merge across deals knows how far it is complete.
    /// Approvals are in creation-time order within a deal (`openApproval`
    /// never dates one before the one before it), so the start is a binary search.
    /// Decided approvals that left memory are read back from the history, a
    /// chunk at a time (`ApprovalCursor`); a failed read is `error`, with no rows.
    public func approvals(after key: ApprovalKey, filter: ApprovalFilter, count: Int, budget: Int, now: Int64, index: EngineIndexes)
        -> (rows: [(key: ApprovalKey, fields: [Field])], frontier: ApprovalKey?, error: EngineError?) {
        var reader = ApprovalCursor()
        do throws(EngineError) {
            let n = people.approvals.count
            var lo = 0, hi = n
            while lo < hi {
                let mid = (lo + hi) / 2
                let created = try reader.row(Int32(mid), in: self, index: index).approval.createdAt
                if ApprovalKey(createdAt: created, deal: ref, slot: Int32(mid)) <= key { lo = mid + 1 } else { hi = mid }
            }
            var rows: [(key: ApprovalKey, fields: [Field])] = []
            var slot = lo
            var scanned = 0
            var lastCreated: Int64 = 0
            while slot < n && rows.count < count && scanned < budget {
                let read = try reader.row(Int32(slot), in: self, index: index)
                let k = ApprovalKey(createdAt: read.approval.createdAt, deal: ref, slot: Int32(slot))
                lastCreated = read.approval.createdAt
                if filter.matches(read.approval, now: now) { rows.append((k, approvalFields(Int32(slot), read, now: now))) }
                slot += 1
                scanned += 1
            }
            guard slot < n else { return (rows, nil, nil) }
            let last = slot - 1
            let frontier = last >= lo ? ApprovalKey(createdAt: lastCreated, deal: ref, slot: Int32(last))
                : last >= 0 ? ApprovalKey(createdAt: try reader.row(Int32(last), in: self, index: index).approval.createdAt, deal: ref, slot: Int32(last)) : key
            return (rows, frontier, nil)
        } catch {
            return ([], nil, error)
        }
    }
}

extension ApprovalFilter {
    func matches(_ a: Approval, now: Int64) -> Bool {
        if let s = status, a.status != s { return false }
        if let u = assignee, a.assignedTo != u { return false }
        if breached && !(a.status == .pending && now >= a.slaBreachAt) { return false }
        return true
    }
}
