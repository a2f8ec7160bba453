import AllocationEngine
import Foundation
import Testing
@testable import EngineServer

// The money ledger over the protocol, on real sockets in token mode: bank
// lines imported once (BANK.IMPORT, BANK.GET, BANK.UNMATCHED), invoices
// reconciled from them (RECONCILE, UNRECONCILE), introducers, their
// introductions and the commissions those earn (INTRODUCER.*, INTRODUCTION.*,
// COMMISSION.*), valuations, and all of it across restarts. Money figures
// are compared as the exact text the engine answers.

private let lgAdminToken = "ledger-admin-token-0123456789abcdef"

private func lgOptions() -> SrvHarness.Options {
    var o = SrvHarness.Options()
    o.access = .tokens(adminTokenHash: SHA256.hex(lgAdminToken))
    return o
}

/// A client authenticated as the staff admin of the token file.
private func lgAdmin(_ h: SrvHarness) async throws -> SrvClient {
    let c = try h.client()
    let r = await c.call("AUTH", lgAdminToken)
    #expect(r == .simple("OK"), "admin AUTH: \(r)")
    return c
}

/// A client authenticated as `user` with `token`.
private func lgLogin(_ h: SrvHarness, _ token: String, user: String) async throws -> SrvClient {
    let c = try h.client()
    let r = await c.call("AUTH", user, token)
    #expect(r == .simple("OK"), "AUTH \(user): \(r)")
    return c
}

/// Sends `args` and expects `+OK`.
private func lgOK(_ c: SrvClient, _ args: String..., sourceLocation: SourceLocation = #_sourceLocation) async {
    let r = await c.call(args)
    #expect(r == .simple("OK"), "\(args.joined(separator: " ")): \(r)", sourceLocation: sourceLocation)
}

/// Sends `args` and expects the error `code`.
private func lgError(_ c: SrvClient, _ code: String, _ args: String..., sourceLocation: SourceLocation = #_sourceLocation) async {
    let r = await c.call(args)
    #expect(r.errorCode == code, "\(args.joined(separator: " ")): expected -\(code), got \(r)", sourceLocation: sourceLocation)
}

/// Sends `args` and expects a bulk string (an id); returns it ("" otherwise).
private func lgID(_ c: SrvClient, _ args: String..., sourceLocation: SourceLocation = #_sourceLocation) async -> String {
    let r = await c.call(args)
    guard case .bulk(let id) = r, !id.isEmpty else {
        Issue.record("\(args.joined(separator: " ")): expected an id, got \(r)", sourceLocation: sourceLocation)
        return ""
    }
    return id
}

/// The fields of a `*.GET` reply (empty, with an issue, when it is not one).
private func lgFields(_ c: SrvClient, _ args: String..., sourceLocation: SourceLocation = #_sourceLocation) async -> [String: String] {
    let r = await c.call(args)
    guard let f = r.fields, !r.isError else {
        Issue.record("\(args.joined(separator: " ")): expected fields, got \(r)", sourceLocation: sourceLocation)
        return [:]
    }
    return f
}

/// The rows of a one-page `*.LIST` reply (nil, with an issue, when it is not a page or does not end).
private func lgRows(_ c: SrvClient, _ args: String..., sourceLocation: SourceLocation = #_sourceLocation) async -> [[String: String]]? {
    let r = await c.call(args)
    guard let page = r.page else {
        Issue.record("\(args.joined(separator: " ")): expected a page, got \(r)", sourceLocation: sourceLocation)
        return nil
    }
    #expect(page.cursor == "0", "\(args.joined(separator: " ")): one page expected, cursor \(page.cursor)", sourceLocation: sourceLocation)
    return page.rows
}

/// Creates a user with a token; returns the token.
private func lgUser(_ admin: SrvClient, _ user: String, _ role: String = "investor") async -> String {
    await lgOK(admin, "USER.CREATE", user, role)
    let t = await admin.call("TOKEN.CREATE", user)
    #expect(t.string?.count == 64, "TOKEN.CREATE \(user): \(t)")
    return t.string ?? ""
}

/// Deal `deal` at 28.50 with 5000 units, its default all-in plan (a 5 %
/// subscription fee on the investment), for the fee and commission figures below.
private func lgSetupDeal(_ a: SrvClient, _ deal: String) async {
    await lgOK(a, "DEAL.CREATE", deal, "PRICE", "28.5")
    await lgOK(a, "LOT.ADD", deal, "\(deal)-L1", "5000", "20")
    await lgOK(a, "FEEPLAN.CREATE", deal, "\(deal)-p", "All-in", "DEFAULT")
    await lgOK(a, "FEEPLAN.ADD", "\(deal)-p", "sub", "subscription", "percent_of_investment", "RATE_BPS", "500")
}

/// Holds, allocates and approves 1000 units at 28.50 (28,500.00) for `investor`; the allocation id.
@discardableResult
private func lgApprove1000(_ a: SrvClient, _ deal: String, _ investor: String, sourceLocation: SourceLocation = #_sourceLocation) async -> String {
    let hold = await a.call("HOLD", deal, investor, "1000", "28.50")
    let holdID = hold.elements?.first?.string ?? ""
    #expect(!holdID.isEmpty, "HOLD \(deal) \(investor): \(hold)", sourceLocation: sourceLocation)
    let alloc = await lgID(a, "ALLOCATE", holdID, sourceLocation: sourceLocation)
    await lgOK(a, "APPROVE", alloc, sourceLocation: sourceLocation)
    return alloc
}

/// How many of `invoices` have each paid amount.
private func lgInvoicesPaid(_ a: SrvClient, _ invoices: [String]) async -> [String: Int] {
    var out: [String: Int] = [:]
    for inv in invoices { out[await a.call("INVOICE.GET", inv).fields?["paid"] ?? "?", default: 0] += 1 }
    return out
}

/// Lets N threads block until all of them are ready, then go at once.
private final class LGGate: @unchecked Sendable {
    private let cond = NSCondition()
    private var arrived = 0
    private let parties: Int
    init(_ parties: Int) { self.parties = parties }
    func arriveAndWait() {
        cond.lock()
        arrived += 1
        if arrived >= parties { cond.broadcast() } else { while arrived < parties { cond.wait() } }
        cond.unlock()
    }
}

/// Every client sends its command at the same moment (each on its own thread); the replies by client index.
private func lgRace(_ clients: [SrvClient], _ commands: [[String]]) async -> [Reply] {
    let gate = LGGate(clients.count)
    return await withTaskGroup(of: (Int, Reply).self) { g in
        for (i, c) in clients.enumerated() {
            let args = commands[i]
            g.addTask {
                await srvBlocking { () -> (Int, Reply) in
                    gate.arriveAndWait()
                    guard c.sendSync(respCommand(args)) else { return (i, .other("send failed")) }
                    return (i, c.readSync(1).first ?? .other("no reply"))
                }
            }
        }
        var out = [Reply](repeating: .null, count: clients.count)
        for await (i, r) in g { out[i] = r }
        return out
    }
}

// MARK: - The scenarios (shared by the restart test)

/// What the reconciliation scenario leaves behind.
private struct LGReconciled {
    var invoice = ""
    /// t1's first match (unreconciled), t2's match, t1's second match.
    var p1 = "", p2 = "", p3 = ""
}

