import WAL
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

/// The one source of secrets (access tokens, invite-link tokens): 256 random
/// bits as 64 hex characters. Injectable like the clock, so a test can run two
/// engines through the same history and compare their digests.
public protocol SecretSource: Sendable {
    func token() -> String
}

/// The kernel's randomness (/dev/urandom).
public struct SystemSecrets: SecretSource {
    public init() {}
    public func token() -> String { Engine.randomToken() }
}

/// A deterministic sequence from a seed (tests only: never for a real server).
public final class SeededSecrets: SecretSource {
    private let rng: Locked<SplitMix64Tokens>
    public init(seed: UInt64) { rng = Locked(SplitMix64Tokens(state: seed)) }
    public func token() -> String {
        rng.withLock { r in
            var s = ""
            for _ in 0..<4 {
                let v = r.next()
                let hex = String(v, radix: 16)
                s += String(repeating: "0", count: 16 - hex.count) + hex
            }
            return s
        }
    }
}

struct SplitMix64Tokens: Sendable {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
