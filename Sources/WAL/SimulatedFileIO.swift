// An in-memory file layer for tests, in the spirit of SQLite's test6.c crash
// layer and swift-system's mocking driver.
//
// Every file keeps two images: `durable` (what survives a crash) and `current`
// (what reads see). Writes, truncations and preallocations since the last
// fsync/fdatasync are kept as a list of pending operations; `crash(mode:)`
// decides, with a seeded RNG, which of them reach the durable image.
// Directory entries (create, rename, unlink) are durable only after
// `fsyncDirectory` of their parent. Directories themselves are durable at once.
//
// Faults can be armed to fail the Nth write / fsync / fdatasync, to write only
// part of the Nth write, or to run out of space; to cut the power at the Nth
// mutating operation (the machine is then off: every call fails until
// `powerOn`, as nothing runs on a machine without power); or, to prove that a
// test notices a missing sync, to skip the Nth fdatasync (it reports success
// and makes nothing durable, like a disk that lies about its cache).
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small deterministic RNG (SplitMix64) so every crash is replayable from its seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A number in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    /// True with the given chance in percent.
    public mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

public final class SimulatedFileIO: FileIO {
    public enum CrashMode: Sendable, CaseIterable {
        /// Every unsynced operation is lost.
        case dropUnsynced
        /// A random prefix (possibly empty, possibly all) of the unsynced operations survives.
        case keepRandomPrefix
        /// Each unsynced operation independently survives or not (reordering).
        case randomSubset
        /// All unsynced operations but the last survive; the last write is torn:
        /// a random prefix lands, the rest is either never written or garbage.
        case tearLastWrite
    }

    public enum Fault: Sendable {
        /// The nth write/pwrite call from now fails with `errno`, writing nothing.
        case failWrite(nth: Int, errno: Int32 = EIO)
        /// The nth write/pwrite call from now writes only `keepBytes`, then fails with `errno`.
        case shortWrite(nth: Int, keepBytes: Int, errno: Int32 = ENOSPC)
        /// The nth fsync (files and directories) from now fails.
        case failFsync(nth: Int, errno: Int32 = EIO)
        /// The nth fdatasync from now fails.
        case failFdatasync(nth: Int, errno: Int32 = EIO)
        /// Total bytes across all files may not exceed `capacityBytes` (ENOSPC).
        case diskFull(capacityBytes: Int)
        /// Power loss just before the nth mutating operation from now (create,
        /// open, write, truncate, preallocate, any sync, rename, unlink, close,
        /// mkdir): `crash(mode:)`, then every call fails with EIO until `powerOn()`.
        case powerLoss(nth: Int, mode: CrashMode)
        /// The nth fdatasync from now returns success but makes nothing durable:
        /// a sync the code "forgot". Only for proving that a test catches one.
        case skipFdatasync(nth: Int)
    }

    public struct Counts: Sendable, Equatable {
        public var writes = 0
        public var fsyncs = 0
        public var fdatasyncs = 0
        public var directoryFsyncs = 0
        public var crashes = 0
        /// Mutating operations (the ones a `powerLoss` fault counts).
        public var operations = 0
        /// fdatasyncs a `skipFdatasync` fault turned into no-ops.
        public var skippedFdatasyncs = 0
    }

    enum PendingOp {
        case write(offset: Int, bytes: [UInt8])
        case resize(Int)
    }

    struct Inode {
        var current: [UInt8] = []
        var durable: [UInt8] = []
        var pending: [PendingOp] = []
    }

    struct Handle {
        var inode: Int
        var path: String
        var position: Int
        var readOnly: Bool
    }

    struct ArmedFault {
        var fault: Fault
        var remaining: Int
    }

    struct State {
        var inodes: [Int: Inode] = [:]
        var namespace: [String: Int] = [:]
        var durableNamespace: [String: Int] = [:]
        var directories: Set<String> = ["/", "."]
        var handles: [Int32: Handle] = [:]
        var nextHandle: Int32 = 3
        var nextInode = 1
        var rng: SplitMix64
        var faults: [ArmedFault] = []
        var capacityBytes: Int? = nil
        var counts = Counts()
        /// Armed power loss: mutating operations left before it, and how it tears.
        var powerLoss: (remaining: Int, mode: CrashMode)? = nil
        var poweredOff = false
    }

    private let state: Locked<State>

    public init(seed: UInt64 = 1) {
        state = Locked(State(rng: SplitMix64(seed: seed)))
    }

    // MARK: Test controls