/// An invoice of 1,425.00 (5 % of 28,500.00) paid from two bank lines of
/// 1,000.00 and 2,000.00, one match undone and made again. Ends with the
/// invoice paid: t1 matched 1,000.00 (p3), t2 425.00 (p2), t3 nothing.
private func lgReconcileScenario(_ a: SrvClient) async -> LGReconciled {
    var out = LGReconciled()
    await lgSetupDeal(a, "d1")
    await lgApprove1000(a, "d1", "inv-a")
    #expect(await a.call("FEES.COMPUTE", "d1") == .int(1))
    out.invoice = await lgID(a, "INVOICE.CREATE", "d1", "inv-a")
    let inv = out.invoice
    let created = await lgFields(a, "INVOICE.GET", inv)
    #expect(created["total"] == "1425.00", "\(created)")
    #expect(created["paid"] == "0.00" && created["status"] == "draft", "\(created)")

    await lgOK(a, "BANK.IMPORT", "t1", "ACC-1", "1000.00", "2024-05-01", "MEMO", "inv-a part 1")
    await lgOK(a, "BANK.IMPORT", "t2", "ACC-1", "2000.00", "2024-05-02", "COUNTERPARTY", "Inv A Ltd")
    await lgOK(a, "BANK.IMPORT", "t3", "ACC-1", "10.00", "2024-05-03")

    out.p1 = await lgID(a, "RECONCILE", inv, "t1", "1000")
    let partial = await lgFields(a, "INVOICE.GET", inv)
    #expect(partial["status"] == "partial" && partial["paid"] == "1000.00", "\(partial)")
    // 1,000.00 + 500.00 is more than the 1,425.00 owed: refused, nothing changes.
    let before = await a.call("DIGEST")
    await lgError(a, "CONFLICT", "RECONCILE", inv, "t2", "500")
    #expect(await a.call("DIGEST") == before, "a refused RECONCILE changed the state")
    out.p2 = await lgID(a, "RECONCILE", inv, "t2", "425")
    #expect(out.p2 != out.p1)
    let paid = await lgFields(a, "INVOICE.GET", inv)
    #expect(paid["status"] == "paid" && paid["paid"] == "1425.00" && paid["total"] == "1425.00", "\(paid)")

    // Paid in full: any more is beyond the invoice's total.
    await lgError(a, "CONFLICT", "RECONCILE", inv, "t3", "0.01")
    // A retry answers the same payment; another amount for the same pair is a conflict.
    #expect(await a.call("RECONCILE", inv, "t1", "1000") == .bulk(out.p1))
    #expect(await a.call("RECONCILE", inv, "t1", "1000.00") == .bulk(out.p1))
    #expect(await a.call("RECONCILE", inv, "t2", "425") == .bulk(out.p2))
    await lgError(a, "CONFLICT", "RECONCILE", inv, "t1", "999")
    #expect(await a.call("DIGEST") != before)

    // The bank side: t1 is used up, t2 has 1,575.00 left.
    let b1 = await lgFields(a, "BANK.GET", "t1")
    #expect(b1["amount"] == "1000.00" && b1["matched"] == "1000.00" && b1["unmatched"] == "0.00", "\(b1)")
    let b2 = await lgFields(a, "BANK.GET", "t2")
    #expect(b2["amount"] == "2000.00" && b2["matched"] == "425.00" && b2["unmatched"] == "1575.00", "\(b2)")
    let open1 = await lgRows(a, "BANK.UNMATCHED") ?? []
    #expect(open1.compactMap { $0["id"] } == ["t2", "t3"], "\(open1)")
    #expect(open1.first { $0["id"] == "t2" }?["unmatched"] == "1575.00")
    #expect(open1.first { $0["id"] == "t3" }?["unmatched"] == "10.00")

    // The payments a match makes.
    let pay1 = await lgFields(a, "PAYMENT.GET", out.p1)
    #expect(pay1["status"] == "applied" && pay1["bank_txn_id"] == "t1" && pay1["amount"] == "1000.00", "\(pay1)")
    #expect(pay1["invoice"] == inv && pay1["method"] == "bank_transfer" && pay1["currency"] == "USD", "\(pay1)")
    let pay2 = await lgFields(a, "PAYMENT.GET", out.p2)
    #expect(pay2["status"] == "applied" && pay2["bank_txn_id"] == "t2" && pay2["amount"] == "425.00", "\(pay2)")

    // Undoing t1's match: the invoice is partly paid again, t1 back on the unmatched list.
    await lgOK(a, "UNRECONCILE", inv, "t1")
    let undone = await lgFields(a, "INVOICE.GET", inv)
    #expect(undone["status"] == "partial" && undone["paid"] == "425.00", "\(undone)")
    #expect(await lgFields(a, "PAYMENT.GET", out.p1)["status"] == "refunded")
    let open2 = await lgRows(a, "BANK.UNMATCHED") ?? []
    #expect(open2.compactMap { $0["id"] } == ["t1", "t2", "t3"], "\(open2)")
    #expect(open2.first { $0["id"] == "t1" }?["unmatched"] == "1000.00")
    #expect(open2.first { $0["id"] == "t1" }?["matched"] == "0.00")
    #expect(await lgRows(a, "BANK.UNMATCHED", "ACCOUNT", "ACC-1", "COUNT", "5")?.count == 3)
    #expect(await lgRows(a, "BANK.UNMATCHED", "ACCOUNT", "ACC-2")?.isEmpty == true)
    await lgError(a, "NOTFOUND", "UNRECONCILE", inv, "t1")

    // Unknown rows.
    await lgError(a, "NOTFOUND", "RECONCILE", inv, "t-unknown", "5")
    await lgError(a, "NOTFOUND", "RECONCILE", "no-such-invoice", "t1", "5")
    await lgError(a, "NOTFOUND", "UNRECONCILE", inv, "t-unknown")
    // Bad amounts.
    await lgError(a, "INVALID", "RECONCILE", inv, "t1", "abc")
    await lgError(a, "INVALID", "RECONCILE", inv, "t1", "0")
    await lgError(a, "INVALID", "RECONCILE", inv, "t1", "-5")
    // The transaction's own limit: t3 has 10.00, the invoice still owes 1,000.00.
    await lgError(a, "CONFLICT", "RECONCILE", inv, "t3", "20")

    // Matched again: a new payment, the invoice paid.
    out.p3 = await lgID(a, "RECONCILE", inv, "t1", "1000")
    #expect(out.p3 != out.p1 && out.p3 != out.p2)
    let repaid = await lgFields(a, "INVOICE.GET", inv)
    #expect(repaid["status"] == "paid" && repaid["paid"] == "1425.00", "\(repaid)")
    #expect(await lgRows(a, "BANK.UNMATCHED")?.compactMap { $0["id"] } == ["t2", "t3"])
    return out
}

/// What the introducer scenario leaves behind.
private struct LGIntroduced {
    var introduction = ""
    var allocation = ""
    var commission = ""
    var statement = ""
    var introToken = ""
    var otherToken = ""
}

