import AllocationEngine

/// Operating the engine: snapshots, expiry on request, the state digest.
enum AdminCommands {
    static let specs: [CommandSpec] = [
        CommandSpec("SNAPSHOT", "SNAPSHOT", .administer) { a throws(CommandError) in
            try a.end()
            return .engine { c in
                guard let durable = c.durable else { return .failure(EngineError(.invalid, "this engine has no data directory")) }
                do {
                    try await durable.snapshot()
                    return .ok
                } catch {
                    return .failure(EngineError(.readOnly, "snapshot failed: \(error)"))
                }
            }
        },
        CommandSpec("SWEEP", "SWEEP", .administer) { a throws(CommandError) in
            try a.end()
            return .engine { c in .count(await c.engine.sweepExpired()) }
        },
        CommandSpec("DIGEST", "DIGEST", .read) { a throws(CommandError) in
            try a.end()
            return .engine { c in .id(await c.engine.digest()) }
        },
    ]
}
