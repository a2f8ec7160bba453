import Testing
import WAL
@testable import AllocationEngine

// Issue 8, second part: bank reconciliation, introducers and commissions,
// periodic performance fees over a high-water mark; replay over the whole
// money model and crash atomicity of the changes that go together.

private func mo(_ e: Engine, _ r: MoneyRequest, deal: String = "d1", as p: Principal? = nil) async throws -> DealReply {
    guard let actor = e.deal(deal) else { throw EngineError(.notFound, "deal \(deal)") }
    if p != nil { return await actor.execute([.money(r)], as: p).replies[0] }
    let reply = await e.submit([.money(r)], to: actor)[0]
    if let err = reply.error { throw err }
    return reply
}

private func id(_ r: DealReply) throws -> String {
    guard case .id(let s) = r else { throw EngineError(.invalid, "expected an id, got \(r)") }
    return s
}

private func fields(_ r: DealReply) throws -> [Field] {
    guard case .fields(let f) = r else { throw EngineError(.invalid, "expected fields, got \(r)") }
    return f
}

private func rows(_ r: DealReply) throws -> [[Field]] {
    guard case .page(_, let rows) = r else { throw EngineError(.invalid, "expected a page, got \(r)") }
    return rows
}

private func money(_ s: String) -> Money { try! Money.parse(s) }

private func plan(_ e: Engine, _ id: String, deal: String = "d1", _ components: [FeeComponent]) async throws {
    _ = try await mo(e, .createPlan(id: id, name: "plan \(id)", description: nil, isDefault: true), deal: deal)
    for c in components { _ = try await mo(e, .addComponent(plan: id, c), deal: deal) }
}

@discardableResult
private func approved(_ e: Engine, _ investor: String, _ units: String, _ price: String, deal: String = "d1") async throws -> String {
    let h = try await e.hold(deal: deal, holdReq(units, investor: investor, price: price))
    let a = try await e.allocate(hold: h.id)
    try await e.approve(allocation: a)
    return a
}

private func importTxn(_ e: Engine, _ id: String, _ amount: String, account: String = "acct-1", currency: String = "USD") async throws {
    try await e.change(.bankImported(BankTransaction(id: id, accountRef: account, amount: money(amount), currency: currency,
                                                     valueDate: date("2026-01-05"), memo: "wire \(id)", counterparty: nil, batch: nil)))
}

private func introducer(_ e: Engine, _ id: String, bps: Int32? = 150, user: String? = nil, active: Bool = true) async throws {
    try await e.change(.introducerCreated(Introducer(id: id, legalName: "Introducer \(id)", commissionBps: bps, user: user, active: active)))
}

private func investor(_ e: Engine, _ id: String) async throws {
    try await e.change(.investorCreated(InvestorRecord(id: id, legalName: "Investor \(id)")))
}

private let allIn = FeeComponent(id: "sub", kind: .subscription, method: .percentOfInvestment, rateBps: 500)

@Suite("Money: bank, introducers, periodic performance") struct BankIntroducerTests {

    // MARK: - Introducers

    @Test func commissionOnInvestedAmountAccruesWithTheApproval() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await investor(e, "inv-x")
            try await introducer(e, "acme", bps: 200)
            // 150 bps on 28,500.00 -> 427.50 (the introduction's rate over the introducer's default).
            let n = try id(try await mo(e, .createIntroduction(introducer: "acme", investor: "inv-x", email: nil, rateBps: 150, basis: .investedAmount, id: "intro-1")))
            #expect(n == "intro-1")
            #expect(try fields(try await mo(e, .getIntroduction(n)))[field: "status"] == "invited")
            // The same id again with the same prospect: the same introduction; another prospect by anyone: CONFLICT.
            #expect(try await mo(e, .createIntroduction(introducer: "acme", investor: "inv-x", email: nil, rateBps: 150, basis: .investedAmount, id: "intro-1")) == .id("intro-1"))
            try await introducer(e, "other")
            await expectError(.conflict) { try await mo(e, .createIntroduction(introducer: "other", investor: "inv-x", email: nil, rateBps: nil, basis: .investedAmount, id: nil)) }
            await expectError(.notFound) { try await mo(e, .createIntroduction(introducer: "nobody", investor: "inv-x", email: nil, rateBps: nil, basis: .investedAmount, id: nil)) }
            await expectError(.notFound) { try await mo(e, .createIntroduction(introducer: "acme", investor: "inv-unknown", email: nil, rateBps: nil, basis: .investedAmount, id: nil)) }

