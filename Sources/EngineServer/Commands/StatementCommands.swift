import AllocationEngine

/// The read models: a deal's summary, an investor's and an introducer's
/// statements. Each visits the one deal, or the deals the investor or
/// introducer has rows in (never every deal), and follows the access rules:
/// an investor user reads only its investors' statements, an introducer's
/// login only that introducer's.
enum StatementCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("DEAL.SUMMARY", "DEAL.SUMMARY <deal>", .read) { a throws(CommandError) in
            let deal = try a.id("deal"); try a.end()
            return .deal(.statement(.summary), .deal(deal))
        },
        CommandSpec("INVESTOR.STATEMENT", "INVESTOR.STATEMENT <investor> [DEAL <deal>] [PART holds|allocations|positions|fees|invoices|payments|cashflows] [CURSOR <c>] [COUNT <n>]", .read) { a throws(CommandError) in
            let investor = try a.id("investor")
            var deal: String?
            var part: StatementPart?
            var paging = Paging()
            while let option = a.next() {
                if try paging.take(option, &a) { continue }
                let value = try a.req(option)
                switch option.uppercased() {
                case "DEAL": deal = try Arguments.checkID(value, "deal")
                case "PART":
                    guard let p = StatementPart(rawValue: value.lowercased()) else {
                        throw CommandError("INVALID", "PART is one of \(StatementPart.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value.prefix(32))'")
                    }
                    part = p
                default: throw a.unknownOption(option)
                }
            }
            guard UInt64(paging.cursor) != nil else { throw CommandError("INVALID", "invalid cursor \(paging.cursor) for this list") }
            return .engine { [deal, part, paging] c in
                guard c.principal.actsFor(investor) else {
                    return .failure(EngineError(.noPermission, "user \(c.principal.user) does not act for investor \(investor.prefix(128))"))
                }
                let actors: [DealActor]
                if let deal {
                    guard let actor = c.engine.deal(deal) else { return .failure(EngineError(.notFound, "deal \(deal.prefix(128)) not found")) }
                    actors = [actor]
                } else {
                    actors = c.engine.indexes.holdings.deals(of: investor).compactMap { c.engine.deal(number: $0) }
                }
                switch part {
                case .cashflows?:
                    let from = Int(paging.cursor) ?? 0
                    return c.engine.readDirectory { d in
                        let slots = d.portfolio.cashflows(of: investor)
                        let end = min(slots.count, from + paging.count)
                        let rows = from < end ? slots[from..<end].map { d.portfolio.cashflowFields($0) } : []
                        return .page(cursor: end < slots.count ? String(end) : "0", rows: rows)
                    }
                case let part?:
                    return await walk(actors, paging: paging) { actor, slot, room in
                        await actor.execute([.statement(.investor(investor, part: part, cursor: slot, count: room))], as: c.principal).replies[0]
                    }
                case nil:
                    var rows: [[Field]] = []
                    for actor in actors {
                        let reply = await actor.execute([.statement(.investor(investor, part: nil, cursor: 0, count: 0))], as: c.principal).replies[0]
                        if case .fields(let f) = reply { rows.append(f) } else if let e = reply.error, e.code != .notFound { return reply }
                    }
                    let flows = c.engine.readDirectory { d in d.portfolio.cashflows(of: investor).map { d.portfolio.cashflows[Int($0)] } }
                    return .fields(Totals.investor(investor, deals: rows, cashflows: flows))
                }
            }
        },
        CommandSpec("INTRODUCER.STATEMENT", "INTRODUCER.STATEMENT <introducer>", .read) { a throws(CommandError) in
            let introducer = try a.id("introducer"); try a.end()
            return .engine { c in
                guard c.principal.isStaff || c.principal.introducers.contains(introducer),
                      c.engine.readDirectory({ $0.ledger.introducers[introducer] != nil }) else {
                    return .failure(EngineError(.notFound, "introducer \(introducer.prefix(128)) not found"))
                }
                var rows: [[Field]] = []
                for number in c.engine.indexes.holdings.deals(ofIntroducer: introducer) {
                    guard let actor = c.engine.deal(number: number) else { continue }
                    let reply = await actor.execute([.statement(.introducer(introducer))], as: c.principal).replies[0]
                    if case .fields(let f) = reply { rows.append(f) } else { return reply }
                }
                return .fields(Totals.introducer(introducer, deals: rows))
            }
        },
    ]

    /// A paged walk over a given list of deals: the cursor is `deal number × 2^32 + slot`.
    static func walk(_ actors: [DealActor], paging: Paging, _ page: (DealActor, UInt64, Int) async -> DealReply) async -> DealReply {
        let cursor = UInt64(paging.cursor) ?? 0
        let startDeal = UInt32(truncatingIfNeeded: cursor >> 32)
        var slot = cursor & 0xFFFF_FFFF
        var rows: [[Field]] = []
        let list = actors.filter { $0.number >= startDeal }
        for (k, actor) in list.enumerated() {
            if actor.number != startDeal { slot = 0 }
            let reply = await page(actor, slot, paging.count - rows.count)
            guard case .page(let next, let got) = reply else { return reply }
            rows += got
            if next != "0" { return .page(cursor: String(UInt64(actor.number) << 32 | (UInt64(next) ?? 0)), rows: rows) }
            if rows.count >= paging.count {
                return .page(cursor: k + 1 < list.count ? String(UInt64(list[k + 1].number) << 32) : "0", rows: rows)
            }
        }
        return .page(cursor: "0", rows: rows)
    }
}

