import WAL
import Testing
@testable import AllocationEngine

@Suite("Engine: exact numbers and dates")
struct EngineNumberTests {
    @Test(arguments: [
        ("100", "100", Int128(10_000_000_000)), ("0.5", "0.5", 50_000_000), ("0.00000001", "0.00000001", 1),
        ("12.34567891", "12.34567891", 1_234_567_891), ("100.50000000", "100.5", 10_050_000_000),
        ("007", "7", 700_000_000), ("1000000000000", "1000000000000", 100_000_000_000_000_000_000),
        ("999999999999.99999999", "999999999999.99999999", 99_999_999_999_999_999_999),
    ])
    func unitsParseAndFormat(_ text: String, _ printed: String, _ raw: Int128) throws {
        let v = try Units.parse(text)
        #expect(v.raw == raw)
        #expect(v.description == printed)
        #expect(!v.description.contains("e") && !v.description.contains("E"))
        #expect(try Units.parse(v.description) == v)
    }

    @Test(arguments: [
        "0", "0.0", "0.00000000", "-0", "-1", "-0.00000001", "12.345678912", "1.000000000", "0.000000001",
        "", " ", ".", "-", "+", "..", "1..2", "1.2.3", "abc", "1a", "0x10", "NaN", "nan", "inf", "Infinity",
        "1e5", "1E5", "1.5e2", "1e-8", " 1", "1 ", "1,5", "1_000", "--1", "+-1", "½", "١",
        "1000000000000.00000001", "1000000000001", "99999999999999999999999999999999999",
        "1234567890123456789012345678901234567890123456789",
    ])
    func unitsRejected(_ text: String) {
        expectInvalid(text) { () throws(EngineError) in try Units.parse(text) }
    }

    @Test(arguments: [("0", "0"), ("12.5", "12.5"), ("0.000001", "0.000001"), ("98.765432", "98.765432"),
                      ("1000000000", "1000000000"), ("3.100000", "3.1")])
    func priceParseAndFormat(_ text: String, _ printed: String) throws {
        let v = try Price.parse(text)
        #expect(v.description == printed)
        #expect(try Price.parse(v.description) == v)
    }

    @Test(arguments: ["-1", "-0.000001", "0.0000001", "1.1234567", "1e3", "1E-2", "abc", "", ".", "1000000000.000001",
                      "10000000000", "99999999999999999999999999999999999"])
    func priceRejected(_ text: String) {
        expectInvalid(text) { () throws(EngineError) in try Price.parse(text) }
    }

    @Test func formatWithoutExponent() {
        #expect(FixedPoint.format(1, scale: 8) == "0.00000001")
        #expect(FixedPoint.format(-150_000_000, scale: 8) == "-1.5")
        #expect(FixedPoint.format(0, scale: 8) == "0")
        #expect(FixedPoint.format(100_000_000_000_000_000_000, scale: 8) == "1000000000000")
        #expect(FixedPoint.format(10, scale: 2) == "0.1")
        #expect(FixedPoint.format(1_000_000_000_000_000, scale: 6) == "1000000000")
        #expect(FixedPoint.format(120_000, scale: 6) == "0.12")
        #expect(Units.whole(3).description == "3")
        #expect(Price.whole(3).description == "3")
    }

