import Synchronization
import WAL

/// The engine's changes going into the write-ahead log: one record per change,
/// all of an actor batch appended under one lock acquisition.
public final class WALChangeSink: ChangeSink {
    public let writer: LogWriter
    /// Set when an append fails after its batch was applied in memory: the log
    /// and memory now differ, so the engine must stop taking changes (fail-stop).
    private let appendFailure = Mutex<String?>(nil)

    public init(writer: LogWriter) { self.writer = writer }

    public func append(_ changes: [Change], time: Int64) throws(EngineError) -> UInt64 {
        let last: UInt64?
        do {
            last = try writer.appendBatch { appender in
                for change in changes {
                    _ = appender.append(type: change.recordType, time: time) { w in ChangeCodec.encode(change, into: &w) }
                }
            }
        } catch {
            appendFailure.withLock { if $0 == nil { $0 = "log append failed: \(error)" } }
            throw Self.engineError(error)
        }
        guard let last else { preconditionFailure("a non-empty batch appended nothing") }
        return last
    }

    public func whenDurable(_ lsn: UInt64, _ done: @escaping @Sendable (EngineError?) -> Void) {
        writer.whenDurable(lsn) { result in
            switch result {
            case .success: done(nil)
            case .failure(let e): done(Self.engineError(e))
            }
        }
    }

    public var lastAppendedLSN: UInt64 { writer.stats.nextLSN - 1 }
    public var admission: SinkAdmission {
        if let reason = appendFailure.withLock({ $0 }) { return .failed(reason) }
        let (failure, overloaded) = writer.admission
        if let failure { return .failed(failure) }
        return overloaded ? .overloaded : .open
    }

    static func engineError(_ e: LogError) -> EngineError {
        EngineError(.readOnly, "the change is not durable and the engine refuses changes: \(e)")
    }
}
