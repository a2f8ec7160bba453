import AllocationEngine

/// A command turned into what it asks of the engine. Parsing checks arity,
/// numbers and options; it changes nothing, so a bad command is answered with
/// an error and the rest of the batch goes on.
enum Operation: Sendable {
    /// A deal command, sent to the actor that owns its target.
    case deal(DealRequest, Target)
    case createDeal(DealSpec)
    case createToken(user: String, role: UserRole, investors: [String])
    case snapshot
    case sweep
    case digest
    case listDeals
}

/// How a deal command finds its deal: by the deal's id, or through the global
/// id maps for commands that name a hold, allocation or lot.
enum Target: Sendable {
    case deal(String)
    case hold(String)
    case allocation(String)
    case lot(String)
}

struct CommandError: Error {
    let code: String
    let message: String
    init(_ code: String = "ERR", _ message: String) {
        self.code = code
        self.message = message
    }
    static func arity(_ name: String, _ usage: String) -> CommandError {
        CommandError("ERR", "wrong number of arguments for '\(name.lowercased())': usage \(usage)")
    }
    init(_ e: EngineError) {
        code = e.code.rawValue
        message = e.message
    }
}

/// The arguments of one command after its name, consumed left to right.
struct Arguments {
    let command: RESPCommand
    var index = 1
    init(_ command: RESPCommand) { self.command = command }
    var remaining: Int { command.count - index }
    var isEmpty: Bool { index >= command.count }

    mutating func next() -> String? {
        guard index < command.count else { return nil }
        defer { index += 1 }
        return command.string(at: index)
    }
    mutating func required(_ what: String, usage: String, name: String) throws(CommandError) -> String {
        guard let v = next() else { throw CommandError.arity(name, usage) }
        return v
    }
}

enum CommandParser {
    static let usage: [String: String] = [
        "DEAL.CREATE": "DEAL.CREATE <deal> [NAME <text>] [CURRENCY <code>] [PRICE <unit price>] [OPEN_AT <unix s>] [CLOSE_AT <unix s>] [STATUS draft|open] [TYPE <deal type>] [VEHICLE <id>]",
        "DEAL.STATUS": "DEAL.STATUS <deal> <draft|open|allocation_pending|closed|cancelled>",
        "DEAL.GET": "DEAL.GET <deal>",
        "LOT.ADD": "LOT.ADD <deal> <lot> <units> <unit cost> [CURRENCY <code>] [ACQUIRED <yyyy-mm-dd>] [LOCKUP <yyyy-mm-dd>] [SOURCE <text>]",
        "LOT.RESIZE": "LOT.RESIZE <deal> <lot> <units total>",
        "LOT.GET": "LOT.GET <lot> | LOT.GET <deal> <lot>",
        "HOLD": "HOLD <deal> <investor> <units> <price> [TTL <seconds>] [ID <hold id>] [PARTIAL]",
        "RELEASE": "RELEASE <hold>",
        "ALLOCATE": "ALLOCATE <hold> [ID <allocation id>]",
        "APPROVE": "APPROVE <allocation>",
        "REJECT": "REJECT <allocation>",
        "SETTLE": "SETTLE <allocation>",
        "HOLD.GET": "HOLD.GET <hold>",
        "ALLOCATION.GET": "ALLOCATION.GET <allocation>",
        "INVENTORY": "INVENTORY <deal>",
        "POSITION.GET": "POSITION.GET <investor> <deal>",
        "SNAPSHOT": "SNAPSHOT",
        "SWEEP": "SWEEP",
        "DIGEST": "DIGEST",
        "DEAL.LIST": "DEAL.LIST",
        "TOKEN.CREATE": "TOKEN.CREATE <user> <role> [INVESTOR <investor> ...]",
    ]

