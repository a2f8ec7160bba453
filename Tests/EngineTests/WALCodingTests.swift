import Testing
@testable import WAL

@Suite struct CRCTests {
    @Test func publishedCheckValues() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        // RFC 3720 (iSCSI) B.4: incrementing and decrementing 32-byte patterns.
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func incrementalSeedingMatchesWhole() {
        var rng = SplitMix64(seed: 7)
        let data = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let whole = CRC32C.checksum(data)
        for cut in [0, 1, 7, 8, 9, 63, 500, 999, 1000] {
            let a = Array(data[..<cut]), b = Array(data[cut...])
            #expect(CRC32C.checksum(b, seed: CRC32C.checksum(a)) == whole)
        }
    }

    @Test func slicingMatchesBytewiseReference() {
        func reference(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            }
            return ~crc
        }
        var rng = SplitMix64(seed: 99)
        for length in 0..<70 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(CRC32C.checksum(data) == reference(data))
        }
    }
}

@Suite struct BinaryCodingTests {
    @Test func roundTrip() throws {
        var w = ByteWriter()
        w.u8(0xAB)
        w.u32(0xDEAD_BEEF)
        w.u64(0x0123_4567_89AB_CDEF)
        w.i64(-42)
        let varints: [UInt64] = [0, 1, 127, 128, 300, 1 << 35, UInt64.max]
        for v in varints { w.varint(v) }
        let zigzags: [Int64] = [0, -1, 1, -64, 64, Int64.min, Int64.max]
        for v in zigzags { w.zigzag(v) }
        let wide: [UInt128] = [0, 127, UInt128(UInt64.max) + 1, UInt128.max]
        for v in wide { w.varint128(v) }
        let signedWide: [Int128] = [0, -1, Int128.min, Int128.max, -123_456_789_012_345_678]
        for v in signedWide { w.zigzag128(v) }
        w.string("hold ✓ lot-42")
        w.bytes([1, 2, 3])
        w.lengthPrefixed([9, 8])

        try w.bytes.withUnsafeBytes { buffer throws in
            var r = ByteReader(buffer)
            #expect(try r.u8() == 0xAB)
            #expect(try r.u32() == 0xDEAD_BEEF)
            #expect(try r.u64() == 0x0123_4567_89AB_CDEF)
            #expect(try r.i64() == -42)
            for v in varints { #expect(try r.varint() == v) }
            for v in zigzags { #expect(try r.zigzag() == v) }
            for v in wide { #expect(try r.varint128() == v) }
            for v in signedWide { #expect(try r.zigzag128() == v) }
            #expect(try r.string() == "hold ✓ lot-42")
            #expect(try r.bytes(count: 3) == [1, 2, 3])
            #expect(try r.lengthPrefixed() == [9, 8])
            #expect(r.isAtEnd)
            #expect(r.remaining == 0)
        }
    }

    @Test func littleEndianLayout() {
        var w = ByteWriter()
        w.u32(0x0403_0201)
        w.varint(300)
        #expect(w.bytes == [1, 2, 3, 4, 0xAC, 0x02])
    }

    /// The DecodeError `body` throws, or nil; any other error is a test failure.
    private func decode<T>(_ bytes: [UInt8], _ body: (inout ByteReader) throws -> T) -> DecodeError? {
        bytes.withUnsafeBytes { buffer in
            var r = ByteReader(buffer)
            do { _ = try body(&r); return nil } catch let error as DecodeError { return error } catch {
                Issue.record("unexpected \(error)")
                return nil
            }
        }
    }

    @Test func hostileInputsThrowInsteadOfTrapping() {
        #expect(decode([]) { try $0.u8() } != nil)
        #expect(decode([1, 2, 3]) { try $0.u32() } != nil)
        #expect(decode([1, 2, 3, 4, 5, 6, 7]) { try $0.u64() } != nil)
        // Overlong varints.
        #expect(decode([UInt8](repeating: 0x80, count: 11) + [0]) { try $0.varint() } != nil)
        #expect(decode([UInt8](repeating: 0xFF, count: 9) + [0x02]) { try $0.varint() } != nil)
        #expect(decode([UInt8](repeating: 0xFF, count: 18) + [0x04]) { try $0.varint128() } != nil)
        #expect(decode([0x80, 0x80]) { try $0.varint() } != nil)
        // Lengths past the end and huge lengths.
        #expect(decode([5, 65, 66]) { try $0.string() } != nil)
        #expect(decode([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) { try $0.string() } != nil)
        #expect(decode([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) { try $0.lengthPrefixed() } != nil)
        #expect(decode([1, 2]) { try $0.bytes(count: 3) } != nil)
        #expect(decode([1, 2]) { try $0.bytes(count: -1) } != nil)
        // Invalid UTF-8.
        #expect(decode([2, 0xC3, 0x28]) { try $0.string() } != nil)
        // Varint at the 64-bit limit is fine.
        #expect(decode([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]) { try $0.varint() } == nil)
    }

    @Test func randomGarbageNeverTraps() {
        var rng = SplitMix64(seed: 3)
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0..<24, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = decode(bytes) { r in
                while !r.isAtEnd {
                    _ = try r.varint128()
                    _ = try r.string()
                    _ = try r.zigzag()
                }
            }
        }
    }
}
