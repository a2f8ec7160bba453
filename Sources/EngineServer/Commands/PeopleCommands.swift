import AllocationEngine

/// Users and their tokens.
enum PeopleCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("TOKEN.CREATE", "TOKEN.CREATE <user> <role> [INVESTOR <investor> ...]", .manageUsers) { a throws(CommandError) in
            let user = try a.req("user"), roleText = try a.req("role")
            guard let role = UserRole(rawValue: roleText.lowercased()) else {
                throw CommandError("INVALID", "unknown role '\(roleText.prefix(32))': one of \(UserRole.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var investors: [String] = []
            while let option = a.next() {
                guard option.uppercased() == "INVESTOR" else { throw CommandError.arity(a.name, a.usage) }
                investors.append(try a.req("investor"))
            }
            return .engine { [investors] c in
                await c.reply { () throws(EngineError) in .id(try await c.engine.createToken(user: user, role: role, investors: investors)) }
            }
        },
    ]
}
