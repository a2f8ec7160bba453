import AllocationEngine
import Foundation
import Glibc
import Testing
import WAL
@testable import EngineServer

// The worked examples of docs/examples/ over the protocol: each test sends the
// command sequence of its Markdown session (RESP3, as `redis-cli -3`) and
// checks the replies the page shows. Ids, numbers and error lines are compared
// as the exact text; timestamps and tokens, which differ per run, by shape.
//
//   stock-reservation.md     -> stockReservationCannotOversell
//   idempotent-ingestion.md  -> idempotentIngestionIsExactlyOnce
//   investor-portal.md       -> investorPortalKYCPortfolioAndCashflows

/// Sends `args`; expects exactly `expected`.
private func exExpect(_ c: SrvClient, _ expected: Reply, _ args: String...,
                      sourceLocation: SourceLocation = #_sourceLocation) async {
    let r = await c.call(args)
    #expect(r == expected, "\(args.joined(separator: " ")): expected \(expected), got \(r)", sourceLocation: sourceLocation)
}

/// Sends `args`; expects `+OK`.
private func exOK(_ c: SrvClient, _ args: String..., sourceLocation: SourceLocation = #_sourceLocation) async {
    let r = await c.call(args)
    #expect(r == .simple("OK"), "\(args.joined(separator: " ")): \(r)", sourceLocation: sourceLocation)
}

/// Sends `args`; expects an error whose line starts with `prefix` (a code, or code and message).
private func exError(_ c: SrvClient, _ prefix: String, _ args: String...,
                     sourceLocation: SourceLocation = #_sourceLocation) async {
    let r = await c.call(args)
    guard case .error(let line) = r, line.hasPrefix(prefix) else {
        Issue.record("\(args.joined(separator: " ")): expected -\(prefix)..., got \(r)", sourceLocation: sourceLocation)
        return
    }
}

/// Sends a HOLD; expects a receipt `[id, expires-at, [lot, units]]` and returns it.
@discardableResult
private func exHold(_ c: SrvClient, _ args: [String], id: String, lot: String, units: String,
                    sourceLocation: SourceLocation = #_sourceLocation) async -> Reply {
    let r = await c.call(args)
    let e = r.elements ?? []
    #expect(e.count == 3 && e[0] == .bulk(id) && (e[1].intValue ?? 0) > 0
            && e[2] == .array([.bulk(lot), .bulk(units)]),
            "\(args.joined(separator: " ")): \(r)", sourceLocation: sourceLocation)
    return r
}

/// A client on `port` that speaks RESP3 (as `redis-cli -3`), optionally authenticated.
private func exClient(port: Int, auth: [String] = []) async throws -> SrvClient {
    let c = try SrvClient(port: port)
    let hello = await c.call("HELLO", "3")
    #expect(hello.elements?.count == 14, "HELLO 3: \(hello)")
    if !auth.isEmpty {
        let r = await c.call(["AUTH"] + auth)
        #expect(r == .simple("OK"), "AUTH \(auth.first ?? ""): \(r)")
    }
    return c
}

/// The INVENTORY row of the stock example, as the page shows it.
private struct ExStock: Equatable, CustomStringConvertible {
    var total, remaining, held, allocated, pending, utilization: String
    var description: String {
        "total=\(total) remaining=\(remaining) held=\(held) allocated=\(allocated) pending=\(pending) \(utilization)%"
    }
}

private func exInventory(_ c: SrvClient, _ expected: ExStock, sourceLocation: SourceLocation = #_sourceLocation) async {
    let r = await c.call("INVENTORY", "sku-WID-100")
    guard let f = r.fields, !r.isError else {
        Issue.record("INVENTORY: \(r)", sourceLocation: sourceLocation)
        return
    }
    #expect(r.fieldNames == ["deal", "status", "units_total", "units_remaining", "units_held", "units_allocated",
                             "holds_pending", "utilization_percent", "lots", "lot:wid100-stock"],
            "\(r.fieldNames)", sourceLocation: sourceLocation)
    let got = ExStock(total: f["units_total"] ?? "?", remaining: f["units_remaining"] ?? "?",
                      held: f["units_held"] ?? "?", allocated: f["units_allocated"] ?? "?",
                      pending: f["holds_pending"] ?? "?", utilization: f["utilization_percent"] ?? "?")
    #expect(got == expected, "INVENTORY: expected \(expected), got \(got)", sourceLocation: sourceLocation)
    #expect(f["deal"] == "sku-WID-100" && f["status"] == "open" && f["lots"] == "1", "\(f)", sourceLocation: sourceLocation)
    let lot = "total=\(expected.total) remaining=\(expected.remaining) held=\(expected.held) "
        + "allocated=\(expected.allocated) status=available"
    #expect(f["lot:wid100-stock"] == lot, "lot: \(f["lot:wid100-stock"] ?? "nil")", sourceLocation: sourceLocation)
    // The ERP's available_quantity = stock_level - reserved_quantity, here as the engine's invariant.
    if let t = Int(got.total), let rem = Int(got.remaining), let h = Int(got.held), let a = Int(got.allocated) {
        #expect(t == rem + h + a, "units_total != remaining + held + allocated: \(got)", sourceLocation: sourceLocation)
    }
}

