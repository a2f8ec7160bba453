import WAL

/// The field layouts every record codec shares (`opt<T>`, slots, one-byte
/// codes; docs/wal-format.md), for the codecs of each part of the domain.
protocol RecordFieldCoding {}

extension RecordFieldCoding {
    static func opt(_ s: String?, _ w: inout ByteWriter) { ChangeCodec.optionalString(s, &w) }
    static func opt(_ r: inout ByteReader) throws(DecodeError) -> String? { try ChangeCodec.optionalString(&r) }
    static func optInt(_ v: Int64?, _ w: inout ByteWriter) { ChangeCodec.optionalInt(v, &w) }
    static func optInt(_ r: inout ByteReader) throws(DecodeError) -> Int64? { try ChangeCodec.optionalInt(&r) }
    static func optInt128(_ v: Int128?, _ w: inout ByteWriter) { if let v { w.u8(1); w.zigzag128(v) } else { w.u8(0) } }
    static func optInt128(_ r: inout ByteReader) throws(DecodeError) -> Int128? {
        switch try r.u8() {
        case 0: return nil
        case 1: return try r.zigzag128()
        case let f: throw DecodeError("bad optional flag \(f)")
        }
    }
    /// A row's slot in its deal.
    static func slot(_ r: inout ByteReader) throws(DecodeError) -> Int32 {
        let v = try r.varint()
        guard v <= UInt64(Int32.max) else { throw DecodeError("slot \(v) out of range") }
        return Int32(v)
    }
    /// A one-byte code of an enum.
    static func code<T>(_ r: inout ByteReader, _ what: String, _ make: (UInt8) -> T?) throws(DecodeError) -> T {
        let c = try r.u8()
        guard let v = make(c) else { throw DecodeError("\(what) \(c)") }
        return v
    }
}

extension StateHasher {
    /// Hashes a section by its canonical encoding (the snapshot layout), so
    /// the digest covers exactly what a snapshot keeps.
    mutating func encoded(_ encode: (inout ByteWriter) -> Void) {
        var w = ByteWriter(capacity: 256)
        encode(&w)
        int(Int64(w.bytes.count))
        for b in w.bytes { byte(b) }
    }
}
