// Little-endian fixed-width and LEB128 variable-width encoding.
//
// ByteWriter appends to a growable array. ByteReader reads from a borrowed
// buffer and never traps on hostile input: every read is bounds checked and
// every failure is a thrown `DecodeError`.

/// Limits for decoding untrusted bytes.
public enum BinaryLimits {
    /// Longest LEB128 encoding of a UInt64: ceil(64 / 7).
    public static let maxVarint64Bytes = 10
    /// Longest LEB128 encoding of a UInt128: ceil(128 / 7).
    public static let maxVarint128Bytes = 19
    /// Longest string `ByteReader.string()` accepts. Names and references in
    /// this engine are short; a megabyte bounds memory use per decoded field.
    public static let maxStringBytes = 1 << 20
}

public struct DecodeError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "decode error: \(message)" }
}

public struct ByteWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    @inlinable public mutating func u8(_ v: UInt8) { bytes.append(v) }

    @inlinable public mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }

    @inlinable public mutating func u32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func u64(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }

    /// Unsigned LEB128.
    @inlinable public mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Signed values mapped to unsigned (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...), then LEB128.
    @inlinable public mutating func zigzag(_ v: Int64) {
        varint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    @inlinable public mutating func varint128(_ v: UInt128) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    @inlinable public mutating func zigzag128(_ v: Int128) {
        varint128(UInt128(bitPattern: (v << 1) ^ (v >> 127)))
    }

    /// Varint byte length followed by the UTF-8 bytes.
    public mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// Raw bytes, no length.
    @inlinable public mutating func bytes(_ b: some Collection<UInt8>) {
        bytes.append(contentsOf: b)
    }

    /// Varint length followed by the bytes.
    public mutating func lengthPrefixed(_ b: [UInt8]) {
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    /// Overwrites 4 bytes at `offset` (used to patch a length after the fact).
    public mutating func patchU32(_ v: UInt32, at offset: Int) {
        precondition(offset >= 0 && offset + 4 <= bytes.count, "patch out of range")
        let le = v.littleEndian
        bytes[offset] = UInt8(truncatingIfNeeded: le)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: le >> 8)
        bytes[offset + 2] = UInt8(truncatingIfNeeded: le >> 16)
        bytes[offset + 3] = UInt8(truncatingIfNeeded: le >> 24)
    }
}

/// Reads from a borrowed buffer; the caller keeps the buffer alive.
public struct ByteReader {
    public let buffer: UnsafeRawBufferPointer
    public private(set) var position: Int = 0

    public init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    public var remaining: Int { buffer.count - position }
    public var isAtEnd: Bool { position >= buffer.count }

    @inline(__always)
    private func need(_ n: Int, _ what: StaticString) throws(DecodeError) {
        guard n >= 0, n <= remaining else {
            throw DecodeError("\(what): need \(n) bytes at offset \(position), \(remaining) left")
        }
    }

    public mutating func u8() throws(DecodeError) -> UInt8 {
        try need(1, "u8")
        let v = buffer[position]
        position += 1
        return v
    }

    public mutating func u16() throws(DecodeError) -> UInt16 {
        try need(2, "u16")
        let v = UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: position, as: UInt16.self))
        position += 2
        return v
    }

    public mutating func u32() throws(DecodeError) -> UInt32 {
        try need(4, "u32")
        let v = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: position, as: UInt32.self))
        position += 4
        return v
    }

    public mutating func u64() throws(DecodeError) -> UInt64 {
        try need(8, "u64")
        let v = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: position, as: UInt64.self))
        position += 8
        return v
    }

    public mutating func i64() throws(DecodeError) -> Int64 {
        Int64(bitPattern: try u64())
    }

    public mutating func varint() throws(DecodeError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        for index in 0..<BinaryLimits.maxVarint64Bytes {
            guard position < buffer.count else { throw DecodeError("varint runs past end at offset \(position)") }
            let byte = buffer[position]
            position += 1
            if index == BinaryLimits.maxVarint64Bytes - 1 && byte > 0x01 {
                throw DecodeError("varint overflows 64 bits at offset \(position - 1)")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw DecodeError("varint longer than \(BinaryLimits.maxVarint64Bytes) bytes at offset \(position)")
    }

    public mutating func zigzag() throws(DecodeError) -> Int64 {
        let u = try varint()
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    public mutating func varint128() throws(DecodeError) -> UInt128 {
        var result: UInt128 = 0
        var shift: UInt128 = 0
        for index in 0..<BinaryLimits.maxVarint128Bytes {
            guard position < buffer.count else { throw DecodeError("varint128 runs past end at offset \(position)") }
            let byte = buffer[position]
            position += 1
            // 18 * 7 = 126 bits before the last byte: it may carry 2 more bits.
            if index == BinaryLimits.maxVarint128Bytes - 1 && byte > 0x03 {
                throw DecodeError("varint128 overflows 128 bits at offset \(position - 1)")
            }
            result |= UInt128(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw DecodeError("varint128 longer than \(BinaryLimits.maxVarint128Bytes) bytes at offset \(position)")
    }

    public mutating func zigzag128() throws(DecodeError) -> Int128 {
        let u = try varint128()
        return Int128(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    /// Varint length + UTF-8; the length is bounded and the bytes validated.
    public mutating func string() throws(DecodeError) -> String {
        let start = position
        let length = try varint()
        guard length <= UInt64(BinaryLimits.maxStringBytes) else {
            throw DecodeError("string length \(length) at offset \(start) exceeds limit \(BinaryLimits.maxStringBytes)")
        }
        let n = Int(length)
        try need(n, "string")
        let slice = UnsafeRawBufferPointer(rebasing: buffer[position..<(position + n)])
        let bytes = slice.bindMemory(to: UInt8.self)
        // Fast path: ids and most text are ASCII, which is valid UTF-8 as it
        // stands (the generic validating initializer costs more than the record).
        var ascii = true
        for b in bytes where b >= 0x80 { ascii = false; break }
        let s: String
        if ascii {
            s = String(decoding: bytes, as: UTF8.self)
        } else {
            guard let v = String(validating: slice, as: UTF8.self) else {
                throw DecodeError("string at offset \(start) is not valid UTF-8")
            }
            s = v
        }
        position += n
        return s
    }

    public mutating func bytes(count: Int) throws(DecodeError) -> [UInt8] {
        try need(count, "bytes")
        let out = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[position..<(position + count)]))
        position += count
        return out
    }

    /// Varint length + bytes (the counterpart of `ByteWriter.lengthPrefixed`).
    public mutating func lengthPrefixed(maxBytes: Int = BinaryLimits.maxStringBytes) throws(DecodeError) -> [UInt8] {
        let start = position
        let length = try varint()
        guard length <= UInt64(maxBytes) else {
            throw DecodeError("length \(length) at offset \(start) exceeds limit \(maxBytes)")
        }
        return try bytes(count: Int(length))
    }

    /// Skips `count` bytes.
    public mutating func skip(_ count: Int) throws(DecodeError) {
        try need(count, "skip")
        position += count
    }
}
