import Synchronization

/// A mutex-protected value in a class box, so several can live in an array
/// (`Mutex` itself is non-copyable). Used for sharded maps.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    @inline(__always)
    public func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}
