/// An element ordered by a time key.
protocol HeapKeyed {
    var heapKey: Int64 { get }
}

/// A binary min-heap on an array, ordered by `heapKey`. Shared by a deal's
/// expiry heap and the engine-wide expiry scheduler.
struct MinHeap<Element: HeapKeyed> {
    private(set) var entries: [Element] = []

    var count: Int { entries.count }
    var first: Element? { entries.first }

    mutating func push(_ element: Element) {
        entries.append(element)
        var i = entries.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].heapKey < entries[parent].heapKey else { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    /// Removes and returns the smallest element if its key is at most `limit`.
    mutating func pop(ifAtMost limit: Int64) -> Element? {
        guard let top = entries.first, top.heapKey <= limit else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var i = 0
            let n = entries.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && entries[l].heapKey < entries[m].heapKey { m = l }
                if r < n && entries[r].heapKey < entries[m].heapKey { m = r }
                if m == i { break }
                entries.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    mutating func rebuild(from elements: [Element]) {
        entries = []
        entries.reserveCapacity(elements.count)
        for e in elements { push(e) }
    }
}

extension MinHeap: Sendable where Element: Sendable {}
