// The real file layer: thin wrappers over POSIX calls with typed errors,
import Synchronization
// EINTR retry and short-write loops.
import CLinux
#if canImport(Glibc)
import Glibc
#endif

public final class PosixFileIO: FileIO {
    /// Chunk size for the zero-fill fallback of `preallocate`.
    static let zeroFillChunkBytes = 1 << 20
    /// Permissions of created files and directories (before umask).
    static let fileMode: mode_t = 0o644
    static let directoryMode: mode_t = 0o755

    /// Paths of open descriptors, so errors can name the file.
    /// Guarded by the mutex; `PosixFileIO` is otherwise stateless.
    private let paths = Locked<[Int32: String]>([:])

    public init() {}

    private func path(_ fd: FileHandleID) -> String {
        paths.withLock { $0[fd.raw] } ?? "fd \(fd.raw)"
    }

    private func openFlags(_ path: String, _ flags: Int32, op: String) throws(IOError) -> FileHandleID {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, PosixFileIO.fileMode)
            if fd >= 0 {
                paths.withLock { $0[fd] = path }
                return FileHandleID(raw: fd)
            }
            if errno == EINTR { continue }
            throw IOError(errno: errno, op: op, path: path)
        }
    }

    public func create(_ path: String) throws(IOError) -> FileHandleID {
        try openFlags(path, O_RDWR | O_CREAT | O_TRUNC, op: "create")
    }

    public func openForAppend(_ path: String) throws(IOError) -> FileHandleID {
        try openFlags(path, O_RDWR | O_CREAT, op: "openForAppend")
    }

    public func open(_ path: String, readOnly: Bool) throws(IOError) -> FileHandleID {
        try openFlags(path, readOnly ? O_RDONLY : O_RDWR, op: "open")
    }

    public func pwrite(_ fd: FileHandleID, _ bytes: UnsafeRawBufferPointer, offset: Int) throws(IOError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.pwrite(fd.raw, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            // n == 0 for a non-empty write means no progress: report as ENOSPC.
            throw IOError(errno: n == 0 ? ENOSPC : errno, op: "pwrite", path: path(fd))
        }
    }

    public func write(_ fd: FileHandleID, _ bytes: UnsafeRawBufferPointer) throws(IOError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd.raw, bytes.baseAddress! + done, bytes.count - done)
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw IOError(errno: n == 0 ? ENOSPC : errno, op: "write", path: path(fd))
        }
    }

    public func pread(_ fd: FileHandleID, into buffer: UnsafeMutableRawBufferPointer, offset: Int) throws(IOError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd.raw, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n == 0 { break }  // end of file
            if errno == EINTR { continue }
            throw IOError(errno: errno, op: "pread", path: path(fd))
        }
        return done
    }

    public func readAll(_ path: String) throws(IOError) -> [UInt8] {
        let fd = try open(path, readOnly: true)
        defer { try? close(fd) }
        let size = try fileSize(fd)
        var result = [UInt8](repeating: 0, count: size)
        let read = try withMutableBytes(&result) { (buffer) throws(IOError) -> Int in
            try pread(fd, into: buffer, offset: 0)
        }
        if read < size { result.removeLast(size - read) }
        return result
    }

    private func retry(_ op: String, _ path: @autoclosure () -> String, _ body: () -> Int32) throws(IOError) {
        while true {
            if body() == 0 { return }
            if errno == EINTR { continue }
            throw IOError(errno: errno, op: op, path: path())
        }
    }

    public func fdatasync(_ fd: FileHandleID) throws(IOError) {
        // Never retried after a real failure: after EIO the kernel may have
        // dropped the dirty pages, so a second fdatasync could "succeed" over lost data.
        try retry("fdatasync", path(fd)) { Glibc.fdatasync(fd.raw) }
    }

    public func fsync(_ fd: FileHandleID) throws(IOError) {
        try retry("fsync", path(fd)) { Glibc.fsync(fd.raw) }
    }

    public func fsyncDirectory(_ path: String) throws(IOError) {
        let fd = try openFlags(path, O_RDONLY | O_DIRECTORY, op: "openDirectory")
        defer { try? close(fd) }
        try retry("fsyncDirectory", path) { Glibc.fsync(fd.raw) }
    }

    public func rename(from: String, to: String) throws(IOError) {
        try retry("rename", "\(from) -> \(to)") { Glibc.rename(from, to) }
    }

    public func unlink(_ path: String) throws(IOError) {
        try retry("unlink", path) { Glibc.unlink(path) }
    }

    public func truncate(_ fd: FileHandleID, length: Int) throws(IOError) {
        try retry("ftruncate", path(fd)) { Glibc.ftruncate(fd.raw, off_t(length)) }
    }

    public func fileSize(_ fd: FileHandleID) throws(IOError) -> Int {
        var st = stat()
        try retry("fstat", path(fd)) { Glibc.fstat(fd.raw, &st) }
        return Int(st.st_size)
    }

    public func fileSize(path: String) throws(IOError) -> Int {
        var st = stat()
        try retry("stat", path) { stat(path, &st) }
        return Int(st.st_size)
    }

    public func listDirectory(_ path: String) throws(IOError) -> [String] {
        guard let dir = opendir(path) else { throw IOError(errno: errno, op: "opendir", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func createDirectory(_ path: String) throws(IOError) {
        if path.isEmpty || fileExists(path) { return }
        let parent = FilePath.parent(path)
        if parent != path && parent != "." && parent != "/" { try createDirectory(parent) }
        if Glibc.mkdir(path, PosixFileIO.directoryMode) != 0 && errno != EEXIST {
            throw IOError(errno: errno, op: "mkdir", path: path)
        }
    }

    public func fileExists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public func preallocate(_ fd: FileHandleID, length: Int) throws(IOError) {
        let size = try fileSize(fd)
        if size >= length { return }
        while true {
            if CLinux.fallocate(fd.raw, 0, off_t(size), off_t(length - size)) == 0 { return }
            if errno == EINTR { continue }
            if errno == EOPNOTSUPP || errno == ENOSYS { break }  // filesystem without fallocate
            throw IOError(errno: errno, op: "fallocate", path: path(fd))
        }
        let zeros = [UInt8](repeating: 0, count: PosixFileIO.zeroFillChunkBytes)
        var offset = size
        while offset < length {
            let n = min(zeros.count, length - offset)
            try withBytes(zeros) { (buffer) throws(IOError) in
                try pwrite(fd, UnsafeRawBufferPointer(rebasing: buffer[0..<n]), offset: offset)
            }
            offset += n
        }
    }

    public func close(_ fd: FileHandleID) throws(IOError) {
        let name = paths.withLock { $0.removeValue(forKey: fd.raw) } ?? "fd \(fd.raw)"
        // Do not retry close on EINTR: on Linux the descriptor is already released.
        if Glibc.close(fd.raw) != 0 && errno != EINTR {
            throw IOError(errno: errno, op: "close", path: name)
        }
    }
}
