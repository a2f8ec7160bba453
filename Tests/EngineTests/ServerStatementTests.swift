import AllocationEngine
import Foundation
import Testing
import WAL
@testable import EngineServer

// The read models over the protocol, checked against the rows they summarize:
// DEAL.SUMMARY against the deal's lists, INVESTOR.STATEMENT's totals against
// its own parts (every page), INTRODUCER.STATEMENT against COMMISSION.LIST.

private func money(_ s: String?) -> Int128 { (try? FixedPoint.parse(s ?? "0", scale: 2, field: "m")) ?? -1 }
private func units(_ s: String?) -> Int128 { (try? FixedPoint.parse(s ?? "0", scale: 8, field: "u")) ?? -1 }

/// Every row of a paged command, following its cursors.
private func allRows(_ c: SrvClient, _ args: [String]) async -> [[String: String]] {
    var rows: [[String: String]] = []
    var cursor = "0"
    repeat {
        guard let p = await c.call(args + ["CURSOR", cursor, "COUNT", "7"]).page else { Issue.record("\(args): not a page"); return rows }
        rows += p.rows
        cursor = p.cursor
    } while cursor != "0"
    return rows
}

@Suite(.serialized) struct ServerStatementTests {
    @Test(arguments: [1, 2])
    func statementsAddUpToTheirRows(seed: Int) async throws {
        try await withSrv { h in
            let c = try h.client()
            var rng = SplitMix64(seed: UInt64(seed) &* 7919)
            for d in ["d1", "d2"] {
                #expect(await c.call("DEAL.CREATE", d, "PRICE", "10") == .simple("OK"))
                #expect(await c.call("LOT.ADD", d, "\(d)-L1", "100000", "5") == .simple("OK"))
                #expect(await c.call("FEEPLAN.CREATE", d, "p-\(d)", "plan", "DEFAULT") == .simple("OK"))
                #expect(await c.call("FEEPLAN.ADD", "p-\(d)", "sub", "subscription", "percent_of_investment", "RATE_BPS", "333") == .simple("OK"))
            }
            #expect(await c.call("INVESTOR.CREATE", "inv-0", "Zero") == .simple("OK"))
            #expect(await c.call("INTRODUCER.CREATE", "acme", "Acme", "COMMISSION_BPS", "150") == .simple("OK"))
            #expect(await c.call("INTRODUCTION.CREATE", "acme", "d1", "INVESTOR", "inv-0").string != nil)
            var holds: [String] = [], allocations: [String] = [], invoices: [String] = []
            for _ in 0..<120 {
                let d = rng.next() % 2 == 0 ? "d1" : "d2"
                let inv = "inv-\(rng.next() % 3)"
                switch rng.next() % 7 {
                case 0, 1:
                    if let h = await c.call("HOLD", d, inv, String(1 + rng.next() % 50), "\(5 + rng.next() % 20).\(rng.next() % 100)").elements?.first?.string { holds.append(h) }
                case 2:
                    if let h = holds.randomElement(using: &rng), let a = await c.call("ALLOCATE", h).string { allocations.append(a) }
                case 3:
                    if let a = allocations.randomElement(using: &rng) { _ = await c.call(rng.next() % 4 == 0 ? "REJECT" : "APPROVE", a) }
                case 4:
                    _ = await c.call("FEES.COMPUTE", d)
                    if let v = await c.call("INVOICE.CREATE", d, inv, "TAX_BPS", String(rng.next() % 1000)).string { invoices.append(v) }
                case 5:
                    if let v = invoices.randomElement(using: &rng) { _ = await c.call("PAYMENT.RECORD", v, "\(1 + rng.next() % 40).\(rng.next() % 100)") }
                default:
                    if let h = holds.randomElement(using: &rng) { _ = await c.call("RELEASE", h) }
                }
            }
            // DEAL.SUMMARY against the deal's rows.
            for d in ["d1", "d2"] {
                let s = try #require(await c.call("DEAL.SUMMARY", d).fields)
                let inv = try #require(await c.call("INVENTORY", d).fields)
                for k in ["units_total", "units_remaining", "units_held", "units_allocated", "holds_pending"] { #expect(s[k] == inv[k], "\(d) \(k)") }
                var allocs: [[String: String]] = []
                for a in Set(allocations) { if let f = await c.call("ALLOCATION.GET", a).fields, f["deal"] == d { allocs.append(f) } }
                for status in ["pending_review", "approved", "rejected", "settled"] {
                    let mine = allocs.filter { $0["status"] == status }
                    #expect(s["allocations_\(status)"] == String(mine.count), "\(d) \(status)")
                    #expect(units(s["allocations_\(status)_units"]) == mine.reduce(Int128(0)) { $0 + units($1["units"]) })
                }
                let fees = await allRows(c, ["FEES.LIST", d])
                #expect(money(s["fees_accrued"]) == fees.filter { $0["status"] == "accrued" }.reduce(Int128(0)) { $0 + money($1["computed_amount"]) })
                #expect(money(s["fees_invoiced"]) == fees.filter { $0["status"] == "invoiced" }.reduce(Int128(0)) { $0 + money($1["computed_amount"]) })
                let invs = await allRows(c, ["INVOICE.LIST", "DEAL", d])
                #expect(money(s["fees_paid"]) == invs.reduce(Int128(0)) { $0 + money($1["paid"]) })
                let open = invs.filter { $0["status"] != "cancelled" && money($0["paid"]) < money($0["total"]) }
                #expect(s["invoices_outstanding"] == String(open.count))
                #expect(money(s["invoices_outstanding_amount"]) == open.reduce(Int128(0)) { $0 + money($1["total"]) - money($1["paid"]) })
            }
            // INVESTOR.STATEMENT's totals against its parts.
            for i in 0..<3 {
                let inv = "inv-\(i)"
                let st = try #require(await c.call("INVESTOR.STATEMENT", inv).fields)
                let holdRows = await allRows(c, ["INVESTOR.STATEMENT", inv, "PART", "holds"])
                let pending = holdRows.filter { $0["status"] == "pending" }
                #expect(st["holds_pending"] == String(pending.count), "\(inv)")
                #expect(units(st["units_held"]) == pending.reduce(Int128(0)) { $0 + units($1["units"]) })
                let allocRows = await allRows(c, ["INVESTOR.STATEMENT", inv, "PART", "allocations"])
                #expect(units(st["units_allocated"]) == allocRows.filter { $0["status"] == "approved" || $0["status"] == "settled" }.reduce(Int128(0)) { $0 + units($1["units"]) })
                #expect(allocRows.allSatisfy { $0["investor"] == inv })
                let positions = await allRows(c, ["INVESTOR.STATEMENT", inv, "PART", "positions"])
                #expect(units(st["units_allocated"]) == positions.reduce(Int128(0)) { $0 + units($1["units"]) })
                let feeRows = await allRows(c, ["INVESTOR.STATEMENT", inv, "PART", "fees"])
                let invoiceRows = await allRows(c, ["INVESTOR.STATEMENT", inv, "PART", "invoices"])
                let paymentRows = await allRows(c, ["INVESTOR.STATEMENT", inv, "PART", "payments"])
                // The money table: [currency, cost_basis, fees_accrued, fees_invoiced, invoiced, paid, outstanding].
                let table = try #require(await c.call("INVESTOR.STATEMENT", inv).value("money")?.elements?.first?.elements?.compactMap(\.string))
                #expect(table.count == 7 && table[0] == "USD")
                #expect(money(table[2]) == feeRows.filter { $0["status"] == "accrued" }.reduce(Int128(0)) { $0 + money($1["computed_amount"]) })
                let live = invoiceRows.filter { $0["status"] != "cancelled" }
                #expect(money(table[4]) == live.reduce(Int128(0)) { $0 + money($1["total"]) })
                #expect(money(table[5]) == paymentRows.filter { $0["status"] != "refunded" }.reduce(Int128(0)) { $0 + money($1["amount"]) })
                #expect(money(table[6]) == money(table[4]) - money(table[5]))
            }
            // INTRODUCER.STATEMENT against COMMISSION.LIST.
            let intro = try #require(await c.call("INTRODUCER.STATEMENT", "acme").fields)
            let commissions = await allRows(c, ["COMMISSION.LIST", "INTRODUCER", "acme"])
            let row = await c.call("INTRODUCER.STATEMENT", "acme").value("commissions")?.elements?.first?.elements?.compactMap(\.string) ?? []
            #expect(row.first == "USD" && row.count == 9)
            #expect(row.count == 9 && row[1] == String(commissions.filter { $0["status"] == "accrued" }.count))
            #expect(row.count == 9 && money(row[2]) == commissions.filter { $0["status"] == "accrued" }.reduce(Int128(0)) { $0 + money($1["accrual_amount"]) })
            #expect(Int(intro["introductions_invited"] ?? "0")! + Int(intro["introductions_allocated"] ?? "0")! == 1)
        }
    }
}
