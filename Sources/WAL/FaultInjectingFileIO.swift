// A real file layer that fails one chosen fdatasync, for the process tests of
// the fail-stop path (`serve --debug-fail-fdatasync N` in debug builds only):
// a real disk error cannot be summoned on demand, and the simulated layer
// does not run in a child process.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class FaultInjectingFileIO: FileIO {
    let base: any FileIO
    /// fdatasync calls left before the failing one (0: the next one fails; negative: done).
    private let countdown: Atomic<Int>

    /// Fails the `failingFdatasync`-th fdatasync (counting from 1) with EIO.
    public init(base: any FileIO, failingFdatasync: Int) {
        precondition(failingFdatasync >= 1, "fdatasyncs count from 1")
        self.base = base
        countdown = Atomic(failingFdatasync - 1)
    }

    public func fdatasync(_ fd: FileHandleID) throws(IOError) {
        if countdown.subtract(1, ordering: .relaxed).oldValue == 0 {
            throw IOError(errno: EIO, op: "fdatasync", path: "\(fd) (injected by --debug-fail-fdatasync)")
        }
        try base.fdatasync(fd)
    }

    public func create(_ path: String) throws(IOError) -> FileHandleID { try base.create(path) }
    public func openForAppend(_ path: String) throws(IOError) -> FileHandleID { try base.openForAppend(path) }
    public func open(_ path: String, readOnly: Bool) throws(IOError) -> FileHandleID { try base.open(path, readOnly: readOnly) }
    public func pwrite(_ fd: FileHandleID, _ bytes: UnsafeRawBufferPointer, offset: Int) throws(IOError) {
        try base.pwrite(fd, bytes, offset: offset)
    }
    public func write(_ fd: FileHandleID, _ bytes: UnsafeRawBufferPointer) throws(IOError) { try base.write(fd, bytes) }
    public func pread(_ fd: FileHandleID, into buffer: UnsafeMutableRawBufferPointer, offset: Int) throws(IOError) -> Int {
        try base.pread(fd, into: buffer, offset: offset)
    }
    public func readAll(_ path: String) throws(IOError) -> [UInt8] { try base.readAll(path) }
    public func fsync(_ fd: FileHandleID) throws(IOError) { try base.fsync(fd) }
    public func fsyncDirectory(_ path: String) throws(IOError) { try base.fsyncDirectory(path) }
    public func rename(from: String, to: String) throws(IOError) { try base.rename(from: from, to: to) }
    public func unlink(_ path: String) throws(IOError) { try base.unlink(path) }
    public func truncate(_ fd: FileHandleID, length: Int) throws(IOError) { try base.truncate(fd, length: length) }
    public func fileSize(_ fd: FileHandleID) throws(IOError) -> Int { try base.fileSize(fd) }
    public func fileSize(path: String) throws(IOError) -> Int { try base.fileSize(path: path) }
    public func listDirectory(_ path: String) throws(IOError) -> [String] { try base.listDirectory(path) }
    public func createDirectory(_ path: String) throws(IOError) { try base.createDirectory(path) }
    public func fileExists(_ path: String) -> Bool { base.fileExists(path) }
    public func preallocate(_ fd: FileHandleID, length: Int) throws(IOError) { try base.preallocate(fd, length: length) }
    public func close(_ fd: FileHandleID) throws(IOError) { try base.close(fd) }
}
