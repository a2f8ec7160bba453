/// SHA-256 (FIPS 180-4): access tokens are kept as hashes, and the audit
/// chain hashes every change (`digest`, on the append path: no allocation,
/// straight from the caller's buffer). Tested against the standard vectors.
internal import CSHA256

public enum SHA256 {
    /// A digest as its eight words (big-endian when written out).
    public struct Digest: Hashable, Sendable, CustomStringConvertible {
        public var h: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)
        public static let zero = Digest(h: (0, 0, 0, 0, 0, 0, 0, 0))
        // Comparing, hashing and writing a digest allocate nothing: the audit
        // chain does each per logged change, on the log writer's thread (a
        // `bytes` built from per-word arrays cost about 35 allocations per hold).
        public static func == (a: Digest, b: Digest) -> Bool {
            a.h.0 == b.h.0 && a.h.1 == b.h.1 && a.h.2 == b.h.2 && a.h.3 == b.h.3
                && a.h.4 == b.h.4 && a.h.5 == b.h.5 && a.h.6 == b.h.6 && a.h.7 == b.h.7
        }
        public func hash(into hasher: inout Hasher) { withBytes { hasher.combine(bytes: $0) } }
        public var words: [UInt32] { [h.0, h.1, h.2, h.3, h.4, h.5, h.6, h.7] }
        /// The 32 bytes (big-endian words), lent to `body` from the stack.
        @inline(__always)
        public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            let be = (h.0.bigEndian, h.1.bigEndian, h.2.bigEndian, h.3.bigEndian,
                      h.4.bigEndian, h.5.bigEndian, h.6.bigEndian, h.7.bigEndian)
            return try withUnsafeBytes(of: be) { try body($0) }
        }
        public var bytes: [UInt8] { withBytes { Array($0) } }
        public init(h: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)) { self.h = h }
        public init?(bytes b: some Collection<UInt8>) {
            let a = Array(b)
            guard a.count == 32 else { return nil }
            func w(_ i: Int) -> UInt32 { UInt32(a[i]) << 24 | UInt32(a[i + 1]) << 16 | UInt32(a[i + 2]) << 8 | UInt32(a[i + 3]) }
            h = (w(0), w(4), w(8), w(12), w(16), w(20), w(24), w(28))
        }
        public init?(hex: String) {
            let u = Array(hex.utf8)
            guard u.count == 64 else { return nil }
            var out: [UInt8] = []
            for i in stride(from: 0, to: 64, by: 2) {
                guard let v = UInt8(String(decoding: u[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
                out.append(v)
            }
            self.init(bytes: out)
        }
        public var description: String { bytes.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined() }
    }

    typealias State = (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)

    /// One 64-byte block into the state.
    @inline(__always)
    private static func compress(_ s: inout State, _ p: UnsafeRawPointer, _ w: UnsafeMutablePointer<UInt32>, _ kp: UnsafePointer<UInt32>) {
        for i in 0..<16 { w[i] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)) }
        var i = 16
        while i < 64 {
            let a = w[i &- 15], b = w[i &- 2]
            let s0 = a.rotatedRight(7) ^ a.rotatedRight(18) ^ (a >> 3)
            let s1 = b.rotatedRight(17) ^ b.rotatedRight(19) ^ (b >> 10)
            w[i] = w[i &- 16] &+ s0 &+ w[i &- 7] &+ s1
            i &+= 1
        }
        var a = s.0, b = s.1, c = s.2, d = s.3, e = s.4, f = s.5, g = s.6, h = s.7
        i = 0
        while i < 64 {
            let s1 = e.rotatedRight(6) ^ e.rotatedRight(11) ^ e.rotatedRight(25)
            let ch = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ ch &+ kp[i] &+ w[i]
            let s0 = a.rotatedRight(2) ^ a.rotatedRight(13) ^ a.rotatedRight(22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            h = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ (s0 &+ maj)
            i &+= 1
        }
        s = (s.0 &+ a, s.1 &+ b, s.2 &+ c, s.3 &+ d, s.4 &+ e, s.5 &+ f, s.6 &+ g, s.7 &+ h)
    }

    /// Whether this CPU has the x86 SHA extensions: then blocks are compressed
    /// by `ae_sha256_ni_blocks` (Sources/CSHA256), several times faster than
    /// the portable loop below. The audit chain hashes every record on the log
    /// writer's thread, the one serial stage of the hot path, so this speed is
    /// the hot path's. Both give the same digests (AuditChainTests).
    public static let hardware: Bool = ae_sha256_ni_available() != 0

    /// The digest of `message`, read in place (no allocation).
    public static func digest(_ message: UnsafeRawBufferPointer) -> Digest { digest(message, hardware: hardware) }

    /// `hardware: false` forces the portable compression (tests and
    /// `engine-bench --only sha` compare the two); `true` needs `SHA256.hardware`.
    public static func digest(_ message: UnsafeRawBufferPointer, hardware: Bool) -> Digest {
        precondition(!hardware || Self.hardware, "this CPU has no SHA extensions")
        var s: State = (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
        k.withUnsafeBufferPointer { kb in withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64 + 32) { scratch in
            let kp = kb.baseAddress!
            let w = scratch.baseAddress!
            // `blocks(p, n)`: n 64-byte blocks at p into the state.
            func blocks(_ p: UnsafeRawPointer, _ n: Int) {
                guard n > 0 else { return }
                if hardware {
                    // A tuple of eight UInt32 is laid out as eight consecutive
                    // UInt32 (homogeneous tuples have C array layout), the
                    // `uint32_t state[8]` the C routine reads and writes.
                    withUnsafeMutableBytes(of: &s) { raw in
                        ae_sha256_ni_blocks(raw.baseAddress!.assumingMemoryBound(to: UInt32.self), p.assumingMemoryBound(to: UInt8.self), n)
                    }
                } else {
                    for i in 0..<n { compress(&s, p + i * 64, w, kp) }
                }
            }
            let n = message.count
            let whole = n / 64
            if let base = message.baseAddress { blocks(base, whole) }
            // The tail and the padding, in one or two blocks after the schedule.
            let tail = UnsafeMutableRawPointer(w + 64)
            tail.initializeMemory(as: UInt8.self, repeating: 0, count: 128)
            let rest = n - whole * 64
            if rest > 0 { tail.copyMemory(from: message.baseAddress! + whole * 64, byteCount: rest) }
            tail.storeBytes(of: 0x80, toByteOffset: rest, as: UInt8.self)
            let count = rest + 9 > 64 ? 2 : 1
            tail.storeBytes(of: (UInt64(n) &* 8).bigEndian, toByteOffset: count * 64 - 8, as: UInt64.self)
            blocks(UnsafeRawPointer(tail), count)
        } }
        return Digest(h: s)
    }

    public static func digest(_ bytes: [UInt8]) -> Digest { bytes.withUnsafeBytes { digest($0) } }

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    /// The digest of `message` as 32 bytes.
    public static func hash(_ message: [UInt8]) -> [UInt8] { digest(message).bytes }

    public static func hex(_ text: String) -> String {
        hash(Array(text.utf8)).map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined()
    }
}

extension UInt32 {
    @inline(__always) func rotatedRight(_ n: UInt32) -> UInt32 { (self >> n) | (self << (32 - n)) }
}
