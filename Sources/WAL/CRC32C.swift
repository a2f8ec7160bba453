// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as used by iSCSI,
// ext4 and SQLite-style log checksums. Table driven, slicing-by-8.
//
// Convention: `checksum` returns the finished (post-inverted) CRC, and `seed`
// is a previously finished CRC. Therefore
//     checksum(a + b) == checksum(b, seed: checksum(a))
// and seed 0 is the standard initial state.

/// The eight 256-entry slicing tables, flattened: table k lives at [k*256 ..< (k+1)*256].
/// A global `let` is initialised once, thread safely, and is immutable.
private let crc32cTables: [UInt32] = {
    let polynomial: UInt32 = 0x82F6_3B78
    var tables = [UInt32](repeating: 0, count: 8 * 256)
    for i in 0..<256 {
        var crc = UInt32(i)
        for _ in 0..<8 {
            crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1
        }
        tables[i] = crc
    }
    for k in 1..<8 {
        for i in 0..<256 {
            let previous = tables[(k - 1) * 256 + i]
            tables[k * 256 + i] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
        }
    }
    return tables
}()

public enum CRC32C {
    /// CRC-32C of `bytes`, continuing from `seed` (a finished CRC of the bytes before).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var count = bytes.count
        guard count > 0, var p = bytes.baseAddress else { return seed }
        var crc = ~seed
        crc32cTables.withUnsafeBufferPointer { table in
            let t = table.baseAddress!
            // loadUnaligned handles any address, so no alignment prologue is needed.
            while count >= 8 {
                let lo = UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)) ^ crc
                let hi = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                crc = t[7 * 256 + Int(lo & 0xFF)]
                    ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)]
                    ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)]
                    ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)]
                    ^ t[Int(hi >> 24)]
                p += 8
                count -= 8
            }
            while count > 0 {
                let byte = p.load(as: UInt8.self)
                crc = (crc >> 8) ^ t[Int((crc ^ UInt32(byte)) & 0xFF)]
                p += 1
                count -= 1
            }
        }
        return ~crc
    }

    /// CRC-32C of a byte array (seed 0).
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// CRC-32C of a byte array continuing from `seed`.
    public static func checksum(_ bytes: [UInt8], seed: UInt32) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, seed: seed) }
    }
}

extension CRC32C {
    /// The CRC-32C of `a ‖ b` from `crcA` = CRC(a), `crcB` = CRC(b) and b's
    /// length, without the bytes (zlib's `crc32_combine`: appending `lengthB`
    /// zero bytes to `a` is a linear map, applied by repeated squaring of the
    /// one-zero-bit matrix). A snapshot's checksum covers its header, which is
    /// known only once the payload streamed to disk has been counted.
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthB: Int) -> UInt32 {
        precondition(lengthB >= 0, "a negative length")
        if lengthB == 0 { return crcA }
        func times(_ matrix: [UInt32], _ vector: UInt32) -> UInt32 {
            var sum: UInt32 = 0, v = vector, i = 0
            while v != 0 {
                if v & 1 != 0 { sum ^= matrix[i] }
                v >>= 1
                i += 1
            }
            return sum
        }
        func square(_ matrix: [UInt32]) -> [UInt32] { (0..<32).map { times(matrix, matrix[$0]) } }
        // The operator for one zero bit: the reflected polynomial, then shifts.
        var odd = [UInt32](repeating: 0, count: 32)
        odd[0] = 0x82F6_3B78
        for n in 1..<32 { odd[n] = 1 << UInt32(n - 1) }
        var even = square(odd)   // two zero bits
        odd = square(even)       // four zero bits
        var crc = crcA
        var length = lengthB
        repeat {
            even = square(odd)   // the first pass: one zero byte
            if length & 1 != 0 { crc = times(even, crc) }
            length >>= 1
            if length == 0 { break }
            odd = square(even)
            if length & 1 != 0 { crc = times(odd, crc) }
            length >>= 1
        } while length != 0
        return crc ^ crcB
    }
}