// MARK: - The idempotent ingestion writes

/// The ingestion worker's writes (docs/examples/idempotent-ingestion.md), each
/// keyed by its event id; FEES.COMPUTE (not keyed) answers 1 the first time, 0 after.
private let exIngestionWrites: [[String]] = [
    ["HOLD", "deal-1", "inv-7", "100", "28.50", "TTL", "3600", "ID", "evt_A1:hold"],
    ["ALLOCATE", "evt_A1:hold", "ID", "evt_A1:alloc"],
    ["APPROVE", "evt_A1:alloc"],
    ["FEES.COMPUTE", "deal-1"],
    ["INVOICE.CREATE", "deal-1", "inv-7", "ID", "evt_A1:invoice"],
    ["PAYMENT.RECORD", "evt_A1:invoice", "142.50", "METHOD", "card", "ID", "evt_B2"],
    ["BANK.IMPORT", "evt_C3", "acct_1Vaultra", "142.50", "2026-03-02", "MEMO", "payout.paid po_C3"],
]

private func exIngestionSetup(_ c: SrvClient) async {
    await exOK(c, "DEAL.CREATE", "deal-1", "NAME", "Revolut Secondary", "PRICE", "28.50")
    await exOK(c, "LOT.ADD", "deal-1", "lot-a", "1000", "20.00")
    await exOK(c, "FEEPLAN.CREATE", "deal-1", "allin", "All-in 5%", "DEFAULT")
    await exOK(c, "FEEPLAN.ADD", "allin", "sub", "subscription", "percent_of_investment", "RATE_BPS", "500")
}

/// Runs the writes the first time; their replies, checked against the page.
private func exIngestionFirstRun(_ c: SrvClient) async -> [Reply] {
    var replies: [Reply] = []
    for w in exIngestionWrites { replies.append(await c.call(w)) }
    let hold = replies[0].elements ?? []
    #expect(hold.count == 3 && hold[0] == .bulk("evt_A1:hold") && hold[2] == .array([.bulk("lot-a"), .bulk("100")]), "HOLD: \(replies[0])")
    #expect(replies[1] == .bulk("evt_A1:alloc"), "ALLOCATE: \(replies[1])")
    #expect(replies[2] == .simple("OK"), "APPROVE: \(replies[2])")
    #expect(replies[3] == .int(1), "FEES.COMPUTE: \(replies[3])")
    #expect(replies[4] == .bulk("evt_A1:invoice"), "INVOICE.CREATE: \(replies[4])")
    #expect(replies[5] == .bulk("evt_B2"), "PAYMENT.RECORD: \(replies[5])")
    #expect(replies[6] == .simple("OK"), "BANK.IMPORT: \(replies[6])")
    return replies
}

/// Retries every write: the same replies (FEES.COMPUTE: 0, nothing accrued again) and the same digest.
private func exIngestionRetry(_ c: SrvClient, _ first: [Reply], digest: Reply, _ label: String,
                              sourceLocation: SourceLocation = #_sourceLocation) async {
    #expect(await c.call("DIGEST") == digest, "\(label): DIGEST before the retries", sourceLocation: sourceLocation)
    for (i, w) in exIngestionWrites.enumerated() {
        let r = await c.call(w)
        let expected = w[0] == "FEES.COMPUTE" ? Reply.int(0) : first[i]
        #expect(r == expected, "\(label): retry \(w.joined(separator: " ")): expected \(expected), got \(r)",
                sourceLocation: sourceLocation)
    }
    #expect(await c.call("DIGEST") == digest, "\(label): the retries changed the state", sourceLocation: sourceLocation)
}

