/// A binary min-heap of (expiry time, hold slot) for one deal. Released or
/// allocated holds leave stale entries that are skipped when popped, and the
/// heap is rebuilt from the pending holds when stale entries dominate, so its
/// size stays proportional to the live holds.
struct ExpiryHeap: Sendable {
    struct Entry: Sendable {
        var at: Int64
        var slot: Int32
    }
    private(set) var entries: [Entry] = []

    var count: Int { entries.count }
    var earliest: Int64? { entries.first?.at }

    mutating func push(at: Int64, slot: Int32) {
        entries.append(Entry(at: at, slot: slot))
        var i = entries.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].at < entries[parent].at else { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    mutating func popDue(now: Int64) -> Entry? {
        guard let top = entries.first, top.at <= now else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var i = 0
            let n = entries.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && entries[l].at < entries[m].at { m = l }
                if r < n && entries[r].at < entries[m].at { m = r }
                if m == i { break }
                entries.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    mutating func rebuild(from live: [Entry]) {
        entries = []
        entries.reserveCapacity(live.count)
        for e in live { push(at: e.at, slot: e.slot) }
    }
}
