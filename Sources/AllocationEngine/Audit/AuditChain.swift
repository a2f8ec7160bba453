import Synchronization
import WAL

/// The seal of a batch of change records (record type 110, `audit.seal`),
/// appended right after them in the same write: the hash of the entry before
/// the batch and the hash of each of its entries. A batch and its seal are
/// acknowledged together, so every acknowledged change is sealed; a log
/// rewritten afterwards (its CRCs recomputed) no longer matches its seals, and
/// the first entry that does not is named.
public struct AuditSeal: Hashable, Sendable {
    public static let recordType: UInt8 = 110
    /// Entries one seal covers at most: 8192 x 32 bytes of hashes is 256 KiB,
    /// a quarter of the log's record limit.
    public static let maxEntriesPerSeal = 8_192
    public var firstSeq: UInt64
    public var prev: SHA256.Digest
    public var hashes: [SHA256.Digest]

    public func encode(into w: inout ByteWriter) {
        w.u64(firstSeq)
        w.varint(UInt64(hashes.count))
        prev.withBytes { w.bytes($0) }
        for h in hashes { h.withBytes { w.bytes($0) } }
    }

    public static func decode(_ payload: UnsafeRawBufferPointer) throws(DecodeError) -> AuditSeal {
        var r = ByteReader(payload)
        let first = try r.u64()
        let n = try r.varint()
        guard n >= 1, n <= UInt64(r.remaining / 32) else { throw DecodeError("audit seal of \(n) entries") }
        guard let prev = SHA256.Digest(bytes: try r.bytes(count: 32)) else { throw DecodeError("audit seal") }
        var hashes: [SHA256.Digest] = []
        for _ in 0..<n {
            guard let h = SHA256.Digest(bytes: try r.bytes(count: 32)) else { throw DecodeError("audit seal") }
            hashes.append(h)
        }
        guard r.isAtEnd else { throw DecodeError("\(r.remaining) trailing bytes after an audit seal") }
        return AuditSeal(firstSeq: first, prev: prev, hashes: hashes)
    }
}

/// The head of the chain: the last entry's sequence number and hash.
public struct AuditHead: Hashable, Sendable {
    public var seq: UInt64
    public var hash: SHA256.Digest
    public static let genesis = AuditHead(seq: 0, hash: .zero)
    public init(seq: UInt64, hash: SHA256.Digest) {
        self.seq = seq
        self.hash = hash
    }
}

/// The live chain, computed on the log writer's thread just before each chunk
/// is written (`ChunkFinisher`), so hashing costs the deal actors nothing:
/// each batch is appended with a placeholder seal (first seq 0, zero hashes)
/// and the sealer chains its entries and fills the seal in, CRC recomputed.
/// A seal appended already filled (at open, for entries recovery found
/// unsealed) is taken as it is.
///
/// Memory: the head, the current batch's hashes, and the heads of the last
/// 4 096 seals (what a snapshot asks for).
public final class AuditSealer: ChunkFinisher {
    struct State {
        /// The chain over every entry processed (a chunk may end inside a batch).
        var head: AuditHead
        /// The chain as of the last seal, at `sealLSN`: what snapshots and AUDIT.HEAD see.
        var sealedHead: AuditHead
        var sealLSN: UInt64
        var pending: [SHA256.Digest] = []
        var firstSeq: UInt64 = 0
        var sealPrev: SHA256.Digest = .zero
        var recent: [UInt64: AuditHead] = [:]
        var recentOrder: [UInt64] = []
    }
    private let state: Locked<State>
    static let recentSeals = 4_096

    public init(head: AuditHead, sealLSN: UInt64) { state = Locked(State(head: head, sealedHead: head, sealLSN: sealLSN)) }

    /// The head of the chain as of the last seal written, and that seal's LSN.
    public var headAndLSN: (AuditHead, UInt64) { state.withLock { ($0.sealedHead, $0.sealLSN) } }

    /// The head as of the seal at `lsn` (recent seals only).
    public func head(atSeal lsn: UInt64) -> AuditHead? {
        state.withLock { s in s.sealLSN == lsn ? s.sealedHead : s.recent[lsn] }
    }

