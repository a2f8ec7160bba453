/// A set of deal numbers, compact for what `Holdings` keeps: deal numbers are
/// assigned densely from the bottom, so an investor's deals are mostly a
/// dense run of small numbers, and entries are never removed.
///
/// Two forms (a roaring bitmap with a single container):
/// - *sorted*: the members ascending in a `[UInt32]`, 4 B a member, while the
///   set is small or sparse;
/// - *bitmap*: one bit per number from the word of the smallest member to the
///   word of the largest (`base` is the first word's index, so deals
///   5000...6000 do not pay for 0..<5000).
///
/// The bitmap is used exactly when its words take no more bytes than the
/// sorted array would (`8 x words <= 4 x count`), checked on every insert, and
/// an insert that would stretch it beyond that turns it back into the sorted
/// form. So the memory is at most 4 B per member plus a constant (the
/// arrays' headers and growth slack); 1 bit per deal of the span when dense.
/// A set like {0, UInt32.max} stays two numbers, never a 512 MiB bitmap.
/// The form follows from the members alone (bitmap exactly when it fits),
/// whatever order they came in.
///
/// Inserting costs a binary search and a move of the larger members in the
/// sorted form (appending, the common case, moves nothing), O(1) inside the
/// bitmap's span; switching form copies the set once.
struct DealSet: Sendable, Sequence {
    /// The members ascending; empty in the bitmap form.
    private var members: [UInt32] = []
    /// The bitmap's words, word `i` holding numbers `(base + i) * 64 ..< (base + i + 1) * 64`;
    /// empty in the sorted form. The first and last words are never zero.
    private var words: [UInt64] = []
    /// The index (number / 64) of `words[0]`.
    private var base: UInt32 = 0
    /// The members in the bitmap form (the sorted form counts its array).
    private var bitCount: UInt32 = 0

    init() {}

    init<S: Sequence>(_ deals: S) where S.Element == UInt32 {
        formUnion(deals)
    }

    var isBitmap: Bool { !words.isEmpty }

    var count: Int { isBitmap ? Int(bitCount) : members.count }

    var isEmpty: Bool { count == 0 }

    var underestimatedCount: Int { count }

    /// Bytes of the two arrays' storage (as allocated, growth slack included)
    /// and of the value itself; the allocator's headers and the arrays' own
    /// 32 B headers are not counted.
    var memoryBytes: Int {
        MemoryLayout<DealSet>.size + members.capacity * MemoryLayout<UInt32>.size + words.capacity * MemoryLayout<UInt64>.size
    }

    /// Whether a bitmap spanning the words of `low...high` takes no more bytes
    /// than `count` numbers in the sorted form. The one rule for both forms.
    private static func bitmapFits(count: Int, low: UInt32, high: UInt32) -> Bool {
        let span = Int(high >> 6) - Int(low >> 6) + 1
        return span * MemoryLayout<UInt64>.size <= count * MemoryLayout<UInt32>.size
    }

    func contains(_ deal: UInt32) -> Bool {
        if isBitmap {
            let w = deal >> 6
            guard w >= base, w - base < UInt32(words.count) else { return false }
            return words[Int(w - base)] & (1 << UInt64(deal & 63)) != 0
        }
        let i = Self.lowerBound(deal, in: members)
        return i < members.count && members[i] == deal
    }

    /// Adds `deal`; false if it was already a member.
    @discardableResult
    mutating func insert(_ deal: UInt32) -> Bool {
        isBitmap ? insertBit(deal) : insertSorted(deal)
    }

    /// Adds every number of `deals`. Sorted first, so a batch into the sorted
    /// form is one merge, not a move per number, and into the bitmap it
    /// stretches the span at most once at each end.
    mutating func formUnion<S: Sequence>(_ deals: S) where S.Element == UInt32 {
        var incoming = Array(deals)
        if incoming.isEmpty { return }
        if !Self.isStrictlyAscending(incoming) { incoming = Self.dedupe(incoming.sorted()) }
        var next = 0
        while isBitmap, next < incoming.count {
            _ = insertBit(incoming[next])
            next += 1
        }
        if next == incoming.count { return }
        // The sorted form (from the start, or the bitmap outgrew itself): merge the rest.
        let rest = next == 0 ? incoming : Array(incoming[next...])
        members = members.isEmpty ? rest : Self.merge(members, rest)
        useBitmapIfItFits()
    }

