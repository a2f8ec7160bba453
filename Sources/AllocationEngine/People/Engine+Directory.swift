import Foundation

/// Changing and reading the people directory. A change is checked and applied
/// under the directory's lock and appended to the log inside it (so the log
/// holds directory changes in the order they were applied), then waits for
/// durability outside it.
extension Engine {
    /// Applies a directory change, logs it, and waits until durable. `build`
    /// decides the change under the lock from the directory as it is then
    /// (so no other change can slip in between), or nil for no change; every
    /// apply checks before it changes anything, so it runs in place.
    public func change(building build: (Directory) throws(EngineError) -> DirectoryChange?) async throws(EngineError) {
        if let admission = sink?.admission, admission != .open { throw admission.refusal }
        let now = clock.nowMillis()
        let result: Result<UInt64?, EngineError> = context.directory.withLock { directory in
            do throws(EngineError) {
                guard let change = try build(directory) else { return .success(nil) }
                try change.validate()
                try directory.apply(change, time: now)
                let lsn = try sink?.append([.directory(change)], time: now)
                context.directoryGeneration.add(1, ordering: .releasing)
                return .success(lsn)
            } catch {
                return .failure(error)
            }
        }
        if let lsn = try result.get(), let sink { try await sink.waitDurable(lsn) }
    }

    /// `check` runs under the lock first (a precondition such as "the user
    /// does not exist yet") and may refuse.
    public func change(_ change: DirectoryChange, check: ((Directory) throws(EngineError) -> Void)? = nil) async throws(EngineError) {
        try await self.change { d throws(EngineError) in
            try check?(d)
            return change
        }
    }

    /// Creates a token for an existing user and returns it; only its hash is kept and logged.
    public func createToken(user: String) async throws(EngineError) -> String {
        try Validate.id(user, field: "user")
        let token = context.secrets.token()
        try await change(.tokenIssued(UserToken(user: user, tokenHash: SHA256.hex(token), createdAt: clock.nowMillis())))
        return token
    }

    /// The first protocol's form: creates or updates the user with a role and
    /// its investor links, and returns a token. A deal-member role (co_investor,
    /// lawyer, ...) makes an `investor` user: deal roles come from memberships.
    public func createToken(user: String, role roleName: String, investors: [String]) async throws(EngineError) -> String {
        try Validate.id(user, field: "user")
        for i in investors { try Validate.id(i, field: "investor") }
        let role: UserRole
        if let r = UserRole(rawValue: roleName) {
            role = r
        } else if let memberRole = DealMemberRole(rawValue: roleName) {
            role = .investor
            if investors.isEmpty && memberRole != .viewer {
                throw EngineError(.invalid, "a \(roleName) token needs at least one INVESTOR it acts for")
            }
        } else {
            throw EngineError(.invalid, "unknown role '\(roleName.prefix(32))': one of \((UserRole.allCases.map(\.rawValue) + DealMemberRole.allCases.map(\.rawValue)).joined(separator: ", "))")
        }
        if role == .investor && investors.isEmpty && roleName == "investor" {
            throw EngineError(.invalid, "an investor token needs at least one INVESTOR it acts for (or USER.CREATE the user and TOKEN.CREATE <user>)")
        }
        let token = context.secrets.token()
        try await change(.legacyToken(user: user, role: role, investors: investors, tokenHash: SHA256.hex(token)))
        return token
    }

    /// The principal a token stands for now (nil: unknown or revoked).
    public func principal(forToken token: String) -> Principal? {
        principal(forTokenHash: SHA256.hex(token))
    }
    public func principal(forTokenHash hash: String) -> Principal? {
        context.directory.withLock { $0.principal(forTokenHash: hash) }
    }

    /// Changes whenever the directory does: a cached principal older than this is re-resolved.
    public var directoryGeneration: UInt64 { context.directoryGeneration.load(ordering: .acquiring) }

    /// A read of the directory under its lock.
    public func readDirectory<T: Sendable>(_ body: (Directory) -> T) -> T {
        context.directory.withLock { body($0) }
    }

    /// The directory and the LSN it is complete up to, for snapshots.
    public func captureDirectory() -> (Directory, UInt64) {
        context.directory.withLock { ($0, sink?.lastAppendedLSN ?? 0) }
    }

    /// 32 random bytes from the kernel, as 64 hex characters.
    public static func randomToken() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        precondition(fd >= 0, "cannot open /dev/urandom: no secure randomness for tokens")
        defer { close(fd) }
        var filled = 0
        while filled < 32 {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, 32 - filled) }
            precondition(n > 0 || (n < 0 && errno == EINTR), "reading /dev/urandom failed")
            if n > 0 { filled += n }
        }
        return bytes.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined()
    }
}
