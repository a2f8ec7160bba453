/// One deal's part of an investor's and of an introducer's statement.
extension DealState {
    /// An investor's totals in this deal; the engine sums them over its deals.
    func investorTotals(_ investor: String) -> [Field] {
        var heldCount = 0
        var held = Units.zero, review = Units.zero, allocated = Units.zero
        if let slot = investorSlot[IdKey(investor)] {
            // Every pending hold is in memory.
            holds.forEachInMemory { _, h in if h.investor == slot && h.status == .pending { heldCount += 1; held += h.filled } }
            // Rows under review, approved or settled are all in memory.
            allocations.forEachInMemory { _, a in
                guard a.investor == slot else { return }
                if a.status == .pendingReview { review += a.units }
                if a.status == .approved || a.status == .settled { allocated += a.units }
            }
        }
        let cost = investorSlot[IdKey(investor)].map { positions[Int($0)].costBasis } ?? ExactAmount(raw: 0)
        var accrued = Money.zero, invoicedFees = Money.zero, billed = Money.zero, paid = Money.zero
        for e in money.feeEvents where e.investor == investor {
            if e.status == .accrued { accrued.raw += e.computedAmount.raw }
            if e.status == .invoiced { invoicedFees.raw += e.computedAmount.raw }
        }
        for i in money.invoices where !i.isStatement && !i.cancelled && i.investor == investor {
            billed.raw += i.total.raw
            paid.raw += i.paid.raw
        }
        return [
            Field("deal", info.id), Field("currency", info.currency), Field("holds_pending", String(heldCount)), Field("units_held", held.description),
            Field("units_pending_review", review.description), Field("units_allocated", allocated.description),
            Field("cost_basis", cost.roundedToMoney.description), Field("cost_basis_exact", cost.description),
            Field("fees_accrued", accrued.description), Field("fees_invoiced", invoicedFees.description),
            Field("invoiced", billed.description), Field("paid", paid.description), Field("outstanding", Money(raw: billed.raw - paid.raw).description),
        ]
    }

    /// A page of one part of an investor's rows in this deal (slots as the cursor).
    func investorPart(_ investor: String, _ part: StatementPart, cursor: UInt64, count: Int, index: EngineIndexes) throws(EngineError) -> DealReply {
        // No slot: no row of the investor is in memory, but its holds may be in the history.
        let slot = investorSlot[IdKey(investor)] ?? -1
        switch part {
        case .holds:
            return try holdPage(investor: investor, slot: slot, from: cursor, count: count, index: index)
        case .allocations:
            return try allocationPage(investor: investor, slot: slot, from: cursor, count: count, index: index)
        case .positions:
            return .page(cursor: "0", rows: cursor == 0 ? [positionFields(investor: investor)] : [])
        case .fees:
            return page(from: cursor, count: count, total: money.feeEvents.count) { money.feeEvents[$0].investor == investor ? feeEventFields(Int32($0)) : nil }
        case .invoices:
            return page(from: cursor, count: count, total: money.invoices.count) {
                !money.invoices[$0].isStatement && money.invoices[$0].investor == investor ? invoiceFields(Int32($0)) : nil
            }
        case .payments:
            return page(from: cursor, count: count, total: money.payments.count) {
                money.invoices[Int(money.payments[$0].invoice)].investor == investor ? paymentFields(Int32($0)) : nil
            }
        case .cashflows:
            return .page(cursor: "0", rows: [])  // engine-wide: the directory answers
        }
    }

    /// A page of an investor's holds: rows in memory as they are, chunks that
    /// left memory read back whole from the history (`historyPage`).
    func holdPage(investor: String, slot investorSlot: Int32, from cursor: UInt64, count: Int, index: EngineIndexes) throws(EngineError) -> DealReply {
        try historyPage(holds, ArchivedHold.self, investor: investor, slot: investorSlot, from: cursor, count: count, index: index,
                        archivedInvestor: { $0.investorID },
                        inMemory: { holdFields($0, index: index) },
                        archived: { holdFields($0.hold, investor: $0.investorID, index: index) })
    }

    static var maxHistoryChunksPerPage: Int { 4 }

    /// A page of an investor's allocations, the same way (rejected ones may have left memory).
    func allocationPage(investor: String, slot investorSlot: Int32, from cursor: UInt64, count: Int, index: EngineIndexes) throws(EngineError) -> DealReply {
        try historyPage(allocations, ArchivedAllocation.self, investor: investor, slot: investorSlot, from: cursor, count: count, index: index,
                        archivedInvestor: { $0.investorID },
                        inMemory: { allocationFields($0, investor: investor) },
                        archived: { allocationFields($0.allocation, investor: $0.investorID) })
    }

