import Synchronization
import WAL

/// The engine's changes going into the write-ahead log: one record per change,
/// all of an actor batch appended under one lock acquisition, followed by the
/// batch's audit seal (Audit/AuditChain.swift) in the same write.
public final class WALChangeSink: ChangeSink {
    public let writer: LogWriter
    /// The audit chain's head, advanced with every batch.
    public let audit: AuditChain
    /// Set when an append fails after its batch was applied in memory: the log
    /// and memory now differ, so the engine must stop taking changes (fail-stop).
    private let appendFailure = Mutex<String?>(nil)

    public init(writer: LogWriter, audit: AuditHead = .genesis) {
        self.writer = writer
        self.audit = AuditChain(head: audit, sealLSN: writer.stats.nextLSN - 1)
    }

    public func append(_ changes: [Change], time: Int64) throws(EngineError) -> UInt64 {
        // Encoded and digested before the writer's lock is taken; only the
        // chaining (which needs the LSNs) runs under it.
        var encoded = ByteWriter(capacity: 128 * changes.count)
        var ends: [Int] = []
        ends.reserveCapacity(changes.count)
        for change in changes {
            ChangeCodec.encode(change, into: &encoded)
            ends.append(encoded.count)
        }
        // The payloads' digests, outside the lock too.
        let digests: [SHA256.Digest] = encoded.bytes.withUnsafeBytes { all in
            var start = 0
            return ends.map { end in
                defer { start = end }
                return SHA256.digest(UnsafeRawBufferPointer(rebasing: all[start..<end]))
            }
        }
        let chain = audit
        let last: UInt64?
        do {
            let result: Result<UInt64?, LogError> = encoded.bytes.withUnsafeBytes { all in
                Result { () throws(LogError) in try writer.appendBatch { appender in
                    var (head, _) = chain.headAndLSN
                    var seal = AuditSeal(firstSeq: 0, prev: head.hash, hashes: [])
                    seal.hashes.reserveCapacity(changes.count)
                    var start = 0
                    for (i, change) in changes.enumerated() {
                        let payload = UnsafeRawBufferPointer(rebasing: all[start..<ends[i]])
                        let lsn = appender.append(type: change.recordType, time: time) { w in w.bytes(payload) }
                        guard lsn > 0 else { return }  // over the record limit: the batch is refused whole
                        if i == 0 { seal.firstSeq = lsn }
                        head = AuditHead(seq: lsn, hash: AuditEntry(seq: lsn, time: time, type: change.recordType, change: change, digest: digests[i]).hash(after: head.hash))
                        seal.hashes.append(head.hash)
                        start = ends[i]
                    }
                    let sealLSN = appender.append(type: AuditSeal.recordType, time: time) { w in seal.encode(into: &w) }
                    chain.advance(to: head, sealLSN: sealLSN)
                } }
            }
            last = try result.get()
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
    public var auditHeadAndLSN: (AuditHead, UInt64)? { audit.headAndLSN }

    /// Seals entries recovery found after the last seal (a batch whose seal
    /// did not land, or a log written before the chain), so the chain goes on.
    public func appendSeal(_ seal: AuditSeal, head: AuditHead, time: Int64) throws(EngineError) {
        do {
            _ = try writer.appendBatch { appender in
                let lsn = appender.append(type: AuditSeal.recordType, time: time) { w in seal.encode(into: &w) }
                audit.advance(to: head, sealLSN: lsn)
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
