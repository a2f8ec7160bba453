/// Checks of a directory change's fields (ids, text, emails, codes) before it
/// reaches the directory: bad input is refused with INVALID and changes nothing.
extension DirectoryChange {
    public func validate() throws(EngineError) {
        switch self {
        case .userSet(let u):
            try Validate.id(u.id, field: "user")
            if let n = u.name { try Validate.text(n, field: "name") }
            if let t = u.title { try Validate.text(t, field: "title") }
            if let e = u.email { try Validate.email(e) }
        case .investorCreated(let i):
            try Validate.id(i.id, field: "investor")
            try Validate.text(i.legalName, field: "legal name")
            guard !i.legalName.isEmpty else { throw EngineError(.invalid, "legal name must not be empty") }
            if let t = i.type, t != "individual" && t != "entity" {
                throw EngineError(.invalid, "investor TYPE is individual or entity, got '\(t.prefix(32))'")
            }
            if let c = i.country { try Validate.country(c) }
        case .investorKYC(let i, _), .investorLinked(let i, _), .investorUnlinked(let i, _):
            try Validate.id(i, field: "investor")
            if case .investorLinked(_, let u) = self { try Validate.id(u, field: "user") }
            if case .investorUnlinked(_, let u) = self { try Validate.id(u, field: "user") }
        case .tokenIssued(let t): try Validate.id(t.user, field: "user")
        case .tokensRevoked(let u): try Validate.id(u, field: "user")
        case .legacyToken(let u, _, let investors, _):
            try Validate.id(u, field: "user")
            for i in investors { try Validate.id(i, field: "investor") }
        case .vehicleCreated(let v):
            try Validate.id(v.id, field: "vehicle")
            try Validate.text(v.name, field: "name")
            if let d = v.domicile { try Validate.text(d, field: "domicile") }
            try Validate.currency(v.currency)
        case .subscriptionCreated(let s):
            try Validate.callerID(s.id, field: "subscription id")
            try Validate.id(s.investor, field: "investor")
            try Validate.id(s.vehicle, field: "vehicle")
            try Validate.currency(s.currency)
            guard s.commitment.raw >= 0 && s.commitment.raw <= NumberLimits.maxMoneyRaw else {
                throw EngineError(.invalid, "commitment must be between 0 and \(Money(raw: NumberLimits.maxMoneyRaw)), got \(s.commitment)")
            }
        case .subscriptionStatus(let id, _): try Validate.id(id, field: "subscription id")
        case .bankImported(let t):
            try Validate.id(t.id, field: "transaction id")
            try Validate.id(t.accountRef, field: "account ref")
            try Validate.currency(t.currency)
            guard t.amount.raw != 0 && t.amount.raw >= -NumberLimits.maxMoneyRaw && t.amount.raw <= NumberLimits.maxMoneyRaw else {
                throw EngineError(.invalid, "a bank transaction's amount is not zero and at most \(Money(raw: NumberLimits.maxMoneyRaw)) either way, got \(t.amount)")
            }
            for (name, text) in [("memo", t.memo), ("counterparty", t.counterparty)] {
                guard let text else { continue }
                try Validate.text(text, field: name)
                guard text.utf8.count <= LedgerLimits.maxBankText else { throw EngineError(.invalid, "\(name) is longer than \(LedgerLimits.maxBankText) bytes") }
            }
            if let b = t.batch { try Validate.id(b, field: "batch") }
        case .introducerCreated(let i):
            try Validate.id(i.id, field: "introducer")
            try Validate.text(i.legalName, field: "legal name")
            guard !i.legalName.isEmpty else { throw EngineError(.invalid, "legal name must not be empty") }
            if let r = i.commissionBps, !(r >= 0 && r <= MoneyLimits.maxRateBps) { throw EngineError(.invalid, "COMMISSION_BPS must be between 0 and \(MoneyLimits.maxRateBps)") }
            if let u = i.user { try Validate.id(u, field: "user") }
        case .introducerStatus(let id, _): try Validate.id(id, field: "introducer")
        case .valuationSet(let v):
            try Validate.id(v.vehicle, field: "vehicle")
            guard v.navPerUnit.raw >= 0 && Int128(v.navPerUnit.raw) <= NumberLimits.maxPriceRaw else { throw EngineError(.invalid, "NAV per unit out of range") }
            if let t = v.navTotal, !(t.raw >= 0 && t.raw <= NumberLimits.maxMoneyRaw) { throw EngineError(.invalid, "NAV_TOTAL out of range") }
        case .capitalCallCreated(let c):
            try Validate.id(c.id, field: "capital call")
            try Validate.id(c.vehicle, field: "vehicle")
            if let n = c.name { try Validate.text(n, field: "name") }
        case .capitalCallIssued(let id, _): try Validate.id(id, field: "capital call")
        case .distributionCreated(let d, _):
            try Validate.id(d.id, field: "distribution")
            try Validate.id(d.vehicle, field: "vehicle")
            if let n = d.name { try Validate.text(n, field: "name") }
            if let c = d.classification { try Validate.text(c, field: "classification") }
            guard d.amount.raw > 0 && d.amount.raw <= NumberLimits.maxMoneyRaw else { throw EngineError(.invalid, "a distribution's amount is more than zero, got \(d.amount)") }
        case .sourceCreated(let s):
            try Validate.id(s.id, field: "share source")
            if let c = s.counterparty { try Validate.text(c, field: "counterparty") }
            if let n = s.notes { try Validate.text(n, field: "notes") }
        }
    }
}

extension Validate {
    /// A plausible address: one `@` with text on both sides and a dot after
    /// it, printable, no spaces, at most 254 bytes (RFC 5321's path limit).
    static func email(_ s: String) throws(EngineError) {
        let bytes = Array(s.utf8)
        let at = bytes.firstIndex(of: UInt8(ascii: "@"))
        guard bytes.count <= 254, let at, at > 0, at < bytes.count - 1, bytes.filter({ $0 == UInt8(ascii: "@") }).count == 1,
              bytes[(at + 1)...].contains(UInt8(ascii: ".")), bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw EngineError(.invalid, "EMAIL must be an address like name@example.com, got '\(s.prefix(64))'")
        }
    }
    /// ISO 3166 alpha-2: two uppercase letters.
    static func country(_ s: String) throws(EngineError) {
        guard s.utf8.count == 2, s.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            throw EngineError(.invalid, "COUNTRY must be an ISO 3166 alpha-2 code such as GB, got '\(s.prefix(16))'")
        }
    }
}
