import AllocationEngine

/// Fee plans and their components, investor terms, fee events. Money changes
/// are for `staff_admin` and `staff_ops` (administer); an investor user reads
/// only its investors' terms and fees.
enum MoneyCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("FEEPLAN.CREATE", "FEEPLAN.CREATE <deal> <plan> <name> [DEFAULT] [DESCRIPTION <text>]", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), plan = try a.id("plan"), name = try a.req("name")
            var isDefault = false
            var description: String?
            while let option = a.next() {
                switch option.uppercased() {
                case "DEFAULT": isDefault = true
                case "DESCRIPTION": description = try a.req("description")
                default: throw a.unknownOption(option)
                }
            }
            return .deal(.money(.createPlan(id: plan, name: name, description: description, isDefault: isDefault)), .deal(deal))
        },
        CommandSpec("FEEPLAN.ADD", "FEEPLAN.ADD <plan> <component> <kind> <method> [RATE_BPS <n>] [AMOUNT <money or price>] [FREQUENCY <f>] [HURDLE_BPS <n>] [HWM]", .administer) { a throws(CommandError) in
            let plan = try a.id("plan"), id = try a.id("component"), kindText = try a.req("kind"), methodText = try a.req("method")
            guard let kind = FeeKind(rawValue: kindText.lowercased()) else {
                throw CommandError("INVALID", "unknown fee kind '\(kindText.prefix(32))': one of \(FeeKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let method = FeeMethod(rawValue: methodText.lowercased()) else {
                throw CommandError("INVALID", "unknown fee method '\(methodText.prefix(32))': one of \(FeeMethod.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var c = FeeComponent(id: id, kind: kind, method: method)
            var amountText: String?
            while let option = a.next() {
                switch option.uppercased() {
                case "RATE_BPS": c.rateBps = try bps(try a.req("rate"), "RATE_BPS")
                case "HURDLE_BPS": c.hurdleBps = try bps(try a.req("hurdle"), "HURDLE_BPS")
                case "AMOUNT": amountText = try a.req("amount")
                case "FREQUENCY":
                    let v = try a.req("frequency")
                    guard let f = FeeFrequency(rawValue: v.lowercased()) else {
                        throw CommandError("INVALID", "unknown FREQUENCY '\(v.prefix(32))': one of \(FeeFrequency.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    c.frequency = f
                case "HWM": c.highWaterMark = true
                default: throw a.unknownOption(option)
                }
            }
            // AMOUNT is money for a fixed fee and a price per unit for a spread.
            if let amountText {
                if method == .perUnitSpread {
                    c.perUnit = try engine { () throws(EngineError) in try Price.parse(amountText, field: "AMOUNT") }
                } else {
                    c.flatAmount = try engine { () throws(EngineError) in try Money.parse(amountText, field: "AMOUNT") }
                }
            }
            return .deal(.money(.addComponent(plan: plan, c)), .row(.feePlan, plan))
        },
        CommandSpec("FEEPLAN.GET", "FEEPLAN.GET <plan>", .read) { a throws(CommandError) in
            let plan = try a.id("plan"); try a.end()
            return .deal(.money(.getPlan(plan)), .row(.feePlan, plan))
        },
        CommandSpec("TERMS.SET", "TERMS.SET <deal> <investor> <plan> [OVERRIDES <text>]", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), investor = try a.id("investor"), plan = try a.id("plan")
            var overrides: String?
            while let option = a.next() {
                guard option.uppercased() == "OVERRIDES" else { throw a.unknownOption(option) }
                overrides = try a.req("overrides")
            }
            return .deal(.money(.setTerms(investor: investor, plan: plan, overrides: overrides)), .deal(deal))
        },
        CommandSpec("TERMS.GET", "TERMS.GET <deal> <investor>", .read) { a throws(CommandError) in
            let deal = try a.id("deal"), investor = try a.id("investor"); try a.end()
            return .deal(.money(.getTerms(investor: investor)), .deal(deal))
        },
        CommandSpec("TERMS.HISTORY", "TERMS.HISTORY <deal> <investor>", .read) { a throws(CommandError) in
            let deal = try a.id("deal"), investor = try a.id("investor"); try a.end()
            return .deal(.money(.termsHistory(investor: investor)), .deal(deal))
        },
        CommandSpec("FEES.COMPUTE", "FEES.COMPUTE <deal> [INVESTOR <investor>] [AS_OF <yyyy-mm-dd>]", .administer) { a throws(CommandError) in
            let deal = try a.id("deal")
            var investor: String?
            var asOf: CivilDate?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "INVESTOR": investor = try Arguments.checkID(value, "investor")
                case "AS_OF": asOf = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "AS_OF") }
                default: throw a.unknownOption(option)
                }
            }
            return .deal(.money(.computeFees(investor: investor, asOf: asOf)), .deal(deal))
        },
        CommandSpec("FEE.VOID", "FEE.VOID <event>", .administer) { a throws(CommandError) in
            let id = try a.id("event"); try a.end()
            return .deal(.money(.voidFee(id)), .row(.feeEvent, id))
        },
        CommandSpec("FEES.LIST", "FEES.LIST <deal> [INVESTOR <investor>] [STATUS accrued|invoiced|voided] [CURSOR <c>] [COUNT <n>]", .read) { a throws(CommandError) in
            let deal = try a.id("deal")
            let (investor, status, paging) = try listOptions(&a) { v throws(CommandError) in
                guard let s = FeeEventStatus(name: v) else { throw CommandError("INVALID", "fee STATUS is accrued, invoiced or voided, got '\(v.prefix(32))'") }
                return s
            }
            return .deal(.money(.listFees(investor: investor, status: status, cursor: try paging.slotCursor(), count: paging.count)), .deal(deal))
        },
        CommandSpec("DEAL.EXIT", "DEAL.EXIT <deal> <price per unit> [ON <yyyy-mm-dd>]", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), priceText = try a.req("price")
            let price = try engine { () throws(EngineError) in try Price.parse(priceText, field: "exit price") }
            var on: CivilDate?
            while let option = a.next() {
                guard option.uppercased() == "ON" else { throw a.unknownOption(option) }
                let v = try a.req("date")
                on = try engine { () throws(EngineError) in try CivilDate.parse(v, field: "ON") }
            }
            return .deal(.money(.exit(price: price, on: on)), .deal(deal))
        },
        CommandSpec("TERMSHEET.ISSUE", "TERMSHEET.ISSUE <deal> <investor> <price per unit> [PLAN <plan>] [VALID_UNTIL <unix s>] [CURRENCY <code>] [DOC <document ref>]", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), investor = try a.id("investor"), priceText = try a.req("price")
            let price = try engine { () throws(EngineError) in try Price.parse(priceText, field: "price per unit") }
            var plan: String?, until: Int64?, currency: String?, doc: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "PLAN": plan = try Arguments.checkID(value, "plan")
                case "VALID_UNTIL": until = try unixSeconds(value, "VALID_UNTIL")
                case "CURRENCY": currency = value.uppercased()
                case "DOC": doc = try Arguments.checkID(value, "doc")
                default: throw a.unknownOption(option)
                }
            }
            return .deal(.money(.issueTermSheet(investor: investor, price: price, plan: plan, validUntil: until, currency: currency, doc: doc)), .deal(deal))
        },
        termSheetMove("TERMSHEET.SEND", .sent),
        termSheetMove("TERMSHEET.ACCEPT", .accepted),
        termSheetMove("TERMSHEET.REJECT", .rejected),
        CommandSpec("TERMSHEET.GET", "TERMSHEET.GET <term sheet>", .read) { a throws(CommandError) in
            let id = try a.id("term sheet"); try a.end()
            return .deal(.money(.getTermSheet(id)), .row(.termSheet, id))
        },
        CommandSpec("INVOICE.CREATE", "INVOICE.CREATE <deal> <investor> [DUE <yyyy-mm-dd>] [TAX_BPS <n>] [ID <id>]", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), investor = try a.id("investor")
            var due: CivilDate?
            var tax: Int32 = 0
            var id: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "DUE": due = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "DUE") }
                case "TAX_BPS": tax = try bps(value, "TAX_BPS")
                case "ID": id = try Arguments.checkID(value, "id")
                default: throw a.unknownOption(option)
                }
            }
            return .deal(.money(.createInvoice(investor: investor, due: due, taxBps: tax, id: id)), .deal(deal))
        },
        CommandSpec("INVOICE.SEND", "INVOICE.SEND <invoice>", .administer) { a throws(CommandError) in
            let id = try a.id("invoice"); try a.end()
            return .deal(.money(.sendInvoice(id)), .row(.invoice, id))
        },
        CommandSpec("INVOICE.CANCEL", "INVOICE.CANCEL <invoice>", .administer) { a throws(CommandError) in
            let id = try a.id("invoice"); try a.end()
            return .deal(.money(.cancelInvoice(id)), .row(.invoice, id))
        },
        CommandSpec("INVOICE.GET", "INVOICE.GET <invoice>", .read) { a throws(CommandError) in
            let id = try a.id("invoice"); try a.end()
            return .deal(.money(.getInvoice(id)), .row(.invoice, id))
        },
        CommandSpec("INVOICE.LIST", "INVOICE.LIST [DEAL <deal>] [INVESTOR <investor>] [STATUS draft|sent|paid|partial|cancelled] [CURSOR <c>] [COUNT <n>]", .read) { a throws(CommandError) in
            var paging = Paging()
            let o = try a.keyedOptions(["DEAL", "INVESTOR", "STATUS"], paging: &paging)
            let investor = o["INVESTOR"]
            var status: InvoiceStatus?
            if let v = o["STATUS"] {
                guard let s = InvoiceStatus(rawValue: v.lowercased()) else {
                    throw CommandError("INVALID", "invoice STATUS is draft, sent, paid, partial or cancelled, got '\(v.prefix(32))'")
                }
                status = s
            }
            // Without DEAL: walked deal by deal, in creation order.
            return try DealWalk.list(deal: o["DEAL"], paging: paging) { [status] slot, room in
                .money(.listInvoices(investor: investor, status: status, cursor: slot, count: room))
            }
        },
        CommandSpec("PAYMENT.RECORD", "PAYMENT.RECORD <invoice> <amount> [METHOD <text>] [PAID_AT <unix s>] [ID <id>]", .administer) { a throws(CommandError) in
            let invoice = try a.id("invoice"), amountText = try a.req("amount")
            let amount = try engine { () throws(EngineError) in try Money.parse(amountText) }
            var method: String?
            var paidAt: Int64?
            var id: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "METHOD": method = value
                case "PAID_AT": paidAt = try unixSeconds(value, "PAID_AT")
                case "ID": id = try Arguments.checkID(value, "id")
                default: throw a.unknownOption(option)
                }
            }
            return .deal(.money(.recordPayment(invoice: invoice, amount: amount, method: method, paidAt: paidAt, id: id)), .row(.invoice, invoice))
        },
        CommandSpec("PAYMENT.REFUND", "PAYMENT.REFUND <payment>", .administer) { a throws(CommandError) in
            let id = try a.id("payment"); try a.end()
            return .deal(.money(.refundPayment(id)), .row(.payment, id))
        },
        CommandSpec("PAYMENT.GET", "PAYMENT.GET <payment>", .read) { a throws(CommandError) in
            let id = try a.id("payment"); try a.end()
            return .deal(.money(.getPayment(id)), .row(.payment, id))
        },
    ]

    static func termSheetMove(_ name: String, _ target: TermSheetStatus) -> CommandSpec {
        CommandSpec(name, "\(name) <term sheet>", .administer) { a throws(CommandError) in
            let id = try a.id("term sheet"); try a.end()
            return .deal(.money(.moveTermSheet(id, to: target)), .row(.termSheet, id))
        }
    }

    /// The options of a money list: `[INVESTOR <i>] [STATUS <s>] [CURSOR <c>] [COUNT <n>]`.
    static func listOptions<S>(_ a: inout Arguments, status parse: (String) throws(CommandError) -> S) throws(CommandError) -> (String?, S?, Paging) {
        var investor: String?
        var status: S?
        var paging = Paging()
        while let option = a.next() {
            if try paging.take(option, &a) { continue }
            let value = try a.req(option)
            switch option.uppercased() {
            case "INVESTOR": investor = try Arguments.checkID(value, "investor")
            case "STATUS": status = try parse(value.lowercased())
            default: throw a.unknownOption(option)
            }
        }
        return (investor, status, paging)
    }

    static func bps(_ text: String, _ what: String) throws(CommandError) -> Int32 {
        guard let v = Int32(text), v >= 0, v <= MoneyLimits.maxRateBps else {
            throw CommandError("INVALID", "\(what) must be a whole number of basis points between 0 and \(MoneyLimits.maxRateBps), got '\(text.prefix(32))'")
        }
        return v
    }
}
