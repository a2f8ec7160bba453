import WAL

/// The log layouts of the people records (types 10, 20-30, 40-50), their
/// sections of a snapshot, and their part of the state digest. Layouts are
/// documented in docs/wal-format.md and never change meaning.
extension DirectoryChange {
    public var recordType: UInt8 {
        switch self {
        case .legacyToken: 10
        case .userSet: 20
        case .investorCreated: 21
        case .investorKYC: 22
        case .investorLinked: 23
        case .investorUnlinked: 24
        case .tokenIssued: 25
        case .tokensRevoked: 26
        case .vehicleCreated: 27
        case .subscriptionCreated: 28
        case .subscriptionStatus: 29
        case .sourceCreated: 30
        case .bankImported: 80
        case .introducerCreated: 81
        case .introducerStatus: 82
        case .valuationSet: 83
        case .capitalCallCreated: 84
        case .capitalCallIssued: 85
        case .distributionCreated: 86
        }
    }
    static let typeNames: [UInt8: String] = [
        10: "token.created", 20: "user.set", 21: "investor.created", 22: "investor.kyc", 23: "investor.linked",
        24: "investor.unlinked", 25: "token.issued", 26: "tokens.revoked", 27: "vehicle.created",
        28: "subscription.created", 29: "subscription.status", 30: "source.created",
        80: "bank.imported", 81: "introducer.created", 82: "introducer.status", 83: "valuation.set",
        84: "capitalcall.created", 85: "capitalcall.issued", 86: "distribution.created",
    ]
}

extension DealPeopleChange {
    public var recordType: UInt8 {
        switch self {
        case .memberAdded: 40
        case .memberRemoved: 41
        case .inviteCreated: 42
        case .inviteAccepted: 43
        case .inviteRevoked: 44
        case .commitmentCreated: 45
        case .commitmentStatus: 46
        case .approvalAssigned: 47
        case .approvalPriority: 48
        case .allocationDecided: 49
        case .slaSet: 50
        }
    }
    static let typeNames: [UInt8: String] = [
        40: "member.added", 41: "member.removed", 42: "invite.created", 43: "invite.accepted", 44: "invite.revoked",
        45: "commitment.created", 46: "commitment.status", 47: "approval.assigned", 48: "approval.priority",
        49: "allocation.decided", 50: "deal.sla",
    ]
}

enum PeopleCodec: RecordFieldCoding {
    typealias W = ByteWriter
    typealias R = ByteReader

    static func money(_ r: inout R) throws(DecodeError) -> Money {
        let v = try r.zigzag128()
        guard v >= -NumberLimits.maxMoneyRaw && v <= NumberLimits.maxMoneyRaw else { throw DecodeError("money out of range") }
        return Money(raw: v)
    }

    // MARK: - Directory records

    static func encode(_ c: DirectoryChange, into w: inout W) {
        switch c {
        case .legacyToken(let user, let role, let investors, let hash):
            w.string(user); w.string(role.rawValue); w.string(hash); w.zigzag(0)
            w.varint(UInt64(investors.count)); for i in investors { w.string(i) }
        case .userSet(let u): encodeUser(u, &w, full: false)
        case .investorCreated(let i): encodeInvestor(i, &w, full: false)
        case .investorKYC(let i, let s): w.string(i); w.u8(s.code)
        case .investorLinked(let i, let u), .investorUnlinked(let i, let u): w.string(i); w.string(u)
        case .tokenIssued(let t): w.string(t.user); w.string(t.tokenHash); w.zigzag(t.createdAt)
        case .tokensRevoked(let u): w.string(u)
        case .vehicleCreated(let v): encodeVehicle(v, &w)
        case .subscriptionCreated(let s): encodeSubscription(s, &w)
        case .subscriptionStatus(let id, let s): w.string(id); w.string(s.rawValue)
        case .sourceCreated(let s): w.string(s.id); w.string(s.kind.rawValue); opt(s.counterparty, &w); opt(s.notes, &w)
        case .bankImported, .introducerCreated, .introducerStatus, .valuationSet, .capitalCallCreated, .capitalCallIssued, .distributionCreated:
            MoneyCodec.encodeLedger(c, into: &w)
        }
    }

