import Testing
import WAL
@testable import AllocationEngine

// DealSet, Holdings' compact set of deal numbers: the same answers as a
// Set<UInt32>, the bitmap only when it is no larger than the sorted array,
// and Holdings' snapshot bytes unchanged.

/// The invariants the type promises, checked against a model.
private func check(_ s: DealSet, _ model: Set<UInt32>, sourceLocation: SourceLocation = #_sourceLocation) {
    let ascending = model.sorted()
    #expect(s.count == model.count, sourceLocation: sourceLocation)
    #expect(s.isEmpty == model.isEmpty, sourceLocation: sourceLocation)
    #expect(s.sorted() == ascending, sourceLocation: sourceLocation)
    #expect(Array(s) == ascending, sourceLocation: sourceLocation)
    // The form follows from the members: bitmap exactly when its words take
    // no more bytes than 4 B a member.
    if let low = ascending.first, let high = ascending.last {
        let words = Int(high >> 6) - Int(low >> 6) + 1
        #expect(s.isBitmap == (words * 8 <= model.count * 4), "words \(words), count \(model.count)", sourceLocation: sourceLocation)
    } else {
        #expect(!s.isBitmap, sourceLocation: sourceLocation)
    }
    // At most 4 B a member plus a constant, growth slack allowed for (2x),
    // and malloc's rounding: an array's capacity is what malloc_usable_size
    // gives its buffer, which varies from run to run by a few elements.
    #expect(s.memoryBytes <= MemoryLayout<DealSet>.size + 2 * 4 * max(model.count, 16) + 64, "\(s.memoryBytes) B for \(model.count)", sourceLocation: sourceLocation)
}

@Suite struct DealSetTests {
    @Test func emptySet() {
        let s = DealSet()
        check(s, [])
        #expect(!s.contains(0))
        #expect(!s.contains(UInt32.max))
        #expect(s.sorted() == [])
    }

