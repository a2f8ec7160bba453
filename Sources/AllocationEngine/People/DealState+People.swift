/// Applying and deciding the people side of a deal: memberships, invite
/// links, commitments and approvals. Same shape as the hold path: `execute`
/// decides (checks against the state, reads the directory for users and
/// investors) and commits a `DealPeopleChange`; `applyPeople` applies it, live
/// and in replay, checking every precondition again.
extension DealState {

    // MARK: - Apply

    mutating func applyPeople(_ change: DealPeopleChange, time: Int64, index: EngineIndexes, indexNew: Bool) throws(EngineError) {
        switch change {
        case .memberAdded(let m):
            if let slot = people.memberSlot[m.user] {
                people.members[Int(slot)].role = m.role
                people.members[Int(slot)].investor = m.investor
            } else {
                guard people.members.count < PeopleLimits.maxMembersPerDeal else {
                    throw EngineError(.limit, "deal \(info.id) has the maximum of \(PeopleLimits.maxMembersPerDeal) membership rows")
                }
                people.memberSlot[m.user] = Int32(people.members.count)
                people.members.append(m)
            }
        case .memberRemoved(let user):
            guard let slot = people.memberSlot[user] else { throw EngineError(.notFound, "user \(user) is not a member of deal \(info.id)") }
            people.members[Int(slot)].removed = true
            people.memberSlot[user] = nil
        case .inviteCreated(let invite):
            let slot = Int32(people.invites.count)
            guard invite.id == GeneratedID.make(prefix: UInt8(ascii: "i"), deal: ref, slot: slot) else {
                throw EngineError(.invalid, "invite id \(invite.id) does not name slot \(slot) of deal \(info.id)")
            }
            guard people.inviteByHash[invite.tokenHash] == nil else { throw EngineError(.exists, "invite token already registered") }
            guard people.invites.count < PeopleLimits.maxInvitesPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(PeopleLimits.maxInvitesPerDeal) invite links")
            }
            if indexNew {
                guard index.inviteTokens.insertIfAbsent(invite.tokenHash, RowRef(deal: ref, slot: slot)) == nil else {
                    throw EngineError(.exists, "invite token already registered in another deal")
                }
            }
            people.inviteByHash[invite.tokenHash] = slot
            people.invites.append(invite)
        case .inviteAccepted(let slot, let user, let investor):
            guard slot >= 0 && Int(slot) < people.invites.count else { throw EngineError(.notFound, "invite #\(slot) not in deal \(info.id)") }
            let invite = people.invites[Int(slot)]
            guard !invite.revoked, invite.usedCount < invite.maxUses, time < invite.expiresAt else {
                throw EngineError(.conflict, "invite \(invite.id) is \(invite.status(now: time))")
            }
            guard people.memberSlot[user] == nil else { throw EngineError(.conflict, "user \(user) is already a member of deal \(info.id)") }
            guard people.members.count < PeopleLimits.maxMembersPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(PeopleLimits.maxMembersPerDeal) membership rows")
            }
            people.invites[Int(slot)].usedCount += 1
            people.memberSlot[user] = Int32(people.members.count)
            people.members.append(Membership(user: user, role: invite.role, investor: investor, invitedBy: invite.createdBy,
                                             invitedAt: invite.createdAt, acceptedAt: time))
        case .inviteRevoked(let slot):
            guard slot >= 0 && Int(slot) < people.invites.count else { throw EngineError(.notFound, "invite #\(slot) not in deal \(info.id)") }
            guard !people.invites[Int(slot)].revoked else { throw EngineError(.conflict, "invite \(people.invites[Int(slot)].id) is already revoked") }
            people.invites[Int(slot)].revoked = true
        case .commitmentCreated(var c):
            let slot = Int32(people.commitments.count)
            guard people.commitments.count < PeopleLimits.maxCommitmentsPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(PeopleLimits.maxCommitmentsPerDeal) commitments")
            }
            guard (c.units == nil) != (c.amount == nil) else { throw EngineError(.invalid, "commitment \(c.id) needs units or an amount") }
            if indexNew {
                guard index.commitments.claim(c.id, RowRef(deal: ref, slot: slot)) else {
                    throw EngineError(.exists, "commitment id \(c.id) is already used or names another row")
                }
            }
            c.createdAt = time
            c.status = .submitted
            c.approval = openApproval(.commitment, entitySlot: slot, requestedBy: c.createdBy, time: time)
            people.commitments.append(c)
        case .commitmentStatus(let slot, let status, let by, let note):
            guard slot >= 0 && Int(slot) < people.commitments.count else { throw EngineError(.notFound, "commitment #\(slot) not in deal \(info.id)") }
            let current = people.commitments[Int(slot)].status
            guard Self.commitmentMove(from: current, to: status) else {
                throw EngineError(.conflict, "commitment \(people.commitments[Int(slot)].id) is \(current.name); it cannot become \(status.name)")
            }
            people.commitments[Int(slot)].status = status
            let approval = people.commitments[Int(slot)].approval
            switch status {
            case .approved: closeApproval(approval, .approved, by: by, time: time, note: note)
            case .rejected: closeApproval(approval, .rejected, by: by, time: time, note: note)
            case .cancelled: closeApproval(approval, .rejected, by: by, time: time, note: note ?? "commitment cancelled")
            case .submitted, .underReview: break
            }
        case .approvalAssigned(let slot, let user):
            try checkPendingApproval(slot)
            people.approvals[Int(slot)].assignedTo = user
        case .approvalPriority(let slot, let priority):
            try checkPendingApproval(slot)
            people.approvals[Int(slot)].priority = priority
        case .allocationDecided(let slot, let approve, let by, let note):
            try checkPendingApproval(slot)
            let a = people.approvals[Int(slot)]
            guard a.entity == .allocation, allocations.isInMemory(a.entitySlot),
                  allocations[Int(a.entitySlot)].status == .pendingReview else {
                throw EngineError(.conflict, "approval #\(slot) is not of an allocation under review")
            }
            if approve {
                approveAllocation(a.entitySlot, time: time, by: by, note: note)
            } else { rejectAllocation(a.entitySlot, time: time, by: by, note: note) }
        case .slaSet(let entity, let seconds):
            guard seconds >= PeopleLimits.minSLASeconds && seconds <= PeopleLimits.maxSLASeconds else {
                throw EngineError(.invalid, "SLA must be between \(PeopleLimits.minSLASeconds) and \(PeopleLimits.maxSLASeconds) seconds")
            }
            people.slaSeconds[Int(entity.rawValue)] = seconds
        }
    }

    static func commitmentMove(from: CommitmentStatus, to: CommitmentStatus) -> Bool {
        switch (from, to) {
        case (.submitted, .underReview), (.underReview, .approved), (.underReview, .rejected),
             (.submitted, .cancelled), (.underReview, .cancelled): true
        default: false
        }
    }

    private func checkPendingApproval(_ slot: Int32) throws(EngineError) {
        guard slot >= 0 && Int(slot) < people.approvals.count else { throw EngineError(.notFound, "approval #\(slot) not in deal \(info.id)") }
        // Every pending approval is in memory; one that left has been decided.
        guard people.approvals.isInMemory(slot) else { throw EngineError(.conflict, "approval \(approvalID(slot)) has been decided, not pending") }
        guard people.approvals[Int(slot)].status == .pending else {
            throw EngineError(.conflict, "approval \(approvalID(slot)) is \(people.approvals[Int(slot)].status.name), not pending")
        }
    }

    /// Opens the approval of a new commitment or allocation; returns its slot.
    mutating func openApproval(_ entity: ApprovalEntity, entitySlot: Int32, requestedBy: String?, time: Int64) -> Int32 {
        let slot = Int32(people.approvals.count)
        // Never dated before the approval before it (a clock stepping back):
        // the queue's order is creation order, which APPROVAL.LIST relies on.
        let created = slot > 0 ? max(time, people.approvalClock) : time
        people.approvalClock = created
        people.approvals.append(Approval(entity: entity, entitySlot: entitySlot, requestedBy: requestedBy, createdAt: created,
                                         slaBreachAt: created + people.sla(entity) * 1000))
        return slot
    }

    /// Closes an approval with its entity's decision (slot -1: a row from
    /// before approvals existed, which has none).
    mutating func closeApproval(_ slot: Int32, _ status: ApprovalStatus, by: String?, time: Int64, note: String?) {
        guard slot >= 0 else { return }
        people.approvals[Int(slot)].status = status
        people.approvals[Int(slot)].decidedBy = by
        people.approvals[Int(slot)].decidedAt = time
        if let note { people.approvals[Int(slot)].notes = note }
        people.approvals.ended(slot, at: time)
    }

    // MARK: - Lookups

    func commitmentSlot(_ id: String, index: EngineIndexes) throws(EngineError) -> Int32 {
        guard let r = index.commitments.lookup(id), r.deal == ref, r.slot >= 0, Int(r.slot) < people.commitments.count,
              people.commitments[Int(r.slot)].id == id
        else { throw EngineError(.notFound, "commitment \(id) not found") }
        return r.slot
    }

    func approvalSlot(_ id: String) throws(EngineError) -> Int32 {
        guard let r = GeneratedID.parse(id, prefix: UInt8(ascii: "p")), r.deal == ref, Int(r.slot) < people.approvals.count else {
            throw EngineError(.notFound, "approval \(id) not found")
        }
        return r.slot
    }

    func inviteSlot(_ id: String) throws(EngineError) -> Int32 {
        guard let r = GeneratedID.parse(id, prefix: UInt8(ascii: "i")), r.deal == ref, Int(r.slot) < people.invites.count else {
            throw EngineError(.notFound, "invite \(id) not found")
        }
        return r.slot
    }

    func approvalID(_ slot: Int32) -> String { GeneratedID.make(prefix: UInt8(ascii: "p"), deal: ref, slot: slot) }

    // MARK: - Execute

    mutating func executePeople(_ request: PeopleRequest, now: Int64, context: EngineContext, principal: Principal?,
                                changes: inout [Change]) throws(EngineError) -> DealReply {
        let user = principal?.user
        func commit(_ c: DealPeopleChange) { self.commit(.people(deal: info.id, c), time: now, context: context, changes: &changes) }
        switch request {
        case .addMember(let member, let role, let investor):
            try Validate.id(member, field: "user")
            if let investor { try Validate.id(investor, field: "investor") }
            let (userKnown, investorKnown) = context.directory.withLock { d in (d.users[member] != nil, investor.map { d.investors[$0] != nil } ?? true) }
            guard userKnown else { throw EngineError(.notFound, "user \(member) not found; USER.CREATE it first") }
            guard investorKnown else { throw EngineError(.notFound, "investor \(investor!) not found") }
            if let m = people.member(member), m.role == role, m.investor == investor { return .ok }
            guard people.memberSlot[member] != nil || people.members.count < PeopleLimits.maxMembersPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(PeopleLimits.maxMembersPerDeal) membership rows")
            }
            commit(.memberAdded(Membership(user: member, role: role, investor: investor, invitedBy: user, invitedAt: now, acceptedAt: now)))
            return .ok
        case .removeMember(let member):
            guard people.memberSlot[member] != nil else { throw EngineError(.notFound, "user \(member.prefix(128)) is not a member of deal \(info.id)") }
            commit(.memberRemoved(user: member))
            return .ok
        case .getMember(let member):
            guard let slot = people.memberSlot[member] else { throw EngineError(.notFound, "user \(member.prefix(128)) is not a member of deal \(info.id)") }
            return .fields(memberFields(slot))
        case .listMembers(let cursor, let count):
            let ownOnly = principal.map { !$0.isStaff } ?? false
            return page(from: cursor, count: count, total: people.members.count) { slot in
                let m = people.members[slot]
                guard !m.removed, !ownOnly || m.user == user else { return nil }
                return memberFields(Int32(slot))
            }
        case .createInvite(let role, let ttl, let uses):
            let ttlSeconds = ttl ?? PeopleLimits.defaultInviteTTLSeconds
            guard ttlSeconds >= 1 && ttlSeconds <= PeopleLimits.maxInviteTTLSeconds else {
                throw EngineError(.invalid, "invite TTL must be between 1 and \(PeopleLimits.maxInviteTTLSeconds) seconds")
            }
            let maxUses = uses ?? 1
            guard maxUses >= 1 && Int(maxUses) <= PeopleLimits.maxInviteUses else {
                throw EngineError(.invalid, "invite USES must be between 1 and \(PeopleLimits.maxInviteUses)")
            }
            guard info.status != .closed && info.status != .cancelled else { throw EngineError(.closed, "deal \(info.id) is \(info.status.name)") }
            guard people.invites.count < PeopleLimits.maxInvitesPerDeal else {
                throw EngineError(.limit, "deal \(info.id) has the maximum of \(PeopleLimits.maxInvitesPerDeal) invite links")
            }
            let slot = Int32(people.invites.count)
            let token = context.secrets.token()
            let hash = SHA256.hex(token)
            guard context.indexes.inviteTokens.insertIfAbsent(hash, RowRef(deal: ref, slot: slot)) == nil else {
                throw EngineError(.exists, "invite token already registered")
            }
            let id = GeneratedID.make(prefix: UInt8(ascii: "i"), deal: ref, slot: slot)
            commit(.inviteCreated(Invite(id: id, role: role, tokenHash: hash, expiresAt: now + ttlSeconds * 1000, maxUses: maxUses,
                                         createdBy: user, createdAt: now)))
            return .values([id, token])
        case .acceptInvite(let hash, let investor):
            guard let p = principal else { throw EngineError(.invalid, "an invite is accepted by an authenticated user") }
            guard let slot = people.inviteByHash[hash] else { throw EngineError(.notFound, "invite link not found") }
            let invite = people.invites[Int(slot)]
            if invite.revoked { throw EngineError(.expired, "invite link \(invite.id) was revoked") }
            if now >= invite.expiresAt { throw EngineError(.expired, "invite link \(invite.id) expired at \(invite.expiresAt)") }
            if invite.usedCount >= invite.maxUses { throw EngineError(.conflict, "invite link \(invite.id) has been used \(invite.usedCount) of \(invite.maxUses) times") }
            guard info.status != .closed && info.status != .cancelled else { throw EngineError(.closed, "deal \(info.id) is \(info.status.name)") }
            if people.memberSlot[p.user] != nil { throw EngineError(.conflict, "user \(p.user) is already a member of deal \(info.id)") }
            if let investor {
                try Validate.id(investor, field: "investor")
                guard context.directory.withLock({ $0.investors[investor] != nil }) else { throw EngineError(.notFound, "investor \(investor) not found") }
                guard p.actsFor(investor) else { throw EngineError(.noPermission, "user \(p.user) does not act for investor \(investor)") }
            }
            guard context.directory.withLock({ $0.users[p.user] != nil }) || p == .admin else {
                throw EngineError(.notFound, "user \(p.user) not found")
            }
            commit(.inviteAccepted(invite: slot, user: p.user, investor: investor))
            return .ok
        case .revokeInvite(let id):
            let slot = try inviteSlot(id)
            if people.invites[Int(slot)].revoked { return .ok }
            commit(.inviteRevoked(invite: slot))
            return .ok
        case .getInvite(let id):
            return .fields(inviteFields(try inviteSlot(id), now: now))
        case .commit(let investor, let units, let amount, let id):
            return try commitment(investor: investor, units: units, amount: amount, id: id, now: now, context: context, user: user, changes: &changes)
        case .commitStatus(let id, let target):
            let slot = try commitmentSlot(id, index: context.indexes)
            let current = people.commitments[Int(slot)].status
            if current == target { return .ok }
            guard Self.commitmentMove(from: current, to: target) else {
                let hint = current == .submitted && (target == .approved || target == .rejected) ? "; COMMIT.REVIEW it first" : ""
                throw EngineError(.conflict, "commitment \(id) is \(current.name); it cannot become \(target.name)\(hint)")
            }
            commit(.commitmentStatus(commitment: slot, status: target, by: user, note: nil))
            return .ok
        case .getCommitment(let id):
            return .fields(commitmentFields(try commitmentSlot(id, index: context.indexes)))
        case .assignApproval(let id, let assignee):
            let slot = try approvalSlot(id)
            try Validate.id(assignee, field: "user")
            guard let role = context.directory.withLock({ $0.users[assignee]?.role }) else { throw EngineError(.notFound, "user \(assignee) not found") }
            guard role.isStaff else { throw EngineError(.invalid, "approvals are assigned to staff; \(assignee) is \(role.rawValue)") }
            try checkPendingApproval(slot)
            if people.approvals[Int(slot)].assignedTo == assignee { return .ok }
            commit(.approvalAssigned(approval: slot, user: assignee))
            return .ok
        case .prioritizeApproval(let id, let priority):
            let slot = try approvalSlot(id)
            try checkPendingApproval(slot)
            if people.approvals[Int(slot)].priority == priority { return .ok }
            commit(.approvalPriority(approval: slot, priority: priority))
            return .ok
        case .decideApproval(let id, let approve, let note):
            let slot = try approvalSlot(id)
            if let note { try Validate.text(note, field: "note") }
            let a = people.approvals.isInMemory(slot) ? people.approvals[Int(slot)] : try approvalRow(slot, index: context.indexes).approval
            if a.status == (approve ? .approved : .rejected) { return .ok }
            try checkPendingApproval(slot)
            switch a.entity {
            case .commitment:
                let c = people.commitments[Int(a.entitySlot)]
                guard c.status == .underReview else {
                    throw EngineError(.conflict, "commitment \(c.id) is \(c.status.name); COMMIT.REVIEW it before deciding")
                }
                commit(.commitmentStatus(commitment: a.entitySlot, status: approve ? .approved : .rejected, by: user, note: note))
            case .allocation:
                guard info.status != .draft && info.status != .cancelled else { throw EngineError(.closed, "deal \(info.id) is \(info.status.name)") }
                commit(.allocationDecided(approval: slot, approve: approve, by: user, note: note))
            }
            return .ok
        case .getApproval(let id):
            let read = try approvalRow(try approvalSlot(id), index: context.indexes)
            return .fields(approvalFields(try approvalSlot(id), read, now: now))
        case .listApprovals(let filter, let cursor, let count):
            var reader = ApprovalCursor()
            var rows: [[Field]] = []
            let total = people.approvals.count
            var slot = Int(min(cursor, UInt64(total)))
            var scanned = 0
            while slot < total && rows.count < count && scanned < PeopleLimits.maxPageScan {
                let read = try reader.row(Int32(slot), in: self, index: context.indexes)
                if filter.matches(read.approval, now: now) { rows.append(approvalFields(Int32(slot), read, now: now)) }
                slot += 1
                scanned += 1
            }
            return .page(cursor: slot >= total ? "0" : String(slot), rows: rows)
        case .setSLA(let entity, let seconds):
            guard seconds >= PeopleLimits.minSLASeconds && seconds <= PeopleLimits.maxSLASeconds else {
                throw EngineError(.invalid, "SLA must be between \(PeopleLimits.minSLASeconds) and \(PeopleLimits.maxSLASeconds) seconds")
            }
            if people.sla(entity) == seconds { return .ok }
            commit(.slaSet(entity: entity, seconds: seconds))
            return .ok
        }
    }

    private mutating func commitment(investor: String, units: Units?, amount: Money?, id: String?, now: Int64, context: EngineContext,
                                     user: String?, changes: inout [Change]) throws(EngineError) -> DealReply {
        try Validate.id(investor, field: "investor")
        guard (units == nil) != (amount == nil) else { throw EngineError(.invalid, "a commitment names UNITS or AMOUNT, one of them") }
        if let units, !(units.raw > 0 && units.raw <= NumberLimits.maxUnitsRaw) {
            throw EngineError(.invalid, "units must be greater than zero and at most \(Units(raw: NumberLimits.maxUnitsRaw)), got \(units)")
        }
        if let amount, !(amount.raw > 0 && amount.raw <= NumberLimits.maxMoneyRaw) {
            throw EngineError(.invalid, "amount must be greater than zero and at most \(Money(raw: NumberLimits.maxMoneyRaw)), got \(amount)")
        }
        if let id {
            try Validate.callerID(id, field: "commitment id")
            if let existing = context.indexes.commitments.lookup(id) {
                guard existing.deal == ref, Int(existing.slot) < people.commitments.count else {
                    throw EngineError(.conflict, "commitment id \(id) is already used in another deal")
                }
                let c = people.commitments[Int(existing.slot)]
                guard c.investor == investor, c.units == units, c.amount == amount else {
                    throw EngineError(.conflict, "commitment id \(id) was used with different parameters")
                }
                return .id(id)
            }
        }
        guard info.status == .open || info.status == .draft else {
            throw EngineError(.closed, "deal \(info.id) is \(info.status.name); commitments need it draft or open")
        }
        guard people.commitments.count < PeopleLimits.maxCommitmentsPerDeal else {
            throw EngineError(.limit, "deal \(info.id) has the maximum of \(PeopleLimits.maxCommitmentsPerDeal) commitments")
        }
        let slot = Int32(people.commitments.count)
        let chosen: String
        if let id {
            guard context.indexes.commitments.insertIfAbsent(id, RowRef(deal: ref, slot: slot)) == nil else {
                throw EngineError(.conflict, "commitment id \(id) is already used")
            }
            chosen = id
        } else {
            chosen = GeneratedID.make(prefix: UInt8(ascii: "c"), deal: ref, slot: slot)
        }
        self.commit(.people(deal: info.id, .commitmentCreated(Commitment(id: chosen, investor: investor, units: units, amount: amount, createdBy: user))),
                    time: now, context: context, changes: &changes)
        return .id(chosen)
    }

    /// One page of a per-deal list: rows from slot `cursor` on, at most
    /// `count` of them and at most `PeopleLimits.maxPageScan` slots examined;
    /// the next cursor is the slot to go on from, 0 at the end.
    func page(from cursor: UInt64, count: Int, total: Int, _ row: (Int) -> [Field]?) -> DealReply {
        var rows: [[Field]] = []
        var slot = Int(min(cursor, UInt64(total)))
        var scanned = 0
        while slot < total && rows.count < count && scanned < PeopleLimits.maxPageScan {
            if let r = row(slot) { rows.append(r) }
            slot += 1
            scanned += 1
        }
        return .page(cursor: slot >= total ? "0" : String(slot), rows: rows)
    }
}
