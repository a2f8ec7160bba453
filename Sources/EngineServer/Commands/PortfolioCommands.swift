import AllocationEngine

/// Vehicles' valuations (`valuations`): the NAV that periodic performance
/// fees are charged against. Set by `staff_admin` and `staff_ops`.
enum PortfolioCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("VALUATION.SET", "VALUATION.SET <vehicle> <yyyy-mm-dd> <nav per unit> [NAV_TOTAL <money>]", .administer) { a throws(CommandError) in
            let vehicle = try a.req("vehicle"), dateText = try a.req("date"), navText = try a.req("nav per unit")
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
            let vehicle = try a.req("vehicle")
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
