// Snapshot files: the engine's whole state at one LSN.
//
// Layout (little endian), see docs/wal-format.md:
//   0  magic          8 bytes "AESNAPSH"
//   8  version        u16
//  10  flags          u16 (0)
//  12  reserved       u32 (0)
//  16  lsn            u64 (last LSN the state includes)
//  24  time           i64 unix milliseconds
//  32  payloadLength  u64
//  40  payload
//  -4  crc            u32 CRC32C of every byte before it
//
// Written to a temp name, fsynced, renamed, directory fsynced: a reader sees
// the old set of snapshots or the new one, never a partial file under a final name.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import WAL

public struct SnapshotInfo: Sendable, Equatable {
    public let path: String
    public let name: String
    public let lsn: UInt64
}

public struct LoadedSnapshot: Sendable {
    public let path: String
    public let lsn: UInt64
    public let time: Int64
    public let payload: [UInt8]
    /// Newer snapshots that were skipped, with the reason.
    public let skipped: [(path: String, reason: String)]
}

public enum SnapshotError: Error, Sendable, CustomStringConvertible {
    case damaged(path: String, reason: String)
    case newerVersion(path: String, version: UInt16)

    public var description: String {
        switch self {
        case .damaged(let path, let reason): "snapshot \(path) is damaged: \(reason)"
        case .newerVersion(let path, let version):
            "snapshot \(path) has format version \(version); this build reads up to \(SnapshotFormat.version); upgrade before starting"
        }
    }
}

public enum SnapshotFormat {
    public static let magic: [UInt8] = Array("AESNAPSH".utf8)
    public static let version: UInt16 = 1
    public static let headerBytes = 40
    public static let trailerBytes = 4
    public static let prefix = "snap-"
    public static let suffix = ".snap"
    public static let tempSuffix = ".tmp"
    public static let nameDigits = 20
    /// Largest payload accepted when loading (bounds memory on a damaged length).
    public static let maxPayloadBytes = 1 << 34

    public static func name(lsn: UInt64) -> String {
        let digits = String(lsn)
        return prefix + String(repeating: "0", count: nameDigits - digits.count) + digits + suffix
    }

    public static func parseName(_ name: String) -> UInt64? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard digits.count == nameDigits, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }

    /// The header of a file whose payload has `payloadLength` bytes.
    public static func header(lsn: UInt64, time: Int64, payloadLength: Int) -> [UInt8] {
        var w = ByteWriter(capacity: headerBytes)
        w.bytes(magic)
        w.u16(version)
        w.u16(0)
        w.u32(0)
        w.u64(lsn)
        w.i64(time)
        w.u64(UInt64(payloadLength))
        return w.bytes
    }

    public static func encode(lsn: UInt64, time: Int64, payload: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: headerBytes + payload.count + trailerBytes)
        w.bytes(header(lsn: lsn, time: time, payloadLength: payload.count))
        w.bytes(payload)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Decodes and verifies a whole file.
    public static func decode(_ bytes: [UInt8], path: String) throws(SnapshotError) -> (lsn: UInt64, time: Int64, payload: [UInt8]) {
        let result: Result<(UInt64, Int64, [UInt8]), SnapshotError> = bytes.withUnsafeBytes { buffer in
            guard buffer.count >= headerBytes + trailerBytes else {
                return .failure(.damaged(path: path, reason: "file is \(buffer.count) bytes, shorter than header + checksum"))
            }
            guard buffer.prefix(8).elementsEqual(magic) else { return .failure(.damaged(path: path, reason: "bad magic")) }
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: buffer[8..<headerBytes]))
            do throws(DecodeError) {
                let v = try r.u16()
                if v > version { return .failure(.newerVersion(path: path, version: v)) }
                _ = try r.u16()
                _ = try r.u32()
                let lsn = try r.u64()
                let time = try r.i64()
                let length = try r.u64()
                guard length <= UInt64(maxPayloadBytes), Int(length) == buffer.count - headerBytes - trailerBytes else {
                    return .failure(.damaged(path: path, reason: "payload length \(length) does not match file size \(buffer.count)"))
                }
                let stored = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: buffer.count - 4, as: UInt32.self))
                let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<(buffer.count - 4)]))
                guard stored == computed else { return .failure(.damaged(path: path, reason: "checksum mismatch")) }
                let payload = Array(buffer[headerBytes..<(buffer.count - 4)])
                return .success((lsn, time, payload))
            } catch {
                return .failure(.damaged(path: path, reason: error.message))
            }
        }
        return try result.get()
    }
}