/// intro1 (login `intro-user`, 1.5 %) introduces inv-x to d2; a 28,500.00
/// allocation earns it 427.50, invoiced on a statement and paid.
private func lgIntroducerScenario(_ h: SrvHarness, _ a: SrvClient) async throws -> LGIntroduced {
    var out = LGIntroduced()
    out.introToken = await lgUser(a, "intro-user")
    out.otherToken = await lgUser(a, "other-user")
    await lgOK(a, "INVESTOR.CREATE", "inv-x", "X Capital", "KYC", "approved")
    await lgOK(a, "INVESTOR.LINK", "inv-x", "other-user")
    await lgSetupDeal(a, "d2")
    // Logged in before the introducer exists: the login learns it on its next command.
    let intro = try await lgLogin(h, out.introToken, user: "intro-user")
    let other = try await lgLogin(h, out.otherToken, user: "other-user")
    await lgError(intro, "NOTFOUND", "INTRODUCER.GET", "intro1")

    await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro", "COMMISSION_BPS", "150", "USER", "intro-user")
    await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro", "COMMISSION_BPS", "150", "USER", "intro-user")  // a retry
    await lgError(a, "EXISTS", "INTRODUCER.CREATE", "intro1", "Other Name", "COMMISSION_BPS", "150", "USER", "intro-user")
    await lgError(a, "NOTFOUND", "INTRODUCER.CREATE", "intro2", "Nobody's", "USER", "no-such-user")
    let i1 = await lgFields(a, "INTRODUCER.GET", "intro1")
    #expect(i1["legal_name"] == "Acme Intro" && i1["default_commission_bps"] == "150" && i1["user"] == "intro-user" && i1["status"] == "active", "\(i1)")

    out.introduction = await lgID(a, "INTRODUCTION.CREATE", "intro1", "d2", "INVESTOR", "inv-x")
    let n0 = await lgFields(a, "INTRODUCTION.GET", out.introduction)
    #expect(n0["status"] == "invited" && n0["introducer"] == "intro1" && n0["deal"] == "d2", "\(n0)")
    #expect(n0["prospect_investor"] == "inv-x" && n0["rate_bps"] == "150" && n0["basis"] == "invested_amount", "\(n0)")
    // The prospect is taken; an unknown introducer or investor is refused.
    await lgError(a, "CONFLICT", "INTRODUCTION.CREATE", "intro1", "d2", "INVESTOR", "inv-x")
    await lgError(a, "NOTFOUND", "INTRODUCTION.CREATE", "intro-none", "d2", "INVESTOR", "inv-x")
    await lgError(a, "NOTFOUND", "INTRODUCTION.CREATE", "intro1", "d2", "INVESTOR", "inv-none")
    await lgError(a, "NOTFOUND", "INTRODUCTION.CREATE", "intro1", "no-deal", "INVESTOR", "inv-x")
    #expect(await lgRows(a, "COMMISSION.LIST", "INTRODUCER", "intro1")?.isEmpty == true)

    out.allocation = await lgApprove1000(a, "d2", "inv-x")
    let list = await lgRows(a, "COMMISSION.LIST", "INTRODUCER", "intro1") ?? []
    #expect(list.count == 1, "\(list)")
    let c = list.first ?? [:]
    out.commission = c["id"] ?? ""
    #expect(c["status"] == "accrued" && c["accrual_amount"] == "427.50" && c["base_amount"] == "28500.00", "\(c)")
    #expect(c["rate_bps"] == "150" && c["investor"] == "inv-x" && c["introduction"] == out.introduction, "\(c)")
    #expect(c["basis_type"] == "invested_amount" && c["source_ref"] == out.allocation && c["deal"] == "d2" && c["currency"] == "USD", "\(c)")
    #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d2", "STATUS", "accrued")?.count == 1)
    #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d2", "STATUS", "paid")?.isEmpty == true)
    await lgError(a, "NOTFOUND", "COMMISSION.LIST", "DEAL", "no-deal")
    #expect(await lgFields(a, "INTRODUCTION.GET", out.introduction)["status"] == "allocated")

    out.statement = await lgID(a, "COMMISSION.INVOICE", "intro1", "DEAL", "d2")
    let s = await lgFields(a, "INVOICE.GET", out.statement)
    #expect(s["generated_from"] == "introducer_commissions" && s["total"] == "427.50" && s["subtotal"] == "427.50", "\(s)")
    #expect(s["introducer"] == "intro1" && s["status"] == "sent" && s["paid"] == "0.00", "\(s)")
    let invoiced = await lgRows(a, "COMMISSION.LIST", "INTRODUCER", "intro1") ?? []
    #expect(invoiced.first?["status"] == "invoiced" && invoiced.first?["invoice_id"] == out.statement, "\(invoiced)")
    // Nothing more accrued; a statement is not paid from the bank nor cancelled line by line.
    await lgError(a, "CONFLICT", "COMMISSION.INVOICE", "intro1", "DEAL", "d2")
    await lgError(a, "CONFLICT", "COMMISSION.INVOICE", "intro1")
    await lgError(a, "CONFLICT", "COMMISSION.CANCEL", out.commission)
    await lgOK(a, "BANK.IMPORT", "t-st", "ACC-1", "427.50", "2024-06-01")
    await lgError(a, "CONFLICT", "RECONCILE", out.statement, "t-st", "427.50")

    await lgOK(a, "COMMISSION.PAY", out.statement, "PAID_AT", "1717200000")
    await lgOK(a, "COMMISSION.PAY", out.statement)  // already paid: a no-op
    let paid = await lgRows(a, "COMMISSION.LIST", "INTRODUCER", "intro1") ?? []
    #expect(paid.count == 1 && paid.first?["status"] == "paid" && paid.first?["paid_at"] == "1717200000000", "\(paid)")
    #expect(paid.first?["accrual_amount"] == "427.50")
    let ps = await lgFields(a, "INVOICE.GET", out.statement)
    #expect(ps["status"] == "paid" && ps["paid"] == "427.50", "\(ps)")

    // The introducer's login reads its own rows (it is not a member of d2); another investor user reads none.
    let own = await lgRows(intro, "COMMISSION.LIST") ?? []
    #expect(own.compactMap { $0["id"] } == [out.commission], "\(own)")
    #expect(own.first?["accrual_amount"] == "427.50" && own.first?["status"] == "paid")
    #expect(await lgRows(intro, "COMMISSION.LIST", "INTRODUCER", "intro1", "DEAL", "d2")?.count == 1)
    #expect(await lgFields(intro, "INTRODUCER.GET", "intro1")["legal_name"] == "Acme Intro")
    #expect(await lgFields(intro, "INTRODUCTION.GET", out.introduction)["status"] == "allocated")
    #expect(await lgRows(intro, "INTRODUCTION.LIST")?.compactMap { $0["id"] } == [out.introduction])
    await lgError(intro, "NOPERM", "COMMISSION.PAY", out.statement)
    #expect(await lgRows(other, "COMMISSION.LIST")?.isEmpty == true)
    #expect(await lgRows(other, "COMMISSION.LIST", "INTRODUCER", "intro1")?.isEmpty == true)
    #expect(await lgRows(other, "COMMISSION.LIST", "DEAL", "d2")?.isEmpty == true)
    #expect(await lgRows(other, "INTRODUCTION.LIST")?.isEmpty == true)
    await lgError(other, "NOTFOUND", "INTRODUCTION.GET", out.introduction)
    await lgError(other, "NOTFOUND", "INTRODUCER.GET", "intro1")
    return out
}

// MARK: - The tests

