import AllocationEngine

/// What the request handler counts for `/metrics`: the outcome of every
/// `HOLD`, `RELEASE` and `ALLOCATE` as its reply went out, and how long batches
/// took. The handler tallies a batch in a local `Tally` while it encodes the
/// replies and adds it here once (a few relaxed atomic adds per batch, none per
/// command, no lock).
///
/// Outcomes are counted from the replies the clients got:
/// - `placed`: a `HOLD` answered with a hold (a retry with the same `ID`,
///   answered with the same hold, counts again);
/// - `refused`: a `HOLD` answered with an error, by its code, whether the
///   command was refused when parsed (`INVALID`, `NOPERM`, `NOAUTH`, ...), by the
///   deal (`INSUFFICIENT`, `CLOSED`, ...) or by the log (`READONLY`, `LIMIT`);
/// - `released`: a `RELEASE` answered `OK`;
/// - `allocated`: an `ALLOCATE` answered with an allocation id.
/// Holds the engine ends by itself (expired, cancelled with their deal) are
/// counted by the engine (`Engine.holdEnds`).
public final class RequestMetrics: Sendable {
    /// The commands whose replies are counted (the others are `.other`).
    enum Tracked: UInt8, Sendable {
        case other, hold, release, allocate

        init(name: String) {
            switch name {
            case "HOLD": self = .hold
            case "RELEASE": self = .release
            case "ALLOCATE": self = .allocate
            default: self = .other
            }
        }
    }

    /// Every code a refused `HOLD` may carry, in the order they are exposed;
    /// any other code counts as `OTHER`.
    static let refusalCodes = [
        "INSUFFICIENT", "CLOSED", "LIMIT", "CONFLICT", "EXISTS", "EXPIRED", "NOTFOUND", "INVALID",
        "NOPERM", "NOAUTH", "READONLY", "CORRUPT", "NOREPLICAS", "ERR", "OTHER",
    ]
    private static let otherIndex = refusalCodes.count - 1
    private static let indexOfCode: [String: Int] = Dictionary(uniqueKeysWithValues: refusalCodes.enumerated().map { ($1, $0) })

    /// The index of an engine error's code in `refusalCodes` (a switch, not a
    /// lookup: a sold-out deal refuses every hold). Checked by MetricsTests.
    static func refusalIndex(_ code: EngineError.Code) -> Int {
        switch code {
        case .insufficient: 0
        case .closed: 1
        case .limit: 2
        case .conflict: 3
        case .exists: 4
        case .expired: 5
        case .notFound: 6
        case .invalid: 7
        case .noPermission: 8
        case .readOnly: 10
        case .corrupt: 11
        case .noReplicas: 12
        }
    }

    static func refusalIndex(_ code: String) -> Int { indexOfCode[code] ?? otherIndex }

    let placed = AtomicCounter()
    let released = AtomicCounter()
    let allocated = AtomicCounter()
    /// Refused holds, by `refusalCodes` index.
    let refused: [AtomicCounter] = RequestMetrics.refusalCodes.map { _ in AtomicCounter() }
    /// Every engine command (the ones that reach a deal or the engine; not
    /// PING, INFO, AUTH, ...): from the batch's parse to its replies being
    /// ready, durable changes included. Recorded once per batch, with the
    /// number of engine commands in it.
    let commandDuration = DurationHistogram()
    /// The same, for `HOLD` commands only.
    let holdDuration = DurationHistogram()

    init() {}

    /// One batch's outcomes, counted without atomics while its replies are encoded.
    struct Tally {
        var placed: UInt64 = 0
        var released: UInt64 = 0
        var allocated: UInt64 = 0
        /// Empty until the batch has a refused hold (no allocation otherwise).
        var refused: [UInt64] = []

        /// Counts one reply of a tracked command.
        mutating func count(_ kind: Tracked, _ reply: DealReply) {
            switch kind {
            case .hold:
                if case .hold = reply { placed += 1 } else if case .failure(let e) = reply { refuse(RequestMetrics.refusalIndex(e.code)) }
            case .release: if case .ok = reply { released += 1 }
            case .allocate: if case .id = reply { allocated += 1 }
            case .other: break
            }
        }

        mutating func refuse(_ index: Int) {
            if refused.isEmpty { refused = [UInt64](repeating: 0, count: RequestMetrics.refusalCodes.count) }
            refused[index] += 1
        }

        var isEmpty: Bool { placed == 0 && released == 0 && allocated == 0 && refused.isEmpty }
    }

    func add(_ t: Tally) {
        guard !t.isEmpty else { return }
        if t.placed > 0 { placed.add(t.placed) }
        if t.released > 0 { released.add(t.released) }
        if t.allocated > 0 { allocated.add(t.allocated) }
        for (i, n) in t.refused.enumerated() where n > 0 { refused[i].add(n) }
    }

    /// A `HOLD` refused before it reached the engine (parsing, permissions).
    func holdRefused(code: String) {
        refused[Self.refusalIndex(code)].add(1)
    }
}