/// What the retried writes leave: one paid invoice of 142.50, one bank line, a position of 100.
private func exIngestionState(_ c: SrvClient, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) async {
    let inv = await c.call("INVOICE.GET", "evt_A1:invoice").fields ?? [:]
    #expect(inv["status"] == "paid" && inv["total"] == "142.50" && inv["paid"] == "142.50", "\(label): \(inv)",
            sourceLocation: sourceLocation)
    let bank = await c.call("BANK.GET", "evt_C3").fields ?? [:]
    #expect(bank["amount"] == "142.50" && bank["unmatched"] == "142.50", "\(label): \(bank)", sourceLocation: sourceLocation)
    let pos = await c.call("POSITION.GET", "inv-7", "deal-1").fields ?? [:]
    #expect(pos["units"] == "100" && pos["cost_basis"] == "2850.00", "\(label): \(pos)", sourceLocation: sourceLocation)
    let fees = await c.call("FEES.LIST", "deal-1").page
    #expect(fees?.rows.count == 1 && fees?.rows.first?["computed_amount"] == "142.50", "\(label): \(String(describing: fees))",
            sourceLocation: sourceLocation)
    let lot = await c.call("LOT.GET", "lot-a").fields ?? [:]
    #expect(lot["units_allocated"] == "100" && lot["units_held"] == "0" && lot["units_remaining"] == "900", "\(label): \(lot)",
            sourceLocation: sourceLocation)
}

@Suite struct ServerExamplesTests {
    // MARK: stock-reservation.md

    /// Stock 10, orders of 4, 4, 4: the third is refused; the first lapses and
    /// its stock comes back; a confirmed order ships; a restock. The INVENTORY
    /// figures at every step are the page's. The expiry ticker is slowed to a
    /// minute so SWEEP is what expires the lapsed order (it answers 1 here; on
    /// the page's server the 100 ms background ticker got there first: 0).
    @Test func stockReservationCannotOversell() async throws {
        var o = SrvHarness.Options()
        o.engine = EngineConfig(expiryTickMillis: 60_000)
        try await withSrv(o) { h in
            let c = try await exClient(port: h.port)
            await exOK(c, "DEAL.CREATE", "sku-WID-100", "NAME", "Widget 100", "CURRENCY", "KZT", "PRICE", "1500")
            await exOK(c, "LOT.ADD", "sku-WID-100", "wid100-stock", "10", "900", "CURRENCY", "KZT")
            await exInventory(c, ExStock(total: "10", remaining: "10", held: "0", allocated: "0", pending: "0", utilization: "0.00"))

            let so1001 = await exHold(c, ["HOLD", "sku-WID-100", "cust-aliya", "4", "1500", "TTL", "2", "ID", "SO-1001"],
                                      id: "SO-1001", lot: "wid100-stock", units: "4")
            let lapsesAt = so1001.elements?[1].intValue ?? 0
            await exHold(c, ["HOLD", "sku-WID-100", "cust-berik", "4", "1500", "TTL", "900", "ID", "SO-1002"],
                         id: "SO-1002", lot: "wid100-stock", units: "4")
            let before = await c.call("DIGEST")
            await exExpect(c, .error("INSUFFICIENT requested 4, available 2"),
                           "HOLD", "sku-WID-100", "cust-dana", "4", "1500", "TTL", "900", "ID", "SO-1003")
            #expect(await c.call("DIGEST") == before, "the refused order changed the state")
            await exError(c, "NOTFOUND", "HOLD.GET", "SO-1003")
            await exInventory(c, ExStock(total: "10", remaining: "2", held: "8", allocated: "0", pending: "2", utilization: "80.00"))

            // SO-1002 is confirmed: allocated and approved.
            await exExpect(c, .bulk("SO-1002-ok"), "ALLOCATE", "SO-1002", "ID", "SO-1002-ok")
            await exOK(c, "APPROVE", "SO-1002-ok")
            await exInventory(c, ExStock(total: "10", remaining: "2", held: "4", allocated: "4", pending: "1", utilization: "80.00"))

            // SO-1001 is never paid: its TTL passes, SWEEP expires it, its 4 units are available again.
            let wait = max(0, Double(lapsesAt) / 1000 - Date().timeIntervalSince1970) + 0.3
            try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
            await exExpect(c, .int(1), "SWEEP")
            #expect(await c.call("HOLD.GET", "SO-1001").fields?["status"] == "expired")
            await exInventory(c, ExStock(total: "10", remaining: "6", held: "0", allocated: "4", pending: "0", utilization: "40.00"))
            await exExpect(c, .int(0), "SWEEP")

            // The refused order now goes through, under the id it was refused with.
            await exHold(c, ["HOLD", "sku-WID-100", "cust-dana", "4", "1500", "TTL", "900", "ID", "SO-1003"],
                         id: "SO-1003", lot: "wid100-stock", units: "4")
            await exInventory(c, ExStock(total: "10", remaining: "2", held: "4", allocated: "4", pending: "1", utilization: "80.00"))

            // SO-1002 ships: settled, still counted as allocated (the inventory does not move).
            await exOK(c, "SETTLE", "SO-1002-ok")
            #expect(await c.call("ALLOCATION.GET", "SO-1002-ok").fields?["status"] == "settled")
            await exInventory(c, ExStock(total: "10", remaining: "2", held: "4", allocated: "4", pending: "1", utilization: "80.00"))
            await exError(c, "CONFLICT", "RELEASE", "SO-1002")

            // Restock: the lot cannot shrink below what is reserved; it grows by 6.
            await exExpect(c, .error("CONFLICT lot wid100-stock has 8 units held or allocated; it cannot shrink to 7"),
                           "LOT.RESIZE", "sku-WID-100", "wid100-stock", "7")
            await exOK(c, "LOT.RESIZE", "sku-WID-100", "wid100-stock", "16")
            await exInventory(c, ExStock(total: "16", remaining: "8", held: "4", allocated: "4", pending: "1", utilization: "50.00"))

            // Re-sending the lapsed order under its old id answers its old receipt and places nothing.
            await exExpect(c, so1001, "HOLD", "sku-WID-100", "cust-aliya", "4", "1500", "TTL", "2", "ID", "SO-1001")
            await exError(c, "CONFLICT", "HOLD", "sku-WID-100", "cust-aliya", "4", "1500", "TTL", "900", "ID", "SO-1001")
            await exInventory(c, ExStock(total: "16", remaining: "8", held: "4", allocated: "4", pending: "1", utilization: "50.00"))
        }
    }

