/// Where decided changes go to become durable: the write-ahead log in a server,
/// nothing in an in-memory engine. Appending is synchronous and cheap (a copy
/// into the log's pending batch, inside the deal actor, which keeps each deal's
/// changes in the log in the order they were applied); waiting for the disk
/// happens afterwards, outside the actor.
public protocol ChangeSink: Sendable {
    /// Appends the changes of one actor batch, in order, all accepted at `time`.
    /// Returns the LSN of the last. Throws READONLY once the log has failed.
    func append(_ changes: [Change], time: Int64) throws(EngineError) -> UInt64
    /// Calls back once every change up to `lsn` is durable under the log's mode,
    /// with an error if it never will be.
    func whenDurable(_ lsn: UInt64, _ done: @escaping @Sendable (EngineError?) -> Void)
    /// The LSN of the last record appended (durable or not).
    var lastAppendedLSN: UInt64 { get }
    /// The audit chain's head and the LSN of the seal that covers it, read
    /// together (nil for a sink without a chain).
    var auditHeadAndLSN: (AuditHead, UInt64)? { get }
    /// Whether the log takes changes now; checked once before a batch decides
    /// anything, so failure and overload refuse requests instead of losing them.
    var admission: SinkAdmission { get }
}

public enum SinkAdmission: Sendable, Equatable {
    case open
    /// Too far behind the disk to take more work; retry shortly.
    case overloaded
    /// Failed for good (fail-stop): changes are refused until a restart.
    case failed(String)
    /// Changes are refused, reads served: a replica (`READONLY`), or a primary
    /// with fewer connected replicas than `--min-replicas-to-write` (`NOREPLICAS`).
    case refused(EngineError)
}

extension ChangeSink {
    public var auditHeadAndLSN: (AuditHead, UInt64)? { nil }

    /// Why the log stopped accepting changes, if it did.
    public var failureReason: String? {
        if case .failed(let reason) = admission { return reason }
        return nil
    }

    public func waitDurable(_ lsn: UInt64) async throws(EngineError) {
        let error: EngineError? = await withCheckedContinuation { continuation in
            whenDurable(lsn) { continuation.resume(returning: $0) }
        }
        if let error { throw error }
    }
}

extension SinkAdmission {
    /// Whether reads are refused too: after a failure, memory may hold
    /// changes that never reached the disk and that recovery will drop.
    public var refusesReads: Bool {
        if case .failed = self { return true }
        return false
    }

    /// The error a change gets when the log does not take it.
    public var refusal: EngineError {
        switch self {
        case .open: preconditionFailure("an open log refuses nothing")
        case .overloaded: EngineError(.limit, "the log is behind the disk; retry shortly")
        case .failed(let reason): EngineError(.readOnly, "the engine stopped after a durability failure and answers nothing from memory until it restarts from disk: \(reason)")
        case .refused(let error): error
        }
    }
}
