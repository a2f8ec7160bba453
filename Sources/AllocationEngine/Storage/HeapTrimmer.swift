import Glibc
import Synchronization

/// Gives freed heap back to the kernel after rows leave memory.
///
/// Ended rows leave in chunks (112 KiB of holds, below glibc's mmap
/// threshold), so their memory is freed into malloc's arenas, which keep it:
/// without this, resident memory drifted up from the heap in use by tens of
/// MB over a 10-minute soak of one hot deal (RSS 130 -> 250 MB while the heap
/// in use stayed 75 -> 100 MB). `malloc_trim(0)` returns the free pages of
/// every arena (`MADV_DONTNEED` on free runs inside the heap too). It locks
/// each arena in turn while it walks it, so it runs at most once per
/// `minimumSeconds`, off the deal actors (the archiver's task).
///
/// Found with `dlsym`, since the Glibc module does not declare it: on a C
/// library without it the trimmer does nothing.
public final class HeapTrimmer: Sendable {
    private typealias Trim = @convention(c) (Int) -> Int32
    /// The function's address, as a bit pattern (a raw pointer is not Sendable);
    /// 0 when the C library has none.
    private let address: UInt
    private let last = Mutex<Double>(0)
    let minimumSeconds: Double

    init(minimumSeconds: Double = 2) {
        self.minimumSeconds = minimumSeconds
        address = UInt(bitPattern: dlsym(dlopen(nil, RTLD_NOW), "malloc_trim"))
    }

    /// Limits glibc to `count` malloc arenas (`mallopt(M_ARENA_MAX)`), unless
    /// `MALLOC_ARENA_MAX` is set in the environment (the operator's choice
    /// wins). glibc's default is 8 per core: each thread that allocates gets
    /// an arena of its own, and memory freed by a deal actor on one thread
    /// into another thread's arena stays there, fragmented. With one arena
    /// per core the 1-deal soak's resident memory stayed within 26-67 MB of
    /// the heap in use over 4 minutes, against 41-141 MB with the default.
    /// Returns whether the limit was set.
    @discardableResult
    public static func limitArenas(to count: Int) -> Bool {
        guard getenv("MALLOC_ARENA_MAX") == nil, count > 0 else { return false }
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
        let arenaMax: Int32 = -8  // M_ARENA_MAX in malloc.h
        return mallopt(arenaMax, Int32(min(count, Int(Int32.max)))) == 1
    }

    /// Has glibc map allocations of `bytes` or more on their own
    /// (`mallopt(M_MMAP_THRESHOLD)`), unless `MALLOC_MMAP_THRESHOLD_` is set
    /// in the environment. A full chunk of holds (1024 x 112 B = 112 KiB) is
    /// then one mapping, and freeing it when its rows leave for the history
    /// returns its pages at once, instead of leaving a hole in an arena that
    /// only a later trim (if the hole is whole pages) gives back. glibc's own
    /// threshold starts at 128 KiB, and setting it also stops glibc from
    /// raising it after each freed mapping (its dynamic threshold), which
    /// would send the chunks back into the arenas. At the hot deal's 150k
    /// holds/s that is about 150 `mmap`/`munmap` pairs a second. Smaller
    /// blocks (rows of allocations and approvals, reply buffers) stay in the
    /// arenas. Returns whether the threshold was set.
    @discardableResult
    public static func mapLargeBlocks(from bytes: Int = 96 * 1024) -> Bool {
        guard getenv("MALLOC_MMAP_THRESHOLD_") == nil, bytes > 0 else { return false }
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD in malloc.h
        return mallopt(mmapThreshold, Int32(min(bytes, Int(Int32.max)))) == 1
    }

    /// Trims now unless it did less than `minimumSeconds` ago; returns whether it ran.
    @discardableResult
    func trimIfDue(now: Double) -> Bool {
        guard address != 0 else { return false }
        let due = last.withLock { t -> Bool in
            guard now - t >= minimumSeconds else { return false }
            t = now
            return true
        }
        guard due, let pointer = UnsafeRawPointer(bitPattern: address) else { return false }
        let trim = unsafeBitCast(pointer, to: Trim.self)
        _ = trim(0)
        return true
    }
}