    /// nil: not a directory record type.
    static func decodeDirectory(type: UInt8, _ r: inout R) throws(DecodeError) -> DirectoryChange? {
        switch type {
        case 10:
            let user = try r.string()
            let roleName = try r.string()
            // The first format mixed global and deal roles; a deal role now makes an investor user.
            let role: UserRole
            if let g = UserRole(rawValue: roleName) { role = g }
            else if DealMemberRole(rawValue: roleName) != nil { role = .investor }
            else { throw DecodeError("unknown role \(roleName)") }
            let hash = try r.string()
            _ = try r.zigzag()
            let n = try StateCodec.count(&r, "investor")
            var investors: [String] = []
            for _ in 0..<n { investors.append(try r.string()) }
            return .legacyToken(user: user, role: role, investors: investors, tokenHash: hash)
        case 20: return .userSet(try decodeUser(&r, full: false))
        case 21: return .investorCreated(try decodeInvestor(&r, full: false))
        case 22: return .investorKYC(investor: try r.string(), status: try code(&r, "kyc status", KYCStatus.init(code:)))
        case 23: return .investorLinked(investor: try r.string(), user: try r.string())
        case 24: return .investorUnlinked(investor: try r.string(), user: try r.string())
        case 25: return .tokenIssued(UserToken(user: try r.string(), tokenHash: try r.string(), createdAt: try r.zigzag()))
        case 26: return .tokensRevoked(user: try r.string())
        case 27: return .vehicleCreated(try decodeVehicle(&r))
        case 28: return .subscriptionCreated(try decodeSubscription(&r))
        case 29:
            let id = try r.string(), name = try r.string()
            guard let s = SubscriptionStatus(rawValue: name) else { throw DecodeError("subscription status \(name)") }
            return .subscriptionStatus(id: id, status: s)
        case 30:
            let id = try r.string(), kindName = try r.string()
            guard let kind = ShareSourceKind(rawValue: kindName) else { throw DecodeError("source kind \(kindName)") }
            return .sourceCreated(ShareSource(id: id, kind: kind, counterparty: try opt(&r), notes: try opt(&r)))
        case 80...86: return try MoneyCodec.decodeLedger(type: type, &r)
        default: return nil
        }
    }

