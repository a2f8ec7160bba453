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
    /// Why the log stopped accepting changes, if it did.
    var failureReason: String? { get }
    /// True while the log is too far behind to take more work; checked before a
    /// batch decides anything, so overload refuses requests instead of losing them.
    var isOverloaded: Bool { get }
}

extension ChangeSink {
    public func waitDurable(_ lsn: UInt64) async throws(EngineError) {
        let error: EngineError? = await withCheckedContinuation { continuation in
            whenDurable(lsn) { continuation.resume(returning: $0) }
        }
        if let error { throw error }
    }
}