    /// The placeholder seal of a batch of `count` entries.
    static func placeholder(count: Int, into w: inout ByteWriter) {
        w.u64(0)
        w.varint(UInt64(count))
        w.bytes(repeatElement(0, count: 32 * (count + 1)))
    }

    public func finish(_ chunk: inout [UInt8], salt: UInt32) {
        state.withLock { s in
            chunk.withUnsafeMutableBytes { buf in
                var off = 0
                while off + LogFormat.recordOverheadBytes <= buf.count {
                    let length = Int(UInt32(littleEndian: buf.loadUnaligned(fromByteOffset: off, as: UInt32.self)))
                    guard length >= LogFormat.recordOverheadBytes, off + length <= buf.count else { preconditionFailure("a chunk holds a damaged record") }
                    let lsn = UInt64(littleEndian: buf.loadUnaligned(fromByteOffset: off + 4, as: UInt64.self))
                    let type = buf[off + 12]
                    let time = Int64(littleEndian: buf.loadUnaligned(fromByteOffset: off + 13, as: Int64.self))
                    let start = off + LogFormat.recordHeaderBytes, end = off + length - LogFormat.recordTrailerBytes
                    if type == AuditSeal.recordType {
                        seal(&s, UnsafeMutableRawBufferPointer(rebasing: buf[start..<end]), lsn: lsn)
                        // The seal's bytes may have changed: its CRC again, with the segment's salt.
                        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buf[off..<end]), seed: salt)
                        buf.storeBytes(of: crc.littleEndian, toByteOffset: end, as: UInt32.self)
                    } else {
                        if s.pending.isEmpty {
                            s.firstSeq = lsn
                            s.sealPrev = s.head.hash
                        }
                        let digest = SHA256.digest(UnsafeRawBufferPointer(rebasing: buf[start..<end]))
                        let h = AuditEntry.hash(prev: s.head.hash, seq: lsn, time: time, type: type, digest: digest)
                        s.pending.append(h)
                        s.head = AuditHead(seq: lsn, hash: h)
                    }
                    off += length
                }
            }
        }
    }

    private func seal(_ s: inout State, _ p: UnsafeMutableRawBufferPointer, lsn: UInt64) {
        let first = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        if first == 0 {
            // A placeholder: its count was written by the appender, its hashes are filled in here.
            var count: UInt64 = 0, shift: UInt64 = 0, at = 8
            while true {
                let byte = p[at]
                count |= UInt64(byte & 0x7f) << shift
                at += 1
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            precondition(Int(count) == s.pending.count && at + 32 * (Int(count) + 1) == p.count, "an audit seal does not match its batch")
            p.storeBytes(of: s.firstSeq.littleEndian, toByteOffset: 0, as: UInt64.self)
            func put(_ d: SHA256.Digest) {
                d.withBytes { src in UnsafeMutableRawBufferPointer(rebasing: p[at..<(at + 32)]).copyMemory(from: src) }
                at += 32
            }
            put(s.sealPrev)
            for h in s.pending { put(h) }
        } else if let filled = try? AuditSeal.decode(UnsafeRawBufferPointer(p)), let last = filled.hashes.last {
            // Filled already (entries found unsealed at open): the chain goes on from it.
            s.head = AuditHead(seq: filled.firstSeq + UInt64(filled.hashes.count) - 1, hash: last)
        }
        s.pending.removeAll(keepingCapacity: true)
        s.sealLSN = lsn
        s.sealedHead = s.head
        s.recent[lsn] = s.head
        s.recentOrder.append(lsn)
        if s.recentOrder.count > Self.recentSeals {
            s.recent[s.recentOrder.removeFirst()] = nil
        }
    }
}

/// Checks the chain over records in log order: each change record's entry
/// against the seal that follows its batch. Recovery, `AUDIT.VERIFY` and the
/// verify tool share it.
public struct AuditVerifier: Sendable {
    public private(set) var head: AuditHead
    /// Entries read since the last seal, with their hashes as recomputed.
    public private(set) var pending: [(entry: AuditEntry, hash: SHA256.Digest)] = []
    public private(set) var entries = 0
    public private(set) var seals = 0
    /// Entries before the first seal of a log written before the chain existed.
    public private(set) var unsealedLegacy = 0
    /// False until a seal has been met, when the log may start mid-chain (after a snapshot with no head).
    private var anchored: Bool

