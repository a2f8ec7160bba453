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

    public static func encode(lsn: UInt64, time: Int64, payload: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: headerBytes + payload.count + trailerBytes)
        w.bytes(magic)
        w.u16(version)
        w.u16(0)
        w.u32(0)
        w.u64(lsn)
        w.i64(time)
        w.u64(UInt64(payload.count))
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
