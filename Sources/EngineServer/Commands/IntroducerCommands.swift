import AllocationEngine

/// Introducers, their introductions to deals and the commissions those earn
/// (`introducers`, `introductions`, `introducer_commissions`). Changes are for
/// `staff_admin` and `staff_ops`; an introducer's login reads only its own
/// introductions and commissions.
enum IntroducerCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("INTRODUCER.CREATE", "INTRODUCER.CREATE <introducer> <legal name> [COMMISSION_BPS <n>] [USER <user>] [STATUS active|inactive]", .administer) { a throws(CommandError) in
            var i = Introducer(id: try a.id("introducer"), legalName: try a.req("legal name"), commissionBps: nil, user: nil, active: true)
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "COMMISSION_BPS": i.commissionBps = try MoneyCommands.bps(value, "COMMISSION_BPS")
                case "USER": i.user = try Arguments.checkID(value, "user")
                case "STATUS": i.active = try active(value)
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [i] c in
                await c.reply { () throws(EngineError) in
                    try await c.engine.change { d throws(EngineError) in
                        if let existing = d.ledger.introducers[i.id] {
                            var same = existing
                            same.createdAt = 0
                            guard same == i else { throw EngineError(.exists, "introducer \(i.id) already exists") }
                            return nil  // a retry
                        }
                        return .introducerCreated(i)
                    }
                    return .ok
                }
            }
        },
        CommandSpec("INTRODUCER.STATUS", "INTRODUCER.STATUS <introducer> active|inactive", .administer) { a throws(CommandError) in
            let id = try a.id("introducer"), isActive = try active(try a.req("status")); try a.end()
            return .engine { c in
                await c.reply { () throws(EngineError) in
                    try await c.engine.change { d throws(EngineError) in
                        guard let i = d.ledger.introducers[id] else { throw EngineError(.notFound, "introducer \(id.prefix(128)) not found") }
                        return i.active == isActive ? nil : .introducerStatus(id: id, active: isActive)
                    }
                    return .ok
                }
            }
        },
        CommandSpec("INTRODUCER.GET", "INTRODUCER.GET <introducer>", .read) { a throws(CommandError) in
            let id = try a.id("introducer"); try a.end()
            return .engine { c in
                guard c.principal.isStaff || c.principal.introducers.contains(id), let f = c.engine.readDirectory({ $0.ledger.introducerFields(id) }) else {
                    return .failure(EngineError(.notFound, "introducer \(id.prefix(128)) not found"))
                }
                return .fields(f)
            }
        },
        CommandSpec("INTRODUCTION.CREATE", "INTRODUCTION.CREATE <introducer> <deal> INVESTOR <investor> | EMAIL <email> [RATE_BPS <n>] [BASIS invested_amount|spread|management_fee|performance_fee] [ID <id>]", .administer) { a throws(CommandError) in
            let introducer = try a.id("introducer"), deal = try a.id("deal")
            var investor: String?, email: String?, rate: Int32?, id: String?
            var basis = CommissionBasis.investedAmount
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "INVESTOR": investor = try Arguments.checkID(value, "investor")
                case "EMAIL": email = value
                case "RATE_BPS": rate = try MoneyCommands.bps(value, "RATE_BPS")
                case "BASIS":
                    guard let b = CommissionBasis(rawValue: value.lowercased()) else {
                        throw CommandError("INVALID", "BASIS is one of \(CommissionBasis.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value.prefix(32))'")
                    }
                    basis = b
                case "ID": id = try Arguments.checkID(value, "id")
                default: throw a.unknownOption(option)
                }
            }
            guard (investor == nil) != (email == nil) else { throw CommandError("INVALID", "name the prospect with INVESTOR <investor> or EMAIL <email>, one of them") }
            return .deal(.money(.createIntroduction(introducer: introducer, investor: investor, email: email, rateBps: rate, basis: basis, id: id)), .deal(deal))
        },
        CommandSpec("INTRODUCTION.LOST", "INTRODUCTION.LOST <introduction>", .administer) { a throws(CommandError) in
            let id = try a.id("introduction"); try a.end()
            return .deal(.money(.loseIntroduction(id)), .row(.introduction, id))
        },
        CommandSpec("INTRODUCTION.GET", "INTRODUCTION.GET <introduction>", .read) { a throws(CommandError) in
            let id = try a.id("introduction"); try a.end()
            return .deal(.money(.getIntroduction(id)), .row(.introduction, id))
        },
        CommandSpec("INTRODUCTION.LIST", "INTRODUCTION.LIST [DEAL <deal>] [INTRODUCER <introducer>] [CURSOR <c>] [COUNT <n>]", .read) { a throws(CommandError) in
            var paging = Paging()
            let o = try a.keyedOptions(["DEAL", "INTRODUCER"], paging: &paging)
            let introducer = o["INTRODUCER"]
            return try DealWalk.list(deal: o["DEAL"], paging: paging) { slot, room in .money(.listIntroductions(introducer: introducer, cursor: slot, count: room)) }
        },
        CommandSpec("COMMISSION.LIST", "COMMISSION.LIST [INTRODUCER <introducer>] [DEAL <deal>] [STATUS accrued|invoiced|paid|cancelled] [CURSOR <c>] [COUNT <n>]", .read) { a throws(CommandError) in
            var paging = Paging()
            let o = try a.keyedOptions(["DEAL", "INTRODUCER", "STATUS"], paging: &paging)
            let introducer = o["INTRODUCER"]
            var status: CommissionStatus?
            if let v = o["STATUS"] {
                guard let s = CommissionStatus(name: v.lowercased()) else {
                    throw CommandError("INVALID", "commission STATUS is accrued, invoiced, paid or cancelled, got '\(v.prefix(32))'")
                }
                status = s
            }
            return try DealWalk.list(deal: o["DEAL"], paging: paging) { [status] slot, room in .money(.listCommissions(introducer: introducer, status: status, cursor: slot, count: room)) }
        },
        CommandSpec("COMMISSION.INVOICE", "COMMISSION.INVOICE <introducer> [DEAL <deal>]", .administer) { a throws(CommandError) in
            let introducer = try a.id("introducer")
            var deal: String?
            while let option = a.next() {
                guard option.uppercased() == "DEAL" else { throw a.unknownOption(option) }
                deal = try a.id("deal")
            }
            if let deal { return .deal(.money(.invoiceCommissions(introducer: introducer)), .deal(deal)) }
            // A statement is of one deal (its books, its currency): without DEAL, one per deal, ids in deal order.
            return .engine { c in
                var ids: [String] = []
                for actor in c.engine.allDeals {
                    let reply = await c.engine.submit([.money(.invoiceCommissions(introducer: introducer))], to: actor, as: c.principal)[0]
                    switch reply {
                    case .id(let id): ids.append(id)
                    case .failure(let e) where e.code == .conflict: continue  // nothing accrued there
                    default: return reply
                    }
                }
                guard !ids.isEmpty else { return .failure(EngineError(.conflict, "introducer \(introducer.prefix(128)) has no accrued commissions")) }
                return .values(ids)
            }
        },
        CommandSpec("COMMISSION.PAY", "COMMISSION.PAY <statement> [PAID_AT <unix s>]", .administer) { a throws(CommandError) in
            let id = try a.id("statement")
            var paidAt: Int64?
            while let option = a.next() {
                guard option.uppercased() == "PAID_AT" else { throw a.unknownOption(option) }
                paidAt = try unixSeconds(try a.req("paid at"), "PAID_AT")
            }
            return .deal(.money(.payStatement(id, paidAt: paidAt)), .row(.invoice, id))
        },
        CommandSpec("COMMISSION.CANCEL", "COMMISSION.CANCEL <commission>", .administer) { a throws(CommandError) in
            let id = try a.id("commission"); try a.end()
            return .deal(.money(.cancelCommission(id)), .row(.commission, id))
        },
    ]

    static func active(_ text: String) throws(CommandError) -> Bool {
        switch text.lowercased() {
        case "active": return true
        case "inactive": return false
        default: throw CommandError("INVALID", "STATUS is active or inactive, got '\(text.prefix(32))'")
        }
    }

}
