import AllocationEngine

/// The audit chain (Audit/): its head, a full verification of the retained
/// log, and its entries. Staff reads; the chain is written by the log itself.
enum AuditCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("AUDIT.HEAD", "AUDIT.HEAD", .staffRead) { a throws(CommandError) in
            try a.end()
            return .engine { c in
                guard let (head, _) = c.engine.sink?.auditHeadAndLSN else { return .failure(EngineError(.invalid, "this engine has no log, so no audit chain")) }
                return .values([String(head.seq), head.hash.description])
            }
        },
        CommandSpec("AUDIT.VERIFY", "AUDIT.VERIFY", .staffRead) { a throws(CommandError) in
            try a.end()
            return .engine { c in
                guard let durable = c.durable else { return .failure(EngineError(.invalid, "this engine has no data directory")) }
                do {
                    let r = try await durable.verifyAudit()
                    return .status("OK \(r.entries) \(r.head.hash)")
                } catch let e as EngineError {
                    return .failure(e)
                } catch {
                    return .failure(EngineError(.corrupt, "the log cannot be read: \(error)"))
                }
            }
        },
        CommandSpec("AUDIT.LIST", "AUDIT.LIST [ENTITY <entity> <id>] [ACTOR <user>] [CURSOR <c>] [COUNT <n>]", .staffRead) { a throws(CommandError) in
            var filter = AuditLog.Filter()
            var paging = Paging()
            while let option = a.next() {
                if try paging.take(option, &a) { continue }
                switch option.uppercased() {
                case "ENTITY": filter.entity = (try a.req("entity"), try a.id("entity id"))
                case "ACTOR": filter.actor = try a.id("user")
                default: throw a.unknownOption(option)
                }
            }
            guard let from = UInt64(paging.cursor) else { throw CommandError("INVALID", "invalid cursor \(paging.cursor) for this list") }
            return .engine { [filter, paging] c in
                guard let durable = c.durable else { return .failure(EngineError(.invalid, "this engine has no data directory")) }
                do {
                    let (cursor, rows) = try await durable.auditPage(from: from, count: paging.count, filter: filter)
                    return .page(cursor: cursor, rows: rows)
                } catch {
                    return .failure(EngineError(.corrupt, "the log cannot be read: \(error)"))
                }
            }
        },
    ]
}