    public func inject(_ fault: Fault) {
        state.withLock { s in
            switch fault {
            case .diskFull(let capacity): s.capacityBytes = capacity
            case .powerLoss(let n, let mode):
                precondition(n >= 1, "faults count from 1")
                s.powerLoss = (n, mode)
            case .failWrite(let n, _), .shortWrite(let n, _, _), .failFsync(let n, _), .failFdatasync(let n, _), .skipFdatasync(let n):
                precondition(n >= 1, "faults count from 1")
                s.faults.append(ArmedFault(fault: fault, remaining: n))
            }
        }
    }

    public func clearFaults() {
        state.withLock { s in
            s.faults.removeAll()
            s.capacityBytes = nil
            s.powerLoss = nil
        }
    }

    /// Power loss now: `crash(mode:)`, then every call fails until `powerOn()`.
    public func cutPower(mode: CrashMode) {
        state.withLock { s in
            SimulatedFileIO.crash(&s, mode: mode)
            s.poweredOff = true
            s.powerLoss = nil
        }
    }

    /// Whether an armed `powerLoss` has cut the power (see `powerOn`).
    public var isPoweredOff: Bool { state.withLock { $0.poweredOff } }

    /// Power comes back after a `powerLoss`: calls work again on what the
    /// crash left (every handle opened before it is gone).
    public func powerOn() {
        state.withLock { s in
            s.poweredOff = false
            s.powerLoss = nil
        }
    }

    public var counts: Counts { state.withLock { $0.counts } }

    /// What reads currently see, or nil if the path does not exist.
    public func contents(_ path: String) -> [UInt8]? {
        state.withLock { s in s.namespace[path].flatMap { s.inodes[$0]?.current } }
    }

    /// Overwrites bytes of an existing file in both images (to simulate media corruption).
    /// Inverts `count` bytes at `offset` (current and durable contents): damage
    /// that is certain to change the file, unlike writing a fixed byte, which
    /// changes nothing where the file already holds it (a CRC byte is 0xFF one
    /// time in 256).
    public func damage(_ path: String, at offset: Int, count: Int = 1) {
        let current = state.withLock { s -> [UInt8] in
            guard let id = s.namespace[path], let inode = s.inodes[id] else { preconditionFailure("no file \(path)") }
            return inode.current
        }
        precondition(offset >= 0 && offset + count <= current.count, "damage past the end of \(path)")
        corrupt(path, at: offset, with: current[offset..<(offset + count)].map { ~$0 })
    }

    public func corrupt(_ path: String, at offset: Int, with bytes: [UInt8]) {
        state.withLock { s in
            guard let id = s.namespace[path], var inode = s.inodes[id] else { preconditionFailure("no file \(path)") }
            SimulatedFileIO.apply(.write(offset: offset, bytes: bytes), to: &inode.current)
            SimulatedFileIO.apply(.write(offset: offset, bytes: bytes), to: &inode.durable)
            s.inodes[id] = inode
        }
    }

    /// Simulates power loss: every open handle becomes invalid, the namespace
    /// reverts to its durable state, and each file keeps its durable image plus
    /// whatever unsynced operations `mode` lets through.
    public func crash(mode: CrashMode) {
        state.withLock { s in SimulatedFileIO.crash(&s, mode: mode) }
    }