    static func encodeUser(_ u: UserProfile, _ w: inout W, full: Bool) {
        w.string(u.id); w.u8(u.role.code); opt(u.name, &w); opt(u.email, &w); opt(u.title, &w)
        if full { w.zigzag(u.createdAt); w.varint(UInt64(u.investors.count)); for i in u.investors { w.string(i) } }
    }
    static func decodeUser(_ r: inout R, full: Bool) throws(DecodeError) -> UserProfile {
        var u = UserProfile(id: try r.string(), role: try code(&r, "user role", UserRole.init(code:)), name: try opt(&r), email: try opt(&r), title: try opt(&r))
        if full {
            u.createdAt = try r.zigzag()
            let n = try StateCodec.count(&r, "user investor")
            for _ in 0..<n { u.investors.append(try r.string()) }
        }
        return u
    }
    static func encodeInvestor(_ i: InvestorRecord, _ w: inout W, full: Bool) {
        w.string(i.id); w.string(i.legalName); opt(i.type, &w); opt(i.country, &w); w.u8(i.kycStatus.code)
        if full { w.zigzag(i.createdAt); w.varint(UInt64(i.users.count)); for u in i.users { w.string(u) } }
    }
    static func decodeInvestor(_ r: inout R, full: Bool) throws(DecodeError) -> InvestorRecord {
        var i = InvestorRecord(id: try r.string(), legalName: try r.string(), type: try opt(&r), country: try opt(&r),
                               kycStatus: try code(&r, "kyc status", KYCStatus.init(code:)))
        if full {
            i.createdAt = try r.zigzag()
            let n = try StateCodec.count(&r, "investor user")
            for _ in 0..<n { i.users.append(try r.string()) }
        }
        return i
    }
    static func encodeVehicle(_ v: Vehicle, _ w: inout W) {
        w.string(v.id); w.string(v.name); opt(v.type?.rawValue, &w); opt(v.domicile, &w); w.string(v.currency); w.zigzag(v.createdAt)
    }
    static func decodeVehicle(_ r: inout R) throws(DecodeError) -> Vehicle {
        let id = try r.string(), name = try r.string()
        let typeName = try opt(&r)
        var type: VehicleType?
        if let typeName {
            guard let t = VehicleType(rawValue: typeName) else { throw DecodeError("vehicle type \(typeName)") }
            type = t
        }
        var v = Vehicle(id: id, name: name, type: type, domicile: try opt(&r), currency: try r.string())
        v.createdAt = try r.zigzag()
        return v
    }
    static func encodeSubscription(_ s: Subscription, _ w: inout W) {
        w.string(s.id); w.string(s.investor); w.string(s.vehicle); w.zigzag128(s.commitment.raw); w.string(s.currency)
        w.string(s.status.rawValue); w.zigzag(s.createdAt)
    }
    static func decodeSubscription(_ r: inout R) throws(DecodeError) -> Subscription {
        var s = Subscription(id: try r.string(), investor: try r.string(), vehicle: try r.string(), commitment: try money(&r), currency: try r.string())
        let name = try r.string()
        guard let status = SubscriptionStatus(rawValue: name) else { throw DecodeError("subscription status \(name)") }
        s.status = status
        s.createdAt = try r.zigzag()
        return s
    }

    // MARK: - Deal people records

    static func encode(_ c: DealPeopleChange, into w: inout W) {
        switch c {
        case .memberAdded(let m): encodeMember(m, &w)
        case .memberRemoved(let u): w.string(u)
        case .inviteCreated(let i): encodeInvite(i, &w)
        case .inviteAccepted(let s, let u, let inv): w.varint(UInt64(s)); w.string(u); opt(inv, &w)
        case .inviteRevoked(let s): w.varint(UInt64(s))
        case .commitmentCreated(let c):
            w.string(c.id); w.string(c.investor); optInt128(c.units?.raw, &w); optInt128(c.amount?.raw, &w); opt(c.createdBy, &w)
        case .commitmentStatus(let s, let status, let by, let note): w.varint(UInt64(s)); w.u8(status.rawValue); opt(by, &w); opt(note, &w)
        case .approvalAssigned(let s, let u): w.varint(UInt64(s)); w.string(u)
        case .approvalPriority(let s, let p): w.varint(UInt64(s)); w.u8(p.rawValue)
        case .allocationDecided(let s, let approve, let by, let note): w.varint(UInt64(s)); w.u8(approve ? 1 : 0); opt(by, &w); opt(note, &w)
        case .slaSet(let e, let seconds): w.u8(e.rawValue); w.zigzag(seconds)
        }
    }