    /// The members ascending (a copy-on-write share of the array in the sorted form).
    func sorted() -> [UInt32] {
        if !isBitmap { return members }
        var out: [UInt32] = []
        out.reserveCapacity(Int(bitCount))
        for d in self { out.append(d) }
        return out
    }

    func makeIterator() -> Iterator { Iterator(self) }

    /// Yields the members ascending.
    struct Iterator: IteratorProtocol {
        private let set: DealSet
        private var index = 0
        /// The bits of `set.words[index]` not yet yielded.
        private var bits: UInt64 = 0

        fileprivate init(_ set: DealSet) {
            self.set = set
            if set.isBitmap { bits = set.words[0] }
        }

        mutating func next() -> UInt32? {
            guard set.isBitmap else {
                guard index < set.members.count else { return nil }
                defer { index += 1 }
                return set.members[index]
            }
            while bits == 0 {
                index += 1
                guard index < set.words.count else { return nil }
                bits = set.words[index]
            }
            let bit = UInt32(bits.trailingZeroBitCount)
            bits &= bits - 1
            return (set.base + UInt32(index)) << 6 | bit
        }
    }

    private mutating func insertSorted(_ deal: UInt32) -> Bool {
        let i = Self.lowerBound(deal, in: members)
        if i < members.count && members[i] == deal { return false }
        members.insert(deal, at: i)
        useBitmapIfItFits()
        return true
    }

    private mutating func insertBit(_ deal: UInt32) -> Bool {
        let w = deal >> 6
        let bit: UInt64 = 1 << UInt64(deal & 63)
        let last = base + UInt32(words.count - 1)
        if w < base || w > last {
            guard Self.bitmapFits(count: Int(bitCount) + 1, low: Swift.min(w, base) << 6, high: Swift.max(w, last) << 6) else {
                // Stretched that far the bitmap would outgrow the sorted array.
                var all = sorted()
                all.insert(deal, at: Self.lowerBound(deal, in: all))
                words = []
                base = 0
                bitCount = 0
                members = all
                return true
            }
            if w < base {
                words.insert(contentsOf: repeatElement(0, count: Int(base - w)), at: 0)
                base = w
            } else {
                words.append(contentsOf: repeatElement(0, count: Int(w - last)))
            }
        }
        let i = Int(w - base)
        if words[i] & bit != 0 { return false }
        words[i] |= bit
        bitCount += 1
        return true
    }

    /// Turns the sorted form into the bitmap when that is no larger.
    private mutating func useBitmapIfItFits() {
        guard let low = members.first, let high = members.last,
              Self.bitmapFits(count: members.count, low: low, high: high) else { return }
        base = low >> 6
        var bitmap = [UInt64](repeating: 0, count: Int((high >> 6) - base) + 1)
        for d in members { bitmap[Int((d >> 6) - base)] |= 1 << UInt64(d & 63) }
        words = bitmap
        bitCount = UInt32(members.count)
        members = []
    }

    /// The first index whose member is not below `deal`.
    private static func lowerBound(_ deal: UInt32, in a: [UInt32]) -> Int {
        // Appending in ascending order is the common case: no search.
        if let last = a.last, last < deal { return a.count }
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < deal { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func isStrictlyAscending(_ a: [UInt32]) -> Bool {
        var i = 1
        while i < a.count { if a[i - 1] >= a[i] { return false }; i += 1 }
        return true
    }

    /// `a` (ascending) without repeats.
    private static func dedupe(_ a: [UInt32]) -> [UInt32] {
        // No reserve: many repeats must not leave a large buffer behind.
        var out: [UInt32] = []
        for d in a where out.last != d { out.append(d) }
        return out
    }

    /// The union of two strictly ascending arrays, strictly ascending.
    private static func merge(_ a: [UInt32], _ b: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count && j < b.count {
            if a[i] < b[j] { out.append(a[i]); i += 1 }
            else if b[j] < a[i] { out.append(b[j]); j += 1 }
            else { out.append(a[i]); i += 1; j += 1 }
        }
        out.append(contentsOf: a[i...])
        out.append(contentsOf: b[j...])
        return out
    }
}
