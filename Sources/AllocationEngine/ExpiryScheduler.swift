import Synchronization

/// One shared timer queue of (time, deal) for the whole engine: a deal enters it
/// with the expiry of its earliest pending hold, and re-enters with its next one
/// after it has expired what was due. The ticker therefore touches only deals
/// with something due, never every hold or every deal.
public final class ExpiryScheduler: Sendable {
    private struct Entry { var at: Int64; var deal: UInt32 }
    private let heap = Mutex<[Entry]>([])

    public init() {}

    public func register(at: Int64, deal: UInt32) {
        heap.withLock { h in
            h.append(Entry(at: at, deal: deal))
            var i = h.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard h[i].at < h[p].at else { break }
                h.swapAt(i, p)
                i = p
            }
        }
    }

    /// The deals with something due at `now`, each once.
    public func takeDue(now: Int64) -> [UInt32] {
        heap.withLock { h in
            var due: [UInt32] = []
            while let top = h.first, top.at <= now {
                let last = h.removeLast()
                if !h.isEmpty {
                    h[0] = last
                    var i = 0
                    while true {
                        let l = 2 * i + 1, r = l + 1
                        var m = i
                        if l < h.count && h[l].at < h[m].at { m = l }
                        if r < h.count && h[r].at < h[m].at { m = r }
                        if m == i { break }
                        h.swapAt(i, m)
                        i = m
                    }
                }
                if !due.contains(top.deal) { due.append(top.deal) }
            }
            return due
        }
    }

    public var nextDue: Int64? { heap.withLock { $0.first?.at } }
}
