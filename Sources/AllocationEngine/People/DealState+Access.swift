/// The access rules inside the deal actor, answered from the deal's own rows
/// (its memberships) and the principal the handler resolved (its investor
/// links and their KYC): no other actor is asked. Staff pass every check but
/// the KYC gate of a deal created with `KYC required`.
extension DealState {
    func refusal(of request: DealRequest, as principal: Principal?, context: EngineContext) -> EngineError? {
        if let p = principal, !p.isStaff, let refusal = memberRefusal(of: request, p, context: context) { return refusal }
        // The KYC gate of a deal that requires it: by anyone, a registered
        // investor with KYC approved (one lookup in the directory).
        if info.kycRequired, let investor = Self.newClaimInvestor(request) {
            let status = principal?.investors[investor] ?? context.directory.withLock { $0.kyc(investor) }
            guard let status else { return EngineError(.noPermission, "deal \(info.id) requires KYC: investor \(investor) is not registered") }
            guard status == .approved else { return EngineError(.noPermission, "KYC \(status.rawValue) for investor \(investor)") }
        }
        return nil
    }

    /// The rules for a user who is not staff: membership, its deal role, its
    /// investor links and their KYC.
    private func memberRefusal(of request: DealRequest, _ p: Principal, context: EngineContext) -> EngineError? {
        if case .people(.acceptInvite) = request { return nil }
        switch request {
        case .money(.getIntroduction), .money(.listIntroductions), .money(.listCommissions), .statement(.introducer):
            // An introducer's login reads its own rows, member or not (filtered inside).
            return nil
        case .statement(.investor(let investor, _, _, _)):
            // Its own investors' statements, member or not (a former member keeps its history).
            return p.investors[investor] != nil ? nil : EngineError(.noPermission, "user \(p.user) does not act for investor \(investor.prefix(128))")
        default: break
        }
        guard let member = people.member(p.user) else {
            // Other deals are hidden from reads; a change says why it is refused.
            return request.isChange ? EngineError(.noPermission, "not a member of deal \(info.id)") : hiddenNotFound(request)
        }
        switch request {
        case .getDeal, .getLot, .inventory, .people(.listMembers), .money(.getPlan): return nil
        case .statement(.summary): return nil  // scoped to the user's investors inside
        case .money(.listFees), .money(.listInvoices): return nil  // filtered to the user's investors inside
        case .people(.getApproval), .people(.listApprovals), .people(.getInvite):
            // Staff reads (the handler refuses them by role too; this keeps in-process callers to the same rule).
            return EngineError(.noPermission, "user \(p.user) (\(p.role.rawValue)) may not read approvals or invite links")
        case .people(.getMember(let user)):
            return user == p.user ? nil : EngineError(.noPermission, "user \(p.user) may read only its own membership of deal \(info.id)")
        default: break
        }
        // Rows of investors: only those the user is linked to.
        let owner = self.owner(of: request, index: context.indexes)
        if request.isChange {
            guard Self.isHoldingChange(request) else {
                return EngineError(.noPermission, "user \(p.user) (\(p.role.rawValue)) may not run this command")
            }
            guard member.role.holds else {
                return EngineError(.noPermission, "role \(member.role.rawValue) in deal \(info.id) reads only; holds and commitments need investor or co_investor")
            }
            // Unknown rows fall through to the request itself, which answers NOTFOUND.
            guard let owner else { return nil }
            guard let kyc = p.investors[owner] else { return EngineError(.noPermission, "user \(p.user) does not act for investor \(owner)") }
            guard kyc == .approved else { return EngineError(.noPermission, "KYC \(kyc.rawValue) for investor \(owner)") }
            return nil
        }
        guard let owner else { return nil }
        return p.investors[owner] != nil ? nil : EngineError(.noPermission, "user \(p.user) does not act for investor \(owner)")
    }

    /// The investor a request places a new claim for (a hold or a commitment).
    static func newClaimInvestor(_ request: DealRequest) -> String? {
        switch request {
        case .hold(let r): r.investor
        case .people(.commit(let investor, _, _, _)): investor
        default: nil
        }
    }

    /// The changes a member with a holding role may make for its investors.
    static func isHoldingChange(_ request: DealRequest) -> Bool {
        switch request {
        case .hold, .release, .allocate, .people(.commit), .people(.commitStatus(_, .cancelled)): true
        default: false
        }
    }

    /// The investor whose row a request reads or changes; nil when it names no
    /// investor's row or the row does not exist.
    func owner(of request: DealRequest, index: EngineIndexes) -> String? {
        func investor(ofHold id: String) -> String? {
            (try? holdSlot(id, index: index)).flatMap { try? holdRow($0, index: index) }.map(\.investor)
        }
        func investor(ofAllocation id: String) -> String? {
            (try? allocationSlot(id, index: index)).flatMap { try? allocationRow($0, index: index) }.map(\.investor)
        }
        switch request {
        case .hold(let r): return r.investor
        case .position(let inv): return inv
        case .release(let h), .allocate(let h, _), .getHold(let h): return investor(ofHold: h)
        case .getAllocation(let a), .approve(let a), .reject(let a), .settle(let a): return investor(ofAllocation: a)
        case .people(.commit(let investor, _, _, _)): return investor
        case .money(.getTerms(let investor)), .money(.termsHistory(let investor)): return investor
        case .money(.getTermSheet(let id)):
            return (try? termSheetSlot(id)).map { money.termSheets[Int($0)].investor }
        case .money(.getInvoice(let id)):
            return (try? invoiceSlot(id, index: index)).map { money.invoices[Int($0)].investor }
        case .money(.getPayment(let id)):
            return (try? paymentSlot(id, index: index)).map { money.invoices[Int(money.payments[Int($0)].invoice)].investor }
        case .people(.commitStatus(let id, _)), .people(.getCommitment(let id)):
            return (try? commitmentSlot(id, index: index)).map { people.commitments[Int($0)].investor }
        default: return nil
        }
    }

    /// What a read of a deal the user does not see answers: the same as for a
    /// row that does not exist, naming only what the user sent.
    func hiddenNotFound(_ request: DealRequest) -> EngineError {
        func clip(_ s: String) -> String { s.utf8.count <= 128 ? s : String(s.prefix(128)) + "..." }
        switch request {
        case .getHold(let h): return EngineError(.notFound, "hold \(clip(h)) not found")
        case .getAllocation(let a): return EngineError(.notFound, "allocation \(clip(a)) not found")
        case .getLot(let l): return EngineError(.notFound, "lot \(clip(l)) not found")
        case .people(.getCommitment(let c)): return EngineError(.notFound, "commitment \(clip(c)) not found")
        default: return EngineError(.notFound, "deal \(info.id) not found")
        }
    }
}