@Suite(.serialized) struct ServerLedgerTests {
    /// A bank line is imported once: the same fields again are a no-op, others a conflict.
    @Test func bankImportIsIdempotent() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgOK(a, "BANK.IMPORT", "t1", "ACC-1", "1000.00", "2024-05-01", "MEMO", "wire in", "BATCH", "b-1")
            let first = await a.call("DIGEST")
            await lgOK(a, "BANK.IMPORT", "t1", "ACC-1", "1000.00", "2024-05-01", "MEMO", "wire in", "BATCH", "b-1")
            await lgOK(a, "BANK.IMPORT", "t1", "ACC-1", "1000", "2024-05-01", "MEMO", "wire in", "BATCH", "b-1")  // the same amount
            #expect(await a.call("DIGEST") == first, "re-importing the same line changed the state")
            // Other fields: a conflict, nothing changes.
            await lgError(a, "CONFLICT", "BANK.IMPORT", "t1", "ACC-1", "1000.01", "2024-05-01", "MEMO", "wire in", "BATCH", "b-1")
            await lgError(a, "CONFLICT", "BANK.IMPORT", "t1", "ACC-1", "2000.00", "2024-05-01", "MEMO", "wire in", "BATCH", "b-1")
            await lgError(a, "CONFLICT", "BANK.IMPORT", "t1", "ACC-1", "1000.00", "2024-05-02", "MEMO", "wire in", "BATCH", "b-1")
            await lgError(a, "CONFLICT", "BANK.IMPORT", "t1", "ACC-2", "1000.00", "2024-05-01", "MEMO", "wire in", "BATCH", "b-1")
            await lgError(a, "CONFLICT", "BANK.IMPORT", "t1", "ACC-1", "1000.00", "2024-05-01")
            // Bad input: INVALID, nothing imported.
            await lgError(a, "INVALID", "BANK.IMPORT", "t-bad", "ACC-1", "abc", "2024-05-01")
            await lgError(a, "INVALID", "BANK.IMPORT", "t-bad", "ACC-1", "0", "2024-05-01")
            await lgError(a, "INVALID", "BANK.IMPORT", "t-bad", "ACC-1", "0.00", "2024-05-01")
            await lgError(a, "INVALID", "BANK.IMPORT", "t-bad", "ACC-1", "1.001", "2024-05-01")
            await lgError(a, "INVALID", "BANK.IMPORT", "t-bad", "ACC-1", "10", "2024-13-01")
            await lgError(a, "INVALID", "BANK.IMPORT", "t-bad", "ACC-1", "10", "2024-05-01", "CURRENCY", "dollars")
            #expect(await a.call("BANK.IMPORT", "t-bad", "ACC-1", "10").errorCode == "ERR")
            #expect(await a.call("BANK.IMPORT", "t-bad", "ACC-1", "10", "2024-05-01", "COLOUR", "red").errorCode == "ERR")
            #expect(await a.call("DIGEST") == first, "a refused BANK.IMPORT changed the state")
            await lgError(a, "NOTFOUND", "BANK.GET", "t-bad")

