import AllocationEngine

/// `[CURSOR <c>] [COUNT <n>]` of every `*.LIST`, paged like Redis `SCAN`.
struct Paging: Sendable {
    var cursor: UInt64 = 0
    var count = PeopleLimits.defaultPageCount

    /// Consumes `option` and its value when it is CURSOR or COUNT.
    mutating func take(_ option: String, _ a: inout Arguments) throws(CommandError) -> Bool {
        switch option.uppercased() {
        case "CURSOR":
            let v = try a.req("cursor")
            guard let c = UInt64(v) else { throw CommandError("INVALID", "invalid cursor '\(v.prefix(32))': use 0 to start and then the cursor each page returns") }
            cursor = c
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
}

/// Lists that walk deals: by deal number (creation order), one actor at a
/// time, each visited for at most one page. The cursor of an engine-wide walk
/// is `deal number << 32 | slot in that deal` (0: start, and end).
enum DealWalk {
    static func approvals(_ c: CommandContext, deal: String?, filter: ApprovalFilter, paging: Paging) async -> DealReply {
        if let deal {
            guard let actor = c.engine.deal(deal) else { return .failure(EngineError(.notFound, "deal \(deal.prefix(128)) not found")) }
            return await actor.execute([.people(.listApprovals(filter, cursor: paging.cursor, count: paging.count))], as: c.principal).replies[0]
        }
        return await walk(c, paging: paging) { actor, slot, room in
            await actor.execute([.people(.listApprovals(filter, cursor: slot, count: room))], as: c.principal).replies[0]
        }
    }

    /// Deals the principal sees, with status: `DEAL.LIST`.
    static func deals(_ c: CommandContext, paging: Paging) async -> DealReply {
        await walk(c, paging: paging) { actor, _, _ in
            let row: [Field]? = await actor.read { s in
                s.visible(to: c.principal) ? [Field("id", s.info.id), Field("name", s.info.name), Field("status", s.info.status.name)] : nil
            }
            return .page(cursor: 0, rows: row.map { [$0] } ?? [])
        }
    }

    /// Walks deals from the cursor, asking `page` for up to `room` rows of one
    /// deal from a slot; a deal that answers a non-zero cursor stops the walk there.
    static func walk(_ c: CommandContext, paging: Paging,
                     _ page: (DealActor, UInt64, Int) async -> DealReply) async -> DealReply {
        let startDeal = UInt32(truncatingIfNeeded: paging.cursor >> 32)
        var slot = paging.cursor & 0xFFFF_FFFF
        var rows: [[Field]] = []
        var visited = 0
        let deals = c.engine.allDeals.filter { $0.number >= startDeal }
        for (k, actor) in deals.enumerated() {
            if actor.number != startDeal { slot = 0 }
            let reply = await page(actor, slot, paging.count - rows.count)
            guard case .page(let next, let got) = reply else { return reply }
            rows += got
            visited += 1
            if next != 0 { return .page(cursor: UInt64(actor.number) << 32 | next, rows: rows) }
            // Full page, or enough deals visited for one call: continue at the next deal.
            if rows.count >= paging.count || visited >= PeopleLimits.maxPageScan {
                guard k + 1 < deals.count else { return .page(cursor: 0, rows: rows) }
                return .page(cursor: UInt64(deals[k + 1].number) << 32, rows: rows)
            }
        }
        return .page(cursor: 0, rows: rows)
    }
}