    static func decodePeople(type: UInt8, _ r: inout R) throws(DecodeError) -> DealPeopleChange? {
        switch type {
        case 40: return .memberAdded(try decodeMember(&r))
        case 41: return .memberRemoved(user: try r.string())
        case 42: return .inviteCreated(try decodeInvite(&r))
        case 43: return .inviteAccepted(invite: try slot(&r), user: try r.string(), investor: try opt(&r))
        case 44: return .inviteRevoked(invite: try slot(&r))
        case 45:
            let id = try r.string(), investor = try r.string()
            let units = try optInt128(&r).map(Units.init(raw:)), amount = try optInt128(&r).map(Money.init(raw:))
            if let u = units, !(u.raw > 0 && u.raw <= NumberLimits.maxUnitsRaw) { throw DecodeError("commitment units out of range") }
            if let a = amount, !(a.raw > 0 && a.raw <= NumberLimits.maxMoneyRaw) { throw DecodeError("commitment amount out of range") }
            return .commitmentCreated(Commitment(id: id, investor: investor, units: units, amount: amount, createdBy: try opt(&r)))
        case 46:
            return .commitmentStatus(commitment: try slot(&r), status: try code(&r, "commitment status", CommitmentStatus.init(rawValue:)),
                                     by: try opt(&r), note: try opt(&r))
        case 47: return .approvalAssigned(approval: try slot(&r), user: try r.string())
        case 48: return .approvalPriority(approval: try slot(&r), priority: try code(&r, "priority", ApprovalPriority.init(rawValue:)))
        case 49:
            let s = try slot(&r)
            let flag = try r.u8()
            guard flag <= 1 else { throw DecodeError("decision flag \(flag)") }
            return .allocationDecided(approval: s, approve: flag == 1, by: try opt(&r), note: try opt(&r))
        case 50: return .slaSet(entity: try code(&r, "approval entity", ApprovalEntity.init(rawValue:)), seconds: try r.zigzag())
        default: return nil
        }
    }

    static func encodeMember(_ m: Membership, _ w: inout W) {
        w.string(m.user); w.u8(m.role.code); opt(m.investor, &w); opt(m.invitedBy, &w); w.zigzag(m.invitedAt); optInt(m.acceptedAt, &w)
    }
    static func decodeMember(_ r: inout R) throws(DecodeError) -> Membership {
        Membership(user: try r.string(), role: try code(&r, "member role", DealMemberRole.init(code:)), investor: try opt(&r),
                   invitedBy: try opt(&r), invitedAt: try r.zigzag(), acceptedAt: try optInt(&r))
    }
    static func encodeInvite(_ i: Invite, _ w: inout W) {
        w.string(i.id); w.u8(i.role.code); w.string(i.tokenHash); w.zigzag(i.expiresAt); w.varint(UInt64(i.maxUses))
        opt(i.createdBy, &w); w.zigzag(i.createdAt)
    }
    static func decodeInvite(_ r: inout R) throws(DecodeError) -> Invite {
        let id = try r.string(), role = try code(&r, "member role", DealMemberRole.init(code:)), hash = try r.string(), expires = try r.zigzag()
        let uses = try r.varint()
        guard uses >= 1 && uses <= UInt64(PeopleLimits.maxInviteUses) else { throw DecodeError("invite uses \(uses)") }
        return Invite(id: id, role: role, tokenHash: hash, expiresAt: expires, maxUses: Int32(uses), createdBy: try opt(&r), createdAt: try r.zigzag())
    }

    // MARK: - Snapshot sections

    static func encode(_ d: Directory, into w: inout W) {
        let users = d.users.values.sorted { $0.id < $1.id }
        w.varint(UInt64(users.count)); for u in users { encodeUser(u, &w, full: true) }
        let investors = d.investors.values.sorted { $0.id < $1.id }
        w.varint(UInt64(investors.count)); for i in investors { encodeInvestor(i, &w, full: true) }
        let tokens = d.tokens.values.sorted { $0.tokenHash < $1.tokenHash }
        w.varint(UInt64(tokens.count)); for t in tokens { w.string(t.user); w.string(t.tokenHash); w.zigzag(t.createdAt) }
        let vehicles = d.vehicles.values.sorted { $0.id < $1.id }
        w.varint(UInt64(vehicles.count)); for v in vehicles { encodeVehicle(v, &w) }
        let subs = d.subscriptions.values.sorted { $0.id < $1.id }
        w.varint(UInt64(subs.count)); for s in subs { encodeSubscription(s, &w) }
        let sources = d.sources.values.sorted { $0.id < $1.id }
        w.varint(UInt64(sources.count)); for s in sources { encode(.sourceCreated(s), into: &w) }
        w.varint(d.subscriptionSequence)
    }