public struct SnapshotStore: Sendable {
    public let directory: String
    public let io: any FileIO
    public let keep: Int

    public init(directory: String, io: any FileIO, keep: Int = 3) {
        precondition(keep >= 1, "keep at least one snapshot")
        self.directory = directory
        self.io = io
        self.keep = keep
    }

    /// Writes a snapshot atomically and durably; returns its path.
    @discardableResult
    public func write(lsn: UInt64, time: Int64, payload: [UInt8]) throws -> String {
        try io.createDirectory(directory)
        let name = SnapshotFormat.name(lsn: lsn)
        let path = FilePath.join(directory, name)
        let temp = path + SnapshotFormat.tempSuffix
        let bytes = SnapshotFormat.encode(lsn: lsn, time: time, payload: payload)
        let fd = try io.create(temp)
        do {
            try io.pwrite(fd, bytes, offset: 0)
            try io.fsync(fd)
            try io.close(fd)
        } catch {
            try? io.close(fd)
            try? io.unlink(temp)
            throw error
        }
        try io.rename(from: temp, to: path)
        try io.fsyncDirectory(directory)
        return path
    }

    /// Starts a snapshot whose payload is written piece by piece (`SnapshotStream`),
    /// so the whole image never sits in memory at once.
    public func begin() throws -> SnapshotStream {
        try io.createDirectory(directory)
        // A name no final snapshot has; a crash leaves it for `prune` as a temp file.
        let temp = FilePath.join(directory, SnapshotFormat.prefix + "stream" + SnapshotFormat.tempSuffix)
        if io.fileExists(temp) { try io.unlink(temp) }
        return SnapshotStream(store: self, temp: temp, fd: try io.create(temp))
    }

    /// Snapshots on disk, newest (highest LSN) first. Temp files are not listed.
    public func list() throws -> [SnapshotInfo] {
        guard io.fileExists(directory) else { return [] }
        return try io.listDirectory(directory)
            .compactMap { name in
                SnapshotFormat.parseName(name).map { SnapshotInfo(path: FilePath.join(directory, name), name: name, lsn: $0) }
            }
            .sorted { $0.lsn > $1.lsn }
    }

    /// The newest snapshot that verifies; damaged newer ones are skipped and
    /// reported. A newer format version is refused (throws), never skipped:
    /// falling back past it would silently load older state.
    public func loadNewestValid() throws -> LoadedSnapshot? {
        var skipped: [(path: String, reason: String)] = []
        for info in try list() {
            let bytes: [UInt8]
            do {
                bytes = try io.readAll(info.path)
            } catch {
                skipped.append((info.path, "\(error)"))
                continue
            }
            do {
                let decoded = try SnapshotFormat.decode(bytes, path: info.path)
                guard decoded.lsn == info.lsn else {
                    skipped.append((info.path, "file name says LSN \(info.lsn) but header says \(decoded.lsn)"))
                    continue
                }
                return LoadedSnapshot(path: info.path, lsn: decoded.lsn, time: decoded.time, payload: decoded.payload, skipped: skipped)
            } catch .newerVersion(let path, let version) {
                throw SnapshotError.newerVersion(path: path, version: version)
            } catch .damaged(_, let reason) {
                skipped.append((info.path, reason))
            }
        }
        return nil
    }

    /// Deletes all but the newest `keep` snapshots, and leftover temp files.
    public func prune() throws {
        guard io.fileExists(directory) else { return }
        var changed = false
        for info in try list().dropFirst(keep) {
            try io.unlink(info.path)
            changed = true
        }
        for name in try io.listDirectory(directory) where name.hasPrefix(SnapshotFormat.prefix) && name.hasSuffix(SnapshotFormat.tempSuffix) {
            try io.unlink(FilePath.join(directory, name))
            changed = true
        }
        if changed { try io.fsyncDirectory(directory) }
    }
}

