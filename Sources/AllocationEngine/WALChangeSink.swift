import WAL

/// The engine's changes going into the write-ahead log: one record per change,
/// all of an actor batch appended under one lock acquisition.
public final class WALChangeSink: ChangeSink {
    public let writer: LogWriter

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
    public var failureReason: String? { writer.failure }

    static func engineError(_ e: LogError) -> EngineError {
        switch e {
        case .overloaded, .recordTooLarge:
            EngineError(.limit, "the log refused the change: \(e)")
        default:
            EngineError(.readOnly, "the change is not durable and the engine refuses changes: \(e)")
        }
    }
}
