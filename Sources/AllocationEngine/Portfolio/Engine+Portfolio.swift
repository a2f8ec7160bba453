/// The investments side across deals: an investor's positions per vehicle,
/// distributions split over a vehicle's holders. Each visits only the deals
/// that matter (`Holdings`), never every deal. Units and amounts cross the
/// actor hops as decimal text and are summed in synchronous code: no 128-bit
/// value may cross an `await` on Linux (swiftlang/swift #89842, #91204).
extension Engine {
    /// `PORTFOLIO <investor>`: per vehicle, the units and cost of the investor's
    /// approved allocations in the vehicle's deals, the latest NAV and the value.
    public func portfolio(of investor: String) async -> [[Field]] {
        var parts: [(vehicle: String, units: String, cost: String)] = []
        for number in indexes.holdings.deals(of: investor) {
            guard let actor = deal(number: number) else { continue }
            let part: (String, String, String)? = await actor.read { s in
                guard let v = s.info.vehicle, let slot = s.investorSlotIfKnown(investor) else { return nil }
                let p = s.positions[Int(slot)]
                return (v, String(p.units.raw), String(p.costBasis.raw))
            }
            if let part { parts.append(part) }
        }
        return Self.portfolioRows(parts, ledger: readDirectory { $0.ledger })
    }

    static func portfolioRows(_ parts: [(vehicle: String, units: String, cost: String)], ledger: MoneyLedger) -> [[Field]] {
        var units: [String: Int128] = [:], cost: [String: Int128] = [:]
        for p in parts {
            units[p.vehicle, default: 0] += Int128(p.units) ?? 0
            cost[p.vehicle, default: 0] += Int128(p.cost) ?? 0
        }
        return units.keys.sorted().map { v in
            let u = Units(raw: units[v]!)
            let nav = ledger.valuations[v]?.last
            return [
                Field("vehicle", v), Field("units", u.description),
                Field("cost_basis", ExactAmount(raw: cost[v]!).roundedToMoney.description),
                Field("last_nav", nav?.navPerUnit.description),
                Field("value", nav.map { MoneyMath.product(u, $0.navPerUnit).description }),
                Field("as_of_date", nav?.asOf.description),
            ]
        }
    }

    /// The holders of a vehicle's units now: investor -> units (raw, as text), investor ids ascending.
    public func holders(of vehicle: String) async -> [(String, String)] {
        var merged: [String: [String]] = [:]
        for number in indexes.holdings.deals(ofVehicle: vehicle) {
            guard let actor = deal(number: number) else { continue }
            let rows: [(String, String)] = await actor.read { s in
                s.investors.indices.compactMap { i in s.positions[i].units.raw > 0 ? (s.investors[i], String(s.positions[i].units.raw)) : nil }
            }
            for (inv, u) in rows { merged[inv, default: []].append(u) }
        }
        return merged.keys.sorted().map { inv in
            (inv, String(merged[inv]!.reduce(Int128(0)) { $0 + (Int128($1) ?? 0) }))
        }
    }
}

extension DealState {
    func investorSlotIfKnown(_ id: String) -> Int32? { investorSlot[IdKey(id)] }
}