/// A snapshot being written: the payload goes to a temp file as it is encoded
/// (`append`), with its CRC kept as it goes; `finish` writes the header, now that
/// the length is known, and the checksum of header and payload (combined, not
/// read back), fsyncs the file, and `publish` renames it to its final name.
/// Until `publish` nothing a reader or recovery looks at has changed: a crash or
/// `abort` leaves only a temp file, which `prune` deletes. One writer at a time
/// (the engine serializes snapshots); the lock only lets the stream move
/// between the threads that encode its parts.
public final class SnapshotStream: Sendable {
    let store: SnapshotStore
    let temp: String
    private struct State {
        var fd: FileHandleID?
        /// Bytes appended: written ones plus `buffer`.
        var payloadBytes = 0
        var written = 0
        var payloadCRC: UInt32 = 0
        /// Small parts (a quiet deal is a few hundred bytes) gathered into one write.
        var buffer: [UInt8] = []
        var finished: (lsn: UInt64, time: Int64)?
    }
    /// Parts are gathered up to this before a write (so memory stays within it plus the largest part).
    public static let bufferBytes = 1 << 20
    private let state: Locked<State>

    init(store: SnapshotStore, temp: String, fd: FileHandleID) {
        self.store = store
        self.temp = temp
        self.state = Locked(State(fd: fd))
    }

    public var payloadBytes: Int { state.withLock { $0.payloadBytes } }

    /// Appends payload bytes.
    public func append(_ bytes: [UInt8]) throws {
        try state.withLock { s throws in
            guard let fd = s.fd, s.finished == nil else { throw IOError(errno: EBADF, op: "snapshot append (stream closed)", path: temp) }
            guard !bytes.isEmpty else { return }
            guard UInt64(s.payloadBytes + bytes.count) <= UInt64(SnapshotFormat.maxPayloadBytes) else {
                throw IOError(errno: EFBIG, op: "snapshot append (payload over \(SnapshotFormat.maxPayloadBytes) bytes)", path: temp)
            }
            s.payloadCRC = CRC32C.checksum(bytes, seed: s.payloadCRC)
            s.payloadBytes += bytes.count
            if s.buffer.isEmpty && bytes.count >= Self.bufferBytes {
                try write(bytes, &s, fd)
            } else {
                s.buffer.append(contentsOf: bytes)
                if s.buffer.count >= Self.bufferBytes { try flush(&s, fd) }
            }
        }
    }

    private func write(_ bytes: [UInt8], _ s: inout State, _ fd: FileHandleID) throws {
        try store.io.pwrite(fd, bytes, offset: SnapshotFormat.headerBytes + s.written)
        s.written += bytes.count
    }

    private func flush(_ s: inout State, _ fd: FileHandleID) throws {
        guard !s.buffer.isEmpty else { return }
        try write(s.buffer, &s, fd)
        s.buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the header and checksum and makes the file durable (still under its temp name).
    public func finish(lsn: UInt64, time: Int64) throws {
        try state.withLock { s throws in
            guard let fd = s.fd, s.finished == nil else { throw IOError(errno: EBADF, op: "snapshot finish (stream closed)", path: temp) }
            try flush(&s, fd)
            s.buffer = []
            precondition(s.written == s.payloadBytes, "snapshot stream lost bytes")
            let header = SnapshotFormat.header(lsn: lsn, time: time, payloadLength: s.payloadBytes)
            let crc = CRC32C.combine(CRC32C.checksum(header), s.payloadCRC, lengthB: s.payloadBytes)
            var trailer = ByteWriter(capacity: 4)
            trailer.u32(crc)
            try store.io.pwrite(fd, header, offset: 0)
            try store.io.pwrite(fd, trailer.bytes, offset: SnapshotFormat.headerBytes + s.payloadBytes)
            try store.io.fsync(fd)
            s.finished = (lsn, time)
        }
    }

    /// Renames the finished file to its final name; returns its path.
    public func publish() throws -> String {
        let (fd, lsn) = try state.withLock { s throws -> (FileHandleID, UInt64) in
            guard let done = s.finished, let fd = s.fd else { throw IOError(errno: EINVAL, op: "snapshot publish (not finished)", path: temp) }
            s.fd = nil
            return (fd, done.lsn)
        }
        try store.io.close(fd)
        let path = FilePath.join(store.directory, SnapshotFormat.name(lsn: lsn))
        try store.io.rename(from: temp, to: path)
        try store.io.fsyncDirectory(store.directory)
        return path
    }

    /// Gives up: closes and deletes the temp file (nothing once published).
    public func abort() {
        guard let fd = state.withLock({ s -> FileHandleID? in defer { s.fd = nil }; return s.fd }) else { return }
        try? store.io.close(fd)
        try? store.io.unlink(temp)
    }

    deinit { abort() }
}