            let t1 = await lgFields(a, "BANK.GET", "t1")
            #expect(t1["id"] == "t1" && t1["account_ref"] == "ACC-1" && t1["currency"] == "USD" && t1["value_date"] == "2024-05-01", "\(t1)")
            #expect(t1["amount"] == "1000.00" && t1["matched"] == "0.00" && t1["unmatched"] == "1000.00", "\(t1)")
            #expect(t1["memo"] == "wire in" && t1["import_batch_id"] == "b-1", "\(t1)")
            // Money paid out is kept and listed, never matched.
            await lgOK(a, "BANK.IMPORT", "t-out", "ACC-1", "-50.5", "2024-05-02", "CURRENCY", "usd")
            let out = await lgFields(a, "BANK.GET", "t-out")
            #expect(out["amount"] == "-50.50" && out["matched"] == "0.00" && out["unmatched"] == "-50.50" && out["currency"] == "USD", "\(out)")
            #expect(await lgRows(a, "BANK.UNMATCHED")?.compactMap { $0["id"] } == ["t1", "t-out"])
            // Paging walks the lines in import order.
            await lgOK(a, "BANK.IMPORT", "t3", "ACC-2", "3.00", "2024-05-03")
            let p1 = await a.call("BANK.UNMATCHED", "COUNT", "2").page
            #expect(p1?.rows.compactMap { $0["id"] } == ["t1", "t-out"] && p1?.cursor != "0", "\(String(describing: p1))")
            let p2 = await a.call("BANK.UNMATCHED", "CURSOR", p1?.cursor ?? "0", "COUNT", "2").page
            #expect(p2?.rows.compactMap { $0["id"] } == ["t3"] && p2?.cursor == "0", "\(String(describing: p2))")
            #expect(await lgRows(a, "BANK.UNMATCHED", "ACCOUNT", "ACC-2")?.compactMap { $0["id"] } == ["t3"])
        }
    }

    /// An invoice of 1,425.00 reconciled from two bank lines, a match undone and made again.
    @Test func reconcileAnInvoiceFromTwoBankLines() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            _ = await lgReconcileScenario(a)
        }
    }

    /// An introducer's commission on an approved allocation: accrued, invoiced, paid; read by its login only.
    @Test func introducerCommissions() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            _ = try await lgIntroducerScenario(h, a)
        }
    }

    /// An introduction marked lost frees its prospect, and earns nothing after.
    @Test func lostIntroductionsEarnNothing() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgSetupDeal(a, "d1")
            await lgOK(a, "INVESTOR.CREATE", "inv-y", "Y Capital")
            await lgOK(a, "INTRODUCER.CREATE", "intro-a", "Intro A", "COMMISSION_BPS", "150")
            await lgOK(a, "INTRODUCER.CREATE", "intro-b", "Intro B")
            let n = await lgID(a, "INTRODUCTION.CREATE", "intro-a", "d1", "INVESTOR", "inv-y", "ID", "n-a")
            #expect(n == "n-a")
            #expect(await a.call("INTRODUCTION.CREATE", "intro-a", "d1", "INVESTOR", "inv-y", "ID", "n-a") == .bulk("n-a"))  // a retry
            await lgError(a, "CONFLICT", "INTRODUCTION.CREATE", "intro-b", "d1", "INVESTOR", "inv-y", "RATE_BPS", "100")
            await lgOK(a, "INTRODUCTION.LOST", "n-a")
            await lgOK(a, "INTRODUCTION.LOST", "n-a")
            #expect(await lgFields(a, "INTRODUCTION.GET", "n-a")["status"] == "lost")
            // intro-b has no default rate: an introduction names one.
            await lgError(a, "INVALID", "INTRODUCTION.CREATE", "intro-b", "d1", "INVESTOR", "inv-y")
            let nb = await lgID(a, "INTRODUCTION.CREATE", "intro-b", "d1", "INVESTOR", "inv-y", "RATE_BPS", "100")
            await lgApprove1000(a, "d1", "inv-y")
            let list = await lgRows(a, "COMMISSION.LIST", "DEAL", "d1") ?? []
            #expect(list.count == 1 && list.first?["introducer"] == "intro-b" && list.first?["accrual_amount"] == "285.00", "\(list)")
            #expect(await lgFields(a, "INTRODUCTION.GET", nb)["status"] == "allocated")
            #expect(await lgFields(a, "INTRODUCTION.GET", "n-a")["status"] == "lost")
            // Cancelling the accrued commission; an inactive introducer takes no introductions.
            await lgOK(a, "COMMISSION.CANCEL", list.first?["id"] ?? "")
            #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d1", "STATUS", "cancelled")?.count == 1)
            await lgError(a, "CONFLICT", "COMMISSION.INVOICE", "intro-b", "DEAL", "d1")
            await lgOK(a, "INTRODUCER.STATUS", "intro-a", "inactive")
            #expect(await lgFields(a, "INTRODUCER.GET", "intro-a")["status"] == "inactive")
            await lgOK(a, "INVESTOR.CREATE", "inv-z", "Z Capital")
            await lgError(a, "CONFLICT", "INTRODUCTION.CREATE", "intro-a", "d1", "INVESTOR", "inv-z")
            await lgError(a, "NOTFOUND", "INTRODUCER.STATUS", "intro-none", "active")
        }
    }

    /// A bank line matched from many deals at once is never matched beyond its amount, also after a restart.
    @Test func concurrentMatchesOfOneLineNeverExceedIt() async throws {
        let h = try await SrvHarness.start(lgOptions())
        let deals = (1...6).map { "c\($0)" }
        var invoices: [String] = []
        var won: [String] = []
        do {
            let a = try await lgAdmin(h)
            for d in deals {
                await lgSetupDeal(a, d)
                await lgApprove1000(a, d, "inv-\(d)")
                #expect(await a.call("FEES.COMPUTE", d) == .int(1))
                invoices.append(await lgID(a, "INVOICE.CREATE", d, "inv-\(d)"))
            }
            await lgOK(a, "BANK.IMPORT", "t-big", "ACC-1", "5000.00", "2024-05-01")
            var clients: [SrvClient] = []
            for _ in deals { clients.append(try await lgAdmin(h)) }
            let replies = await lgRace(clients, invoices.map { ["RECONCILE", $0, "t-big", "1000"] })
            won = replies.compactMap { if case .bulk(let id) = $0 { return id } else { return nil } }
            #expect(won.count == 5, "five of six matches fit in 5,000.00: \(replies)")
            #expect(replies.filter { $0.errorCode == "CONFLICT" }.count == 1, "\(replies)")
            #expect(Set(won).count == won.count)
            let t = await lgFields(a, "BANK.GET", "t-big")
            #expect(t["matched"] == "5000.00" && t["unmatched"] == "0.00", "\(t)")
            let paid = await lgInvoicesPaid(a, invoices)
            #expect(paid == ["1000.00": 5, "0.00": 1], "\(paid)")
            #expect(await lgRows(a, "BANK.UNMATCHED")?.isEmpty == true)
        } catch {
            await h.stop(); h.removeData(); throw error
        }
        await h.stop()
        let h2 = try await SrvHarness.start(dataDir: h.dataDir, lgOptions())
        do {
            let a = try await lgAdmin(h2)
            let t = await lgFields(a, "BANK.GET", "t-big")
            #expect(t["matched"] == "5000.00" && t["unmatched"] == "0.00", "\(t)")
            #expect(await lgInvoicesPaid(a, invoices) == ["1000.00": 5, "0.00": 1])
            // The one left unpaid still cannot be matched to the used-up line.
            for inv in invoices where await a.call("INVOICE.GET", inv).fields?["paid"] == "0.00" {
                await lgError(a, "CONFLICT", "RECONCILE", inv, "t-big", "0.01")
            }
        } catch {
            await h2.stop(); h.removeData(); throw error
        }
        await h2.stop()
        h.removeData()
    }

    /// PAYMENT.REFUND of a reconciled payment undoes the match, as UNRECONCILE does.
    @Test func refundOfAReconciledPaymentFreesTheLine() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgSetupDeal(a, "d1")
            await lgApprove1000(a, "d1", "inv-a")
            #expect(await a.call("FEES.COMPUTE", "d1") == .int(1))
            let inv = await lgID(a, "INVOICE.CREATE", "d1", "inv-a")
            await lgOK(a, "BANK.IMPORT", "t1", "ACC-1", "1425.00", "2024-05-01")
            await lgOK(a, "BANK.IMPORT", "t-eur", "ACC-1", "1425.00", "2024-05-01", "CURRENCY", "EUR")
            await lgOK(a, "BANK.IMPORT", "t-out", "ACC-1", "-1425.00", "2024-05-01")
            // Another currency, or money paid out, is never matched.
            await lgError(a, "CONFLICT", "RECONCILE", inv, "t-eur", "100")
            await lgError(a, "CONFLICT", "RECONCILE", inv, "t-out", "100")
            let p = await lgID(a, "RECONCILE", inv, "t1", "1425")
            #expect(await lgFields(a, "INVOICE.GET", inv)["status"] == "paid")
            // A paid invoice is not cancelled; the refund first.
            await lgError(a, "CONFLICT", "INVOICE.CANCEL", inv)
            await lgOK(a, "PAYMENT.REFUND", p)
            #expect(await lgFields(a, "PAYMENT.GET", p)["status"] == "refunded")
            let t = await lgFields(a, "BANK.GET", "t1")
            #expect(t["matched"] == "0.00" && t["unmatched"] == "1425.00", "\(t)")
            let undone = await lgFields(a, "INVOICE.GET", inv)
            #expect(undone["paid"] == "0.00" && undone["status"] == "draft", "\(undone)")
            await lgError(a, "NOTFOUND", "UNRECONCILE", inv, "t1")
            // Matched again: a new payment, not the refunded one.
            let p2 = await lgID(a, "RECONCILE", inv, "t1", "1425")
            #expect(p2 != p)
            await lgOK(a, "UNRECONCILE", inv, "t1")
            await lgOK(a, "INVOICE.CANCEL", inv)
            await lgError(a, "CONFLICT", "RECONCILE", inv, "t1", "1")
            #expect(await lgFields(a, "BANK.GET", "t1")["unmatched"] == "1425.00")
        }
    }

    /// An introduction by email follows the user who joins with that email: its
    /// investor is learnt, and the investor's approved allocation earns the commission.
    @Test func emailIntroductionFollowsTheJoin() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgSetupDeal(a, "d1")
            await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro", "COMMISSION_BPS", "150")
            let n = await lgID(a, "INTRODUCTION.CREATE", "intro1", "d1", "EMAIL", "Pat@Example.com")
            let n0 = await lgFields(a, "INTRODUCTION.GET", n)
            #expect(n0["status"] == "invited" && n0["prospect_email"] == "Pat@Example.com" && n0["prospect_investor"] == nil, "\(n0)")
            await lgError(a, "CONFLICT", "INTRODUCTION.CREATE", "intro1", "d1", "EMAIL", "pat@example.com")
            await lgError(a, "INVALID", "INTRODUCTION.CREATE", "intro1", "d1", "EMAIL", "not-an-email")
            await lgError(a, "INVALID", "INTRODUCTION.CREATE", "intro1", "d1")
            await lgOK(a, "USER.CREATE", "pat", "investor", "EMAIL", "pat@example.com")
            await lgOK(a, "INVESTOR.CREATE", "inv-p", "Pat Holdings", "KYC", "approved")
            await lgOK(a, "INVESTOR.LINK", "inv-p", "pat")
            await lgOK(a, "MEMBER.ADD", "d1", "pat", "investor", "INVESTOR", "inv-p")
            let n1 = await lgFields(a, "INTRODUCTION.GET", n)
            #expect(n1["status"] == "joined" && n1["prospect_investor"] == "inv-p", "\(n1)")
            await lgApprove1000(a, "d1", "inv-p")
            let list = await lgRows(a, "COMMISSION.LIST", "DEAL", "d1") ?? []
            #expect(list.count == 1 && list.first?["accrual_amount"] == "427.50" && list.first?["investor"] == "inv-p", "\(list)")
            #expect(await lgFields(a, "INTRODUCTION.GET", n)["status"] == "allocated")
        }
    }

    /// An allocation approved through its approval (APPROVAL.DECIDE) earns the commission once.
    @Test func approvalDecisionAccruesOnce() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgSetupDeal(a, "d1")
            await lgOK(a, "INVESTOR.CREATE", "inv-x", "X Capital")
            await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro", "COMMISSION_BPS", "150")
            let n = await lgID(a, "INTRODUCTION.CREATE", "intro1", "d1", "INVESTOR", "inv-x")
            let hold = await a.call("HOLD", "d1", "inv-x", "1000", "28.50").elements?.first?.string ?? ""
            let alloc = await lgID(a, "ALLOCATE", hold)
            let approval = await lgFields(a, "ALLOCATION.GET", alloc)["approval"] ?? ""
            #expect(!approval.isEmpty)
            await lgOK(a, "APPROVAL.DECIDE", approval, "approve", "NOTE", "fine")
            #expect(await lgFields(a, "ALLOCATION.GET", alloc)["status"] == "approved")
            let list = await lgRows(a, "COMMISSION.LIST", "DEAL", "d1") ?? []
            #expect(list.count == 1 && list.first?["accrual_amount"] == "427.50" && list.first?["source_ref"] == alloc, "\(list)")
            #expect(await lgFields(a, "INTRODUCTION.GET", n)["status"] == "allocated")
            // Approving again changes nothing.
            _ = await a.call("APPROVE", alloc)
            #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d1")?.count == 1)
        }
    }

    /// An inactive introducer's introduction still follows the deal, but earns nothing.
    @Test func inactiveIntroducersEarnNothing() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgSetupDeal(a, "d1")
            await lgOK(a, "INVESTOR.CREATE", "inv-x", "X Capital")
            await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro", "COMMISSION_BPS", "150")
            let n = await lgID(a, "INTRODUCTION.CREATE", "intro1", "d1", "INVESTOR", "inv-x")
            await lgOK(a, "INTRODUCER.STATUS", "intro1", "inactive")
            await lgOK(a, "INTRODUCER.STATUS", "intro1", "inactive")
            await lgApprove1000(a, "d1", "inv-x")
            #expect(await lgFields(a, "INTRODUCTION.GET", n)["status"] == "allocated")
            #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d1")?.isEmpty == true)
            // Active again: the next approval earns.
            await lgOK(a, "INTRODUCER.STATUS", "intro1", "active")
            await lgApprove1000(a, "d1", "inv-x")
            let list = await lgRows(a, "COMMISSION.LIST", "DEAL", "d1") ?? []
            #expect(list.count == 1 && list.first?["accrual_amount"] == "427.50", "\(list)")
        }
    }

    /// A spread commission follows its fee event: accrued with it, cancelled when it is voided.
    @Test func spreadCommissionFollowsItsFee() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgOK(a, "DEAL.CREATE", "d1", "PRICE", "28.5")
            await lgOK(a, "LOT.ADD", "d1", "d1-L1", "5000", "20")
            await lgOK(a, "FEEPLAN.CREATE", "d1", "sp", "Spread", "DEFAULT")
            await lgOK(a, "FEEPLAN.ADD", "sp", "spr", "spread_markup", "per_unit_spread", "AMOUNT", "0.5")
            await lgOK(a, "INVESTOR.CREATE", "inv-x", "X Capital")
            await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro")
            let n = await lgID(a, "INTRODUCTION.CREATE", "intro1", "d1", "INVESTOR", "inv-x", "RATE_BPS", "1000", "BASIS", "spread")
            #expect(await lgFields(a, "INTRODUCTION.GET", n)["basis"] == "spread")
            await lgApprove1000(a, "d1", "inv-x")
            // Not on the investment: nothing until the fee accrues.
            #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d1")?.isEmpty == true)
            #expect(await a.call("FEES.COMPUTE", "d1") == .int(1))
            let fee = await lgRows(a, "FEES.LIST", "d1")?.first ?? [:]
            #expect(fee["computed_amount"] == "500.00", "\(fee)")
            let list = await lgRows(a, "COMMISSION.LIST", "DEAL", "d1") ?? []
            #expect(list.count == 1, "\(list)")
            let c = list.first ?? [:]
            #expect(c["basis_type"] == "spread" && c["base_amount"] == "500.00" && c["accrual_amount"] == "50.00" && c["source_ref"] == fee["id"], "\(c)")
            await lgOK(a, "FEE.VOID", fee["id"] ?? "")
            #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d1", "STATUS", "cancelled")?.compactMap { $0["id"] } == [c["id"] ?? "?"])
            await lgError(a, "CONFLICT", "COMMISSION.INVOICE", "intro1", "DEAL", "d1")
        }
    }

    /// COMMISSION.INVOICE without DEAL makes one statement per deal; a cancelled
    /// statement returns its commissions to accrued, and is not paid.
    @Test func statementsAcrossDealsAndCancelled() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgOK(a, "INVESTOR.CREATE", "inv-x", "X Capital")
            await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro", "COMMISSION_BPS", "150")
            await lgOK(a, "INTRODUCER.CREATE", "intro2", "Other Intro", "COMMISSION_BPS", "150")
            for d in ["d1", "d2", "d3"] {
                await lgSetupDeal(a, d)
                _ = await lgID(a, "INTRODUCTION.CREATE", d == "d2" ? "intro2" : "intro1", d, "INVESTOR", "inv-x")
                await lgApprove1000(a, d, "inv-x")
            }
            let r = await a.call("COMMISSION.INVOICE", "intro1")
            let ids = r.elements?.compactMap(\.string) ?? []
            #expect(ids.count == 2, "one statement for d1, one for d3: \(r)")
            var seenDeals: [String] = []
            for id in ids {
                let s = await lgFields(a, "INVOICE.GET", id)
                #expect(s["total"] == "427.50" && s["introducer"] == "intro1" && s["generated_from"] == "introducer_commissions", "\(s)")
                seenDeals.append(s["deal"] ?? "?")
            }
            #expect(seenDeals == ["d1", "d3"])
            // The lists across deals, a row a page: every row once, in deal order.
            for list in ["COMMISSION.LIST", "INTRODUCTION.LIST"] {
                var cursor = "0", rows: [[String: String]] = [], pages = 0
                repeat {
                    let page = await a.call(list, "CURSOR", cursor, "COUNT", "1").page
                    #expect(page != nil && (page?.rows.count ?? 0) <= 1, "\(list) CURSOR \(cursor): \(String(describing: page))")
                    rows += page?.rows ?? []
                    cursor = page?.cursor ?? "0"
                    pages += 1
                } while cursor != "0" && pages < 20
                #expect(rows.compactMap { $0["deal"] } == ["d1", "d2", "d3"], "\(list): \(rows)")
                let only1 = await lgRows(a, list, "INTRODUCER", "intro1", "COUNT", "5") ?? []
                #expect(only1.compactMap { $0["deal"] } == ["d1", "d3"], "\(list): \(only1)")
            }
            await lgError(a, "INVALID", "COMMISSION.LIST", "CURSOR", "x")
            await lgError(a, "INVALID", "COMMISSION.LIST", "STATUS", "owed")
            await lgError(a, "CONFLICT", "COMMISSION.INVOICE", "intro1")
            #expect(await lgRows(a, "COMMISSION.LIST", "INTRODUCER", "intro2", "STATUS", "accrued")?.count == 1)
            // Cancelled: its commission is accrued again, and on the next statement.
            let first = ids.first ?? ""
            await lgOK(a, "INVOICE.CANCEL", first)
            #expect(await lgFields(a, "INVOICE.GET", first)["status"] == "cancelled")
            await lgError(a, "CONFLICT", "COMMISSION.PAY", first)
            #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d1", "STATUS", "accrued")?.count == 1)
            let again = await lgID(a, "COMMISSION.INVOICE", "intro1", "DEAL", "d1")
            #expect(again != first)
            await lgOK(a, "COMMISSION.PAY", again)
            // A paid statement is not cancelled.
            await lgError(a, "CONFLICT", "INVOICE.CANCEL", again)
            #expect(await lgRows(a, "COMMISSION.LIST", "INTRODUCER", "intro1", "STATUS", "paid")?.count == 1)
            #expect(await lgRows(a, "COMMISSION.LIST", "INTRODUCER", "intro1", "STATUS", "invoiced")?.count == 1)
            // An invoice of fees is paid by PAYMENT.RECORD or RECONCILE, not COMMISSION.PAY.
            #expect(await a.call("FEES.COMPUTE", "d1") == .int(1))
            let feeInvoice = await lgID(a, "INVOICE.CREATE", "d1", "inv-x")
            await lgError(a, "CONFLICT", "COMMISSION.PAY", feeInvoice)
        }
    }

    /// Valuations: one a vehicle and day (a new one replaces it), listed oldest first.
    @Test func valuations() async throws {
        try await withSrv(lgOptions()) { h in
            let a = try await lgAdmin(h)
            await lgOK(a, "VEHICLE.CREATE", "veh-1", "Fund One")
            await lgError(a, "NOTFOUND", "VALUATION.SET", "veh-none", "2024-03-31", "1.10")
            await lgError(a, "NOTFOUND", "VALUATION.LIST", "veh-none")
            await lgError(a, "INVALID", "VALUATION.SET", "veh-1", "2024-02-30", "1.10")
            await lgError(a, "INVALID", "VALUATION.SET", "veh-1", "2024-03-31", "-1")
            await lgError(a, "INVALID", "VALUATION.SET", "veh-1", "2024-03-31", "1", "NAV_TOTAL", "-5")
            #expect(await lgRows(a, "VALUATION.LIST", "veh-1")?.isEmpty == true)
            await lgOK(a, "VALUATION.SET", "veh-1", "2024-06-30", "1.25")
            await lgOK(a, "VALUATION.SET", "veh-1", "2024-03-31", "1.10", "NAV_TOTAL", "1100000")
            await lgOK(a, "VALUATION.SET", "veh-1", "2024-06-30", "1.3", "NAV_TOTAL", "1300000.5")
            let rows = await lgRows(a, "VALUATION.LIST", "veh-1") ?? []
            #expect(rows.compactMap { $0["as_of_date"] } == ["2024-03-31", "2024-06-30"], "\(rows)")
            #expect(rows.compactMap { $0["nav_per_unit"] } == ["1.1", "1.3"], "\(rows)")
            #expect(rows.compactMap { $0["nav_total"] } == ["1100000.00", "1300000.50"], "\(rows)")
            let p1 = await a.call("VALUATION.LIST", "veh-1", "COUNT", "1").page
            #expect(p1?.rows.first?["as_of_date"] == "2024-03-31" && p1?.cursor == "1", "\(String(describing: p1))")
            let p2 = await a.call("VALUATION.LIST", "veh-1", "CURSOR", "1", "COUNT", "1").page
            #expect(p2?.rows.first?["as_of_date"] == "2024-06-30" && p2?.cursor == "0", "\(String(describing: p2))")
            // Any user reads them; only staff set them.
            let token = await lgUser(a, "ivy")
            let ivy = try await lgLogin(h, token, user: "ivy")
            #expect(await lgRows(ivy, "VALUATION.LIST", "veh-1")?.count == 2)
            await lgError(ivy, "NOPERM", "VALUATION.SET", "veh-1", "2024-09-30", "2")
        }
    }

    /// Everything above survives restarts: from the log, then from a snapshot
    /// and the log after it, with the same DIGEST and the same reads.
    @Test func ledgerSurvivesRestarts() async throws {
        let h = try await SrvHarness.start(lgOptions())
        var rec = LGReconciled(), intro = LGIntroduced()
        var before: [String: Reply] = [:]
        do {
            let a = try await lgAdmin(h)
            rec = await lgReconcileScenario(a)
            intro = try await lgIntroducerScenario(h, a)
            await lgOK(a, "VEHICLE.CREATE", "veh-1", "Fund One")
            await lgOK(a, "VALUATION.SET", "veh-1", "2024-03-31", "1.10", "NAV_TOTAL", "1100000")
            await lgOK(a, "VALUATION.SET", "veh-1", "2024-06-30", "1.25")
            before = await Self.ledgerReads(a, rec, intro)
            #expect(before.values.allSatisfy { !$0.isError }, "\(before.filter { $0.value.isError })")
            let vals = before["VALUATION.LIST"]?.page?.rows ?? []
            // A NAV per unit is a price (no trailing zeros), a NAV total money (two decimals).
            #expect(vals.compactMap { $0["nav_per_unit"] } == ["1.1", "1.25"] && vals.first?["nav_total"] == "1100000.00", "\(vals)")
        } catch {
            await h.stop(); h.removeData(); throw error
        }
        await h.stop()

        // Restart 1: recovery from the log.
        let h2 = try await SrvHarness.start(dataDir: h.dataDir, lgOptions())
        var afterChange: [String: Reply] = [:]
        do {
            #expect(h2.durable.recovery.snapshotPath == nil && h2.durable.recovery.recordsReplayed > 0)
            let a = try await lgAdmin(h2)
            let after = await Self.ledgerReads(a, rec, intro)
            for k in before.keys.sorted() { #expect(after[k] == before[k], "after restart \(k): \(String(describing: after[k])) != \(before[k]!)") }
            try await Self.afterRestart(h2, a, rec, intro)
            // What is matched of each line is rebuilt: t2 still has 1,575.00 left, no more.
            await lgSetupDeal(a, "d3")
            await lgOK(a, "INVESTOR.CREATE", "inv-c", "C Capital")
            await lgApprove1000(a, "d3", "inv-c")
            #expect(await a.call("FEES.COMPUTE", "d3") == .int(1))
            let inv3 = await lgID(a, "INVOICE.CREATE", "d3", "inv-c")
            await lgError(a, "CONFLICT", "RECONCILE", inv3, "t2", "1575.01")
            let p = await lgID(a, "RECONCILE", inv3, "t2", "1000")
            #expect(await lgFields(a, "BANK.GET", "t2")["unmatched"] == "575.00")
            #expect(await lgFields(a, "PAYMENT.GET", p)["bank_txn_id"] == "t2")
            await lgOK(a, "SNAPSHOT")
            // After the snapshot, in the log only: the match in the snapshot undone,
            // another made, an introduction and the commission of an approval.
            await lgOK(a, "UNRECONCILE", inv3, "t2")
            let p4 = await lgID(a, "RECONCILE", inv3, "t3", "10")
            #expect(await lgFields(a, "BANK.GET", "t2")["unmatched"] == "1575.00")
            #expect(await lgFields(a, "BANK.GET", "t3")["unmatched"] == "0.00")
            await lgOK(a, "BANK.IMPORT", "t-late", "ACC-9", "7.00", "2024-07-01")
            let n3 = await lgID(a, "INTRODUCTION.CREATE", "intro1", "d3", "INVESTOR", "inv-c")
            await lgApprove1000(a, "d3", "inv-c")
            #expect(await lgRows(a, "COMMISSION.LIST", "DEAL", "d3")?.first?["accrual_amount"] == "427.50")
            afterChange = await Self.ledgerReads(a, rec, intro)
            afterChange["INVOICE.GET inv3"] = await a.call("INVOICE.GET", inv3)
            afterChange["PAYMENT.GET p"] = await a.call("PAYMENT.GET", p)
            afterChange["PAYMENT.GET p4"] = await a.call("PAYMENT.GET", p4)
            afterChange["BANK.GET t-late"] = await a.call("BANK.GET", "t-late")
            afterChange["INTRODUCTION.GET n3"] = await a.call("INTRODUCTION.GET", n3)
            afterChange["COMMISSION.LIST d3"] = await a.call("COMMISSION.LIST", "DEAL", "d3")
            #expect(afterChange["DIGEST"] != before["DIGEST"])
        } catch {
            await h2.stop(); h.removeData(); throw error
        }
        await h2.stop()

        // Restart 2: the snapshot and the log after it.
        let h3 = try await SrvHarness.start(dataDir: h.dataDir, lgOptions())
        do {
            #expect(h3.durable.recovery.snapshotPath != nil && h3.durable.recovery.recordsReplayed > 0)
            let a = try await lgAdmin(h3)
            var after = await Self.ledgerReads(a, rec, intro)
            let inv3 = afterChange["INVOICE.GET inv3"]?.fields?["id"] ?? "?"
            after["INVOICE.GET inv3"] = await a.call("INVOICE.GET", inv3)
            after["PAYMENT.GET p"] = await a.call("PAYMENT.GET", afterChange["PAYMENT.GET p"]?.fields?["id"] ?? "?")
            after["PAYMENT.GET p4"] = await a.call("PAYMENT.GET", afterChange["PAYMENT.GET p4"]?.fields?["id"] ?? "?")
            after["BANK.GET t-late"] = await a.call("BANK.GET", "t-late")
            after["INTRODUCTION.GET n3"] = await a.call("INTRODUCTION.GET", afterChange["INTRODUCTION.GET n3"]?.fields?["id"] ?? "?")
            after["COMMISSION.LIST d3"] = await a.call("COMMISSION.LIST", "DEAL", "d3")
            for k in afterChange.keys.sorted() {
                #expect(after[k] == afterChange[k], "after snapshot restart \(k): \(String(describing: after[k])) != \(afterChange[k]!)")
            }
            #expect(after["INVOICE.GET inv3"]?.fields?["paid"] == "10.00")
            #expect(after["PAYMENT.GET p"]?.fields?["status"] == "refunded")
            #expect(after["PAYMENT.GET p4"]?.fields?["status"] == "applied")
            #expect(after["INTRODUCTION.GET n3"]?.fields?["status"] == "allocated")
            #expect(after["COMMISSION.LIST d3"]?.page?.rows.first?["accrual_amount"] == "427.50")
            #expect(await lgFields(a, "BANK.GET", "t2")["unmatched"] == "1575.00")
            #expect(await lgFields(a, "BANK.GET", "t3")["unmatched"] == "0.00")
            // The line freed after the snapshot can be matched again, up to its amount.
            await lgError(a, "CONFLICT", "RECONCILE", inv3, "t2", "1575.01")
            #expect(await a.call("RECONCILE", inv3, "t2", "1000").string?.isEmpty == false)
            try await Self.afterRestart(h3, a, rec, intro)
        } catch {
            await h3.stop(); h.removeData(); throw error
        }
        await h3.stop()
        h.removeData()
    }

    /// Every read of the ledger scenarios, for comparing across a restart.
    private static func ledgerReads(_ a: SrvClient, _ rec: LGReconciled, _ intro: LGIntroduced) async -> [String: Reply] {
        var seen: [String: Reply] = [:]
        func read(_ args: String...) async { seen[args.joined(separator: " ")] = await a.call(args) }
        seen["DIGEST"] = await a.call("DIGEST")
        for t in ["t1", "t2", "t3", "t-st"] { await read("BANK.GET", t) }
        await read("BANK.UNMATCHED")
        await read("INVOICE.GET", rec.invoice)
        for p in [rec.p1, rec.p2, rec.p3] { await read("PAYMENT.GET", p) }
        await read("INVOICE.GET", intro.statement)
        await read("INTRODUCER.GET", "intro1")
        await read("INTRODUCTION.GET", intro.introduction)
        await read("INTRODUCTION.LIST")
        await read("COMMISSION.LIST")
        await read("COMMISSION.LIST", "INTRODUCER", "intro1", "DEAL", "d2")
        await read("ALLOCATION.GET", intro.allocation)
        seen["VALUATION.LIST"] = await a.call("VALUATION.LIST", "veh-1")
        return seen
    }

    /// The checks every restart must pass: the figures, the retries, the introducer's login.
    private static func afterRestart(_ h: SrvHarness, _ a: SrvClient, _ rec: LGReconciled, _ intro: LGIntroduced,
                                     sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let inv = await lgFields(a, "INVOICE.GET", rec.invoice, sourceLocation: sourceLocation)
        #expect(inv["status"] == "paid" && inv["paid"] == "1425.00" && inv["total"] == "1425.00", "\(inv)", sourceLocation: sourceLocation)
        let p1 = await lgFields(a, "PAYMENT.GET", rec.p1, sourceLocation: sourceLocation)
        #expect(p1["status"] == "refunded" && p1["bank_txn_id"] == "t1", "\(p1)", sourceLocation: sourceLocation)
        let p3 = await lgFields(a, "PAYMENT.GET", rec.p3, sourceLocation: sourceLocation)
        #expect(p3["status"] == "applied" && p3["bank_txn_id"] == "t1" && p3["amount"] == "1000.00", "\(p3)", sourceLocation: sourceLocation)
        let t1 = await lgFields(a, "BANK.GET", "t1", sourceLocation: sourceLocation)
        #expect(t1["matched"] == "1000.00" && t1["unmatched"] == "0.00", "\(t1)", sourceLocation: sourceLocation)
        // Retries answer as before the restart.
        #expect(await a.call("RECONCILE", rec.invoice, "t1", "1000") == .bulk(rec.p3), sourceLocation: sourceLocation)
        #expect(await a.call("RECONCILE", rec.invoice, "t2", "425") == .bulk(rec.p2), sourceLocation: sourceLocation)
        await lgError(a, "CONFLICT", "RECONCILE", rec.invoice, "t3", "1", sourceLocation: sourceLocation)
        await lgOK(a, "BANK.IMPORT", "t1", "ACC-1", "1000.00", "2024-05-01", "MEMO", "inv-a part 1", sourceLocation: sourceLocation)
        await lgError(a, "CONFLICT", "BANK.IMPORT", "t1", "ACC-1", "1000.10", "2024-05-01", "MEMO", "inv-a part 1", sourceLocation: sourceLocation)
        await lgOK(a, "INTRODUCER.CREATE", "intro1", "Acme Intro", "COMMISSION_BPS", "150", "USER", "intro-user", sourceLocation: sourceLocation)
        await lgError(a, "CONFLICT", "INTRODUCTION.CREATE", "intro1", "d2", "INVESTOR", "inv-x", sourceLocation: sourceLocation)
        await lgError(a, "CONFLICT", "COMMISSION.INVOICE", "intro1", "DEAL", "d2", sourceLocation: sourceLocation)
        let s = await lgFields(a, "INVOICE.GET", intro.statement, sourceLocation: sourceLocation)
        #expect(s["generated_from"] == "introducer_commissions" && s["total"] == "427.50" && s["status"] == "paid", "\(s)", sourceLocation: sourceLocation)
        // The logins still read what they read before.
        let i = try await lgLogin(h, intro.introToken, user: "intro-user")
        let own = await lgRows(i, "COMMISSION.LIST", sourceLocation: sourceLocation) ?? []
        let first = own.first { $0["id"] == intro.commission }
        #expect(first?["accrual_amount"] == "427.50" && first?["status"] == "paid", "\(own)", sourceLocation: sourceLocation)
        #expect(own.allSatisfy { $0["introducer"] == "intro1" }, "\(own)", sourceLocation: sourceLocation)
        let o = try await lgLogin(h, intro.otherToken, user: "other-user")
        #expect(await lgRows(o, "COMMISSION.LIST", sourceLocation: sourceLocation)?.isEmpty == true, sourceLocation: sourceLocation)
        await lgError(o, "NOTFOUND", "INTRODUCTION.GET", intro.introduction, sourceLocation: sourceLocation)
    }
}