    static func decodeDirectory(_ r: inout R) throws(DecodeError) -> Directory {
        var d = Directory()
        for _ in 0..<(try StateCodec.count(&r, "user")) {
            let u = try decodeUser(&r, full: true)
            guard d.users[u.id] == nil else { throw DecodeError("duplicate user \(u.id)") }
            d.users[u.id] = u
            if let e = u.email?.lowercased() {
                guard d.emails[e] == nil else { throw DecodeError("duplicate email \(e)") }
                d.emails[e] = u.id
            }
        }
        for _ in 0..<(try StateCodec.count(&r, "investor")) {
            let i = try decodeInvestor(&r, full: true)
            guard d.investors[i.id] == nil else { throw DecodeError("duplicate investor \(i.id)") }
            d.investors[i.id] = i
        }
        for (id, u) in d.users {
            for i in u.investors where !(d.investors[i]?.users.contains(id) ?? false) { throw DecodeError("link \(id)-\(i) is one-sided") }
        }
        for _ in 0..<(try StateCodec.count(&r, "token")) {
            let t = UserToken(user: try r.string(), tokenHash: try r.string(), createdAt: try r.zigzag())
            guard d.users[t.user] != nil, d.tokens[t.tokenHash] == nil else { throw DecodeError("token of unknown user \(t.user) or duplicate") }
            d.tokens[t.tokenHash] = t
        }
        for _ in 0..<(try StateCodec.count(&r, "vehicle")) { let v = try decodeVehicle(&r); d.vehicles[v.id] = v }
        for _ in 0..<(try StateCodec.count(&r, "subscription")) { let s = try decodeSubscription(&r); d.subscriptions[s.id] = s }
        for _ in 0..<(try StateCodec.count(&r, "source")) {
            guard case .sourceCreated(let s)? = try decodeDirectory(type: 30, &r) else { throw DecodeError("source") }
            d.sources[s.id] = s
        }
        d.subscriptionSequence = try r.varint()
        return d
    }

    static func encode(_ p: DealPeople, into w: inout W) {
        w.varint(UInt64(p.members.count))
        for m in p.members { encodeMember(m, &w); w.u8(m.removed ? 1 : 0) }
        w.varint(UInt64(p.invites.count))
        for i in p.invites { encodeInvite(i, &w); w.varint(UInt64(i.usedCount)); w.u8(i.revoked ? 1 : 0) }
        w.varint(UInt64(p.commitments.count))
        for c in p.commitments {
            encode(.commitmentCreated(c), into: &w); w.u8(c.status.rawValue); w.zigzag(c.createdAt); w.varint(UInt64(c.approval))
        }
        // Format 8: the row-table layout (64 a chunk; decided ones may have
        // left memory), then when the newest approval was created.
        StateCodec.encodeTable(p.approvals.parts, into: &w, drain: { _ in }) { a, w in encodeApproval(a, &w) }
        w.zigzag(p.approvalClock)
        w.varint(UInt64(p.slaSeconds.count)); for s in p.slaSeconds { w.zigzag(s) }
    }

    static func encodeApproval(_ a: Approval, _ w: inout W) {
        w.u8(a.entity.rawValue); w.varint(UInt64(a.entitySlot)); w.u8(a.status.rawValue); w.u8(a.priority.rawValue)
        opt(a.requestedBy, &w); opt(a.assignedTo, &w); opt(a.decidedBy, &w); w.zigzag(a.decidedAt); opt(a.notes, &w)
        w.zigzag(a.createdAt); w.zigzag(a.slaBreachAt)
    }

