import WAL

/// One entry of the audit chain (the seed's `audit_log`): every change
/// record of the log, by anyone, the engine's own expiries included. Its hash
/// covers the previous entry's hash and a canonical encoding of the entry
/// that includes the SHA-256 of the record's payload, so rewriting any byte
/// of any change (units, prices, amounts, investor, ...) breaks the chain,
/// not only rewriting who did it and when. docs/wal-format.md writes the
/// encoding down for anyone to re-verify the chain with a script of their own.
public struct AuditEntry: Hashable, Sendable {
    /// The record's LSN.
    public var seq: UInt64
    public var time: Int64
    public var type: UInt8
    /// The change the record holds (its subject is derived from it when shown).
    public var change: Change
    /// SHA-256 of the record's payload.
    public var changeDigest: SHA256.Digest

    public init(seq: UInt64, time: Int64, type: UInt8, change: Change, payload: UnsafeRawBufferPointer) {
        self.seq = seq
        self.time = time
        self.type = type
        self.change = change
        changeDigest = SHA256.digest(payload)
    }

    public var action: String { Change.typeNames[type] ?? "type\(type)" }
    public var entity: String { change.auditSubject.0 }
    public var entityID: String { change.auditSubject.1 }
    /// The user who made the change; empty for the engine itself (expiry) or in process.
    public var actor: String { change.auditSubject.2 }

    /// `SHA-256(prev || u64 seq || i64 time || u8 type || SHA-256(payload))`, integers big-endian.
    /// The action, entity, entity id and actor are functions of the type and
    /// the payload (every field of the change, who made it included), so the
    /// digest covers them: rewriting any of them changes it.
    public func hash(after prev: SHA256.Digest) -> SHA256.Digest {
        Self.hash(prev: prev, seq: seq, time: time, type: type, digest: changeDigest)
    }

    public static func hash(prev: SHA256.Digest, seq: UInt64, time: Int64, type: UInt8, digest: SHA256.Digest) -> SHA256.Digest {
        withUnsafeTemporaryAllocation(byteCount: 81, alignment: 8) { raw -> SHA256.Digest in
            func put(_ d: SHA256.Digest, _ at: Int) {
                raw.storeBytes(of: d.h.0.bigEndian, toByteOffset: at, as: UInt32.self)
                raw.storeBytes(of: d.h.1.bigEndian, toByteOffset: at + 4, as: UInt32.self)
                raw.storeBytes(of: d.h.2.bigEndian, toByteOffset: at + 8, as: UInt32.self)
                raw.storeBytes(of: d.h.3.bigEndian, toByteOffset: at + 12, as: UInt32.self)
                raw.storeBytes(of: d.h.4.bigEndian, toByteOffset: at + 16, as: UInt32.self)
                raw.storeBytes(of: d.h.5.bigEndian, toByteOffset: at + 20, as: UInt32.self)
                raw.storeBytes(of: d.h.6.bigEndian, toByteOffset: at + 24, as: UInt32.self)
                raw.storeBytes(of: d.h.7.bigEndian, toByteOffset: at + 28, as: UInt32.self)
            }
            put(prev, 0)
            raw.storeBytes(of: seq.bigEndian, toByteOffset: 32, as: UInt64.self)
            raw.storeBytes(of: time.bigEndian, toByteOffset: 40, as: Int64.self)
            raw.storeBytes(of: type, toByteOffset: 48, as: UInt8.self)
            put(digest, 49)
            return SHA256.digest(UnsafeRawBufferPointer(raw))
        }
    }
}

