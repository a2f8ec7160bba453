/// Exact fixed-point numbers. Units carry 8 decimals, prices 6, money 2, as in
/// the seed schema (`numeric(28,8)`, `numeric(18,6)`, `numeric(18,2)`). They are
/// integers of the smallest step; parsing never rounds: a value with more
/// decimals than its scale is an error.
public enum Scale {
    public static let units = 8
    public static let price = 6
    public static let money = 2
}

/// Named limits on magnitudes. They keep every product (units x price) and every
/// sum the engine forms far inside Int128, so arithmetic can never overflow.
public enum NumberLimits {
    /// At most one trillion units in one lot, hold or allocation (raw 10^20).
    public static let maxUnitsRaw: Int128 = 1_000_000_000_000 * 100_000_000
    /// At most one billion per unit (raw 10^15).
    public static let maxPriceRaw: Int128 = 1_000_000_000 * 1_000_000
    /// At most 10^16 in one money amount (the seed's numeric(18,2)), raw 10^18.
    public static let maxMoneyRaw: Int128 = 1_000_000_000_000_000_000
    /// Longest decimal string accepted (sign, 40 digits, point).
    public static let maxTextLength = 48
}

public struct Units: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var raw: Int128
    public init(raw: Int128) { self.raw = raw }
    public static let zero = Units(raw: 0)
    public static func < (a: Units, b: Units) -> Bool { a.raw < b.raw }
    public static func + (a: Units, b: Units) -> Units { Units(raw: a.raw + b.raw) }
    public static func - (a: Units, b: Units) -> Units { Units(raw: a.raw - b.raw) }
    public static func += (a: inout Units, b: Units) { a.raw += b.raw }
    public static func -= (a: inout Units, b: Units) { a.raw -= b.raw }
    public var description: String { FixedPoint.format(raw, scale: Scale.units) }

    /// Parses a positive quantity of units ("100", "0.5", "12.34567891" is an error).
    public static func parse(_ text: some StringProtocol, field: String = "units") throws(EngineError) -> Units {
        let raw = try FixedPoint.parse(text, scale: Scale.units, field: field)
        guard raw > 0 else { throw EngineError(.invalid, "\(field) must be greater than zero, got \(text)") }
        guard raw <= NumberLimits.maxUnitsRaw else {
            throw EngineError(.invalid, "\(field) \(text) is above the limit of \(FixedPoint.format(NumberLimits.maxUnitsRaw, scale: Scale.units))")
        }
        return Units(raw: raw)
    }
    /// A whole number of units, for tests and benchmarks.
    public static func whole(_ n: Int) -> Units { Units(raw: Int128(n) * 100_000_000) }
}

public struct Price: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var raw: Int64
    public init(raw: Int64) { self.raw = raw }
    public static let zero = Price(raw: 0)
    public static func < (a: Price, b: Price) -> Bool { a.raw < b.raw }
    public var description: String { FixedPoint.format(Int128(raw), scale: Scale.price) }

    /// Parses a non-negative price with up to 6 decimals.
    public static func parse(_ text: some StringProtocol, field: String = "price") throws(EngineError) -> Price {
        let raw = try FixedPoint.parse(text, scale: Scale.price, field: field)
        guard raw >= 0 else { throw EngineError(.invalid, "\(field) must not be negative, got \(text)") }
        guard raw <= NumberLimits.maxPriceRaw else {
            throw EngineError(.invalid, "\(field) \(text) is above the limit of \(FixedPoint.format(NumberLimits.maxPriceRaw, scale: Scale.price))")
        }
        return Price(raw: Int64(raw))
    }
    public static func whole(_ n: Int) -> Price { Price(raw: Int64(n) * 1_000_000) }
}

/// Money at 2 decimals. Amounts derived from units x price carry 14 decimals
/// (`ExactAmount`); they are rounded to the cent once, at the end of each
/// computed amount, half away from zero (`FixedPoint.roundHalfAwayFromZero`).
public struct Money: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var raw: Int128
    public init(raw: Int128) { self.raw = raw }
    public static let zero = Money(raw: 0)
    public static func < (a: Money, b: Money) -> Bool { a.raw < b.raw }
    /// Always two decimals, as money is shown ("2850.00").
    public var description: String { FixedPoint.format(raw, scale: Scale.money, minimumDecimals: Scale.money) }
    public static func parse(_ text: some StringProtocol, field: String = "amount") throws(EngineError) -> Money {
        Money(raw: try FixedPoint.parse(text, scale: Scale.money, field: field))
    }
}

