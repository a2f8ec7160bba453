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
    private let appendFailure = Locked<String?>(nil)
    private let appendFailureObservers = Locked<[@Sendable (String) -> Void]>([])

    /// Entries per seal: a seal is 8 + varint + 32 x (entries + 1) bytes and must fit in one record.
    let sealEntries: Int

    /// Replication's rule for changes and acknowledgements (ReplicationGate.swift).
    public let gate: ReplicationGate

    public init(writer: LogWriter, sealer: AuditSealer, gate: ReplicationGate = ReplicationGate()) {
        self.writer = writer
        self.sealer = sealer
        self.gate = gate
        sealEntries = max(1, min(AuditSeal.maxEntriesPerSeal, (writer.config.maxRecordBytes - 32) / 32 - 1))
    }

    public func append(_ changes: [Change], time: Int64) throws(EngineError) -> UInt64 {
        let last: UInt64?
        do {
            let perSeal = sealEntries
            last = try writer.appendBatch { appender in
                // The batch's seal, filled in on the writer's thread before it is written; a seal
                // holds 32 bytes per entry, so a large batch (an expiry sweep) gets one every `perSeal` entries.
                var start = 0
                while start < changes.count {
                    let end = min(changes.count, start + perSeal)
                    for change in changes[start..<end] {
                        _ = appender.append(type: change.recordType, time: time) { w in ChangeCodec.encode(change, into: &w) }
                    }
                    _ = appender.append(type: AuditSeal.recordType, time: time) { w in AuditSealer.placeholder(count: end - start, into: &w) }
                    start = end
                }
            }
        } catch {
            let reason = "log append failed: \(error)"
            let first = appendFailure.withLock { f -> Bool in
                if f != nil { return false }
                f = reason
                return true
            }
            if first {
                let observers = appendFailureObservers.withLock { o in
                    defer { o = [] }
                    return o
                }
                for observer in observers { observer(reason) }
            }
            throw Self.engineError(error)
        }
        guard let last else { preconditionFailure("a non-empty batch appended nothing") }
        return last
    }

    /// Durable here and, under `--min-replicas-to-write`, on enough replicas.
    public func whenDurable(_ lsn: UInt64, _ done: @escaping @Sendable (EngineError?) -> Void) {
        let gate = self.gate
        writer.whenDurable(lsn) { result in
            switch result {
            case .success: gate.whenReplicated(lsn, done)
            case .failure(let e): done(Self.engineError(e))
            }
        }
    }

    /// Appends records a primary shipped, with their LSNs, type, time and
    /// payload unchanged (a replica's only way to change). The audit sealer
    /// recomputes each seal over the same entries, so it writes the
    /// primary's seal bytes. Returns the last LSN; a mismatch means this log
    /// and the primary's parted (the caller stops following).
    public func appendShipped(_ records: [ShippedRecord]) throws(EngineError) -> UInt64? {
        guard let first = records.first else { return nil }
        guard writer.lastAppendedLSN + 1 == first.lsn else {
            throw EngineError(.conflict, "shipped records start at LSN \(first.lsn) but this log continues at \(writer.lastAppendedLSN + 1)")
        }
        do {
            return try writer.appendShipped(records)
        } catch {
            throw Self.engineError(error)
        }
    }

    public var lastAppendedLSN: UInt64 { writer.lastAppendedLSN }

    /// Runs `observer` once when the sink fails for good: the log fail-stopped,
    /// or an append failed after its batch was applied in memory.
    public func onFailure(_ observer: @escaping @Sendable (String) -> Void) {
        let once = Once(observer)
        writer.onFailStop { once.run($0) }
        let already: String? = appendFailureObservers.withLock { o in
            if let f = appendFailure.withLock({ $0 }) { return f }
            o.append { once.run($0) }
            return nil
        }
        if let already { once.run(already) }
    }
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
        if let refusal = gate.refusal { return .refused(refusal) }
        return overloaded ? .overloaded : .open
    }

    static func engineError(_ e: LogError) -> EngineError {
        EngineError(.readOnly, "not durable; the engine answers nothing from memory until it restarts from disk: \(e)")
    }
}

/// A callback that runs at most once, whichever source reports first.
final class Once: Sendable {
    private let body: Locked<(@Sendable (String) -> Void)?>
    init(_ body: @escaping @Sendable (String) -> Void) { self.body = Locked(body) }
    func run(_ reason: String) {
        let b = body.withLock { b in
            defer { b = nil }
            return b
        }
        b?(reason)
    }
}
