import AllocationEngine

/// `[CURSOR <c>] [COUNT <n>]` of every `*.LIST`, paged like Redis `SCAN`.
///
/// The cursor is kept as its decimal text and turned into numbers only in
/// synchronous code: on Linux, 128-bit integers captured by async closures or
/// passed through async frames are miscompiled (swiftlang/swift #89842,
/// #91204: wrong upper bits, crashes), so none may cross an `await`.
struct Paging: Sendable {
    /// The cursor as sent: decimal digits, "0" to start.
    var cursor = "0"
    var count = PeopleLimits.defaultPageCount

    /// Consumes `option` and its value when it is CURSOR or COUNT.
    mutating func take(_ option: String, _ a: inout Arguments) throws(CommandError) -> Bool {
        switch option.uppercased() {
        case "CURSOR":
            let v = try a.req("cursor")
            guard !v.isEmpty, v.utf8.count <= 39, v.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), UInt128(v) != nil else {
                throw CommandError("INVALID", "invalid cursor '\(v.prefix(32))': use 0 to start and then the cursor each page returns")
            }
            cursor = v
        case "COUNT":
            let v = try a.req("count")
            guard let n = Int(v), n >= 1, n <= PeopleLimits.maxPageCount else {
                throw CommandError("INVALID", "COUNT must be between 1 and \(PeopleLimits.maxPageCount), got '\(v.prefix(32))'")
            }
            count = n
        default: return false
        }
        return true
    }

    /// The cursor of a list inside one deal (a slot).
    func slotCursor() throws(CommandError) -> UInt64 {
        guard let v = UInt64(cursor), v <= UInt64(UInt32.max) else { throw CommandError("INVALID", "invalid cursor \(cursor) for this list") }
        return v
    }
}

/// Lists that walk deals, one actor at a time, each visited for at most one
/// page of work.
enum DealWalk {
    /// `APPROVAL.LIST`: oldest first. In one deal, its approvals in creation
    /// order (the cursor is a slot). Across deals, merged by (created_at,
    /// deal number, slot): every deal is asked for its next rows after the
    /// cursor's key, and only rows up to the lowest point every deal has been
    /// examined to are returned, so no older row can be missed; the cursor is
    /// the key of the last row returned: created_at × 2^64 + deal × 2^32 + slot + 1.
    static func approvals(_ c: CommandContext, deal: String?, filter: ApprovalFilter, paging: Paging) async -> DealReply {
        if let deal {
            guard let actor = c.engine.deal(deal) else { return .failure(EngineError(.notFound, "deal \(deal.prefix(128)) not found")) }
            let slot: UInt64
            do throws(CommandError) { slot = try paging.slotCursor() } catch { return .failure(EngineError(.invalid, error.message)) }
            return await actor.execute([.people(.listApprovals(filter, cursor: slot, count: paging.count))], as: c.principal).replies[0]
        }
        let after = ApprovalKey(cursor: paging.cursor)
        let now = c.engine.clock.nowMillis()
        let deals = c.engine.allDeals
        let budget = max(paging.count, PeopleLimits.maxPageScan / max(1, deals.count))
        var rows: [(key: ApprovalKey, fields: [Field])] = []
        var frontier: ApprovalKey?  // nil: every deal examined to its end
        for actor in deals {
            let indexes = c.engine.indexes
            let part = await actor.read { $0.approvals(after: after, filter: filter, count: paging.count, budget: budget, now: now, index: indexes) }
            if let error = part.error { return .failure(error) }
            rows += part.rows
            if let f = part.frontier { frontier = frontier.map { min($0, f) } ?? f }
        }
        rows.sort { $0.key < $1.key }
        if let frontier { rows = rows.filter { $0.key <= frontier } }
        let page = rows.prefix(paging.count)
        let next: String
        if page.count == paging.count, let last = page.last {
            next = last.key.cursor
        } else if let frontier {
            next = frontier.cursor
        } else {
            next = "0"
        }
        return .page(cursor: next, rows: page.map(\.fields))
    }

    /// A list of one deal, or walked across the deals in creation order.
    static func list(deal: String?, paging: Paging, _ request: @escaping @Sendable (UInt64, Int) -> DealRequest) throws(CommandError) -> Operation {
        if let deal { return .deal(request(try paging.slotCursor(), paging.count), .deal(deal)) }
        guard UInt64(paging.cursor) != nil else { throw CommandError("INVALID", "invalid cursor \(paging.cursor) for this list") }
        return .engine { [paging] c in
            await DealWalk.perDeal(c, paging: paging) { actor, slot, room in
                await actor.execute([request(slot, room)], as: c.principal).replies[0]
            }
        }
    }

    /// A per-deal list walked across deals in creation order: the cursor is
    /// `deal number × 2^32 + slot` (decimal text; 0 to start and at the end).
    /// Deals the principal does not see answer NOTFOUND and are skipped.
    static func perDeal(_ c: CommandContext, paging: Paging,
                        _ page: (DealActor, UInt64, Int) async -> DealReply) async -> DealReply {
        let cursor = UInt64(paging.cursor) ?? 0
        let startDeal = UInt32(truncatingIfNeeded: cursor >> 32)
        var slot = cursor & 0xFFFF_FFFF
        var rows: [[Field]] = []
        let deals = c.engine.allDeals.filter { $0.number >= startDeal }
        for (k, actor) in deals.enumerated() {
            if actor.number != startDeal { slot = 0 }
            let reply = await page(actor, slot, paging.count - rows.count)
            if case .page(let next, let got) = reply {
                rows += got
                if next != "0" { return .page(cursor: String(UInt64(actor.number) << 32 | (UInt64(next) ?? 0)), rows: rows) }
            } else if reply.error?.code != .notFound {
                return reply
            }
            // A full page, or a page's worth of deals looked at: go on at the next deal.
            if rows.count >= paging.count || k + 1 >= PeopleLimits.maxPageScan {
                return .page(cursor: k + 1 < deals.count ? String(UInt64(deals[k + 1].number) << 32) : "0", rows: rows)
            }
        }
        return .page(cursor: "0", rows: rows)
    }

    /// `DEAL.LIST`: the deals the principal sees, in creation order; the cursor
    /// is the number of the next deal to look at.
    static func deals(_ c: CommandContext, paging: Paging) async -> DealReply {
        let start = UInt32(paging.cursor) ?? UInt32.max
        let deals = c.engine.allDeals.filter { $0.number >= start }
        var rows: [[Field]] = []
        for (k, actor) in deals.enumerated() {
            let row: [Field]? = await actor.read { s in
                s.visible(to: c.principal) ? [Field("id", s.info.id), Field("name", s.info.name), Field("status", s.info.status.name)] : nil
            }
            if let row { rows.append(row) }
            // A full page, or a page's worth of deals looked at: go on from the next deal.
            if rows.count >= paging.count || k + 1 >= PeopleLimits.maxPageScan {
                return .page(cursor: k + 1 < deals.count ? String(deals[k + 1].number) : "0", rows: rows)
            }
        }
        return .page(cursor: "0", rows: rows)
    }
}