/// Sums of the per-deal parts, in synchronous code (figures parsed from their text).
enum Totals {
    static func sum(_ rows: [[Field]], _ name: String, scale: Int) -> Int128 {
        rows.reduce(Int128(0)) { acc, r in acc + ((r[name]).flatMap { try? FixedPoint.parse($0, scale: scale, field: name) } ?? 0) }
    }

    static func investor(_ investor: String, deals rows: [[Field]], cashflows: [CashFlow]) -> [Field] {
        let currencies = Set(rows.compactMap { $0["currency"] }).sorted()
        // Money is summed per currency; units over every deal.
        let byCurrency = currencies.map { cur -> [String] in
            let part = rows.filter { $0["currency"] == cur }
            return [cur] + ["cost_basis_exact", "fees_accrued", "fees_invoiced", "invoiced", "paid", "outstanding"].map { name in
                name == "cost_basis_exact" ? ExactAmount(raw: sum(part, name, scale: ExactAmount.scale)).roundedToMoney.description
                    : Money(raw: sum(part, name, scale: 2)).description
            }
        }
        let calls = cashflows.filter { $0.kind == .call }.reduce(Int128(0)) { $0 + $1.amount.raw }
        let dists = cashflows.filter { $0.kind == .distribution }.reduce(Int128(0)) { $0 + $1.amount.raw }
        return [
            Field("investor", investor), Field("deals", String(rows.count)),
            Field("holds_pending", String(rows.reduce(0) { $0 + (Int($1["holds_pending"] ?? "0") ?? 0) })),
            Field("units_held", Units(raw: sum(rows, "units_held", scale: 8)).description),
            Field("units_pending_review", Units(raw: sum(rows, "units_pending_review", scale: 8)).description),
            Field("units_allocated", Units(raw: sum(rows, "units_allocated", scale: 8)).description),
            Field("money", table: byCurrency),
            Field("cashflows", String(cashflows.count)), Field("called", Money(raw: calls).description), Field("distributed", Money(raw: dists).description),
            Field("per_deal", table: rows.map { r in
                ["deal", "currency", "units_allocated", "cost_basis", "fees_accrued", "fees_invoiced", "invoiced", "paid", "outstanding"].map { r[$0] ?? "" }
            }),
        ]
    }

    static func introducer(_ introducer: String, deals rows: [[Field]]) -> [Field] {
        var f = [Field("introducer", introducer), Field("deals", String(rows.count))]
        for s in IntroductionStatus.allCases {
            let n = rows.reduce(0) { $0 + (Int($1["introductions_\(s.name)"] ?? "0") ?? 0) }
            f.append(Field("introductions_\(s.name)", String(n)))
        }
        let currencies = Set(rows.compactMap { $0["currency"] }).sorted()
        // Per currency: [currency, accrued, invoiced, paid, cancelled] (count and amount each).
        f.append(Field("commissions", table: currencies.map { cur in
            let part = rows.filter { $0["currency"] == cur }
            return [cur] + CommissionStatus.allCases.flatMap { s in
                [String(part.reduce(0) { $0 + (Int($1["commissions_\(s.name)"] ?? "0") ?? 0) }),
                 Money(raw: sum(part, "commissions_\(s.name)_amount", scale: 2)).description]
            }
        }))
        f.append(Field("per_deal", table: rows.map { r in
            ["deal", "currency"].map { r[$0] ?? "" } + CommissionStatus.allCases.map { r["commissions_\($0.name)_amount"] ?? "" }
        }))
        return f
    }
}

private extension Array where Element == Field {
    subscript(name: String) -> String? { first { $0.name == name }?.value }
}
