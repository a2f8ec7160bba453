import WAL
import AllocationEngine

/// The investments side: vehicles' valuations (the NAV periodic performance
/// fees are charged against), positions per investor and vehicle, capital
/// calls, distributions and the cashflows they make. Changes are for
/// `staff_admin` and `staff_ops`; an investor user reads only its investors'
/// portfolio and cashflows.
enum PortfolioCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("PORTFOLIO", "PORTFOLIO <investor>", .read) { a throws(CommandError) in
            let investor = try a.id("investor"); try a.end()
            return .engine { c in
                guard c.principal.actsFor(investor) else { return .failure(EngineError(.noPermission, "user \(c.principal.user) does not act for investor \(investor.prefix(128))")) }
                return .page(cursor: "0", rows: await c.engine.portfolio(of: investor))
            }
        },
        CommandSpec("CAPITALCALL.CREATE", "CAPITALCALL.CREATE <vehicle> <call> <call pct> [DUE <yyyy-mm-dd>] [NAME <text>]", .administer) { a throws(CommandError) in
            let vehicle = try a.id("vehicle"), id = try a.id("call"), pctText = try a.req("call pct")
            let pct = try engine { () throws(EngineError) in try FixedPoint.parse(pctText, scale: 4, field: "call pct") }
            guard pct > 0 && pct <= 1_000_000 else { throw CommandError("INVALID", "call pct is a percent more than 0 and at most 100 (4 decimals), got '\(pctText.prefix(32))'") }
            var due: CivilDate?, name: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "DUE": due = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "DUE") }
                case "NAME": name = value
                default: throw a.unknownOption(option)
                }
            }
            let call = CapitalCall(id: id, vehicle: vehicle, name: name, pctRaw: Int64(pct), dueDate: due)
            return .engine { [call] c in await c.reply { () throws(EngineError) in try await c.engine.change(.capitalCallCreated(call)); return .ok } }
        },
        CommandSpec("CAPITALCALL.ISSUE", "CAPITALCALL.ISSUE <call>", .administer) { a throws(CommandError) in
            let id = try a.id("call"); try a.end()
            return .engine { c in
                await c.reply { () throws(EngineError) in
                    let today = CivilDate.of(unixMillis: c.engine.clock.nowMillis())
                    let count = Locked(0)
                    try await c.engine.change { d throws(EngineError) in
                        guard let call = d.portfolio.calls[id] else { throw EngineError(.notFound, "capital call \(id.prefix(128)) not found") }
                        guard !call.issued else { throw EngineError(.conflict, "capital call \(id) is issued already") }
                        // One call cashflow per active subscription of the vehicle: commitment × pct.
                        let flows = d.subscriptions.values.filter { $0.vehicle == call.vehicle && $0.status == .active }.sorted { $0.id < $1.id }.map {
                            CashFlow(investor: $0.investor, vehicle: call.vehicle, kind: .call, amount: CashFlowMath.call(commitment: $0.commitment, pctRaw: call.pctRaw),
                                     date: call.dueDate ?? today, ref: id)
                        }
                        count.withLock { $0 = flows.count }
                        return .capitalCallIssued(call: id, flows)
                    }
                    return .count(count.withLock { $0 })
                }
            }
        },
        CommandSpec("CAPITALCALL.GET", "CAPITALCALL.GET <call>", .staffRead) { a throws(CommandError) in
            let id = try a.id("call"); try a.end()
            return .engine { c in
                guard let f = c.engine.readDirectory({ $0.portfolio.callFields(id) }) else { return .failure(EngineError(.notFound, "capital call \(id.prefix(128)) not found")) }
                return .fields(f)
            }
        },
        CommandSpec("DISTRIBUTION.CREATE", "DISTRIBUTION.CREATE <vehicle> <distribution> <amount> [DATE <yyyy-mm-dd>] [NAME <text>] [CLASSIFICATION <text>]", .administer) { a throws(CommandError) in
            let vehicle = try a.id("vehicle"), id = try a.id("distribution"), amountText = try a.req("amount")
            _ = try engine { () throws(EngineError) in try Money.parse(amountText) }  // refused at parse time
            var day: CivilDate?, name: String?, classification: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "DATE": day = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "DATE") }
                case "NAME": name = value
                case "CLASSIFICATION": classification = value
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [day, name, classification] c in
                await c.reply { () throws(EngineError) in
                    // The holders now (units as text across the actor hops), split under the directory lock.
                    let holders = await c.engine.holders(of: vehicle)
                    let today = CivilDate.of(unixMillis: c.engine.clock.nowMillis())
                    let count = Locked(0)
                    try await c.engine.change { d throws(EngineError) in
                        guard d.vehicles[vehicle] != nil else { throw EngineError(.notFound, "vehicle \(vehicle.prefix(128)) not found") }
                        guard d.portfolio.distributions[id] == nil else { throw EngineError(.exists, "distribution \(id.prefix(128)) already exists") }
                        let amount = try Money.parse(amountText)
                        let dist = Distribution(id: id, vehicle: vehicle, name: name, amount: amount, date: day ?? today, classification: classification)
                        try DirectoryChange.distributionCreated(dist, []).validate()
                        guard !holders.isEmpty else { throw EngineError(.conflict, "no investor holds units in vehicle \(vehicle)") }
                        guard let split = CashFlowMath.split(amount, by: holders.map { ($0.0, Units(raw: Int128($0.1) ?? 0)) }) else {
                            throw EngineError(.limit, "the split of \(amount) is beyond exact computation within the engine's limits")
                        }
                        count.withLock { $0 = split.count }
                        return .distributionCreated(dist, split.map { CashFlow(investor: $0.0, vehicle: vehicle, kind: .distribution, amount: $0.1, date: dist.date, ref: id) })
                    }
                    return .count(count.withLock { $0 })
                }
            }
        },
        CommandSpec("DISTRIBUTION.GET", "DISTRIBUTION.GET <distribution>", .staffRead) { a throws(CommandError) in
            let id = try a.id("distribution"); try a.end()
            return .engine { c in
                guard let f = c.engine.readDirectory({ $0.portfolio.distributionFields(id) }) else { return .failure(EngineError(.notFound, "distribution \(id.prefix(128)) not found")) }
                return .fields(f)
            }
        },
        CommandSpec("CASHFLOW.LIST", "CASHFLOW.LIST <investor> [VEHICLE <vehicle>] [CURSOR <c>] [COUNT <n>]", .read) { a throws(CommandError) in
            let investor = try a.id("investor")
            var vehicle: String?
            var paging = Paging()
            while let option = a.next() {
                if try paging.take(option, &a) { continue }
                guard option.uppercased() == "VEHICLE" else { throw a.unknownOption(option) }
                vehicle = try a.id("vehicle")
            }
            let from = Int(try paging.slotCursor())
            return .engine { [vehicle, paging] c in
                guard c.principal.actsFor(investor) else { return .failure(EngineError(.noPermission, "user \(c.principal.user) does not act for investor \(investor.prefix(128))")) }
                return c.engine.readDirectory { d in
                    let slots = d.portfolio.cashflows(of: investor)
                    var rows: [[Field]] = []
                    var i = from
                    while i < slots.count && rows.count < paging.count {
                        let f = d.portfolio.cashflows[Int(slots[i])]
                        i += 1
                        if let vehicle, f.vehicle != vehicle { continue }
                        rows.append(d.portfolio.cashflowFields(slots[i - 1]))
                    }
                    return .page(cursor: i < slots.count ? String(i) : "0", rows: rows)
                }
            }
        },
        CommandSpec("VALUATION.SET", "VALUATION.SET <vehicle> <yyyy-mm-dd> <nav per unit> [NAV_TOTAL <money>]", .administer) { a throws(CommandError) in
            let vehicle = try a.id("vehicle"), dateText = try a.req("date"), navText = try a.req("nav per unit")
            let day = try engine { () throws(EngineError) in try CivilDate.parse(dateText, field: "date") }
            let nav = try engine { () throws(EngineError) in try Price.parse(navText, field: "NAV per unit") }
            var totalText: String?
            while let option = a.next() {
                guard option.uppercased() == "NAV_TOTAL" else { throw a.unknownOption(option) }
                let v = try a.req("nav total")
                _ = try engine { () throws(EngineError) in try Money.parse(v, field: "NAV_TOTAL") }
                totalText = v
            }
            return .engine { [totalText] c in
                await c.reply { () throws(EngineError) in
                    let user = c.principal.user
                    try await c.engine.change { _ throws(EngineError) in
                        // Money is parsed here, under the lock (no 128-bit value across an await; see Paging).
                        let total = try totalText.map { t throws(EngineError) in try Money.parse(t, field: "NAV_TOTAL") }
                        return .valuationSet(Valuation(vehicle: vehicle, asOf: day, navPerUnit: nav, navTotal: total, setBy: user))
                    }
                    return .ok
                }
            }
        },
        CommandSpec("VALUATION.LIST", "VALUATION.LIST <vehicle> [CURSOR <c>] [COUNT <n>]", .read) { a throws(CommandError) in
            let vehicle = try a.id("vehicle")
            var paging = Paging()
            while let option = a.next() {
                guard try paging.take(option, &a) else { throw a.unknownOption(option) }
            }
            let from = Int(try paging.slotCursor())
            return .engine { [paging] c in
                c.engine.readDirectory { d in
                    guard d.vehicles[vehicle] != nil else { return .failure(EngineError(.notFound, "vehicle \(vehicle.prefix(128)) not found")) }
                    let list = d.ledger.valuations[vehicle] ?? []
                    let end = min(list.count, from + paging.count)
                    let rows = from < end ? list[from..<end].map { d.ledger.valuationFields($0) } : []
                    return .page(cursor: end < list.count ? String(end) : "0", rows: rows)
                }
            }
        },
    ]
}
