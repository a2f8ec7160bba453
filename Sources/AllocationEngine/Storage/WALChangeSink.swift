import Synchronization
import WAL

/// The engine's changes going into the write-ahead log: one record per change,
/// all of an actor batch appended under one lock acquisition, followed by the
/// batch's audit seal (Audit/AuditChain.swift) in the same write.
public final class WALChangeSink: ChangeSink {
    public let writer: LogWriter
    /// The audit chain, computed on the writer's thread (the same object is the writer's finisher).
    public let sealer: AuditSealer
    /// Set when an append fails after its batch was applied in memory: the log
    /// and memory now differ, so the engine must stop taking changes (fail-stop).
    private let appendFailure = Mutex<String?>(nil)

    public init(writer: LogWriter, sealer: AuditSealer) {
        self.writer = writer
        self.sealer = sealer
    }

    public func append(_ changes: [Change], time: Int64) throws(EngineError) -> UInt64 {
        let last: UInt64?
        do {
            last = try writer.appendBatch { appender in
                // The batch's seal, filled in on the writer's thread before it is written: one
                // per `maxEntriesPerSeal` changes, so a seal (32 bytes an entry) stays far below
                // the record limit however many holds one batch expires.
                var unsealed = 0
                for change in changes {
                    _ = appender.append(type: change.recordType, time: time) { w in ChangeCodec.encode(change, into: &w) }
                    unsealed += 1
                    if unsealed == AuditSeal.maxEntriesPerSeal {
                        _ = appender.append(type: AuditSeal.recordType, time: time) { w in AuditSealer.placeholder(count: unsealed, into: &w) }
                        unsealed = 0
                    }
                }
                if unsealed > 0 {
                    _ = appender.append(type: AuditSeal.recordType, time: time) { w in AuditSealer.placeholder(count: unsealed, into: &w) }
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
    public var auditHeadAndLSN: (AuditHead, UInt64)? { sealer.headAndLSN }

    /// Seals entries recovery found after the last seal (a batch whose seal
    /// did not land, or a log written before the chain), so the chain goes on.
    public func appendSeal(_ seal: AuditSeal, time: Int64) throws(EngineError) {
        do {
            _ = try writer.appendBatch { appender in
                _ = appender.append(type: AuditSeal.recordType, time: time) { w in seal.encode(into: &w) }
            }
        } catch {
            throw Self.engineError(error)
        }
    }
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