    private static func crash(_ s: inout State, mode: CrashMode) {
        s.counts.crashes += 1
        for id in s.inodes.keys.sorted() {
            var inode = s.inodes[id]!
            var image = inode.durable
            let ops = inode.pending
            switch mode {
            case .dropUnsynced:
                break
            case .keepRandomPrefix:
                let keep = Int.random(in: 0...ops.count, using: &s.rng)
                for op in ops.prefix(keep) { SimulatedFileIO.apply(op, to: &image) }
            case .randomSubset:
                for op in ops where Bool.random(using: &s.rng) { SimulatedFileIO.apply(op, to: &image) }
            case .tearLastWrite:
                for op in ops.dropLast() { SimulatedFileIO.apply(op, to: &image) }
                if let last = ops.last {
                    switch last {
                    case .resize:
                        SimulatedFileIO.apply(last, to: &image)
                    case .write(let offset, let bytes):
                        let kept = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &s.rng)
                        var torn = Array(bytes.prefix(kept))
                        if Bool.random(using: &s.rng) {
                            // The rest of the sector range holds garbage.
                            let garbage = Int.random(in: 1...max(1, min(64, bytes.count - kept)), using: &s.rng)
                            for _ in 0..<garbage { torn.append(UInt8.random(in: 1...255, using: &s.rng)) }
                        }
                        SimulatedFileIO.apply(.write(offset: offset, bytes: torn), to: &image)
                    }
                }
            }
            inode.durable = image
            inode.current = image
            inode.pending = []
            s.inodes[id] = inode
        }
        s.namespace = s.durableNamespace
        let live = Set(s.namespace.values)
        for id in Array(s.inodes.keys) where !live.contains(id) { s.inodes[id] = nil }
        s.handles.removeAll()
    }

    // MARK: Internals

    static func apply(_ op: PendingOp, to image: inout [UInt8]) {
        switch op {
        case .write(let offset, let bytes):
            if offset + bytes.count > image.count {
                image.append(contentsOf: repeatElement(0, count: offset + bytes.count - image.count))
            }
            image.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        case .resize(let length):
            if length < image.count {
                image.removeLast(image.count - length)
            } else if length > image.count {
                image.append(contentsOf: repeatElement(0, count: length - image.count))
            }
        }
    }

    /// Every mutating call starts here: fails while the power is off, and cuts
    /// it when an armed `powerLoss` comes due (the call itself never happens).
    private static func tick(_ s: inout State, _ op: String, _ path: String) throws(IOError) {
        if s.poweredOff { throw IOError(errno: EIO, op: op, path: "\(path) (power is off)") }
        s.counts.operations += 1
        guard var armed = s.powerLoss else { return }
        armed.remaining -= 1
        if armed.remaining > 0 {
            s.powerLoss = armed
            return
        }
        s.powerLoss = nil
        crash(&s, mode: armed.mode)
        s.poweredOff = true
        throw IOError(errno: EIO, op: op, path: "\(path) (power lost)")
    }

    /// Reads fail while the power is off.
    private static func powered(_ s: State, _ op: String, _ path: String) throws(IOError) {
        if s.poweredOff { throw IOError(errno: EIO, op: op, path: "\(path) (power is off)") }
    }

    /// Consumes an armed fault matching `kind` if its count reaches zero.
    private static func takeFault(_ s: inout State, _ matches: (Fault) -> Bool) -> Fault? {
        for index in s.faults.indices where matches(s.faults[index].fault) {
            s.faults[index].remaining -= 1
            if s.faults[index].remaining == 0 {
                return s.faults.remove(at: index).fault
            }
            return nil
        }
        return nil
    }

    private static func usedBytes(_ s: State) -> Int {
        s.inodes.values.reduce(0) { $0 + $1.current.count }
    }

    private func handle(_ s: State, _ fd: FileHandleID, _ op: String) throws(IOError) -> Handle {
        guard let h = s.handles[fd.raw], s.inodes[h.inode] != nil else {
            throw IOError(errno: EBADF, op: op, path: "fd \(fd.raw)")
        }
        return h
    }

    private func openHandle(_ path: String, create: Bool, truncate: Bool, readOnly: Bool, op: String) throws(IOError) -> FileHandleID {
        try state.withLock { (s) throws(IOError) -> FileHandleID in
            try SimulatedFileIO.tick(&s, op, path)
            guard s.directories.contains(FilePath.parent(path)) else {
                throw IOError(errno: ENOENT, op: op, path: path)
            }
            if s.directories.contains(path) { throw IOError(errno: EISDIR, op: op, path: path) }
            let id: Int
            if let existing = s.namespace[path] {
                id = existing
                if truncate {
                    s.inodes[id]!.current = []
                    s.inodes[id]!.pending.append(.resize(0))
                }
            } else {
                guard create else { throw IOError(errno: ENOENT, op: op, path: path) }
                id = s.nextInode
                s.nextInode += 1
                s.inodes[id] = Inode()
                s.namespace[path] = id
            }
            let fd = s.nextHandle
            s.nextHandle += 1
            s.handles[fd] = Handle(inode: id, path: path, position: 0, readOnly: readOnly)
            return FileHandleID(raw: fd)
        }
    }

    private func doWrite(_ fd: FileHandleID, _ bytes: UnsafeRawBufferPointer, offset: Int?, op: String) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, op, "fd \(fd.raw)")
            var h = try handle(s, fd, op)
            if h.readOnly { throw IOError(errno: EBADF, op: op, path: h.path) }
            s.counts.writes += 1
            let at = offset ?? h.position
            var data = [UInt8](bytes)
            var failure: IOError? = nil
            if let fault = SimulatedFileIO.takeFault(&s, { f in
                switch f { case .failWrite, .shortWrite: true; default: false }
            }) {
                switch fault {
                case .failWrite(_, let e):
                    throw IOError(errno: e, op: op, path: h.path)
                case .shortWrite(_, let keep, let e):
                    data = Array(data.prefix(max(0, keep)))
                    failure = IOError(errno: e, op: op, path: h.path)
                default:
                    preconditionFailure("unreachable fault kind")
                }
            }
            if let capacity = s.capacityBytes {
                let size = s.inodes[h.inode]!.current.count
                let growth = max(0, at + data.count - size)
                let free = capacity - SimulatedFileIO.usedBytes(s)
                if growth > free {
                    let fits = max(0, free + (size - at))
                    data = Array(data.prefix(max(0, min(data.count, fits))))
                    failure = IOError(errno: ENOSPC, op: op, path: h.path)
                }
            }
            if !data.isEmpty {
                SimulatedFileIO.apply(.write(offset: at, bytes: data), to: &s.inodes[h.inode]!.current)
                s.inodes[h.inode]!.pending.append(.write(offset: at, bytes: data))
            }
            if offset == nil {
                h.position = at + data.count
                s.handles[fd.raw] = h
            }
            if let failure { throw failure }
        }
    }

    private func doSync(_ fd: FileHandleID, data: Bool) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, data ? "fdatasync" : "fsync", "fd \(fd.raw)")
            let h = try handle(s, fd, data ? "fdatasync" : "fsync")
            if data { s.counts.fdatasyncs += 1 } else { s.counts.fsyncs += 1 }
            if data, SimulatedFileIO.takeFault(&s, { f in if case .skipFdatasync = f { true } else { false } }) != nil {
                s.counts.skippedFdatasyncs += 1
                return  // "forgotten": success, nothing made durable
            }
            let fault = SimulatedFileIO.takeFault(&s) { f in
                switch f {
                case .failFdatasync: data
                case .failFsync: !data
                default: false
                }
            }
            if let fault {
                // Like Linux after a failed writeback: the dirty pages are
                // dropped from the durable path but reads still see them, so a
                // later "successful" fsync would not make them durable.
                s.inodes[h.inode]!.pending = []
                switch fault {
                case .failFdatasync(_, let e), .failFsync(_, let e):
                    throw IOError(errno: e, op: data ? "fdatasync" : "fsync", path: h.path)
                default: preconditionFailure("unreachable fault kind")
                }
            }
            var inode = s.inodes[h.inode]!
            for op in inode.pending { SimulatedFileIO.apply(op, to: &inode.durable) }
            inode.pending = []
            s.inodes[h.inode] = inode
        }
    }

    // MARK: FileIO

    public func create(_ path: String) throws(IOError) -> FileHandleID {
        try openHandle(path, create: true, truncate: true, readOnly: false, op: "create")
    }

    public func openForAppend(_ path: String) throws(IOError) -> FileHandleID {
        try openHandle(path, create: true, truncate: false, readOnly: false, op: "openForAppend")
    }

    public func open(_ path: String, readOnly: Bool) throws(IOError) -> FileHandleID {
        try openHandle(path, create: false, truncate: false, readOnly: readOnly, op: "open")
    }

    public func pwrite(_ fd: FileHandleID, _ bytes: UnsafeRawBufferPointer, offset: Int) throws(IOError) {
        try doWrite(fd, bytes, offset: offset, op: "pwrite")
    }

    public func write(_ fd: FileHandleID, _ bytes: UnsafeRawBufferPointer) throws(IOError) {
        try doWrite(fd, bytes, offset: nil, op: "write")
    }

    public func pread(_ fd: FileHandleID, into buffer: UnsafeMutableRawBufferPointer, offset: Int) throws(IOError) -> Int {
        try state.withLock { (s) throws(IOError) -> Int in
            try SimulatedFileIO.powered(s, "pread", "fd \(fd.raw)")
            let h = try handle(s, fd, "pread")
            let image = s.inodes[h.inode]!.current
            guard offset < image.count else { return 0 }
            let n = min(buffer.count, image.count - offset)
            image.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: n)
            }
            return n
        }
    }

    public func readAll(_ path: String) throws(IOError) -> [UInt8] {
        try state.withLock { (s) throws(IOError) -> [UInt8] in
            try SimulatedFileIO.powered(s, "readAll", path)
            guard let id = s.namespace[path], let inode = s.inodes[id] else {
                throw IOError(errno: ENOENT, op: "readAll", path: path)
            }
            return inode.current
        }
    }

    public func fdatasync(_ fd: FileHandleID) throws(IOError) { try doSync(fd, data: true) }

    public func fsync(_ fd: FileHandleID) throws(IOError) { try doSync(fd, data: false) }

    public func fsyncDirectory(_ path: String) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, "fsyncDirectory", path)
            guard s.directories.contains(path) else { throw IOError(errno: ENOENT, op: "fsyncDirectory", path: path) }
            s.counts.directoryFsyncs += 1
            if let fault = SimulatedFileIO.takeFault(&s, { f in if case .failFsync = f { true } else { false } }),
               case .failFsync(_, let e) = fault {
                throw IOError(errno: e, op: "fsyncDirectory", path: path)
            }
            for (name, _) in s.durableNamespace where FilePath.parent(name) == path && s.namespace[name] == nil {
                s.durableNamespace[name] = nil
            }
            for (name, id) in s.namespace where FilePath.parent(name) == path {
                s.durableNamespace[name] = id
            }
        }
    }

    public func rename(from: String, to: String) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, "rename", from)
            guard let id = s.namespace[from] else { throw IOError(errno: ENOENT, op: "rename", path: from) }
            guard s.directories.contains(FilePath.parent(to)) else { throw IOError(errno: ENOENT, op: "rename", path: to) }
            s.namespace[from] = nil
            s.namespace[to] = id
        }
    }

    public func unlink(_ path: String) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, "unlink", path)
            guard s.namespace.removeValue(forKey: path) != nil else {
                throw IOError(errno: ENOENT, op: "unlink", path: path)
            }
            // The inode lives on while a handle or the durable namespace references it.
        }
    }

    public func truncate(_ fd: FileHandleID, length: Int) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, "ftruncate", "fd \(fd.raw)")
            let h = try handle(s, fd, "ftruncate")
            SimulatedFileIO.apply(.resize(length), to: &s.inodes[h.inode]!.current)
            s.inodes[h.inode]!.pending.append(.resize(length))
        }
    }

    public func fileSize(_ fd: FileHandleID) throws(IOError) -> Int {
        try state.withLock { (s) throws(IOError) -> Int in
            try SimulatedFileIO.powered(s, "fstat", "fd \(fd.raw)")
            let h = try handle(s, fd, "fstat")
            return s.inodes[h.inode]!.current.count
        }
    }

    public func fileSize(path: String) throws(IOError) -> Int {
        try state.withLock { (s) throws(IOError) -> Int in
            try SimulatedFileIO.powered(s, "stat", path)
            guard let id = s.namespace[path], let inode = s.inodes[id] else {
                throw IOError(errno: ENOENT, op: "stat", path: path)
            }
            return inode.current.count
        }
    }

    public func listDirectory(_ path: String) throws(IOError) -> [String] {
        try state.withLock { (s) throws(IOError) -> [String] in
            try SimulatedFileIO.powered(s, "opendir", path)
            guard s.directories.contains(path) else { throw IOError(errno: ENOENT, op: "opendir", path: path) }
            var names: [String] = []
            for name in s.namespace.keys where FilePath.parent(name) == path { names.append(FilePath.name(name)) }
            for dir in s.directories where dir != path && FilePath.parent(dir) == path { names.append(FilePath.name(dir)) }
            return names.sorted()
        }
    }

    public func createDirectory(_ path: String) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, "mkdir", path)
            var p = path
            while !p.isEmpty && p != "/" && p != "." && !s.directories.contains(p) {
                s.directories.insert(p)
                p = FilePath.parent(p)
            }
        }
    }

    public func fileExists(_ path: String) -> Bool {
        state.withLock { s in !s.poweredOff && (s.namespace[path] != nil || s.directories.contains(path)) }
    }

    public func preallocate(_ fd: FileHandleID, length: Int) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, "fallocate", "fd \(fd.raw)")
            let h = try handle(s, fd, "fallocate")
            let size = s.inodes[h.inode]!.current.count
            guard length > size else { return }
            if let capacity = s.capacityBytes, SimulatedFileIO.usedBytes(s) + (length - size) > capacity {
                throw IOError(errno: ENOSPC, op: "fallocate", path: h.path)
            }
            SimulatedFileIO.apply(.resize(length), to: &s.inodes[h.inode]!.current)
            s.inodes[h.inode]!.pending.append(.resize(length))
        }
    }

    public func close(_ fd: FileHandleID) throws(IOError) {
        try state.withLock { (s) throws(IOError) in
            try SimulatedFileIO.tick(&s, "close", "fd \(fd.raw)")
            guard s.handles.removeValue(forKey: fd.raw) != nil else {
                throw IOError(errno: EBADF, op: "close", path: "fd \(fd.raw)")
            }
        }
    }
}