    public init(from head: AuditHead, anchored: Bool = true) {
        self.head = head
        self.anchored = anchored
    }

    /// Unsealed entries kept at most; beyond it (only a log written before the
    /// chain existed) they are taken into the head unsealed.
    public static let maxPending = 65_536

    public mutating func change(_ entry: AuditEntry) {
        let h = entry.hash(after: pending.last?.hash ?? head.hash)
        pending.append((entry, h))
        entries += 1
        if pending.count >= Self.maxPending {
            unsealedLegacy += pending.count
            head = AuditHead(seq: pending.last!.entry.seq, hash: pending.last!.hash)
            pending.removeAll(keepingCapacity: true)
        }
    }

    /// Checks a seal against the entries before it; names the first that breaks.
    public mutating func seal(_ s: AuditSeal, lsn: UInt64) throws(EngineError) {
        seals += 1
        let last = s.firstSeq + UInt64(s.hashes.count) - 1
        if !anchored {
            // The first seal of a log whose beginning is gone (or that has no known
            // head): it anchors the chain. It may cover entries before the log's
            // first record; the ones read are checked against it.
            anchored = true
            unsealedLegacy = 0
            guard let first = pending.first else {
                head = AuditHead(seq: last, hash: s.hashes.last!)
                return
            }
            guard first.entry.seq >= s.firstSeq, pending.last!.entry.seq == last else {
                throw EngineError(.corrupt, "audit seal at LSN \(lsn) covers entries \(s.firstSeq)..\(last), the log holds \(first.entry.seq)..\(pending.last!.entry.seq) before it: entry \(first.entry.seq) was rewritten")
            }
            let k = Int(first.entry.seq - s.firstSeq)
            var h = k == 0 ? s.prev : s.hashes[k - 1]
            for i in pending.indices { h = pending[i].entry.hash(after: h); pending[i].hash = h }
            try check(Array(s.hashes[k...]))
            head = AuditHead(seq: last, hash: s.hashes.last!)
            pending.removeAll(keepingCapacity: true)
            return
        }
        guard let first = pending.first else {
            throw EngineError(.corrupt, "audit seal at LSN \(lsn) seals no entries: the log was rewritten")
        }
        guard s.firstSeq == first.entry.seq, s.hashes.count == pending.count else {
            throw EngineError(.corrupt, "audit seal at LSN \(lsn) covers entries \(s.firstSeq)..\(last), the log holds \(first.entry.seq)..\(pending.last!.entry.seq) before it: entry \(first.entry.seq) was rewritten")
        }
        guard s.prev == head.hash else {
            throw EngineError(.corrupt, "entry \(first.entry.seq) (LSN \(first.entry.seq)): its seal links to \(s.prev), the chain before it ends in \(head.hash) at entry \(head.seq): history was rewritten")
        }
        try check(s.hashes)
        head = AuditHead(seq: last, hash: s.hashes.last!)
        pending.removeAll(keepingCapacity: true)
    }

    private func check(_ hashes: [SHA256.Digest]) throws(EngineError) {
        for (i, p) in pending.enumerated() where p.hash != hashes[i] {
            throw EngineError(.corrupt, "entry \(p.entry.seq) (LSN \(p.entry.seq), \(p.entry.action) \(p.entry.entity) \(p.entry.entityID)): its content does not match its seal: the record was rewritten")
        }
    }

    /// Entries after the last seal: a batch whose seal did not land (a torn
    /// write, never acknowledged) or a log written before the chain.
    public var unsealed: Int { pending.count }

    /// Takes the unsealed entries as they are (they passed their CRCs): the
    /// engine seals them when it opens, so the chain goes on from them.
    public mutating func adoptUnsealed() -> AuditSeal? {
        guard let first = pending.first else { return nil }
        let s = AuditSeal(firstSeq: first.entry.seq, prev: head.hash, hashes: pending.map(\.hash))
        head = AuditHead(seq: pending.last!.entry.seq, hash: pending.last!.hash)
        pending.removeAll()
        return s
    }
}