    /// Parses an engine command; nil when the name is not an engine command.
    static func parse(_ name: String, _ command: RESPCommand) throws(CommandError) -> Operation? {
        var a = Arguments(command)
        let u = usage[name] ?? name
        func req(_ what: String) throws(CommandError) -> String { try a.required(what, usage: u, name: name) }
        func end() throws(CommandError) {
            if !a.isEmpty { throw CommandError.arity(name, u) }
        }
        func engine<T>(_ body: () throws(EngineError) -> T) throws(CommandError) -> T {
            do { return try body() } catch { throw CommandError(error) }
        }
        switch name {
        case "HOLD":
            let deal = try req("deal"), investor = try req("investor"), unitsText = try req("units"), priceText = try req("price")
            let units = try engine { () throws(EngineError) in try Units.parse(unitsText) }
            let price = try engine { () throws(EngineError) in try Price.parse(priceText) }
            var request = HoldRequest(investor: investor, units: units, price: price)
            while let option = a.next() {
                switch option.uppercased() {
                case "TTL":
                    let text = try req("ttl")
                    guard let seconds = Int64(text), seconds > 0, seconds <= EngineLimits.maxHoldTTLMillis / 1000 else {
                        throw CommandError("INVALID", "TTL must be a whole number of seconds between 1 and \(EngineLimits.maxHoldTTLMillis / 1000), got '\(text.prefix(32))'")
                    }
                    request.ttlMillis = seconds * 1000
                case "ID": request.id = try req("id")
                case "PARTIAL": request.partial = true
                default: throw CommandError("ERR", "unknown HOLD option '\(option.prefix(32))': usage \(u)")
                }
            }
            return .deal(.hold(request), .deal(deal))
        case "RELEASE":
            let hold = try req("hold"); try end()
            return .deal(.release(hold: hold), .hold(hold))
        case "ALLOCATE":
            let hold = try req("hold")
            var id: String?
            while let option = a.next() {
                guard option.uppercased() == "ID" else { throw CommandError("ERR", "unknown ALLOCATE option '\(option.prefix(32))': usage \(u)") }
                id = try req("id")
            }
            return .deal(.allocate(hold: hold, id: id), .hold(hold))
        case "APPROVE", "REJECT", "SETTLE":
            let allocation = try req("allocation"); try end()
            let request: DealRequest = name == "APPROVE" ? .approve(allocation: allocation)
                : name == "REJECT" ? .reject(allocation: allocation) : .settle(allocation: allocation)
            return .deal(request, .allocation(allocation))
        case "HOLD.GET":
            let hold = try req("hold"); try end()
            return .deal(.getHold(hold), .hold(hold))
        case "ALLOCATION.GET":
            let allocation = try req("allocation"); try end()
            return .deal(.getAllocation(allocation), .allocation(allocation))
        case "INVENTORY":
            let deal = try req("deal"); try end()
            return .deal(.inventory, .deal(deal))
        case "DEAL.GET":
            let deal = try req("deal"); try end()
            return .deal(.getDeal, .deal(deal))
        case "POSITION.GET":
            let investor = try req("investor"), deal = try req("deal"); try end()
            return .deal(.position(investor: investor), .deal(deal))
        case "LOT.GET":
            let first = try req("lot")
            if let lot = a.next() {
                try end()
                return .deal(.getLot(lot), .deal(first))
            }
            return .deal(.getLot(first), .lot(first))
        case "DEAL.STATUS":
            let deal = try req("deal"), text = try req("status"); try end()
            guard let status = DealStatus(name: text) else {
                throw CommandError("INVALID", "unknown deal status '\(text.prefix(32))': one of draft, open, allocation_pending, closed, cancelled")
            }
            return .deal(.setStatus(status), .deal(deal))
        case "LOT.ADD":
            let deal = try req("deal"), lot = try req("lot"), unitsText = try req("units"), costText = try req("unit cost")
            var spec = LotSpec(id: lot, unitsTotal: try engine { () throws(EngineError) in try Units.parse(unitsText, field: "lot units") },
                               unitCost: try engine { () throws(EngineError) in try Price.parse(costText, field: "unit cost") })
            while let option = a.next() {
                let value = try req(option)
                switch option.uppercased() {
                case "CURRENCY": spec.currency = value.uppercased()
                case "ACQUIRED": spec.acquiredAt = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "acquired date") }
                case "LOCKUP": spec.lockupUntil = try engine { () throws(EngineError) in try CivilDate.parse(value, field: "lock-up date") }
                case "SOURCE": spec.source = value
                default: throw CommandError("ERR", "unknown LOT.ADD option '\(option.prefix(32))': usage \(u)")
                }
            }
            return .deal(.addLot(spec), .deal(deal))
        case "LOT.RESIZE":
            let deal = try req("deal"), lot = try req("lot"), unitsText = try req("units"); try end()
            // A lot may shrink to zero (nothing held or allocated), unlike a new lot.
            let units = try engine { () throws(EngineError) in
                let raw = try FixedPoint.parse(unitsText, scale: Scale.units, field: "lot units")
                guard raw >= 0 else { throw EngineError(.invalid, "lot units must not be negative, got \(unitsText)") }
                return Units(raw: raw)
            }
            return .deal(.resizeLot(lot: lot, unitsTotal: units), .deal(deal))
        case "DEAL.CREATE":
            var spec = DealSpec(id: try req("deal"))
            while let option = a.next() {
                let value = try req(option)
                switch option.uppercased() {
                case "NAME": spec.name = value
                case "CURRENCY": spec.currency = value.uppercased()
                case "PRICE": spec.offerUnitPrice = try engine { () throws(EngineError) in try Price.parse(value, field: "offer unit price") }
                case "OPEN_AT": spec.openAt = try unixSeconds(value, "OPEN_AT")
                case "CLOSE_AT": spec.closeAt = try unixSeconds(value, "CLOSE_AT")
                case "TYPE": spec.dealType = value
                case "VEHICLE": spec.vehicle = value
                case "STATUS":
                    guard let s = DealStatus(name: value), s == .draft || s == .open else {
                        throw CommandError("INVALID", "a new deal's STATUS is draft or open, got '\(value.prefix(32))'")
                    }
                    spec.status = s
                default: throw CommandError("ERR", "unknown DEAL.CREATE option '\(option.prefix(32))': usage \(u)")
                }
            }
            return .createDeal(spec)
        case "SNAPSHOT": try end(); return .snapshot
        case "SWEEP": try end(); return .sweep
        case "DIGEST": try end(); return .digest
        case "DEAL.LIST": try end(); return .listDeals
        case "TOKEN.CREATE":
            let user = try req("user"), roleText = try req("role")
            guard let role = UserRole(rawValue: roleText.lowercased()) else {
                throw CommandError("INVALID", "unknown role '\(roleText.prefix(32))': one of \(UserRole.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var investors: [String] = []
            while let option = a.next() {
                guard option.uppercased() == "INVESTOR" else { throw CommandError.arity(name, u) }
                investors.append(try req("investor"))
            }
            return .createToken(user: user, role: role, investors: investors)
        default:
            return nil
        }
    }

    static func unixSeconds(_ text: String, _ what: String) throws(CommandError) -> Int64 {
        guard let v = Int64(text), v >= 0, v < 100_000_000_000 else {
            throw CommandError("INVALID", "\(what) must be unix seconds, got '\(text.prefix(32))'")
        }
        return v * 1000
    }
}
