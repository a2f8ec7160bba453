/// Every limit of the engine, with its reason. Checked against each other at start.
public enum EngineLimits {
    /// Ids (deals, lots, holds, allocations, investors) are short printable tokens.
    public static let maxIdBytes = 128
    /// Names and free text.
    public static let maxTextBytes = 1024
    /// A hold lives at least one second and at most seven days: a longer
    /// reservation is an allocation, not a hold.
    public static let minHoldTTLMillis: Int64 = 1_000
    public static let maxHoldTTLMillis: Int64 = 7 * 24 * 3_600_000
    /// The seed's default: 30 minutes.
    public static let defaultHoldTTLMillis: Int64 = 30 * 60_000
    /// Lots per deal: the split walks them in order.
    public static let maxLotsPerDeal = 10_000
    /// Changes in one group record (an approval and its commissions, ...).
    public static let maxGroupedChanges = 1_024
    /// Requests in one call to a deal actor.
    public static let maxBatch = 4096
    /// Pending holds in one deal: at 128 bytes each, ten million is about 1.2 GiB,
    /// a bound on what one hot deal can make the engine hold in memory.
    public static let maxPendingHoldsPerDeal = 10_000_000
    /// Rows (holds or allocations, any status) in one deal: slots are Int32.
    public static let maxRowsPerDeal = Int(Int32.max) - 1
}

public enum Validate {
    /// An id is 1...maxIdBytes bytes of printable ASCII without spaces or quotes.
    /// Public: the command layer checks every id it is given, lookups included.
    public static func id(_ s: String, field: String) throws(EngineError) {
        let utf8 = s.utf8
        guard !utf8.isEmpty else { throw EngineError(.invalid, "\(field) must not be empty") }
        guard utf8.count <= EngineLimits.maxIdBytes else {
            throw EngineError(.invalid, "\(field) is longer than \(EngineLimits.maxIdBytes) bytes")
        }
        for b in utf8 where b <= 0x20 || b >= 0x7F || b == UInt8(ascii: "\"") {
            throw EngineError(.invalid, "\(field) may hold only printable characters without spaces or quotes")
        }
    }
    /// A caller-chosen hold or allocation id: an id, and not of the generated form.
    static func callerID(_ s: String, field: String) throws(EngineError) {
        try id(s, field: field)
        if GeneratedID.isReserved(s) {
            throw EngineError(.invalid, "\(field) \(s) has the form of a generated id (h<n>.<n>, a<n>.<n> or c<n>.<n>), which is reserved")
        }
    }
    static func text(_ s: String, field: String) throws(EngineError) {
        guard s.utf8.count <= EngineLimits.maxTextBytes else {
            throw EngineError(.invalid, "\(field) is longer than \(EngineLimits.maxTextBytes) bytes")
        }
        for b in s.utf8 where b < 0x20 || b == 0x7F {
            throw EngineError(.invalid, "\(field) may not hold control characters")
        }
    }
    static func currency(_ s: String) throws(EngineError) {
        guard s.utf8.count == 3, s.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            throw EngineError(.invalid, "currency must be a three-letter ISO code such as USD, got '\(s.prefix(16))'")
        }
    }
}
