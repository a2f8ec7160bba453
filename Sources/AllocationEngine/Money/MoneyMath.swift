/// Exact fee arithmetic: products of fixed-point numbers kept whole and
/// rounded to the cent once, at the end, half away from zero.
enum MoneyMath {
    /// x × k / m rounded half away from zero, for x of any sign and k, m > 0
    /// with m × k inside Int128: x is split as a·m + b so no intermediate
    /// overflows even for the largest amounts the limits allow (x up to 10^35).
    static func mulDivRound(_ x: Int128, _ k: Int128, _ m: Int128) -> Int128 {
        precondition(k >= 0 && m > 0, "mulDivRound needs k >= 0, m > 0")
        let negative = x < 0
        let ax = negative ? -x : x
        let a = ax / m, b = ax % m
        let whole = a * k
        let part = b * k
        var q = whole + part / m
        if (part % m) * 2 >= m { q += 1 }
        return negative ? -q : q
    }

    /// Cents of `bps` basis points of an exact amount (14 decimals).
    static func percent(_ amount: ExactAmount, bps: Int32) -> Money {
        // amount (10^-14) × bps / 10^4 → 10^-18 ... to cents: divide by 10^16.
        Money(raw: mulDivRound(amount.raw, Int128(bps), 10_000_000_000_000_000))
    }

    /// Cents of `bps` per annum of an exact amount over `days` days (actual/365).
    static func perAnnum(_ amount: ExactAmount, bps: Int32, days: Int) -> Money {
        Money(raw: mulDivRound(amount.raw, Int128(bps) * Int128(days), 365 * 10_000_000_000_000_000))
    }

    /// Cents of rate × (profit − investment × hurdle), when positive (else 0);
    /// nil when the exact value does not fit (beyond any real amount, refused
    /// rather than rounded wrong). All at 10^-18 before the one rounding.
    static func performance(profit: ExactAmount, investment: ExactAmount, rateBps: Int32, hurdleBps: Int32) -> Money? {
        let (p18, o1) = profit.raw.multipliedReportingOverflow(by: 10_000)
        let (h18, o2) = investment.raw.multipliedReportingOverflow(by: Int128(hurdleBps))
        let (net, o3) = p18.subtractingReportingOverflow(h18)
        guard !o1 && !o2 && !o3 else { return nil }
        guard net > 0 else { return .zero }
        // net (10^-18) × bps is at 10^-22 (a rate is bps / 10^4); to cents: divide by 10^20.
        return Money(raw: mulDivRound(net, Int128(rateBps), 100_000_000_000_000_000_000))
    }

    /// Cents of units × a price per unit.
    static func product(_ units: Units, _ price: Price) -> Money {
        ExactAmount(units: units, price: price).roundedToMoney
    }
}