    /// A page of one investor's rows of a table: rows in memory as they are,
    /// chunks that left memory read back whole from the history (one entry
    /// read per chunk, at most `maxHistoryChunksPerPage` per page, so a page
    /// of an old deal costs a bounded amount of disk and the cursor goes on
    /// from there). Rows in memory match by `slot` (-1: none can), rows from
    /// the history by the id.
    func historyPage<Row, Archived: HistoryRow>(
        _ table: RowTable<Row>, _: Archived.Type, investor: String, slot investorSlot: Int32, from cursor: UInt64, count: Int,
        index: EngineIndexes, archivedInvestor: (Archived) -> String, inMemory: (Row) -> [Field], archived fields: (Archived) -> [Field]
    ) throws(EngineError) -> DealReply {
        var rows: [[Field]] = []
        let total = table.count
        var slot = Int(min(cursor, UInt64(total)))
        var scanned = 0, chunksRead = 0
        while slot < total && rows.count < count && scanned < PeopleLimits.maxPageScan {
            if table.isInMemory(Int32(slot)) {
                if table[slot].investor == investorSlot { rows.append(inMemory(table[slot])) }
                slot += 1
                scanned += 1
                continue
            }
            // An archived slot: read the rest of its chunk from the history at once.
            guard chunksRead < Self.maxHistoryChunksPerPage else { break }
            chunksRead += 1
            let chunkEnd = min(total, (slot >> RowTable<Row>.chunkShift + 1) << RowTable<Row>.chunkShift)
            var archived: [Int32: Archived] = [:]
            if let store = index.history.store {
                for location in table.locations(of: Int32(slot)).reversed() {
                    for (s, a) in try store.rows(Archived.self, at: location).rows where Int(s) >= slot && Int(s) < chunkEnd { archived[s] = a }
                }
            }
            while slot < chunkEnd && rows.count < count {
                let s = Int32(slot)
                if table.isInMemory(s) {
                    if table[slot].investor == investorSlot { rows.append(inMemory(table[slot])) }
                } else if let a = archived[s], archivedInvestor(a) == investor {
                    rows.append(fields(a))
                }
                slot += 1
                scanned += 1
            }
        }
        return .page(cursor: slot >= total ? "0" : String(slot), rows: rows)
    }

    /// An introducer's counts and totals by status in this deal.
    func introducerTotals(_ introducer: String) -> [Field] {
        var byStatus = [Int](repeating: 0, count: IntroductionStatus.allCases.count)
        for n in money.introductions where n.introducer == introducer { byStatus[Int(n.status.rawValue)] += 1 }
        var count = [Int](repeating: 0, count: CommissionStatus.allCases.count)
        var amount = [Money](repeating: .zero, count: CommissionStatus.allCases.count)
        for c in money.commissions where c.introducer == introducer {
            count[Int(c.status.rawValue)] += 1
            amount[Int(c.status.rawValue)].raw += c.amount.raw
        }
        var f = [Field("deal", info.id), Field("currency", info.currency)]
        for s in IntroductionStatus.allCases { f.append(Field("introductions_\(s.name)", String(byStatus[Int(s.rawValue)]))) }
        for s in CommissionStatus.allCases {
            f.append(Field("commissions_\(s.name)", String(count[Int(s.rawValue)])))
            f.append(Field("commissions_\(s.name)_amount", amount[Int(s.rawValue)].description))
        }
        return f
    }

    mutating func executeStatement(_ request: StatementRequest, principal: Principal?, index: EngineIndexes) throws(EngineError) -> DealReply {
        switch request {
        case .summary:
            return .fields(try summaryFields(scope: principal.flatMap { $0.isStaff ? nil : $0.investors }, index: index))
        case .investor(let investor, let part, let cursor, let count):
            try Validate.id(investor, field: "investor")
            guard let part else { return .fields(investorTotals(investor)) }
            return try investorPart(investor, part, cursor: cursor, count: count, index: index)
        case .introducer(let introducer):
            try Validate.id(introducer, field: "introducer")
            guard Self.readsIntroducer(introducer, principal) else { throw EngineError(.notFound, "introducer \(introducer.prefix(128)) not found") }
            return .fields(introducerTotals(introducer))
        }
    }
}