extension Change {
    /// (entity, entity id, actor) of the change, for its audit entry.
    public var auditSubject: (String, String, String) {
        switch self {
        case .dealCreated(let i): return ("deal", i.id, i.createdBy ?? "")
        case .dealStatus(let d, _): return ("deal", d, "")
        case .lotAdded(_, let l): return ("lot", l.id, "")
        case .lotResized(let d, let slot, _): return ("lot", "\(d)#\(slot)", "")
        case .holdPlaced(_, let h): return ("hold", h.id, h.createdBy ?? "")
        case .holdReleased(_, let h): return ("hold", h, "")
        case .holdExpired(_, let h): return ("hold", h, "")
        case .allocationCreated(_, _, let a, let by): return ("allocation", a, by ?? "")
        case .allocationStatus(_, let a, _, let by): return ("allocation", a, by ?? "")
        case .group(let d, let changes): return changes.first?.auditSubject ?? ("deal", d, "")
        case .holdsArchived(let d, _, let location), .allocationsArchived(let d, _, let location),
             .approvalsArchived(let d, _, let location): return ("history", "\(d)@\(location)", "")
        case .holdIDsMoved(let d, _, let run): return ("history", "\(d)@\(CallerIDRuns.fileName(run))", "")
        case .directory(let c):
            switch c {
            case .userSet(let u): return ("user", u.id, "")
            case .investorCreated(let i): return ("investor", i.id, "")
            case .investorKYC(let i, _), .investorLinked(let i, _), .investorUnlinked(let i, _): return ("investor", i, "")
            case .tokenIssued(let t): return ("user", t.user, "")
            case .tokensRevoked(let u), .legacyToken(let u, _, _, _): return ("user", u, "")
            case .vehicleCreated(let v): return ("vehicle", v.id, "")
            case .subscriptionCreated(let s): return ("subscription", s.id, "")
            case .subscriptionStatus(let id, _): return ("subscription", id, "")
            case .sourceCreated(let s): return ("share_source", s.id, "")
            case .bankImported(let t): return ("bank_transaction", t.id, "")
            case .introducerCreated(let i): return ("introducer", i.id, "")
            case .introducerStatus(let id, _): return ("introducer", id, "")
            case .valuationSet(let v): return ("valuation", "\(v.vehicle)@\(v.asOf)", v.setBy ?? "")
            case .capitalCallCreated(let cc): return ("capital_call", cc.id, "")
            case .capitalCallIssued(let id, _): return ("capital_call", id, "")
            case .distributionCreated(let d, _): return ("distribution", d.id, "")
            }
        case .people(let d, let c):
            switch c {
            case .memberAdded(let m): return ("deal_membership", "\(d)/\(m.user)", m.invitedBy ?? "")
            case .memberRemoved(let u): return ("deal_membership", "\(d)/\(u)", "")
            case .inviteCreated(let i): return ("invite_link", i.id, i.createdBy ?? "")
            case .inviteAccepted(_, let u, _): return ("deal_membership", "\(d)/\(u)", u)
            case .inviteRevoked(let s): return ("invite_link", "\(d)#\(s)", "")
            case .commitmentCreated(let cm): return ("deal_commitment", cm.id, cm.createdBy ?? "")
            case .commitmentStatus(let s, _, let by, _): return ("deal_commitment", "\(d)#\(s)", by ?? "")
            case .approvalAssigned(let s, _), .approvalPriority(let s, _): return ("approval", "\(d)#\(s)", "")
            case .allocationDecided(let s, _, let by, _): return ("approval", "\(d)#\(s)", by ?? "")
            case .slaSet: return ("deal", d, "")
            }
        case .money(let d, let c):
            switch c {
            case .planCreated(let p): return ("fee_plan", p.id, "")
            case .componentAdded(let s, let comp): return ("fee_component", "\(d)#\(s)/\(comp.id)", "")
            case .termsSet(let i, _, _, let by): return ("investor_terms", "\(d)/\(i)", by ?? "")
            case .feesAccrued, .feeVoided, .dealExited: return ("fee_event", d, "")
            case .invoiceCreated(let i): return ("invoice", i.id, i.createdBy ?? "")
            case .invoiceSent(let s), .invoiceCancelled(let s): return ("invoice", "\(d)#\(s)", "")
            case .paymentRecorded(let p), .reconciled(let p): return ("payment", p.id, p.createdBy ?? "")
            case .paymentRefunded(let s): return ("payment", "\(d)#\(s)", "")
            case .termSheetIssued(let t): return ("term_sheet", t.id, t.createdBy ?? "")
            case .termSheetStatus(let s, _, let by): return ("term_sheet", "\(d)#\(s)", by ?? "")
            case .introductionCreated(let n): return ("introduction", n.id, n.createdBy ?? "")
            case .introductionStatus(let s, _, _): return ("introduction", "\(d)#\(s)", "")
            case .commissionsAccrued, .commissionCancelled: return ("introducer_commission", d, "")
            case .statementCreated(let i): return ("invoice", i.id, i.createdBy ?? "")
            case .statementPaid(let s, _, let by): return ("invoice", "\(d)#\(s)", by ?? "")
            }
        }
    }
}
