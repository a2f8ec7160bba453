import AllocationEngine

/// The command table, as Redis keeps one: each part of the domain registers its
/// commands (name, usage, the permission a role needs, a parser) in a file of
/// its own, and the handler looks a command up here. Adding a command never
/// touches the hot path: parsing turns a command into an `Operation`, and the
/// handler knows only two kinds of them.
struct CommandSpec: Sendable {
    let name: String
    let usage: String
    let permission: UserRole.Permission
    let parse: @Sendable (inout Arguments) throws(CommandError) -> Operation

    init(_ name: String, _ usage: String, _ permission: UserRole.Permission,
         _ parse: @escaping @Sendable (inout Arguments) throws(CommandError) -> Operation) {
        self.name = name
        self.usage = usage
        self.permission = permission
        self.parse = parse
    }
}

enum CommandTable {
    /// Every engine command by (uppercase) name.
    static let byName: [String: CommandSpec] = {
        var table: [String: CommandSpec] = [:]
        for spec in InventoryCommands.specs + AdminCommands.specs + PeopleCommands.specs + MoneyCommands.specs
            + BankCommands.specs + IntroducerCommands.specs + PortfolioCommands.specs + StatementCommands.specs + AuditCommands.specs
            + ReplicationCommands.specs {
            precondition(table[spec.name] == nil, "command \(spec.name) registered twice")
            table[spec.name] = spec
        }
        return table
    }()
}

/// A command turned into what it asks of the engine. Parsing checks arity,
/// numbers and options; it changes nothing, so a bad command is answered with
/// an error and the rest of the batch goes on.
enum Operation: Sendable {
    /// A deal command, sent to the actor that owns its target, batched with the
    /// commands next to it for the same deal (the hot path).
    case deal(DealRequest, Target)
    /// Anything else: run in arrival order with the engine and the caller.
    case engine(@Sendable (CommandContext) async -> DealReply)
    /// Like `engine`, for commands that neither read nor change engine state
    /// (replication control): answered without the durability barrier.
    case control(@Sendable (CommandContext) async -> DealReply)
}

/// What an engine-wide command runs with.
struct CommandContext: Sendable {
    let engine: Engine
    let durable: DurableEngine?
    let principal: Principal
    var replication: Replication? = nil

    /// Runs `body`, turning a thrown engine error into its reply.
    func reply(_ body: () async throws(EngineError) -> DealReply) async -> DealReply {
        do throws(EngineError) { return try await body() } catch { return .failure(error) }
    }
}

/// How a deal command finds its deal: by the deal's id, or through the global
/// id maps for commands that name a hold, allocation or lot.
enum Target: Sendable {
    case deal(String)
    case hold(String)
    case allocation(String)
    case lot(String)
    /// Rows of the people side, found through their id maps.
    case row(RowKind, String)
}

enum RowKind: Sendable {
    case commitment, approval, invite, inviteToken, feePlan, feeEvent, invoice, payment, termSheet, introduction, commission
    var name: String {
        switch self {
        case .feePlan: "fee plan"
        case .feeEvent: "fee event"
        case .invoice: "invoice"
        case .payment: "payment"
        case .termSheet: "term sheet"
        case .introduction: "introduction"
        case .commission: "commission"
        case .commitment: "commitment"
        case .approval: "approval"
        case .invite, .inviteToken: "invite"
        }
    }
    func index(_ i: EngineIndexes) -> IdIndex {
        switch self {
        case .commitment: i.commitments
        case .approval: i.approvals
        case .invite: i.invites
        case .inviteToken: i.inviteTokens
        case .feePlan: i.feePlans
        case .feeEvent: i.feeEvents
        case .invoice: i.invoices
        case .payment: i.payments
        case .termSheet: i.termSheets
        case .introduction: i.introductions
        case .commission: i.commissions
        }
    }
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
    let name: String
    let usage: String
    var index = 1
    init(_ command: RESPCommand, name: String, usage: String) {
        self.command = command
        self.name = name
        self.usage = usage
    }
    var remaining: Int { command.count - index }
    var isEmpty: Bool { index >= command.count }

    mutating func next() -> String? {
        guard index < command.count else { return nil }
        defer { index += 1 }
        return command.string(at: index)
    }
    /// The next argument, or the usage error.
    mutating func req(_ what: String) throws(CommandError) -> String {
        guard let v = next() else { throw CommandError.arity(name, usage) }
        return v
    }
    /// The next argument as an id (deal, lot, investor, hold, ...), or the usage
    /// error. Checked here, for lookups too: see `checkID`.
    mutating func id(_ what: String) throws(CommandError) -> String {
        try Self.checkID(try req(what), what)
    }

    /// An id must have the id syntax (`Validate.id`: 1...128 bytes of printable
    /// ASCII, no space or quote) also where it only names a row to look up. Ids
    /// are Swift `String`s and Strings compare by Unicode canonical equivalence,
    /// so a lookup with the bytes E2 84 AA (KELVIN SIGN) would find the deal
    /// `K`: a different id reaching an existing row. Refused with `INVALID`.
    static func checkID(_ value: String, _ what: String) throws(CommandError) -> String {
        let field = what.hasSuffix("id") ? what : what + " id"
        try engine { () throws(EngineError) in try Validate.id(value, field: field) }
        return value
    }

    /// No arguments may follow.
    func end() throws(CommandError) {
        if !isEmpty { throw CommandError.arity(name, usage) }
    }
    /// The `KEY value` options of a list, with `CURSOR`/`COUNT` into `paging`:
    /// each allowed key at most once (upper-cased), anything else refused.
    /// Values of `DEAL`, `INVESTOR`, `INTRODUCER` are ids (`checkID`).
    mutating func keyedOptions(_ allowed: Set<String>, paging: inout Paging) throws(CommandError) -> [String: String] {
        var out: [String: String] = [:]
        while let option = next() {
            if try paging.take(option, &self) { continue }
            let key = option.uppercased()
            guard allowed.contains(key) else { throw unknownOption(option) }
            let value = try req(option)
            out[key] = Self.idOptions.contains(key) ? try Self.checkID(value, key.lowercased()) : value
        }
        return out
    }

    static let idOptions: Set<String> = ["DEAL", "INVESTOR", "INTRODUCER"]

    func unknownOption(_ option: String) -> CommandError {
        CommandError("ERR", "unknown \(name) option '\(option.prefix(32))': usage \(usage)")
    }
}

/// Runs an engine parser (numbers, dates) and reports its error with its code.
func engine<T>(_ body: () throws(EngineError) -> T) throws(CommandError) -> T {
    do { return try body() } catch { throw CommandError(error) }
}

func unixSeconds(_ text: String, _ what: String) throws(CommandError) -> Int64 {
    guard let v = Int64(text), v >= 0, v < 100_000_000_000 else {
        throw CommandError("INVALID", "\(what) must be unix seconds, got '\(text.prefix(32))'")
    }
    return v * 1000
}