    @Test func randomInsertsMatchASetModel() {
        // Dense low numbers, a dense run far up, and sparse numbers anywhere,
        // mixed in different proportions per seed.
        for seed in UInt64(1)...40 {
            var rng = SplitMix64(seed: seed &* 0x9E37)
            var s = DealSet()
            var model = Set<UInt32>()
            let ops = 1 + rng.below(3_000)
            let sparsePercent = rng.below(30)
            let farBase = UInt32(rng.below(1 << 30))
            for _ in 0..<ops {
                let d: UInt32
                switch rng.below(100) {
                case ..<sparsePercent: d = UInt32(truncatingIfNeeded: rng.next())
                case ..<(sparsePercent + 20): d = farBase + UInt32(rng.below(2_000))
                default: d = UInt32(rng.below(1 + ops / 2))
                }
                let inserted = s.insert(d)
                #expect(inserted == model.insert(d).inserted, "seed \(seed): insert \(d)")
            }
            check(s, model)
            for _ in 0..<500 {
                let d = rng.chance(50) ? UInt32(rng.below(ops)) : UInt32(truncatingIfNeeded: rng.next())
                #expect(s.contains(d) == model.contains(d), "seed \(seed): contains \(d)")
            }
            for d in model { #expect(s.contains(d)) }
        }
    }

    @Test func randomUnionsMatchASetModel() {
        for seed in UInt64(1)...40 {
            var rng = SplitMix64(seed: seed &+ 0xD5)
            var s = DealSet()
            var model = Set<UInt32>()
            for _ in 0..<(1 + rng.below(6)) {
                let near = rng.chance(50)
                let start = UInt32(rng.below(near ? 500 : 1 << 31))
                let batch: [UInt32] = (0..<rng.below(800)).map { _ in
                    rng.chance(5) ? UInt32(truncatingIfNeeded: rng.next()) : start + UInt32(rng.below(1_500))
                }
                // Unsorted with repeats, or ascending as a snapshot gives them.
                let input = rng.chance(50) ? batch : Array(Set(batch)).sorted()
                s.formUnion(input)
                model.formUnion(input)
                check(s, model)
                if rng.chance(50) {
                    let d = UInt32(rng.below(3_000))
                    let inserted = s.insert(d)
                    #expect(inserted == model.insert(d).inserted)
                }
            }
            check(s, model)
            #expect(DealSet(model).sorted() == model.sorted())
        }
    }

    @Test func duplicatesAreNotInsertedTwice() {
        var s = DealSet()
        let first = s.insert(7), second = s.insert(7)
        #expect(first)
        #expect(!second)
        s.formUnion([7, 7, 3, 3, 7])
        check(s, [3, 7])
        for d in UInt32(0)..<200 { s.insert(d) }
        #expect(s.isBitmap)
        let again = s.insert(7), last = s.insert(199)
        #expect(!again)
        #expect(!last)
        s.formUnion([5, 5, 199, 0])
        check(s, Set(0..<200))
    }

    @Test func switchesToTheBitmapExactlyWhenItIsNoLarger() {
        // Members 0, 64, 128, ...: k members span k words (8k B) against 4k B
        // sorted, so this never switches.
        var spread = DealSet()
        for k in UInt32(0)..<100 { spread.insert(k * 64) }
        #expect(!spread.isBitmap)
        check(spread, Set((0..<100).map { UInt32($0) * 64 }))

        // 0 and 1 share one word: 8 B against 8 B, the bitmap.
        var pair = DealSet()
        pair.insert(0)
        #expect(!pair.isBitmap)
        pair.insert(1)
        #expect(pair.isBitmap)

        // 0 and 64: two words (16 B) against 8 B; a third and a fourth member
        // in those words make it 16 B against 16 B.
        var two = DealSet()
        two.formUnion([0, 64])
        #expect(!two.isBitmap)
        two.insert(1)
        #expect(!two.isBitmap)
        two.insert(65)
        #expect(two.isBitmap)
        check(two, [0, 1, 64, 65])

        // A run of 2n members over n words: sorted until the last one.
        var run = DealSet()
        let words = 10
        for d in UInt32(0)..<UInt32(2 * words - 1) { run.insert(d * 32) }
        #expect(!run.isBitmap)
        run.insert(UInt32(2 * words - 1) * 32)
        #expect(run.isBitmap)
        check(run, Set((0..<(2 * words)).map { UInt32($0) * 32 }))
    }

    @Test func aBitmapStretchedTooFarTurnsBackIntoTheSortedForm() {
        var s = DealSet()
        s.formUnion(UInt32(0)..<128)   // 2 words, 16 B against 512 B
        #expect(s.isBitmap)
        // Growing up while it still fits: 7 words for 129 members.
        s.insert(128 * 3 + 5)
        #expect(s.isBitmap)
        // Growing down from a base above zero.
        var high = DealSet()
        high.formUnion(UInt32(5_000)...6_000)
        #expect(high.isBitmap)
        #expect(high.memoryBytes < 200)
        high.insert(4_000)
        #expect(high.isBitmap)
        check(high, Set(UInt32(5_000)...6_000).union([4_000]))
        // UInt32.max would need 2^26 words: back to the sorted form.
        high.insert(UInt32.max)
        #expect(!high.isBitmap)
        var model = Set(UInt32(5_000)...6_000).union([4_000, UInt32.max])
        check(high, model)
        // And new members stay there.
        high.insert(6_001)
        model.insert(6_001)
        check(high, model)
    }

    @Test func sparseLargeNumbersNeverAllocateAHugeBitmap() {
        var s = DealSet()
        s.insert(UInt32.max)
        s.insert(0)
        check(s, [0, UInt32.max])
        #expect(s.memoryBytes < 100)
        #expect(s.contains(UInt32.max))
        #expect(!s.contains(UInt32.max - 1))

        // The top word of the number space, full: a bitmap of one word.
        var top = DealSet()
        top.formUnion((UInt32.max - 63)...UInt32.max)
        #expect(top.isBitmap)
        check(top, Set((UInt32.max - 63)...UInt32.max))
        #expect(top.contains(UInt32.max))
        #expect(!top.contains(UInt32.max - 64))
        #expect(!top.contains(0))
        top.insert(0)
        #expect(!top.isBitmap)
        check(top, Set((UInt32.max - 63)...UInt32.max).union([0]))
    }

    @Test func ascendingWhateverTheInsertOrder() {
        var rng = SplitMix64(seed: 0xDEA1)
        var numbers = (0..<3_000).map { UInt32($0 * 3) } + [UInt32.max, 1 << 31]
        numbers.shuffle(using: &rng)
        var s = DealSet()
        for d in numbers { s.insert(d) }
        #expect(s.sorted() == numbers.sorted())
        #expect(Array(s) == numbers.sorted())
        var bitmap = DealSet()
        for d in numbers where d < 9_000 { bitmap.insert(d) }
        #expect(bitmap.isBitmap)
        #expect(bitmap.sorted() == numbers.filter { $0 < 9_000 }.sorted())
    }

    @Test func denseRangesCostABitADeal() {
        let s = DealSet(UInt32(0)..<1_000)
        #expect(s.isBitmap)
        #expect(s.count == 1_000)
        // 16 words for 1,000 deals (a few more for the allocator's rounding).
        #expect(s.memoryBytes <= MemoryLayout<DealSet>.size + 20 * 8)
    }

    // MARK: Holdings on DealSet

    @Test func holdingsEncodeInvestorsIsTheSameBytesAsTheEntries() {
        var rng = SplitMix64(seed: 0x5EED)
        let h = Holdings()
        for i in 0..<300 {
            let id = "inv-\(i)"
            switch i % 4 {
            case 0: for d in UInt32(0)..<UInt32(1 + rng.below(400)) { h.add(id, deal: d) }   // dense from 0
            case 1: for _ in 0..<(1 + rng.below(30)) { h.add(id, deal: UInt32(truncatingIfNeeded: rng.next())) }   // sparse
            case 2: h.add(investors: [(id, (0..<rng.below(200)).map { _ in UInt32(rng.below(5_000)) } + [5_000])])   // a snapshot's, unsorted
            default:   // dense, then a far one turns it back into a sorted array
                for d in UInt32(1_000)..<1_300 { h.add(id, deal: d) }
                h.add(id, deal: UInt32.max - UInt32(i))
            }
        }
        let entries = h.investorDeals()
        #expect(entries.count == 300)
        for (id, deals) in entries {
            #expect(deals == deals.sorted())
            #expect(Set(deals).count == deals.count)
            #expect(h.deals(of: id) == deals)
        }
        var live = ByteWriter()
        h.encodeInvestors(into: &live)
        var reference = ByteWriter()
        Holdings.encode(entries, into: &reference)
        #expect(live.bytes == reference.bytes)

        // And read back (shard by shard), the same entries.
        let decoded = live.bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            return try? Holdings.decodeInvestors(&r)
        }
        let byID = (decoded ?? []).sorted { $0.0 < $1.0 }
        let same = byID.map(\.0) == entries.map(\.0) && byID.map(\.1) == entries.map(\.1)
        #expect(same)
    }

    @Test func holdingsEncodingIsTheDocumentedFormat() {
        // The snapshot's bytes by hand: id, count, deltas ascending, an empty id last.
        let h = Holdings()
        for d: UInt32 in [9, 0, 1, 9, 300] { h.add("a", deal: d) }
        var live = ByteWriter()
        h.encodeInvestors(into: &live)
        var expected = ByteWriter()
        expected.string("a")
        expected.varint(4)
        for delta: UInt64 in [0, 1, 8, 291] { expected.varint(delta) }
        expected.string("")
        #expect(live.bytes == expected.bytes)
    }

    @Test func holdingsIntroducersAscending() {
        let h = Holdings()
        for d: UInt32 in [40, 2, 2, 17, UInt32.max] { h.add(introducer: "bank", deal: d) }
        #expect(h.deals(ofIntroducer: "bank") == [2, 17, 40, UInt32.max])
        #expect(h.deals(ofIntroducer: "none") == [])
        #expect(h.deals(of: "none") == [])
    }
}