    @Test func formatParseRoundTripSeeded() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        var bad: [String] = []
        for _ in 0..<5_000 {
            let raw = Int128(rng.next() % 100_000_000_000_000) * Int128(1 + rng.next() % 1_000_000) + 1
            let units = Units(raw: min(raw, NumberLimits.maxUnitsRaw))
            if (try? Units.parse(units.description)) != units { bad.append(units.description) }
            let price = Price(raw: Int64(rng.next() % UInt64(NumberLimits.maxPriceRaw + 1)))
            if (try? Price.parse(price.description)) != price { bad.append(price.description) }
        }
        #expect(bad.isEmpty, "\(bad.prefix(10))")
    }

    /// The one rounding rule (issue 8): half away from zero, at the end of each amount.
    @Test func moneyRoundsHalfAwayFromZero() {
        func cents(_ raw: Int128) -> String { ExactAmount(raw: raw).roundedToMoney.description }
        let half: Int128 = 500_000_000_000  // 0.005 at 14 decimals
        #expect(cents(half) == "0.01")
        #expect(cents(3 * half) == "0.02")
        #expect(cents(5 * half) == "0.03")
        #expect(cents(half + 1) == "0.01")
        #expect(cents(half - 1) == "0.00")
        #expect(cents(-half) == "-0.01")
        #expect(cents(-3 * half) == "-0.02")
        #expect(cents(-half - 1) == "-0.01")
        #expect(cents(-half + 1) == "0.00")
        #expect(cents(0) == "0.00")
        #expect(FixedPoint.roundHalfAwayFromZero(15, droppingDigits: 1) == 2)
        #expect(FixedPoint.roundHalfAwayFromZero(-15, droppingDigits: 1) == -2)
        #expect(FixedPoint.roundHalfAwayFromZero(14, droppingDigits: 1) == 1)
        #expect(FixedPoint.roundHalfAwayFromZero(7, droppingDigits: 0) == 7)
        // The worked example: 1 unit at 10.10 under 5 %: 0.505 -> 0.51.
        let fee = ExactAmount(units: u("1"), price: p("10.10")).raw * 500  // x 500 bps ...
        #expect(FixedPoint.roundHalfAwayFromZero(fee, droppingDigits: 14 + 4 - 2) == 51)  // ... / 10^4, to cents
        // 333.33333333 units at 28.505, 5 %: 9501.66666657... x 0.05 = 475.0833... -> 475.08.
        let fee2 = ExactAmount(units: u("333.33333333"), price: p("28.505")).raw * 500
        #expect(FixedPoint.roundHalfAwayFromZero(fee2, droppingDigits: 16) == 47_508)
        #expect(ExactAmount(units: u("3.33333333"), price: p("1.005")).description == "3.34999999665")
        #expect(ExactAmount(units: u("3.33333333"), price: p("1.005")).roundedToMoney.description == "3.35")
        #expect(ExactAmount(units: u("1000000000000"), price: p("1000000000")).roundedToMoney.description == "1000000000000000000000.00")
    }

    @Test(arguments: [("1970-01-01", Int32(0)), ("2026-01-01", 20454), ("1900-01-01", -25567), ("2000-02-29", 11016),
                      ("2024-02-29", 19782), ("9999-12-31", 2_932_896)])
    func civilDateParses(_ text: String, _ days: Int32) throws {
        let d = try CivilDate.parse(text)
        #expect(d.days == days)
        #expect(d.description == text)
    }

    @Test(arguments: ["2023-02-29", "1900-02-29", "2100-02-29", "2024-13-01", "2024-00-10", "2024-01-00", "2024-01-32",
                      "2024-04-31", "2024-06-31", "2024-09-31", "2024-11-31", "2024-1-01", "2024-01-1", "24-01-01",
                      "2024/01/01", "20240101", "", "abcd-ef-gh", "1899-12-31", " 2024-01-01", "2024-01-01 ",
                      "2024-01-01T00:00", "+024-01-01", "2024-0a-01", "２０２４-01-01"])
    func civilDateRejected(_ text: String) {
        expectInvalid(text) { () throws(EngineError) in try CivilDate.parse(text) }
    }

    @Test func civilDateRoundTripsEveryDay() throws {
        var bad: [String] = []
        var previousText = ""
        for days in Int32(-25567)...Int32(47481) {  // 1900-01-01 ... 2099-12-31
            let d = CivilDate(days: days)
            let text = d.description
            if (try? CivilDate.parse(text)) != d || text <= previousText { bad.append("\(days): \(text)") }
            previousText = text
        }
        #expect(bad.isEmpty, "\(bad.prefix(10))")
        #expect(CivilDate(days: 47481).description == "2099-12-31")
    }
}
