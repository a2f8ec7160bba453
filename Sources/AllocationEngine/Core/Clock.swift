import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The one source of time. Engine code never reads the wall clock directly; tests
/// inject a `ManualClock`, replay uses the logged times.
public protocol EngineClock: Sendable {
    /// Unix time in milliseconds.
    func nowMillis() -> Int64
}

public struct SystemClock: EngineClock {
    public init() {}
    public func nowMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// A clock that moves only when told to.
public final class ManualClock: EngineClock {
    private let millis: Atomic<Int64>
    public init(millis: Int64 = 1_767_225_600_000) { self.millis = Atomic(millis) }
    public func nowMillis() -> Int64 { millis.load(ordering: .acquiring) }
    public func advance(millis delta: Int64) { millis.add(delta, ordering: .releasing) }
    public func set(millis value: Int64) { millis.store(value, ordering: .releasing) }
}
