#if canImport(Glibc)
import Glibc
#endif

/// A value behind a mutex: the one lock of the codebase (every shared mutable
/// state that is not an actor's or an atomic's is one of these).
///
/// Why not `Synchronization.Mutex`: on Linux it locks with atomics and futex
/// calls inside the standard library, which the thread sanitizer does not see,
/// so every access under it is reported as a race (a two-thread program that
/// only appends to a `Mutex<[Int]>` gets 5 reports; the same with this lock
/// gets none). `pthread_mutex_lock` is intercepted by the sanitizer, so with
/// this lock a TSan run reports only real races. Uncontended it costs one
/// atomic exchange each way, like `Mutex`. A class, so it has a stable address
/// for the pthread mutex and can live in arrays (sharded maps).
public final class Locked<Value: ~Copyable>: @unchecked Sendable {
    // @unchecked Sendable, proved: `value` is read and written only inside
    // `withLock`, between `pthread_mutex_lock` and `pthread_mutex_unlock` of
    // `mutex`, so no two threads ever touch it at once; `mutex` itself is only
    // handed to the pthread calls, which are thread-safe by contract. Values
    // cross threads only through `sending` parameters and results, as with
    // `Mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: consuming sending Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let rc = pthread_mutex_init(mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    @inline(__always)
    public func withLock<Result: ~Copyable, E: Error>(_ body: (inout sending Value) throws(E) -> sending Result) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
