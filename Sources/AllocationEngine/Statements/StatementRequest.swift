/// The read models users ask for (`v_deal_summary`, statements), answered by
/// the deal actors that hold the rows: a deal's summary by its actor; an
/// investor's or introducer's statement by the actors of the deals it has
/// rows in (`Holdings`), never every deal. Figures cross the actor hops as
/// decimal text (no 128-bit value across an `await` on Linux).
public enum StatementRequest: Sendable {
    /// `DEAL.SUMMARY`.
    case summary
    /// One deal's part of an investor's statement: its totals, or a page of one part.
    case investor(String, part: StatementPart?, cursor: UInt64, count: Int)
    /// One deal's part of an introducer's statement: counts and totals by status.
    case introducer(String)
}

/// The parts of `INVESTOR.STATEMENT`, each paged.
public enum StatementPart: String, Sendable, CaseIterable {
    case holds, allocations, positions, fees, invoices, payments, cashflows
}
