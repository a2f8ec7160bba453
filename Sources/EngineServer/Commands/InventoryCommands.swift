import AllocationEngine

/// Deals, lots, holds and allocations: the launch's hot path.
enum InventoryCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("HOLD", "HOLD <deal> <investor> <units> <price> [TTL <seconds>] [ID <hold id>] [PARTIAL]", .hold) { a throws(CommandError) in
            let deal = try a.id("deal"), investor = try a.id("investor"), unitsText = try a.req("units"), priceText = try a.req("price")
            let units = try engine { () throws(EngineError) in try Units.parse(unitsText) }
            let price = try engine { () throws(EngineError) in try Price.parse(priceText) }
            var request = HoldRequest(investor: investor, units: units, price: price)
            while let option = a.next() {
                switch option.uppercased() {
                case "TTL":
                    let text = try a.req("ttl")
                    guard let seconds = Int64(text), seconds > 0, seconds <= EngineLimits.maxHoldTTLMillis / 1000 else {
                        throw CommandError("INVALID", "TTL must be a whole number of seconds between 1 and \(EngineLimits.maxHoldTTLMillis / 1000), got '\(text.prefix(32))'")
                    }
                    request.ttlMillis = seconds * 1000
                case "ID": request.id = try a.id("id")
                case "PARTIAL": request.partial = true
                default: throw a.unknownOption(option)
                }
            }
            return .deal(.hold(request), .deal(deal))
        },
        CommandSpec("RELEASE", "RELEASE <hold>", .hold) { a throws(CommandError) in
            let hold = try a.id("hold"); try a.end()
            return .deal(.release(hold: hold), .hold(hold))
        },
        CommandSpec("ALLOCATE", "ALLOCATE <hold> [ID <allocation id>]", .hold) { a throws(CommandError) in
            let hold = try a.id("hold")
            var id: String?
            while let option = a.next() {
                guard option.uppercased() == "ID" else { throw a.unknownOption(option) }
                id = try a.id("id")
            }
            return .deal(.allocate(hold: hold, id: id), .hold(hold))
        },
        CommandSpec("APPROVE", "APPROVE <allocation>", .decide) { a throws(CommandError) in
            let allocation = try a.id("allocation"); try a.end()
            return .deal(.approve(allocation: allocation), .allocation(allocation))
        },
        CommandSpec("REJECT", "REJECT <allocation>", .decide) { a throws(CommandError) in
            let allocation = try a.id("allocation"); try a.end()
            return .deal(.reject(allocation: allocation), .allocation(allocation))
        },
        CommandSpec("SETTLE", "SETTLE <allocation>", .decide) { a throws(CommandError) in
            let allocation = try a.id("allocation"); try a.end()
            return .deal(.settle(allocation: allocation), .allocation(allocation))
        },
        CommandSpec("HOLD.GET", "HOLD.GET <hold>", .read) { a throws(CommandError) in
            let hold = try a.id("hold"); try a.end()
            return .deal(.getHold(hold), .hold(hold))
        },
        CommandSpec("ALLOCATION.GET", "ALLOCATION.GET <allocation>", .read) { a throws(CommandError) in
            let allocation = try a.id("allocation"); try a.end()
            return .deal(.getAllocation(allocation), .allocation(allocation))
        },
        CommandSpec("INVENTORY", "INVENTORY <deal>", .read) { a throws(CommandError) in
            let deal = try a.id("deal"); try a.end()
            return .deal(.inventory, .deal(deal))
        },
        CommandSpec("DEAL.GET", "DEAL.GET <deal>", .read) { a throws(CommandError) in
            let deal = try a.id("deal"); try a.end()
            return .deal(.getDeal, .deal(deal))
        },
        CommandSpec("POSITION.GET", "POSITION.GET <investor> <deal>", .read) { a throws(CommandError) in
            let investor = try a.id("investor"), deal = try a.id("deal"); try a.end()
            return .deal(.position(investor: investor), .deal(deal))
        },
        CommandSpec("LOT.GET", "LOT.GET <lot> | LOT.GET <deal> <lot>", .read) { a throws(CommandError) in
            let first = try a.id("lot")
            if let lot = a.next() {
                try a.end()
                _ = try Arguments.checkID(lot, "lot")
                return .deal(.getLot(lot), .deal(first))
            }
            return .deal(.getLot(first), .lot(first))
        },
        CommandSpec("DEAL.STATUS", "DEAL.STATUS <deal> <draft|open|allocation_pending|closed|cancelled>", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), text = try a.req("status"); try a.end()
            guard let status = DealStatus(name: text) else {
                throw CommandError("INVALID", "unknown deal status '\(text.prefix(32))': one of draft, open, allocation_pending, closed, cancelled")
            }
            return .deal(.setStatus(status), .deal(deal))
        },
        CommandSpec("LOT.ADD", "LOT.ADD <deal> <lot> <units> <unit cost> [CURRENCY <code>] [ACQUIRED <yyyy-mm-dd>] [LOCKUP <yyyy-mm-dd>] [SOURCE <text>]", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), lot = try a.id("lot"), unitsText = try a.req("units"), costText = try a.req("unit cost")
            var spec = LotSpec(id: lot, unitsTotal: try engine { () throws(EngineError) in try Units.parse(unitsText, field: "lot units") },
                               unitCost: try engine { () throws(EngineError) in try Price.parse(costText, field: "unit cost") })
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "CURRENCY": spec.currency = value.uppercased()
                case "ACQUIRED": spec.acquiredAt = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "acquired date") }
                case "LOCKUP": spec.lockupUntil = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "lock-up date") }
                case "SOURCE": spec.source = value
                default: throw a.unknownOption(option)
                }
            }
            return .deal(.addLot(spec), .deal(deal))
        },
        CommandSpec("LOT.RESIZE", "LOT.RESIZE <deal> <lot> <units total>", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), lot = try a.id("lot"), unitsText = try a.req("units"); try a.end()
            // A lot may shrink to zero (nothing held or allocated), unlike a new lot.
            let units = try engine { () throws(EngineError) in
                let raw = try FixedPoint.parse(unitsText, scale: Scale.units, field: "lot units")
                guard raw >= 0 else { throw EngineError(.invalid, "lot units must not be negative, got \(unitsText)") }
                return Units(raw: raw)
            }
            return .deal(.resizeLot(lot: lot, unitsTotal: units), .deal(deal))
        },
        CommandSpec("DEAL.CREATE", "DEAL.CREATE <deal> [NAME <text>] [CURRENCY <code>] [PRICE <unit price>] [OPEN_AT <unix s>] [CLOSE_AT <unix s>] [STATUS draft|open] [TYPE <deal type>] [VEHICLE <vehicle>] [KYC required]", .administer) { a throws(CommandError) in
            var spec = DealSpec(id: try a.id("deal"))
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "NAME": spec.name = value
                case "CURRENCY": spec.currency = value.uppercased()
                case "PRICE": spec.offerUnitPrice = try engine { () throws(EngineError) in try Price.parse(value, field: "offer unit price") }
                case "OPEN_AT": spec.openAt = try unixSeconds(value, "OPEN_AT")
                case "CLOSE_AT": spec.closeAt = try unixSeconds(value, "CLOSE_AT")
                case "TYPE": spec.dealType = value
                case "VEHICLE": spec.vehicle = try Arguments.checkID(value, "vehicle")
                case "KYC":
                    guard value.lowercased() == "required" || value.lowercased() == "optional" else {
                        throw CommandError("INVALID", "KYC is 'required' (every hold needs a registered investor with KYC approved) or 'optional', got '\(value.prefix(32))'")
                    }
                    spec.kycRequired = value.lowercased() == "required"
                case "STATUS":
                    guard let s = DealStatus(name: value), s == .draft || s == .open else {
                        throw CommandError("INVALID", "a new deal's STATUS is draft or open, got '\(value.prefix(32))'")
                    }
                    spec.status = s
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [spec] c in
                await c.reply { () throws(EngineError) in _ = try await c.engine.createDeal(spec, by: c.principal.user); return .ok }
            }
        },
        CommandSpec("DEAL.LIST", "DEAL.LIST [CURSOR <cursor>] [COUNT <n>]", .read) { a throws(CommandError) in
            var paging = Paging()
            while let option = a.next() { guard try paging.take(option, &a) else { throw a.unknownOption(option) } }
            // Only the deals the user sees (staff: all; others: their memberships).
            return .engine { [paging] c in await DealWalk.deals(c, paging: paging) }
        },
    ]
}