            try await approved(e, "inv-y", "10", "28.50")  // not introduced: no commission
            let a = try await approved(e, "inv-x", "1000", "28.50")
            let list = try rows(try await mo(e, .listCommissions(introducer: nil, status: nil, cursor: 0, count: 100)))
            #expect(list.count == 1)
            #expect(list[0][field: "accrual_amount"] == "427.50" && list[0][field: "base_amount"] == "28500.00")
            #expect(list[0][field: "source_ref"] == a && list[0][field: "status"] == "accrued" && list[0][field: "basis_type"] == "invested_amount")
            #expect(try fields(try await mo(e, .getIntroduction(n)))[field: "status"] == "allocated")

            // A statement: the accrued commissions, invoiced; paid with COMMISSION.PAY.
            let st = try id(try await mo(e, .invoiceCommissions(introducer: "acme")))
            let sf = try fields(try await mo(e, .getInvoice(st)))
            #expect(sf[field: "generated_from"] == "introducer_commissions" && sf[field: "total"] == "427.50" && sf[field: "introducer"] == "acme")
            await expectError(.conflict) { try await mo(e, .invoiceCommissions(introducer: "acme")) }  // nothing accrued left
            await expectError(.conflict) { try await mo(e, .recordPayment(invoice: st, amount: money("1"), method: nil, paidAt: nil, id: nil)) }
            let cid = try #require(list[0][field: "id"])
            await expectError(.conflict) { try await mo(e, .cancelCommission(cid)) }  // invoiced
            // Cancelling the statement returns its commissions to accrued; a new statement takes them.
            _ = try await mo(e, .cancelInvoice(st))
            #expect(try rows(try await mo(e, .listCommissions(introducer: "acme", status: .accrued, cursor: 0, count: 10))).count == 1)
            let st2 = try id(try await mo(e, .invoiceCommissions(introducer: "acme")))
            _ = try await mo(e, .payStatement(st2, paidAt: 1_767_300_000_000))
            let paid = try rows(try await mo(e, .listCommissions(introducer: "acme", status: .paid, cursor: 0, count: 10)))
            #expect(paid.count == 1 && paid[0][field: "paid_at"] == "1767300000000" && paid[0][field: "invoice_id"] == st2)
            #expect(try fields(try await mo(e, .getInvoice(st2)))[field: "status"] == "paid")
            // Lost: no more commissions, and the prospect may be introduced again.
            _ = try await mo(e, .loseIntroduction(n))
            try await approved(e, "inv-x", "10", "28.50")
            #expect(try rows(try await mo(e, .listCommissions(introducer: nil, status: nil, cursor: 0, count: 100))).count == 1)
            _ = try await mo(e, .createIntroduction(introducer: "other", investor: "inv-x", email: nil, rateBps: 10, basis: .investedAmount, id: nil))
        }
    }

    @Test func feeBasesAccrueWithTheirFeesAndVoidsCancelThem() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await investor(e, "inv-x")
            try await introducer(e, "acme", bps: nil)
            await expectError(.invalid) { try await mo(e, .createIntroduction(introducer: "acme", investor: "inv-x", email: nil, rateBps: nil, basis: .managementFee, id: nil)) }
            _ = try await mo(e, .createIntroduction(introducer: "acme", investor: "inv-x", email: nil, rateBps: 2_500, basis: .managementFee, id: nil))
            try await plan(e, "p", [allIn, FeeComponent(id: "mgmt", kind: .management, method: .percentPerAnnum, rateBps: 200, frequency: .annual)])
            try await approved(e, "inv-x", "1000", "28.50")
            #expect(try rows(try await mo(e, .listCommissions(introducer: nil, status: nil, cursor: 0, count: 10))).isEmpty)
            // 2026: 28,500 × 2 % × 365/365 = 570.00 management; 25 % of it = 142.50. The 5 % subscription pays none.
            guard case .count(2) = try await mo(e, .computeFees(investor: nil, asOf: date("2026-12-31"))) else { Issue.record("compute"); return }
            let c = try rows(try await mo(e, .listCommissions(introducer: nil, status: nil, cursor: 0, count: 10)))
            #expect(c.count == 1 && c[0][field: "accrual_amount"] == "142.50" && c[0][field: "basis_type"] == "management_fee" && c[0][field: "base_amount"] == "570.00")
            let event = try #require(c[0][field: "source_ref"])
            _ = try await mo(e, .voidFee(event))
            #expect(try rows(try await mo(e, .listCommissions(introducer: nil, status: .cancelled, cursor: 0, count: 10))).count == 1)
        }
    }

    @Test func anEmailProspectJoinsAndItsInvestorIsLearnt() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await e.change(.userSet(UserProfile(id: "bob", role: .investor, email: "Bob@Example.com")))
            try await investor(e, "inv-bob")
            try await e.change(.investorLinked(investor: "inv-bob", user: "bob"))
            try await introducer(e, "acme")
            let n = try id(try await mo(e, .createIntroduction(introducer: "acme", investor: nil, email: "bob@example.com", rateBps: nil, basis: .investedAmount, id: nil)))
            let actor = try #require(e.deal("d1"))
            let r = await e.submit([.people(.addMember(user: "bob", role: .investor, investor: "inv-bob"))], to: actor)[0]
            #expect(r.error == nil)
            let f = try fields(try await mo(e, .getIntroduction(n)))
            #expect(f[field: "status"] == "joined" && f[field: "prospect_investor"] == "inv-bob")
            try await approved(e, "inv-bob", "100", "10")
            let c = try rows(try await mo(e, .listCommissions(introducer: "acme", status: nil, cursor: 0, count: 10)))
            #expect(c.count == 1 && c[0][field: "accrual_amount"] == "15.00")  // 150 bps of 1,000.00
        }
    }

    @Test func anIntroducerLoginReadsOnlyItsOwnRows() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await e.change(.userSet(UserProfile(id: "iu", role: .investor)))
            try await e.change(.userSet(UserProfile(id: "stranger", role: .investor)))
            try await investor(e, "inv-x")
            try await investor(e, "inv-z")
            try await introducer(e, "mine", user: "iu")
            try await introducer(e, "theirs")
            let mine = try id(try await mo(e, .createIntroduction(introducer: "mine", investor: "inv-x", email: nil, rateBps: nil, basis: .investedAmount, id: nil)))
            let theirs = try id(try await mo(e, .createIntroduction(introducer: "theirs", investor: "inv-z", email: nil, rateBps: nil, basis: .investedAmount, id: nil)))
            try await approved(e, "inv-x", "10", "10")
            try await approved(e, "inv-z", "10", "10")
            let iu = Principal(user: "iu", role: .investor, introducers: ["mine"])
            let stranger = Principal(user: "stranger", role: .investor)
            #expect(try fields(try await mo(e, .getIntroduction(mine), as: iu))[field: "introducer"] == "mine")
            #expect(try await mo(e, .getIntroduction(theirs), as: iu).error?.code == .notFound)
            let seen = try rows(try await mo(e, .listCommissions(introducer: nil, status: nil, cursor: 0, count: 10), as: iu))
            #expect(seen.count == 1 && seen[0][field: "introducer"] == "mine")
            #expect(try rows(try await mo(e, .listCommissions(introducer: nil, status: nil, cursor: 0, count: 10), as: stranger)).isEmpty)
            #expect(try rows(try await mo(e, .listIntroductions(introducer: nil, cursor: 0, count: 10), as: stranger)).isEmpty)
            // Changes are staff's.
            #expect(try await mo(e, .loseIntroduction(mine), as: iu).error?.code == .noPermission)
            // The principal resolved from a token carries the introducer.
            try await e.change(.tokenIssued(UserToken(user: "iu", tokenHash: "h-iu", createdAt: 0)))
            #expect(e.principal(forTokenHash: "h-iu")?.introducers == ["mine"])
        }
    }

    // MARK: - Bank

    @Test func reconcilingAcrossTransactionsAndInvoices() async throws {
        try await withEngine { e, _ in
            try await openDeal(e, lots: [("L1", "100000", nil)])
            try await plan(e, "p", [allIn])
            try await approved(e, "inv-a", "1000", "28.50")
            try await approved(e, "inv-b", "100", "28.50")
            _ = try await mo(e, .computeFees(investor: nil, asOf: nil))
            let va = try id(try await mo(e, .createInvoice(investor: "inv-a", due: nil, taxBps: 0, id: nil)))  // 1,425.00
            let vb = try id(try await mo(e, .createInvoice(investor: "inv-b", due: nil, taxBps: 0, id: nil)))  // 142.50
            try await importTxn(e, "t1", "1000")
            try await importTxn(e, "t2", "2000")
            try await importTxn(e, "t-eur", "5000", currency: "EUR")
            try await importTxn(e, "t-out", "-300")
            let m1 = try id(try await mo(e, .reconcile(invoice: va, txn: "t1", amount: money("1000"))))
            #expect(try await mo(e, .reconcile(invoice: va, txn: "t1", amount: money("1000"))) == .id(m1))  // a retry
            await expectError(.conflict) { try await mo(e, .reconcile(invoice: va, txn: "t1", amount: money("1"))) }  // that pair is matched
            await expectError(.conflict) { try await mo(e, .reconcile(invoice: va, txn: "t2", amount: money("425.01"))) }  // past the total
            _ = try await mo(e, .reconcile(invoice: va, txn: "t2", amount: money("425")))
            _ = try await mo(e, .reconcile(invoice: vb, txn: "t2", amount: money("142.50")))
            await expectError(.conflict) { try await mo(e, .reconcile(invoice: vb, txn: "t-eur", amount: money("1"))) }  // currency
            await expectError(.conflict) { try await mo(e, .reconcile(invoice: vb, txn: "t-out", amount: money("1"))) }  // money paid out
            await expectError(.notFound) { try await mo(e, .reconcile(invoice: vb, txn: "t-none", amount: money("1"))) }
            await expectError(.invalid) { try await mo(e, .reconcile(invoice: vb, txn: "t2", amount: money("0"))) }
            #expect(try fields(try await mo(e, .getInvoice(va)))[field: "status"] == "paid")
            let pf = try fields(try await mo(e, .getPayment(m1)))
            #expect(pf[field: "status"] == "applied" && pf[field: "bank_txn_id"] == "t1")
            #expect(e.indexes.bankMatches.matched("t2") == money("567.50"))
            func unmatched() -> [String] {
                guard case .page(_, let rows) = e.readDirectory({ $0.ledger.unmatched(account: nil, cursor: 0, count: 100, matches: e.indexes.bankMatches) }) else { return [] }
                return rows.map { "\($0[field: "id"]!)=\($0[field: "unmatched"]!)" }
            }
            #expect(unmatched() == ["t2=1432.50", "t-eur=5000.00", "t-out=-300.00"])
            _ = try await mo(e, .unreconcile(invoice: va, txn: "t1"))
            await expectError(.notFound) { try await mo(e, .unreconcile(invoice: va, txn: "t1")) }
            #expect(unmatched().first == "t1=1000.00")
            #expect(try fields(try await mo(e, .getInvoice(va)))[field: "status"] == "partial")
            // Matched again after the reversal.
            _ = try await mo(e, .reconcile(invoice: va, txn: "t1", amount: money("999.99")))
            #expect(e.indexes.bankMatches.matched("t1") == money("999.99"))
        }
    }

    /// Two deals matching one transaction at once never exceed its amount.
    @Test func concurrentMatchesOfOneTransactionStayWithinIt() async throws {
        try await withEngine { e, _ in
            var invoices: [(String, String)] = []
            for d in ["d1", "d2", "d3", "d4"] {
                try await openDeal(e, d, lots: [("\(d)-L1", "100000", nil)])
                try await plan(e, "p-\(d)", deal: d, [allIn])
                try await approved(e, "inv", "1000", "28.50", deal: d)
                _ = try await mo(e, .computeFees(investor: nil, asOf: nil), deal: d)
                invoices.append((d, try id(try await mo(e, .createInvoice(investor: "inv", due: nil, taxBps: 0, id: nil), deal: d))))
            }
            try await importTxn(e, "big", "3000")
            let ok = await withTaskGroup(of: Bool.self) { g in
                for (d, v) in invoices { g.addTask { (try? await mo(e, .reconcile(invoice: v, txn: "big", amount: money("1425")), deal: d)) != nil } }
                return await g.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(ok == 2)  // 2 × 1,425 fits in 3,000; a third does not
            #expect(e.indexes.bankMatches.matched("big") == money("2850"))
        }
    }

    /// For any sequence of invoice, payment, refund, reconcile, unreconcile and
    /// cancel commands over two deals sharing transactions: paid = sum of live
    /// payments <= total, and each transaction's matched sum <= its amount and
    /// equals the live matches of every deal.
    @Test(arguments: 0..<4)
    func paidAndMatchedStayWithinTheirBounds(seed: Int) async throws {
        try await withEngine { e, _ in
            var rng = SplitMix64(seed: UInt64(seed) &+ 991)
            let deals = ["d1", "d2"]
            for d in deals {
                try await openDeal(e, d, lots: [("\(d)-L1", "10000000", nil)])
                try await plan(e, "p-\(d)", deal: d, [FeeComponent(id: "s", kind: .subscription, method: .percentOfInvestment, rateBps: 137)])
            }
            var txns: [String] = []
            var invoices: [(String, String)] = [], payments: [(String, String)] = []
            for step in 0..<400 {
                let d = deals[Int(rng.next() % 2)]
                let investor = "inv-\(rng.next() % 3)"
                switch rng.next() % 8 {
                case 0:
                    try await approved(e, investor, String(1 + rng.next() % 500), "\(1 + rng.next() % 90).\(rng.next() % 100)", deal: d)
                    _ = try await mo(e, .computeFees(investor: nil, asOf: nil), deal: d)
                case 1:
                    if case .id(let v)? = try? await mo(e, .createInvoice(investor: investor, due: nil, taxBps: Int32(rng.next() % 2000), id: nil), deal: d) { invoices.append((d, v)) }
                case 2:
                    let t = "t\(step)"
                    try await importTxn(e, t, "\(1 + rng.next() % 400).\(rng.next() % 100)")
                    txns.append(t)
                case 3, 4:
                    guard let (vd, v) = invoices.randomElement(using: &rng), let t = txns.randomElement(using: &rng) else { continue }
                    _ = try? await mo(e, .reconcile(invoice: v, txn: t, amount: Money(raw: Int128(1 + rng.next() % 30_000))), deal: vd)
                case 5:
                    guard let (vd, v) = invoices.randomElement(using: &rng), let t = txns.randomElement(using: &rng) else { continue }
                    _ = try? await mo(e, .unreconcile(invoice: v, txn: t), deal: vd)
                case 6:
                    guard let (vd, v) = invoices.randomElement(using: &rng) else { continue }
                    if rng.next() % 3 == 0 { _ = try? await mo(e, .cancelInvoice(v), deal: vd); continue }
                    if case .id(let p)? = try? await mo(e, .recordPayment(invoice: v, amount: Money(raw: Int128(1 + rng.next() % 20_000)), method: nil, paidAt: nil, id: nil), deal: vd) {
                        payments.append((vd, p))
                    }
                default:
                    if let (pd, p) = payments.randomElement(using: &rng) { _ = try? await mo(e, .refundPayment(p), deal: pd) }
                }
            }
            var matched: [String: Int128] = [:]
            for d in deals {
                let m = try #require(await e.deal(d)?.read { $0.money })
                for (slot, inv) in m.invoices.enumerated() {
                    let live = m.payments.filter { Int($0.invoice) == slot && !$0.refunded }.reduce(Int128(0)) { $0 + $1.amount.raw }
                    #expect(inv.paid.raw == live && inv.paid.raw <= inv.total.raw && inv.paid.raw >= 0, "invoice \(inv.id)")
                    #expect(inv.total.raw == inv.lines.reduce(Int128(0)) { $0 + $1.amount.raw } + inv.tax.raw)
                }
                for p in m.payments where !p.refunded { if let t = p.bankTxn { matched[t, default: 0] += p.amount.raw } }
            }
            for t in txns {
                let amount = try #require(e.readDirectory { $0.ledger.transaction(t)?.amount })
                #expect(e.indexes.bankMatches.matched(t).raw == matched[t, default: 0], "txn \(t)")
                #expect(matched[t, default: 0] <= amount.raw, "txn \(t) matched past its amount")
            }
        }
    }

    // MARK: - Periodic performance fees

    @Test(arguments: [(true, ["400.00", "200.00"]), (false, ["400.00", "400.00"])])
    func periodicPerformanceOverTheHighWaterMark(hwm: Bool, expected: [String]) async throws {
        try await withEngine { e, _ in
            try await e.change(.vehicleCreated(Vehicle(id: "fund-1", name: "Fund I")))
            var spec = DealSpec(id: "d1")
            spec.vehicle = "fund-1"
            try await e.createDeal(spec)
            try await e.addLot(deal: "d1", LotSpec(id: "L1", unitsTotal: Units.whole(1000), unitCost: Price.whole(1)))
            // HURDLE_BPS is for on_exit only.
            await expectError(.invalid) {
                try await plan(e, "bad", [FeeComponent(id: "perf", kind: .performance, method: .percentOfProfit, rateBps: 2_000, frequency: .annual, hurdleBps: 800)])
            }
            try await plan(e, "perf", [FeeComponent(id: "perf", kind: .performance, method: .percentOfProfit, rateBps: 2_000, frequency: .annual, highWaterMark: hwm)])
            try await approved(e, "inv-a", "100", "100")  // approved 2026-01-01
            func value(_ day: String, _ nav: String) async throws {
                try await e.change(.valuationSet(Valuation(vehicle: "fund-1", asOf: date(day), navPerUnit: p(nav), navTotal: nil, setBy: nil)))
            }
            try await value("2026-12-31", "120")
            try await value("2027-06-30", "150")  // not the latest of 2027's end
            try await value("2027-12-31", "110")
            try await value("2028-12-31", "130")
            // 2026: (120 - 100) × 100 × 20 % = 400.00; 2027: 110, nothing; 2028: 130 over 120 (HWM) or over 110.
            guard case .count(let n) = try await mo(e, .computeFees(investor: nil, asOf: date("2028-12-31"))) else { Issue.record("compute"); return }
            #expect(n == 2)
            guard case .page(_, let events) = try await mo(e, .listFees(investor: nil, status: nil, cursor: 0, count: 10)) else { return }
            #expect(events.map { $0[field: "computed_amount"]! } == expected)
            #expect(events.map { $0[field: "period_end"]! } == ["2026-12-31", "2028-12-31"])
            guard case .count(0) = try await mo(e, .computeFees(investor: nil, asOf: date("2028-12-31"))) else { Issue.record("accrued twice"); return }
        }
    }

    // MARK: - Durability

    /// Every record type of the money model's second part in the log; snapshot +
    /// replay and replay from LSN 1 both equal the live state.
    @Test func everyLedgerRecordReplaysToTheLiveState() async throws {
        let io = SimulatedFileIO(seed: 0x62616e6b)
        let clock = ManualClock()
        let d = try await openDurable(io, clock)
        let e = d.engine
        try await e.change(.vehicleCreated(Vehicle(id: "fund-1", name: "Fund I")))
        var spec = DealSpec(id: "d1")
        spec.vehicle = "fund-1"
        try await e.createDeal(spec)
        try await e.addLot(deal: "d1", LotSpec(id: "L1", unitsTotal: Units.whole(100_000), unitCost: Price.whole(1)))
        try await plan(e, "p", [allIn, FeeComponent(id: "perf", kind: .performance, method: .percentOfProfit, rateBps: 1_000, frequency: .annual, highWaterMark: true)])
        try await investor(e, "inv-x")
        try await introducer(e, "acme", user: nil)
        try await e.change(.introducerStatus(id: "acme", active: false))
        try await e.change(.introducerStatus(id: "acme", active: true))
        let n = try id(try await mo(e, .createIntroduction(introducer: "acme", investor: "inv-x", email: nil, rateBps: nil, basis: .investedAmount, id: "n-1")))
        try await approved(e, "inv-x", "1000", "28.50")
        try await d.snapshot()
        try await e.change(.valuationSet(Valuation(vehicle: "fund-1", asOf: date("2026-12-31"), navPerUnit: p("30"), navTotal: money("30000"), setBy: "ops")))
        _ = try await mo(e, .computeFees(investor: nil, asOf: date("2026-12-31")))
        let v = try id(try await mo(e, .createInvoice(investor: "inv-x", due: nil, taxBps: 0, id: nil)))
        try await importTxn(e, "t1", "1000")
        _ = try await mo(e, .reconcile(invoice: v, txn: "t1", amount: money("600")))
        _ = try await mo(e, .reconcile(invoice: v, txn: "t1", amount: money("600")))  // a retry: nothing logged
        try await importTxn(e, "t2", "50")
        _ = try await mo(e, .reconcile(invoice: v, txn: "t2", amount: money("50")))
        _ = try await mo(e, .unreconcile(invoice: v, txn: "t2"))
        let st = try id(try await mo(e, .invoiceCommissions(introducer: "acme")))
        _ = try await mo(e, .payStatement(st, paidAt: nil))
        try await approved(e, "inv-x", "10", "28.50")
        let c = try #require(try rows(try await mo(e, .listCommissions(introducer: nil, status: .accrued, cursor: 0, count: 10))).first?[field: "id"])
        _ = try await mo(e, .cancelCommission(c))
        _ = try await mo(e, .loseIntroduction(n))
        let live = await e.digest()
        let matchedLive = e.indexes.bankMatches.matched("t1")
        try await d.close()
        // Top-level records and the members of group records.
        let names = Set(try logRecords(io).flatMap { r -> [String] in
            if case .group(_, let members) = r.change { return [r.typeName] + members.map { Change.typeNames[$0.recordType] ?? "?" } }
            return [r.typeName]
        })
        for name in ["bank.imported", "introducer.created", "introducer.status", "valuation.set", "introduction.created", "introduction.status",
                     "commissions.accrued", "commission.cancelled", "statement.created", "statement.paid", "payment.reconciled", "fees.accrued",
                     "payment.refunded", "deal.group"] {
            #expect(names.contains(name), "the history should log a \(name) record")
        }
        let (fromSnapshot, report) = try recoverDigest(io)
        #expect(report.snapshotLSN > 0 && fromSnapshot == live)
        let (fromStart, _) = try recoverDigest(io, options: RecoveryOptions())
        #expect(fromStart == live)
        let r = try await openDurable(io, clock)
        #expect(await r.engine.digest() == live)
        #expect(r.engine.indexes.bankMatches.matched("t1") == matchedLive && matchedLive == money("600"))
        try await r.close()
    }

    /// A crash at any byte of the log leaves an approval with its commission
    /// or neither, an invoice with its events invoiced or neither, and a
    /// reconciliation with its payment and the transaction's matched sum or
    /// neither: each is one record.
    @Test func aCrashLeavesEachChangeWholeOrAbsent() async throws {
        let io = SimulatedFileIO(seed: 0x61746f6d)
        let clock = ManualClock()
        let d = try await openDurable(io, clock)
        let e = d.engine
        try await openDeal(e, lots: [("L1", "100000", nil)])
        try await plan(e, "p", [allIn])
        try await investor(e, "inv-x")
        try await introducer(e, "acme")
        _ = try await mo(e, .createIntroduction(introducer: "acme", investor: "inv-x", email: nil, rateBps: nil, basis: .investedAmount, id: nil))
        try await approved(e, "inv-x", "1000", "28.50")
        _ = try await mo(e, .computeFees(investor: nil, asOf: nil))
        let v = try id(try await mo(e, .createInvoice(investor: "inv-x", due: nil, taxBps: 0, id: nil)))
        try await importTxn(e, "t1", "5000")
        _ = try await mo(e, .reconcile(invoice: v, txn: "t1", amount: money("1425")))
        try await d.close()
        let records = try logRecords(io)
        let segment = try #require(records.last?.segment)
        let whole = try #require(io.contents(DataDirectory("/data").wal + "/" + segment))
        let start = try #require(records.first { $0.typeName == "deal.group" }).offset
        var seen: Set<String> = []
        // Cuts in every record from the approval's to the end of the log: at its
        // first byte, one in, its middle, one short of its end (a torn write), and the whole log.
        var cuts: Set<Int> = [start - 1, whole.count]
        for r in records where r.offset >= start { cuts.formUnion([r.offset, r.offset + 1, r.offset + r.length / 2, r.offset + r.length - 1]) }
        for cut in cuts.sorted() {
            let cutIO = SimulatedFileIO(seed: 1)
            try cutIO.createDirectory("/data")
            try cutIO.createDirectory(DataDirectory("/data").wal)
            let fd = try cutIO.create(DataDirectory("/data").wal + "/" + segment)
            try Array(whole[0..<cut]).withUnsafeBytes { try cutIO.write(fd, $0) }
            let result = try Recovery.recover(DataDirectory("/data"), io: cutIO, now: { 0 })
            let s = try #require(result.states.first)
            let approved = s.allocations.inMemoryRows().contains { $0.status == .approved }
            #expect(approved == !s.money.commissions.isEmpty, "cut \(cut): approval and commission apart")
            if let inv = s.money.invoices.first {
                #expect(inv.lines.allSatisfy { s.money.feeEvents[Int($0.event)].status == .invoiced }, "cut \(cut)")
            } else {
                #expect(s.money.feeEvents.allSatisfy { $0.status == .accrued }, "cut \(cut)")
            }
            let paid = s.money.invoices.first?.paid ?? .zero
            #expect(result.indexes.bankMatches.matched("t1") == paid, "cut \(cut): reconciliation and payment apart")
            #expect(s.invariantViolations().isEmpty)
            seen.insert("\(approved)-\(s.money.invoices.count)-\(paid)")
        }
        #expect(seen.count >= 4, "the cuts should cover each state: \(seen)")
    }
}