    // MARK: idempotent-ingestion.md

    /// Every write retried with its own id has its effect once: the retry
    /// answers the same reply and DIGEST does not move, also after a clean
    /// restart, after a power loss (the in-process server on a simulated disk,
    /// crashed without a close: only what was fdatasynced survives), and after
    /// a `kill -9` of a real `allocation-engine serve` process (skipped when
    /// the binary is not built).
    @Test func idempotentIngestionIsExactlyOnce() async throws {
        let io = SimulatedFileIO(seed: 4004)
        var o = SrvHarness.Options()
        o.io = io
        let dir = "/examples-ingestion"
        var first: [Reply] = []
        var digest = Reply.null

        let h = try await SrvHarness.start(dataDir: dir, o)
        do {
            let c = try await exClient(port: h.port)
            await exIngestionSetup(c)
            first = await exIngestionFirstRun(c)
            digest = await c.call("DIGEST")
            #expect(digest.string?.count == 32, "DIGEST: \(digest)")
            await exIngestionRetry(c, first, digest: digest, "live")
            // The same id with other parameters is refused and changes nothing.
            await exExpect(c, .error("CONFLICT payment id evt_B2 was used with different parameters"),
                           "PAYMENT.RECORD", "evt_A1:invoice", "100.00", "METHOD", "card", "ID", "evt_B2")
            await exExpect(c, .error("CONFLICT bank transaction evt_C3 was imported with other fields (amount 142.50, value date 2026-03-02, account acct_1Vaultra)"),
                           "BANK.IMPORT", "evt_C3", "acct_1Vaultra", "142.00", "2026-03-02", "MEMO", "payout.paid po_C3")
            await exError(c, "CONFLICT", "HOLD", "deal-1", "inv-7", "50", "28.50", "TTL", "3600", "ID", "evt_A1:hold")
            await exError(c, "CONFLICT", "ALLOCATE", "evt_A1:hold", "ID", "evt_A1:other")
            #expect(await c.call("DIGEST") == digest, "a refused retry changed the state")
            await exIngestionState(c, "live")
        } catch {
            await h.stop(); throw error
        }
        await h.stop()

        // A clean restart (SIGTERM-like: the log flushed and closed).
        let h2 = try await SrvHarness.start(dataDir: dir, o)
        do {
            #expect(h2.durable.recovery.recordsReplayed > 0)
            let c = try await exClient(port: h2.port)
            await exIngestionRetry(c, first, digest: digest, "after a restart")
            await exIngestionState(c, "after a restart")
        } catch {
            await h2.stop(); throw error
        }
        // Power loss: the disk keeps only what was fdatasynced; the old engine is not closed first.
        io.crash(mode: .dropUnsynced)
        await h2.stop()

        let h3 = try await SrvHarness.start(dataDir: dir, o)
        do {
            let c = try await exClient(port: h3.port)
            await exIngestionRetry(c, first, digest: digest, "after a power loss")
            await exIngestionState(c, "after a power loss")
        } catch {
            await h3.stop(); throw error
        }
        await h3.stop()

        // kill -9 of a real server process.
        guard let bin = ServerProcessTests.binary() else {
            print("[ServerExamplesTests] allocation-engine binary not found: the kill -9 part is skipped")
            return
        }
        let tmp = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let args = ["--port", "0", "--data-dir", tmp + "/data", "--segment-mb", "1"]
        let s1 = try ServerProcessTests.Served(binary: bin, args: args)
        guard let port1 = await s1.waitListening() else {
            Issue.record("serve did not start: \(s1.log.text)")
            _ = await s1.stop()
            return
        }
        var procFirst: [Reply] = [], procDigest = Reply.null
        do {
            let c = try await exClient(port: port1)
            await exIngestionSetup(c)
            procFirst = await exIngestionFirstRun(c)
            procDigest = await c.call("DIGEST")
            await exIngestionRetry(c, procFirst, digest: procDigest, "process")
        }
        kill(s1.process.processIdentifier, SIGKILL)
        let status = await s1.waitExit()
        #expect(s1.process.terminationReason == .uncaughtSignal && status == SIGKILL, "not killed: \(status)")
        #expect(!s1.log.text.contains("shutdown complete"), "the kill was not abrupt: \(s1.log.text)")

        let s2 = try ServerProcessTests.Served(binary: bin, args: args)
        guard let port2 = await s2.waitListening() else {
            Issue.record("restart after kill -9 failed: \(s2.log.text)")
            _ = await s2.stop()
            return
        }
        do {
            let c = try await exClient(port: port2)
            await exIngestionRetry(c, procFirst, digest: procDigest, "after kill -9")
            await exIngestionState(c, "after kill -9")
        }
        #expect(await s2.stop() == 0, "\(s2.log.text)")
    }

