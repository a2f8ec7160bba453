/// A calendar date (`yyyy-mm-dd`, the seed's `date` columns) as days since
/// 1970-01-01, so it sorts and compares as an integer.
public struct CivilDate: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var days: Int32
    public init(days: Int32) { self.days = days }
    public static func < (a: CivilDate, b: CivilDate) -> Bool { a.days < b.days }

    /// Parses exactly `yyyy-mm-dd` with a real month and day (leap years counted).
    /// The UTC day holding a unix time in milliseconds.
    public static func of(unixMillis ms: Int64) -> CivilDate {
        CivilDate(days: Int32(ms >= 0 ? ms / 86_400_000 : -((-ms + 86_400_000 - 1) / 86_400_000)))
    }

    public static func parse(_ text: some StringProtocol, field: String = "date") throws(EngineError) -> CivilDate {
        let b = Array(text.utf8)
        func digits(_ range: Range<Int>) -> Int? {
            var v = 0
            for i in range {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard b.count == 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              let y = digits(0..<4), let m = digits(5..<7), let d = digits(8..<10),
              y >= 1900, (1...12).contains(m), d >= 1, d <= daysInMonth(year: y, month: m)
        else { throw EngineError(.invalid, "\(field) must be a date yyyy-mm-dd, got '\(text.prefix(20))'") }
        return CivilDate(days: Int32(daysFromCivil(y, m, d)))
    }

    public var description: String {
        let (y, m, d) = Self.civilFromDays(Int(days))
        func pad(_ v: Int, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
    // Howard Hinnant's days_from_civil / civil_from_days.
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