    static func decodeApproval(_ r: inout R, commitments: Int, allocations: Int) throws(DecodeError) -> Approval {
        let entity = try code(&r, "approval entity", ApprovalEntity.init(rawValue:))
        let entitySlot = try slot(&r)
        guard Int(entitySlot) < (entity == .commitment ? commitments : allocations) else { throw DecodeError("approval of a missing row") }
        var a = Approval(entity: entity, entitySlot: entitySlot, createdAt: 0, slaBreachAt: 0)
        a.status = try code(&r, "approval status", ApprovalStatus.init(rawValue:))
        a.priority = try code(&r, "priority", ApprovalPriority.init(rawValue:))
        a.requestedBy = try opt(&r); a.assignedTo = try opt(&r); a.decidedBy = try opt(&r); a.decidedAt = try r.zigzag(); a.notes = try opt(&r)
        a.createdAt = try r.zigzag(); a.slaBreachAt = try r.zigzag()
        return a
    }

    /// Decodes a deal's people section; `allocations` checks approval links.
    static func decodePeople(_ r: inout R, allocations: Int, version: UInt16) throws(DecodeError) -> DealPeople {
        var p = DealPeople()
        for _ in 0..<(try StateCodec.count(&r, "member")) {
            var m = try decodeMember(&r)
            m.removed = try r.u8() != 0
            if !m.removed {
                guard p.memberSlot[m.user] == nil else { throw DecodeError("member \(m.user) twice") }
                p.memberSlot[m.user] = Int32(p.members.count)
            }
            p.members.append(m)
        }
        for _ in 0..<(try StateCodec.count(&r, "invite")) {
            var i = try decodeInvite(&r)
            let used = try r.varint()
            guard used <= UInt64(i.maxUses) else { throw DecodeError("invite \(i.id) used \(used) of \(i.maxUses)") }
            i.usedCount = Int32(used)
            i.revoked = try r.u8() != 0
            guard p.inviteByHash[i.tokenHash] == nil else { throw DecodeError("invite token twice") }
            p.inviteByHash[i.tokenHash] = Int32(p.invites.count)
            p.invites.append(i)
        }
        for _ in 0..<(try StateCodec.count(&r, "commitment")) {
            guard case .commitmentCreated(var c)? = try decodePeople(type: 45, &r) else { throw DecodeError("commitment") }
            c.status = try code(&r, "commitment status", CommitmentStatus.init(rawValue:))
            c.createdAt = try r.zigzag()
            c.approval = try slot(&r)
            p.commitments.append(c)
        }
        let commitments = p.commitments.count
        if version >= 8 {
            p.approvals = try StateCodec.decodeTable(&r, version: version) { (r: inout ByteReader) throws(DecodeError) -> Approval in
                try decodeApproval(&r, commitments: commitments, allocations: allocations)
            }
            p.approvalClock = try r.zigzag()
        } else {
            for _ in 0..<(try StateCodec.count(&r, "approval")) {
                let a = try decodeApproval(&r, commitments: commitments, allocations: allocations)
                p.approvals.append(a)
                p.approvalClock = a.createdAt
            }
        }
        for c in p.commitments { guard Int(c.approval) < p.approvals.count else { throw DecodeError("commitment \(c.id) names a missing approval") } }
        let n = try StateCodec.count(&r, "sla")
        guard n == ApprovalEntity.allCases.count else { throw DecodeError("sla count \(n)") }
        for i in 0..<n { p.slaSeconds[i] = try r.zigzag() }
        return p
    }
}

// MARK: - Digest

extension Directory {
    public func hash(into h: inout StateHasher) {
        h.encoded { PeopleCodec.encode(self, into: &$0) }
        h.encoded { MoneyCodec.encode(ledger, into: &$0) }
        h.encoded { MoneyCodec.encode(portfolio, into: &$0) }
    }
}

extension DealPeople {
    func hash(into h: inout StateHasher) { h.encoded { PeopleCodec.encode(self, into: &$0) } }
}
