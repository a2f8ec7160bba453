import Foundation

extension Engine {
    /// Creates a token for a user and returns it; only its hash is kept and logged.
    public func createToken(user: String, role: UserRole, investors: [String]) async throws(EngineError) -> String {
        try Validate.id(user, field: "user")
        for i in investors { try Validate.id(i, field: "investor") }
        if !role.seesAllInvestors && investors.isEmpty && role != .viewer {
            throw EngineError(.invalid, "a \(role.rawValue) token needs at least one INVESTOR it acts for")
        }
        if let admission = sink?.admission, admission != .open { throw admission.refusal }
        let token = Self.randomToken()
        let record = UserToken(user: user, role: role, investors: investors, tokenHash: SHA256.hex(token), createdAt: clock.nowMillis())
        let now = record.createdAt
        let result: Result<UInt64?, EngineError> = accessState.withLock { state in
            do throws(EngineError) {
                try state.apply(record)
                return .success(try sink?.append([.tokenCreated(record)], time: now))
            } catch {
                return .failure(error)
            }
        }
        if let lsn = try result.get(), let sink { try await sink.waitDurable(lsn) }
        return token
    }

    public func principal(forToken token: String) -> Principal? {
        accessState.withLock { $0.principal(forToken: token) }
    }

    /// The access state and the LSN it is complete up to, for snapshots.
    public func captureAccess() -> (AccessState, UInt64) {
        accessState.withLock { ($0, sink?.lastAppendedLSN ?? 0) }
    }

    /// 32 random bytes from the kernel, as 64 hex characters.
    static func randomToken() -> String {
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
