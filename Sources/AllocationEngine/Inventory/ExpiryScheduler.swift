import WAL
import Synchronization

/// One shared timer queue of (time, deal) for the whole engine: a deal enters it
/// with the expiry of its earliest pending hold, and re-enters with its next one
/// after it has expired what was due. The ticker therefore touches only deals
/// with something due, never every hold or every deal.
public final class ExpiryScheduler: Sendable {
    private struct Entry: Sendable, HeapKeyed {
        var at: Int64
        var deal: UInt32
        var heapKey: Int64 { at }
    }
    private let heap = Locked(MinHeap<Entry>())

    public init() {}

    public func register(at: Int64, deal: UInt32) {
        heap.withLock { $0.push(Entry(at: at, deal: deal)) }
    }

    /// The deals with something due at `now`, each once.
    public func takeDue(now: Int64) -> [UInt32] {
        heap.withLock { h in
            var due: [UInt32] = []
            var seen = Set<UInt32>()
            while let top = h.pop(ifAtMost: now) {
                if seen.insert(top.deal).inserted { due.append(top.deal) }
            }
            return due
        }
    }

}
