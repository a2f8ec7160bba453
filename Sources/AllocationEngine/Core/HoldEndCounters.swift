import Synchronization

/// Pending holds the engine ended by itself, counted since the process
/// started (for metrics): holds that expired (the expiry ticker, `SWEEP`, the
/// sweep right after recovery, or a `RELEASE`/`ALLOCATE` that found the hold
/// past its time) and pending holds that ended because their deal closed or
/// was cancelled. Holds ended by a client's `RELEASE` or `ALLOCATE` are counted
/// by the server from its replies, not here.
///
/// Counted in `DealState.commit`, the live path only: replay applies logged
/// changes without it, so a restart does not count the past again. These are
/// rare next to holds (an expiry is one atomic add), and the hold path itself
/// never touches them.
public final class HoldEndCounters: Sendable {
    private let expiredCount = Atomic<UInt64>(0)
    private let cancelledCount = Atomic<UInt64>(0)

    init() {}

    /// Holds expired since the process started.
    public var expired: UInt64 { expiredCount.load(ordering: .relaxed) }
    /// Pending holds ended by their deal's closing or cancellation since the process started.
    public var cancelled: UInt64 { cancelledCount.load(ordering: .relaxed) }

    /// `change` was just applied and ended `count` pending holds.
    func record(_ change: Change, ended count: Int) {
        switch change {
        case .holdExpired: expiredCount.add(UInt64(count), ordering: .relaxed)
        case .dealStatus: cancelledCount.add(UInt64(count), ordering: .relaxed)
        default: break      // RELEASE and ALLOCATE: counted from the server's replies
        }
    }
}
