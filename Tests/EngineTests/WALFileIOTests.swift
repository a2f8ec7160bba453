import Glibc
import Testing
@testable import WAL

func makeTempDirectory(_ tag: String) -> String {
    var template = Array("/tmp/wal-test-\(tag)-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return path
}

func removeTree(_ path: String) {
    let io = PosixFileIO()
    for name in (try? io.listDirectory(path)) ?? [] { try? io.unlink(FilePath.join(path, name)) }
    rmdir(path)
}

@Suite struct FileIOTests {
    @Test func posixBasics() throws {
        let dir = makeTempDirectory("fileio")
        defer { removeTree(dir) }
        let io = PosixFileIO()
        let path = FilePath.join(dir, "a.bin")
        let fd = try io.create(path)
        try io.pwrite(fd, [1, 2, 3, 4], offset: 0)
        try io.write(fd, [9])
        try io.preallocate(fd, length: 4096)
        #expect(try io.fileSize(fd) == 4096)
        try io.fdatasync(fd)
        try io.truncate(fd, length: 4)
        try io.fsync(fd)
        try io.close(fd)
        #expect(try io.readAll(path) == [9, 2, 3, 4])  // write() starts at position 0
        try io.rename(from: path, to: path + ".b")
        try io.fsyncDirectory(dir)
        #expect(try io.listDirectory(dir) == ["a.bin.b"])
        #expect(!io.fileExists(path))
        try io.unlink(path + ".b")
        #expect(throws: IOError.self) { try io.open(path, readOnly: true) }
        let nested = FilePath.join(dir, "x/y/z")
        try io.createDirectory(nested)
        #expect(io.fileExists(nested))
        rmdir(nested); rmdir(FilePath.join(dir, "x/y")); rmdir(FilePath.join(dir, "x"))
    }

    @Test func simulatedCrashKeepsOnlySyncedDataAndDirectoryEntries() throws {
        let io = SimulatedFileIO(seed: 1)
        try io.createDirectory("/d")
        let fd = try io.create("/d/f")
        try io.pwrite(fd, [1, 2, 3], offset: 0)
        try io.fsync(fd)
        try io.fsyncDirectory("/d")
        try io.pwrite(fd, [4, 5], offset: 3)
        let other = try io.create("/d/unsynced-entry")
        try io.pwrite(other, [7], offset: 0)
        try io.fsync(other)  // data synced, but the directory entry is not
        io.crash(mode: .dropUnsynced)
        #expect(io.contents("/d/f") == [1, 2, 3])
        #expect(!io.fileExists("/d/unsynced-entry"))
        #expect(throws: IOError.self) { try io.pwrite(fd, [1], offset: 0) }  // handles die in a crash
    }

    @Test func simulatedRenameIsDurableOnlyAfterDirectorySync() throws {
        let io = SimulatedFileIO(seed: 2)
        try io.createDirectory("/d")
        let fd = try io.create("/d/tmp")
        try io.pwrite(fd, [1], offset: 0)
        try io.fsync(fd)
        try io.fsyncDirectory("/d")
        try io.rename(from: "/d/tmp", to: "/d/final")
        io.crash(mode: .dropUnsynced)
        #expect(io.fileExists("/d/tmp") && !io.fileExists("/d/final"))
    }

    @Test func simulatedFaults() throws {
        let io = SimulatedFileIO(seed: 3)
        try io.createDirectory("/d")
        let fd = try io.create("/d/f")
        io.inject(.failWrite(nth: 2))
        try io.pwrite(fd, [1], offset: 0)
        #expect(throws: IOError.self) { try io.pwrite(fd, [2], offset: 1) }
        io.inject(.shortWrite(nth: 1, keepBytes: 2))
        #expect(throws: IOError.self) { try io.pwrite(fd, [5, 6, 7, 8], offset: 1) }
        #expect(io.contents("/d/f") == [1, 5, 6])
        io.inject(.failFdatasync(nth: 1))
        #expect(throws: IOError.self) { try io.fdatasync(fd) }
        // The failed sync dropped the dirty data from the durable path: a
        // later successful sync does not bring it back.
        try io.fdatasync(fd)
        try io.fsyncDirectory("/d")
        io.crash(mode: .keepRandomPrefix)
        #expect(io.contents("/d/f") == [])
        let g = try io.create("/d/g")
        io.inject(.diskFull(capacityBytes: 10))
        do {
            try io.pwrite(g, [UInt8](repeating: 1, count: 100), offset: 0)
            Issue.record("expected ENOSPC")
        } catch {
            #expect(error.errno == ENOSPC)
        }
    }
}
