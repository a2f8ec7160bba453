/// An append-only growable array stored in fixed-size chunks. Appending never
/// moves existing elements (a plain array copies everything when it doubles,
/// which for millions of holds is a visible stall and twice the memory), and a
/// copy-on-write copy of the whole array (a snapshot) makes a later change copy
/// only the one chunk it touches, not every row of the deal.
public struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    static var chunkShift: Int { 13 }
    static var chunkSize: Int { 1 << chunkShift }

    private var chunks: [[Element]] = []
    public private(set) var count = 0

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    // `_read`/`_modify` yield the element in place: reading one field of a row
    // (`holds[i].status`) must not copy the whole row, which would retain and
    // release every reference in it.
    public subscript(position: Int) -> Element {
        _read {
            precondition(position >= 0 && position < count, "index out of range")
            yield chunks[position >> Self.chunkShift][position & (Self.chunkSize - 1)]
        }
        _modify {
            precondition(position >= 0 && position < count, "index out of range")
            yield &chunks[position >> Self.chunkShift][position & (Self.chunkSize - 1)]
        }
    }

    /// Takes the element by move (`__owned`), so appending does not copy it.
    public mutating func append(_ element: __owned Element) {
        if count & (Self.chunkSize - 1) == 0 {
            // The first chunk grows on demand, so a deal with a handful of rows
            // stays small; once a deal has filled one, each next chunk is
            // reserved whole, sparing the copies (and unmaps) of growing it.
            var chunk: [Element] = []
            if !chunks.isEmpty { chunk.reserveCapacity(Self.chunkSize) }
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(element)
        count += 1
    }

}

extension ChunkedArray: Sendable where Element: Sendable {}
