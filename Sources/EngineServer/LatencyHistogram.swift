import WAL
import Synchronization

/// Latencies in microseconds, in log-linear buckets (8 per power of two, so a
/// reported percentile is within 1/8 of the true value). Recording is one short
/// lock; a batch records all its commands at once.
public final class LatencyHistogram: Sendable {
    static let subBuckets = 8
    static let powers = 40
    private let buckets = Locked<[UInt64]>([UInt64](repeating: 0, count: 8 * 40))

    public init() {}

    static func bucket(_ micros: UInt64) -> Int {
        if micros < UInt64(subBuckets) { return Int(micros) }
        let power = 63 - micros.leadingZeroBitCount            // >= 3
        let shift = power - 3
        let sub = Int((micros >> UInt64(shift)) & 7)
        return min((power - 2) * subBuckets + sub, subBuckets * powers - 1)
    }

    static func lowerBound(_ bucket: Int) -> UInt64 {
        if bucket < subBuckets { return UInt64(bucket) }
        let power = bucket / subBuckets + 2
        let sub = UInt64(bucket % subBuckets)
        return (8 + sub) << UInt64(power - 3)
    }

    public func record(micros: UInt64, count: Int = 1) {
        let b = Self.bucket(micros)
        buckets.withLock { $0[b] += UInt64(count) }
    }

    public var total: UInt64 { buckets.withLock { $0.reduce(0, +) } }

    /// The value at percentile `p` (0...100), in microseconds.
    public func percentile(_ p: Double) -> UInt64 {
        let snapshot = buckets.withLock { $0 }
        let n = snapshot.reduce(0, +)
        guard n > 0 else { return 0 }
        let rank = UInt64((Double(n) * p / 100).rounded(.up))
        var seen: UInt64 = 0
        for (i, c) in snapshot.enumerated() {
            seen += c
            if seen >= max(rank, 1) { return Self.lowerBound(i + 1) }
        }
        return Self.lowerBound(snapshot.count - 1)
    }
}