    // MARK: investor-portal.md

    /// A KYC-gated deal: the investor's own user is refused while KYC is
    /// pending, buys in once it is approved, and reads its holdings (PORTFOLIO)
    /// and cashflows (CASHFLOW.LIST) with its own token, and nobody else's.
    @Test func investorPortalKYCPortfolioAndCashflows() async throws {
        try await withSrv { h in
            let admin = try await exClient(port: h.port)
            await exOK(admin, "VEHICLE.CREATE", "vip-fund-1", "VIP Growth Fund I", "TYPE", "fund", "CURRENCY", "USD")
            await exOK(admin, "DEAL.CREATE", "deal-spx", "NAME", "SpaceX Secondary", "PRICE", "100",
                       "VEHICLE", "vip-fund-1", "KYC", "required")
            await exOK(admin, "LOT.ADD", "deal-spx", "spx-lot-1", "1000", "80", "ACQUIRED", "2025-06-30")
            await exOK(admin, "USER.CREATE", "maria", "investor", "NAME", "Maria Keller", "EMAIL", "maria@example.com")
            await exOK(admin, "INVESTOR.CREATE", "inv-maria", "Maria Keller", "TYPE", "individual", "COUNTRY", "DE")
            await exOK(admin, "INVESTOR.LINK", "inv-maria", "maria")
            await exOK(admin, "MEMBER.ADD", "deal-spx", "maria", "investor", "INVESTOR", "inv-maria")
            let token = await admin.call("TOKEN.CREATE", "maria").string ?? ""
            #expect(token.count == 64 && token.allSatisfy(\.isHexDigit), "TOKEN.CREATE: \(token)")
            #expect(await admin.call("INVESTOR.GET", "inv-maria").fields?["kyc_status"] == "pending")

            let maria = try await exClient(port: h.port, auth: ["maria", token])
            // KYC pending: refused, for the investor's own user and for staff alike; nothing changes.
            let before = await admin.call("DIGEST")
            await exExpect(maria, .error("NOPERM KYC pending for investor inv-maria"),
                           "HOLD", "deal-spx", "inv-maria", "10", "100", "TTL", "600", "ID", "vip-trade-1")
            await exExpect(admin, .error("NOPERM KYC pending for investor inv-maria"),
                           "HOLD", "deal-spx", "inv-maria", "10", "100", "TTL", "600", "ID", "vip-trade-1")
            #expect(await admin.call("DIGEST") == before)

            await exOK(admin, "INVESTOR.KYC", "inv-maria", "approved")
            // The open connection sees the approval from its next command.
            await exHold(maria, ["HOLD", "deal-spx", "inv-maria", "10", "100", "TTL", "600", "ID", "vip-trade-1"],
                         id: "vip-trade-1", lot: "spx-lot-1", units: "10")
            await exExpect(maria, .bulk("vip-alloc-1"), "ALLOCATE", "vip-trade-1", "ID", "vip-alloc-1")
            await exExpect(maria, .error("NOPERM user maria (investor) may not run this command"), "APPROVE", "vip-alloc-1")
            await exOK(admin, "APPROVE", "vip-alloc-1")

            // A second investor in the same vehicle, bought in by staff.
            await exOK(admin, "INVESTOR.CREATE", "inv-jonas", "Jonas Berg", "TYPE", "individual", "COUNTRY", "SE", "KYC", "approved")
            await exHold(admin, ["HOLD", "deal-spx", "inv-jonas", "30", "100", "ID", "vip-trade-2"],
                         id: "vip-trade-2", lot: "spx-lot-1", units: "30")
            await exExpect(admin, .bulk("vip-alloc-2"), "ALLOCATE", "vip-trade-2", "ID", "vip-alloc-2")
            await exOK(admin, "APPROVE", "vip-alloc-2")

            await exOK(admin, "VALUATION.SET", "vip-fund-1", "2026-06-30", "112.50")
            await exExpect(admin, .int(2), "DISTRIBUTION.CREATE", "vip-fund-1", "dist-2026q2", "500",
                           "DATE", "2026-07-15", "NAME", "Q2 2026 distribution")

            // The investor's holdings and cashflows, with its own token; the exact rows of the page.
            func row(_ pairs: [(String, String)]) -> Reply { .map(pairs.flatMap { [Reply.bulk($0.0), .bulk($0.1)] }) }
            await exExpect(maria, .array([.bulk("0"), .array([row([
                ("vehicle", "vip-fund-1"), ("units", "10"), ("cost_basis", "1000.00"),
                ("last_nav", "112.5"), ("value", "1125.00"), ("as_of_date", "2026-06-30")])])]),
                "PORTFOLIO", "inv-maria")
            await exExpect(maria, .array([.bulk("0"), .array([row([
                ("investor", "inv-maria"), ("vehicle", "vip-fund-1"), ("type", "distribution"),
                ("amount", "125.00"), ("date", "2026-07-15"), ("ref_id", "dist-2026q2")])])]),
                "CASHFLOW.LIST", "inv-maria")
            let position = await maria.call("POSITION.GET", "inv-maria", "deal-spx").fields ?? [:]
            #expect(position["units"] == "10" && position["cost_basis"] == "1000.00", "\(position)")

            // Not another investor's.
            await exExpect(maria, .error("NOPERM user maria does not act for investor inv-jonas"), "PORTFOLIO", "inv-jonas")
            await exExpect(maria, .error("NOPERM user maria does not act for investor inv-jonas"), "CASHFLOW.LIST", "inv-jonas")
            await exError(maria, "NOPERM", "POSITION.GET", "inv-jonas", "deal-spx")
            // Staff read every investor's: 30 units, 375.00 of the 500.00.
            let jonas = await admin.call("PORTFOLIO", "inv-jonas").page?.rows ?? []
            #expect(jonas.count == 1 && jonas.first?["units"] == "30" && jonas.first?["cost_basis"] == "3000.00"
                    && jonas.first?["value"] == "3375.00", "\(jonas)")
            let jonasFlows = await admin.call("CASHFLOW.LIST", "inv-jonas").page?.rows ?? []
            #expect(jonasFlows.map { $0["amount"] ?? "?" } == ["375.00"], "\(jonasFlows)")
        }
    }
}
