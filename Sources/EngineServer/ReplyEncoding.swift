import AllocationEngine

extension RESPEncoder {
    mutating func engineError(_ e: EngineError) {
        error(code: e.code.rawValue, message: e.message)
    }

    /// Engine replies: `+OK`, a hold's `[id, expires-at ms, [lot, units, ...]]`, an
    /// id as a bulk string, a row as field/value pairs (a map under RESP3, a flat
    /// array like HGETALL under RESP2), or `-CODE message`.
    mutating func dealReply(_ reply: DealReply) {
        switch reply {
        case .ok: simple("OK")
        case .status(let s): simple(s)
        case .id(let id): bulk(id)
        case .count(let n): integer(n)
        case .hold(let receipt):
            arrayHeader(3)
            bulk(receipt.id)
            integer(Int(receipt.expiresAt))
            arrayHeader(receipt.partCount * 2)
            bulk(receipt.firstPart.lot)
            bulk(receipt.firstPart.units.description)
            for p in receipt.moreParts {
                bulk(p.lot)
                bulk(p.units.description)
            }
        case .fields(let fields): self.fields(fields)
        case .values(let values):
            arrayHeader(values.count)
            for v in values { bulk(v) }
        case .page(let cursor, let rows):
            // Like SCAN: [next cursor, [row, ...]], the cursor a string, "0" at the end.
            arrayHeader(2)
            bulk(cursor)
            arrayHeader(rows.count)
            for r in rows { fields(r) }
        case .failure(let e): engineError(e)
        case .resp(let bytes): raw(bytes)
        }
    }

    mutating func fields(_ fields: [Field]) {
        mapHeader(fields.count)
        for f in fields {
            bulk(f.name)
            if let table = f.table {
                arrayHeader(table.count)
                for row in table {
                    arrayHeader(row.count)
                    for v in row { bulk(v) }
                }
            } else if let items = f.items {
                arrayHeader(items.count)
                for i in items { bulk(i) }
            } else if let v = f.value { bulk(v) } else { null() }
        }
    }
}