/// The exact value of units x price: scale 8 + 6 = 14 decimals.
public struct ExactAmount: Hashable, Sendable, CustomStringConvertible {
    public static let scale = Scale.units + Scale.price
    public var raw: Int128
    public init(raw: Int128) { self.raw = raw }
    public init(units: Units, price: Price) { raw = units.raw * Int128(price.raw) }
    public var description: String { FixedPoint.format(raw, scale: Self.scale) }
    /// Rounded to cents, half away from zero: the one rounding rule of every
    /// money figure the engine computes, what PostgreSQL's `numeric(18,2)`
    /// does, so a platform moving from the seed design gets the same cents.
    public var roundedToMoney: Money {
        Money(raw: FixedPoint.roundHalfAwayFromZero(raw, droppingDigits: Self.scale - Scale.money))
    }
}

public enum FixedPoint {
    /// `raw` with its last `digits` decimal digits dropped, rounded half away
    /// from zero (0.005 -> 0.01, -0.005 -> -0.01, 0.00499 -> 0.00).
    public static func roundHalfAwayFromZero(_ raw: Int128, droppingDigits digits: Int) -> Int128 {
        precondition(digits >= 0 && digits <= 30, "rounding digits out of range")
        if digits == 0 { return raw }
        var divisor: Int128 = 1
        for _ in 0..<digits { divisor *= 10 }
        let q = raw / divisor
        let r = raw % divisor
        let magnitude = r < 0 ? -r : r
        return magnitude * 2 >= divisor ? q + (raw < 0 ? -1 : 1) : q
    }

    /// Parses a plain decimal string ("-12.5", "100", "0.00000001") into an integer
    /// of 10^-scale steps. Rejects exponents, spaces, empty parts, more decimals than
    /// `scale` and anything longer than `NumberLimits.maxTextLength`.
    public static func parse(_ text: some StringProtocol, scale: Int, field: String) throws(EngineError) -> Int128 {
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= NumberLimits.maxTextLength else {
            throw EngineError(.invalid, "\(field) must be a decimal number, got '\(text.prefix(NumberLimits.maxTextLength))'")
        }
        var negative = false
        var intPart: Int128 = 0
        var fracPart: Int128 = 0
        var fracDigits = 0
        var intDigits = 0
        var seenPoint = false
        var first = true
        for byte in utf8 {
            defer { first = false }
            if first && (byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")) {
                negative = byte == UInt8(ascii: "-")
                continue
            }
            if byte == UInt8(ascii: ".") {
                guard !seenPoint else { throw EngineError(.invalid, "\(field) must be a decimal number, got '\(text)'") }
                seenPoint = true
                continue
            }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else {
                throw EngineError(.invalid, "\(field) must be a decimal number, got '\(text)'")
            }
            let digit = Int128(byte - UInt8(ascii: "0"))
            if seenPoint {
                fracDigits += 1
                guard fracDigits <= scale else {
                    throw EngineError(.invalid, "\(field) has more than \(scale) decimals: '\(text)'")
                }
                fracPart = fracPart * 10 + digit
            } else {
                intDigits += 1
                guard intDigits <= 30 else { throw EngineError(.invalid, "\(field) is too large: '\(text)'") }
                intPart = intPart * 10 + digit
            }
        }
        guard intDigits > 0 || fracDigits > 0 else {
            throw EngineError(.invalid, "\(field) must be a decimal number, got '\(text)'")
        }
        var factor: Int128 = 1
        for _ in 0..<scale { factor *= 10 }
        var fracFactor: Int128 = 1
        for _ in 0..<(scale - fracDigits) { fracFactor *= 10 }
        let value = intPart * factor + fracPart * fracFactor
        return negative ? -value : value
    }

    /// Formats without exponent, trimming trailing zeros of the fraction
    /// ("100", "28.5", "0.00000001").
    public static func format(_ raw: Int128, scale: Int, minimumDecimals: Int = 0) -> String {
        var factor: Int128 = 1
        for _ in 0..<scale { factor *= 10 }
        let magnitude = raw < 0 ? -raw : raw
        let whole = magnitude / factor
        var frac = magnitude % factor
        var result = raw < 0 ? "-" : ""
        result += String(whole)
        if frac != 0 || minimumDecimals > 0 {
            var digits = scale
            while digits > minimumDecimals && frac % 10 == 0 { frac /= 10; digits -= 1 }
            let fracText = String(frac)
            result += "." + String(repeating: "0", count: digits - fracText.count) + fracText
        }
        return result
    }
}
