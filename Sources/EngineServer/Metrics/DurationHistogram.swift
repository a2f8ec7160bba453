import Synchronization

/// One counter that any thread may add to: a relaxed atomic in an object of
/// its own, so that a table of them (per bucket, per error code) is an array.
final class AtomicCounter: Sendable {
    private let value = Atomic<UInt64>(0)
    init() {}
    @inline(__always) func add(_ n: UInt64) { value.add(n, ordering: .relaxed) }
    var load: UInt64 { value.load(ordering: .relaxed) }
}

/// A Prometheus-style histogram of durations: fixed upper bounds (seconds, as
/// Prometheus' client libraries use), lock-free. Recording is a short scan of
/// the bounds and two relaxed atomic adds, done once per batch with the number
/// of commands it answered, never per command; a scrape reads the buckets and
/// makes them cumulative. `INFO`'s percentiles keep their own finer histogram
/// (`LatencyHistogram`).
public final class DurationHistogram: Sendable {
    /// 50 µs to 10 s: strict durability puts most batches between a fraction
    /// of a millisecond (fdatasync on fast disks) and tens of milliseconds.
    static let defaultBoundsNanos: [UInt64] = [
        50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000,
        100_000_000, 250_000_000, 500_000_000,
        1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000,
    ]

    let boundsNanos: [UInt64]
    /// One per bound, then one for values above the last (`+Inf`); not cumulative.
    private let buckets: [AtomicCounter]
    private let sum = AtomicCounter()

    init(boundsNanos: [UInt64] = DurationHistogram.defaultBoundsNanos) {
        precondition(!boundsNanos.isEmpty && zip(boundsNanos, boundsNanos.dropFirst()).allSatisfy { $0 < $1 },
                     "histogram bounds must increase")
        self.boundsNanos = boundsNanos
        buckets = (0...boundsNanos.count).map { _ in AtomicCounter() }
    }

    /// Records `count` observations of `nanos` each.
    func record(nanos: UInt64, count: Int = 1) {
        guard count > 0 else { return }
        var i = 0
        while i < boundsNanos.count && nanos > boundsNanos[i] { i += 1 }
        buckets[i].add(UInt64(count))
        sum.add(nanos &* UInt64(count))
    }

    struct Snapshot {
        var boundsNanos: [UInt64]
        /// Per bucket (not cumulative), the last one above every bound.
        var counts: [UInt64]
        var sumNanos: UInt64
        var count: UInt64 { counts.reduce(0, +) }
    }

    /// The buckets as of now. Each is read atomically, not all at one instant:
    /// a batch recorded during the read may show in its bucket but not yet in
    /// the sum. Every value only grows, so a later read never shows less.
    func snapshot() -> Snapshot {
        let counts = buckets.map(\.load)
        return Snapshot(boundsNanos: boundsNanos, counts: counts, sumNanos: sum.load)
    }
}
