/// Row-level access for users who act for particular investors (the seed's
/// `user_linked_to_investor`): they see and change only their investors' holds,
/// allocations and positions. Deal-wide reads (deal, lots, inventory) are open.
extension DealState {
    func refusal(of request: DealRequest, actingFor scope: Set<String>, index: EngineIndexes) -> EngineError? {
        func investor(ofHold id: String) -> String? {
            (try? holdSlot(id, index: index)).map { investors[Int(holds[Int($0)].investor)] }
        }
        func investor(ofAllocation id: String) -> String? {
            (try? allocationSlot(id, index: index)).map { investors[Int(allocations[Int($0)].investor)] }
        }
        let owner: String?
        switch request {
        case .hold(let r): owner = r.investor
        case .position(let inv): owner = inv
        case .release(let h), .allocate(let h, _), .getHold(let h): owner = investor(ofHold: h)
        case .getAllocation(let a), .approve(let a), .reject(let a), .settle(let a): owner = investor(ofAllocation: a)
        case .getDeal, .getLot, .inventory: return nil
        case .setStatus, .addLot, .resizeLot:
            return EngineError(.noPermission, "this user may not change deals or lots")
        }
        // Unknown rows fall through to the request itself, which answers NOTFOUND.
        guard let owner else { return nil }
        return scope.contains(owner) ? nil : EngineError(.noPermission, "this user does not act for investor \(owner)")
    }
}
