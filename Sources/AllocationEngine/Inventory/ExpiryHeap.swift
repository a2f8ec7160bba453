/// A deal's pending holds by expiry time: (expiry, hold slot). Released or
/// allocated holds leave stale entries that are skipped when popped, and the
/// heap is rebuilt from its live entries when stale ones dominate, so its size
/// stays proportional to the live holds.
struct ExpiryHeap: Sendable {
    struct Entry: Sendable, HeapKeyed {
        var at: Int64
        var slot: Int32
        var heapKey: Int64 { at }
    }
    private var heap = MinHeap<Entry>()

    var entries: [Entry] { heap.entries }
    var count: Int { heap.count }
    var earliest: Int64? { heap.first?.at }

    mutating func push(at: Int64, slot: Int32) { heap.push(Entry(at: at, slot: slot)) }

    /// Removes and returns the earliest entry if it is due at `now`.
    mutating func popDue(now: Int64) -> Entry? { heap.pop(ifAtMost: now) }

    mutating func rebuild(from live: [Entry]) { heap.rebuild(from: live) }
}
