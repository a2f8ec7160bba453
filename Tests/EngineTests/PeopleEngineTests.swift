import Foundation
import Testing
@testable import AllocationEngine
@testable import Snapshot
@testable import WAL

// The people side of the engine, in process: the directory (users, investors,
// links, tokens, vehicles, subscriptions, share sources), deal memberships,
// invite links, the access rules inside the deal actor, commitments,
// approvals, and replay of all of it (snapshot + log, log alone).
// Every refused request is checked to leave the state digest as it was.

// MARK: - Helpers (prefixed `pe`, private to this file)

private struct PEUnexpected: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

private let peOps = Principal(user: "ops1", role: .staffOps)
private let peOps2 = Principal(user: "ops2", role: .staffOps)

/// Runs one request in the deal's actor as `principal`, waits for durability
/// when the engine has a log, and throws the reply's error. Each helper has a
/// form for deal d1 and one naming the deal.
@discardableResult
private func peRun(_ e: Engine, _ deal: String, _ request: DealRequest, as principal: Principal? = nil) async throws -> DealReply {
    guard let actor = e.deal(deal) else { throw EngineError(.notFound, "deal \(deal) not found") }
    let result = await actor.execute([request], as: principal)
    if let lsn = result.lsn, let sink = e.sink { try await sink.waitDurable(lsn) }
    if let error = result.replies[0].error { throw error }
    return result.replies[0]
}
@discardableResult
private func peRun(_ e: Engine, _ request: DealRequest, as principal: Principal? = nil) async throws -> DealReply {
    try await peRun(e, "d1", request, as: principal)
}

@discardableResult
private func pePeople(_ e: Engine, _ deal: String, _ request: PeopleRequest, as principal: Principal? = nil) async throws -> DealReply {
    try await peRun(e, deal, .people(request), as: principal)
}
@discardableResult
private func pePeople(_ e: Engine, _ request: PeopleRequest, as principal: Principal? = nil) async throws -> DealReply {
    try await peRun(e, "d1", .people(request), as: principal)
}

private func peFields(_ e: Engine, _ deal: String, _ request: DealRequest, as principal: Principal? = nil) async throws -> [Field] {
    let r = try await peRun(e, deal, request, as: principal)
    guard case .fields(let f) = r else { throw PEUnexpected("expected fields, got \(r)") }
    return f
}
private func peFields(_ e: Engine, _ request: DealRequest, as principal: Principal? = nil) async throws -> [Field] {
    try await peFields(e, "d1", request, as: principal)
}

private func pePage(_ e: Engine, _ deal: String, _ request: PeopleRequest, as principal: Principal? = nil) async throws -> (cursor: String, rows: [[Field]]) {
    let r = try await pePeople(e, deal, request, as: principal)
    guard case .page(let cursor, let rows) = r else { throw PEUnexpected("expected a page, got \(r)") }
    return (cursor, rows)
}
private func pePage(_ e: Engine, _ request: PeopleRequest, as principal: Principal? = nil) async throws -> (cursor: String, rows: [[Field]]) {
    try await pePage(e, "d1", request, as: principal)
}

private func peID(_ e: Engine, _ deal: String, _ request: DealRequest, as principal: Principal? = nil) async throws -> String {
    let r = try await peRun(e, deal, request, as: principal)
    guard case .id(let id) = r else { throw PEUnexpected("expected an id, got \(r)") }
    return id
}
private func peID(_ e: Engine, _ request: DealRequest, as principal: Principal? = nil) async throws -> String {
    try await peID(e, "d1", request, as: principal)
}

private func peHold(_ e: Engine, _ deal: String, _ r: HoldRequest, as principal: Principal? = nil) async throws -> String {
    let reply = try await peRun(e, deal, .hold(r), as: principal)
    guard case .hold(let receipt) = reply else { throw PEUnexpected("expected a hold receipt, got \(reply)") }
    return receipt.id
}
private func peHold(_ e: Engine, _ r: HoldRequest, as principal: Principal? = nil) async throws -> String {
    try await peHold(e, "d1", r, as: principal)
}

/// Creates an invite; returns (id, token).
private func peInvite(_ e: Engine, _ deal: String = "d1", role: DealMemberRole, ttl: Int64? = nil, uses: Int32? = nil,
                      as principal: Principal? = peOps) async throws -> (id: String, token: String) {
    let r = try await pePeople(e, deal, .createInvite(role: role, ttlSeconds: ttl, uses: uses), as: principal)
    guard case .values(let v) = r, v.count == 2 else { throw PEUnexpected("expected [id, token], got \(r)") }
    return (v[0], v[1])
}

private func peCommit(_ e: Engine, _ deal: String = "d1", investor: String, units: String? = nil, amount: String? = nil, id: String? = nil,
                      as principal: Principal? = nil) async throws -> String {
    try await peID(e, deal, .people(.commit(investor: investor, units: units.map(u), amount: try amount.map { try Money.parse($0) }, id: id)),
                   as: principal)
}

private func peApproval(_ e: Engine, _ deal: String, _ id: String) async throws -> [Field] {
    try await peFields(e, deal, .people(.getApproval(id: id)))
}
private func peApproval(_ e: Engine, _ id: String) async throws -> [Field] { try await peApproval(e, "d1", id) }

private func peCommitment(_ e: Engine, _ deal: String, _ id: String) async throws -> [Field] {
    try await peFields(e, deal, .people(.getCommitment(id: id)))
}
private func peCommitment(_ e: Engine, _ id: String) async throws -> [Field] { try await peCommitment(e, "d1", id) }

/// The principal a connection of `user` would have now (from the directory).
private func pePrincipal(_ e: Engine, _ user: String) -> Principal {
    e.readDirectory { d in
        guard let u = d.users[user] else { return Principal(user: user, role: .investor) }
        var linked: [String: KYCStatus] = [:]
        for i in u.investors { linked[i] = d.investors[i]?.kycStatus ?? .pending }
        return Principal(user: user, role: u.role, investors: linked)
    }
}

/// Expects `body` to fail with `code` (and a message containing `text`) and to leave the state digest unchanged.
@discardableResult
private func peRefused<T>(_ e: Engine, _ code: EngineError.Code, containing text: String? = nil,
                          sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T) async -> EngineError? {
    let before = await e.digest()
    let error = await expectError(code, sourceLocation: sourceLocation, body)
    if let text, let error {
        #expect(error.message.contains(text), "message '\(error.message)' should contain '\(text)'", sourceLocation: sourceLocation)
    }
    #expect(await e.digest() == before, "a refused request changed the state", sourceLocation: sourceLocation)
    return error
}

private func peIsHex64(_ s: String) -> Bool {
    s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
}

/// Staff users ops1, ops2 and rm1; investor users alice (invA, approved), bob
/// (invB, approved), carol (invP, KYC pending), dave (invR, KYC rejected), eve (invA too).
private func peDirectory(_ e: Engine) async throws {
    try await e.change(.userSet(UserProfile(id: "ops1", role: .staffOps)))
    try await e.change(.userSet(UserProfile(id: "ops2", role: .staffOps)))
    try await e.change(.userSet(UserProfile(id: "rm1", role: .staffRM)))
    for user in ["alice", "bob", "carol", "dave", "eve"] {
        try await e.change(.userSet(UserProfile(id: user, role: .investor)))
    }
    try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "Alpha LLC", kycStatus: .approved)))
    try await e.change(.investorCreated(InvestorRecord(id: "invB", legalName: "Bravo LLC", kycStatus: .approved)))
    try await e.change(.investorCreated(InvestorRecord(id: "invP", legalName: "Pending Ltd")))
    try await e.change(.investorCreated(InvestorRecord(id: "invR", legalName: "Rejected Ltd", kycStatus: .rejected)))
    try await e.change(.investorLinked(investor: "invA", user: "alice"))
    try await e.change(.investorLinked(investor: "invB", user: "bob"))
    try await e.change(.investorLinked(investor: "invP", user: "carol"))
    try await e.change(.investorLinked(investor: "invR", user: "dave"))
    try await e.change(.investorLinked(investor: "invA", user: "eve"))
}

// MARK: - Directory

@Suite("PeopleEngine: directory")
struct PeopleEngineDirectoryTests {
    @Test func userSetCreatesThenUpdatesKeepingCreationAndLinks() async throws {
        try await withEngine { e, clock in
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor, name: "Alice", email: "A@x.com")))
            var alice = try #require(e.readDirectory { $0.users["alice"] })
            #expect(alice.role == .investor && alice.name == "Alice" && alice.email == "A@x.com" && alice.createdAt == t0)
            try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "Alpha")))
            try await e.change(.investorLinked(investor: "invA", user: "alice"))
            clock.advance(millis: minute)
            try await e.change(.userSet(UserProfile(id: "alice", role: .staffRM, name: "Alice B", email: "alice@x.com", title: "RM")))
            alice = try #require(e.readDirectory { $0.users["alice"] })
            #expect(alice.role == .staffRM && alice.name == "Alice B" && alice.title == "RM" && alice.email == "alice@x.com")
            #expect(alice.createdAt == t0, "an update keeps created_at")
            #expect(alice.investors == ["invA"], "an update keeps the user's links")
            #expect(e.readDirectory { $0.users.count } == 1)
            let fields = try #require(e.readDirectory { $0.userFields("alice") })
            #expect(fields[field: "role"] == "staff_rm")
            #expect(fields.first { $0.name == "investors" }?.items == ["invA"])
        }
    }

    @Test func emailsAreUniqueCaseInsensitively() async throws {
        try await withEngine { e, _ in
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor, email: "A@x.com")))
            await peRefused(e, .exists, containing: "alice") {
                try await e.change(.userSet(UserProfile(id: "bob", role: .investor, email: "a@X.com")))
            }
            #expect(e.readDirectory { $0.users["bob"] } == nil)
            // The owner may change the case of its own address.
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor, email: "a@X.COM")))
            #expect(e.readDirectory { $0.users["alice"]?.email } == "a@X.COM")
            // A new address frees the old one.
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor, email: "new@x.com")))
            try await e.change(.userSet(UserProfile(id: "bob", role: .investor, email: "A@X.com")))
            #expect(e.readDirectory { $0.users["bob"]?.email } == "A@X.com")
            await peRefused(e, .exists) {
                try await e.change(.userSet(UserProfile(id: "carol", role: .investor, email: "NEW@x.com")))
            }
            // Removing the address (nil) frees it too.
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor)))
            try await e.change(.userSet(UserProfile(id: "carol", role: .investor, email: "new@X.com")))
        }
    }

    @Test func badUserInputIsInvalidAndChangesNothing() async throws {
        try await withEngine { e, _ in
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor, email: "alice@x.com")))
            let bad: [UserProfile] = [
                UserProfile(id: "", role: .investor),
                UserProfile(id: "has space", role: .investor),
                UserProfile(id: "quo\"te", role: .investor),
                UserProfile(id: String(repeating: "x", count: 1000), role: .investor),
                UserProfile(id: "bob", role: .investor, email: "nope"),
                UserProfile(id: "bob", role: .investor, email: "bob@nodot"),
                UserProfile(id: "bob", role: .investor, email: "@x.com"),
                UserProfile(id: "bob", role: .investor, email: "bob@"),
                UserProfile(id: "bob", role: .investor, email: "b@b@x.com"),
                UserProfile(id: "bob", role: .investor, email: "b ob@x.com"),
                UserProfile(id: "bob", role: .investor, name: "bad\u{01}name"),
                UserProfile(id: "bob", role: .investor, title: "line\nbreak"),
                // An update of an existing user with bad input leaves it as it was.
                UserProfile(id: "alice", role: .staffAdmin, email: "not-an-address"),
            ]
            for profile in bad {
                await peRefused(e, .invalid) { try await e.change(.userSet(profile)) }
            }
            #expect(e.readDirectory { $0.users.count } == 1)
            #expect(e.readDirectory { $0.users["alice"]?.role } == .investor)
            #expect(e.readDirectory { $0.users["alice"]?.email } == "alice@x.com")
        }
    }

    @Test func investorsCreateOnceKYCMovesAndBadFieldsAreInvalid() async throws {
        try await withEngine { e, _ in
            try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "Alpha LLC", type: "entity", country: "GB")))
            let a = try #require(e.readDirectory { $0.investors["invA"] })
            #expect(a.kycStatus == .pending && a.type == "entity" && a.country == "GB" && a.createdAt == t0 && a.users.isEmpty)
            await peRefused(e, .exists) {
                try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "Other")))
            }
            #expect(e.readDirectory { $0.investors["invA"]?.legalName } == "Alpha LLC")
            for bad in [InvestorRecord(id: "invB", legalName: "B", type: "trust"),
                        InvestorRecord(id: "invB", legalName: "B", country: "gb"),
                        InvestorRecord(id: "invB", legalName: "B", country: "GBR"),
                        InvestorRecord(id: "invB", legalName: "B", country: "G1"),
                        InvestorRecord(id: "invB", legalName: ""),
                        InvestorRecord(id: "inv B", legalName: "B")] {
                await peRefused(e, .invalid) { try await e.change(.investorCreated(bad)) }
            }
            #expect(e.readDirectory { $0.investors.count } == 1)
            try await e.change(.investorCreated(InvestorRecord(id: "invB", legalName: "Bee", type: "individual", country: "US")))

            for status in [KYCStatus.approved, .rejected, .pending, .approved] {
                try await e.change(.investorKYC(investor: "invA", status: status))
                #expect(e.readDirectory { $0.kyc("invA") } == status)
                #expect(e.readDirectory { $0.investorFields("invA")?[field: "kyc_status"] } == status.rawValue)
            }
            #expect(e.readDirectory { $0.kyc("invB") } == .pending, "KYC of one investor does not touch another")
            await peRefused(e, .notFound) { try await e.change(.investorKYC(investor: "ghost", status: .approved)) }
            await peRefused(e, .invalid) { try await e.change(.investorKYC(investor: "", status: .approved)) }
        }
    }

    @Test func linksAreManyToManyOnBothSides() async throws {
        try await withEngine { e, _ in
            for user in ["u1", "u2"] { try await e.change(.userSet(UserProfile(id: user, role: .investor))) }
            for inv in ["i2", "i1"] { try await e.change(.investorCreated(InvestorRecord(id: inv, legalName: inv))) }
            try await e.change(.investorLinked(investor: "i2", user: "u1"))
            try await e.change(.investorLinked(investor: "i1", user: "u1"))
            try await e.change(.investorLinked(investor: "i1", user: "u2"))
            try await e.change(.investorLinked(investor: "i2", user: "u2"))
            // Linking again is a no-op (no duplicate on either side).
            try await e.change(.investorLinked(investor: "i1", user: "u1"))
            func sides() -> ([String], [String], [String], [String]) {
                e.readDirectory { d in
                    (d.users["u1"]!.investors, d.users["u2"]!.investors, d.investors["i1"]!.users, d.investors["i2"]!.users)
                }
            }
            var (u1, u2, i1, i2) = sides()
            #expect(u1 == ["i1", "i2"] && u2 == ["i1", "i2"] && i1 == ["u1", "u2"] && i2 == ["u1", "u2"])

            try await e.change(.investorUnlinked(investor: "i1", user: "u1"))
            (u1, u2, i1, i2) = sides()
            #expect(u1 == ["i2"] && u2 == ["i1", "i2"] && i1 == ["u2"] && i2 == ["u1", "u2"])

            await peRefused(e, .notFound, containing: "not linked") { try await e.change(.investorUnlinked(investor: "i1", user: "u1")) }
            await peRefused(e, .notFound) { try await e.change(.investorUnlinked(investor: "ghost", user: "u1")) }
            await peRefused(e, .notFound) { try await e.change(.investorUnlinked(investor: "i1", user: "ghost")) }
            await peRefused(e, .notFound) { try await e.change(.investorLinked(investor: "ghost", user: "u1")) }
            await peRefused(e, .notFound) { try await e.change(.investorLinked(investor: "i1", user: "ghost")) }
            await peRefused(e, .invalid) { try await e.change(.investorLinked(investor: "i1", user: "bad user")) }
            (u1, u2, i1, i2) = sides()
            #expect(u1 == ["i2"] && i1 == ["u2"])
        }
    }

    @Test func tokensResolvePrincipalsThatFollowLinksKYCAndRevocation() async throws {
        try await withEngine { e, _ in
            await peRefused(e, .notFound) { try await e.createToken(user: "ghost") }
            await peRefused(e, .invalid) { try await e.createToken(user: "") }
            try await e.change(.userSet(UserProfile(id: "alice", role: .investor)))
            try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "Alpha")))
            let token = try await e.createToken(user: "alice")
            #expect(peIsHex64(token), "a token is 64 hex characters: \(token)")
            // Only the hash is kept.
            #expect(e.readDirectory { $0.tokens[token] } == nil)
            #expect(e.readDirectory { $0.tokens[SHA256.hex(token)]?.user } == "alice")

            var p = try #require(e.principal(forToken: token))
            #expect(p.user == "alice" && p.role == .investor && p.investors.isEmpty)
            let generation = e.directoryGeneration
            try await e.change(.investorLinked(investor: "invA", user: "alice"))
            #expect(e.directoryGeneration > generation, "a directory change bumps the generation")
            p = try #require(e.principal(forToken: token))
            #expect(p.investors == ["invA": .pending])
            #expect(p.actsFor("invA") && !p.actsFor("invB"))
            try await e.change(.investorKYC(investor: "invA", status: .approved))
            #expect(e.principal(forToken: token)?.investors == ["invA": .approved])
            try await e.change(.userSet(UserProfile(id: "alice", role: .staffOps)))
            #expect(e.principal(forToken: token)?.role == .staffOps)
            try await e.change(.investorUnlinked(investor: "invA", user: "alice"))
            #expect(e.principal(forToken: token)?.investors == [:])

            let second = try await e.createToken(user: "alice")
            #expect(second != token)
            try await e.change(.userSet(UserProfile(id: "bob", role: .investor)))
            let bobs = try await e.createToken(user: "bob")
            #expect(e.principal(forToken: second)?.user == "alice")
            try await e.change(.tokensRevoked(user: "alice"))
            #expect(e.principal(forToken: token) == nil)
            #expect(e.principal(forToken: second) == nil)
            #expect(e.principal(forToken: bobs)?.user == "bob", "revoking one user's tokens keeps the others'")
            #expect(e.principal(forToken: "not-a-token") == nil)
            await peRefused(e, .notFound) { try await e.change(.tokensRevoked(user: "ghost")) }
            // The user stays; a new token works again.
            let third = try await e.createToken(user: "alice")
            #expect(e.principal(forToken: third)?.user == "alice")
        }
    }

    @Test func legacyTokenFormRegistersUsersAndMissingInvestors() async throws {
        try await withEngine { e, _ in
            try await e.change(.investorCreated(InvestorRecord(id: "invOld", legalName: "Old Ltd", kycStatus: .approved)))
            let token = try await e.createToken(user: "lg", role: "co_investor", investors: ["invNew", "invOld", "invNew"])
            #expect(peIsHex64(token))
            let d = e.readDirectory { $0 }
            let user = try #require(d.users["lg"])
            #expect(user.role == .investor, "a deal-member role makes an investor user")
            #expect(user.investors == ["invNew", "invOld"])
            let new = try #require(d.investors["invNew"])
            #expect(new.kycStatus == .pending && new.legalName == "invNew" && new.users == ["lg"])
            #expect(d.investors["invOld"]?.kycStatus == .approved, "an existing investor keeps its KYC")
            #expect(d.investors["invOld"]?.users == ["lg"])
            #expect(e.principal(forToken: token)?.investors == ["invNew": .pending, "invOld": .approved])

            // Staff roles name the user's global role.
            let staff = try await e.createToken(user: "op", role: "staff_ops", investors: [])
            #expect(e.principal(forToken: staff)?.role == .staffOps)
            // A viewer needs no investor.
            let viewer = try await e.createToken(user: "vw", role: "viewer", investors: [])
            #expect(e.principal(forToken: viewer)?.role == .investor)

            await peRefused(e, .invalid) { try await e.createToken(user: "x", role: "boss", investors: ["invOld"]) }
            await peRefused(e, .invalid) { try await e.createToken(user: "x", role: "lawyer", investors: []) }
            await peRefused(e, .invalid) { try await e.createToken(user: "x", role: "investor", investors: []) }
            await peRefused(e, .invalid) { try await e.createToken(user: "x", role: "investor", investors: ["bad id"]) }
            await peRefused(e, .invalid) { try await e.createToken(user: "bad user", role: "investor", investors: ["invOld"]) }
            #expect(e.readDirectory { $0.users["x"] } == nil)
        }
    }

    @Test func legacyTokenRecordAppliesWholeOrNotAtAll() async throws {
        try await withEngine { e, _ in
            try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "A")))
            let hash = SHA256.hex("a token")
            try await e.change(.legacyToken(user: "first", role: .investor, investors: ["invA"], tokenHash: hash))
            // The same token again: refused before anything applies (no user, no investor, no link).
            await peRefused(e, .exists) {
                try await e.change(.legacyToken(user: "other", role: .investor, investors: ["invZ", "invA"], tokenHash: hash))
            }
            #expect(e.readDirectory { $0.users["other"] } == nil)
            #expect(e.readDirectory { $0.investors["invZ"] } == nil)
            #expect(e.readDirectory { $0.investors["invA"]?.users } == ["first"])
            // A bad field refuses it too.
            await peRefused(e, .invalid) {
                try await e.change(.legacyToken(user: "other", role: .investor, investors: ["bad id"], tokenHash: SHA256.hex("b")))
            }
            // A failing check refuses a change before it applies.
            await peRefused(e, .exists) {
                try await e.change(.userSet(UserProfile(id: "newbie", role: .investor))) { d throws(EngineError) in
                    if d.investors["invA"] != nil { throw EngineError(.exists, "precondition") }
                }
            }
            #expect(e.readDirectory { $0.users["newbie"] } == nil)
            try await e.change(.userSet(UserProfile(id: "newbie", role: .investor)))
            try await e.change(.investorLinked(investor: "invA", user: "newbie"))
            #expect(e.readDirectory { $0.users["newbie"]?.investors } == ["invA"])
            // A legacy token for an existing user adds links and keeps the old ones and the old token.
            let first = try await e.createToken(user: "newbie", role: "co_investor", investors: ["invB"])
            let second = try await e.createToken(user: "newbie", role: "investor", investors: ["invC"])
            #expect(e.readDirectory { $0.users["newbie"]?.investors } == ["invA", "invB", "invC"])
            #expect(e.principal(forToken: first)?.user == "newbie" && e.principal(forToken: second)?.user == "newbie")
        }
    }

    @Test func racingUsersForOneEmailLeaveOneOwner() async throws {
        try await withEngine { e, _ in
            let results = await withTaskGroup(of: Bool.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        do {
                            try await e.change(.userSet(UserProfile(id: "racer\(i)", role: .investor, email: i % 2 == 0 ? "Same@x.com" : "same@X.COM")))
                            return true
                        } catch { return false }
                    }
                }
                var out: [Bool] = []
                for await r in group { out.append(r) }
                return out
            }
            #expect(results.filter { $0 }.count == 1)
            #expect(e.readDirectory { $0.users.count } == 1)
            #expect(e.readDirectory { $0.emails.count } == 1)
        }
    }

    @Test func vehiclesAndDealsThatNameThem() async throws {
        try await withEngine { e, _ in
            try await e.change(.vehicleCreated(Vehicle(id: "v1", name: "Fund I SPV", type: .spv, domicile: "KY", currency: "EUR")))
            let v = try #require(e.readDirectory { $0.vehicles["v1"] })
            #expect(v.type == .spv && v.currency == "EUR" && v.createdAt == t0)
            await peRefused(e, .exists) { try await e.change(.vehicleCreated(Vehicle(id: "v1", name: "Again"))) }
            await peRefused(e, .invalid) { try await e.change(.vehicleCreated(Vehicle(id: "v2", name: "V", currency: "usd"))) }
            await peRefused(e, .invalid) { try await e.change(.vehicleCreated(Vehicle(id: "v 2", name: "V"))) }
            await peRefused(e, .invalid) { try await e.change(.vehicleCreated(Vehicle(id: "v2", name: "V\u{07}"))) }
            #expect(e.readDirectory { $0.vehicles.count } == 1)

            var spec = DealSpec(id: "d1", offerUnitPrice: p("10"))
            spec.vehicle = "v1"
            try await e.createDeal(spec)
            #expect(try await peFields(e, "d1", .getDeal)[field: "vehicle_id"] == "v1")
            var ghost = DealSpec(id: "d2")
            ghost.vehicle = "nope"
            await peRefused(e, .notFound) { try await e.createDeal(ghost) }
            #expect(e.deal("d2") == nil)
        }
    }

    @Test func subscriptionsMoveOnlyFromPending() async throws {
        try await withEngine { e, _ in
            try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "Alpha")))
            try await e.change(.vehicleCreated(Vehicle(id: "v1", name: "V1")))
            let amount = try Money.parse("250000.50")
            #expect(e.readDirectory { $0.nextSubscriptionID() } == "sub1")
            await peRefused(e, .notFound, containing: "investor") {
                try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "ghost", vehicle: "v1", commitment: amount)))
            }
            await peRefused(e, .notFound, containing: "vehicle") {
                try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "invA", vehicle: "ghost", commitment: amount)))
            }
            await peRefused(e, .invalid) {
                try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "invA", vehicle: "v1", commitment: Money(raw: -1))))
            }
            await peRefused(e, .invalid) {
                try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "invA", vehicle: "v1", commitment: amount, currency: "X")))
            }
            try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "invA", vehicle: "v1", commitment: amount)))
            #expect(e.readDirectory { $0.subscriptions["sub1"]?.status } == .pending)
            #expect(e.readDirectory { $0.subscriptionFields("sub1")?[field: "commitment"] } == amount.description)
            await peRefused(e, .exists) {
                try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "invA", vehicle: "v1", commitment: amount)))
            }
            #expect(e.readDirectory { $0.nextSubscriptionID() } == "sub2")
            try await e.change(.subscriptionCreated(Subscription(id: "sub2", investor: "invA", vehicle: "v1", commitment: amount)))

            try await e.change(.subscriptionStatus(id: "sub1", status: .active))
            #expect(e.readDirectory { $0.subscriptions["sub1"]?.status } == .active)
            await peRefused(e, .conflict) { try await e.change(.subscriptionStatus(id: "sub1", status: .cancelled)) }
            await peRefused(e, .conflict) { try await e.change(.subscriptionStatus(id: "sub1", status: .pending)) }
            await peRefused(e, .conflict) { try await e.change(.subscriptionStatus(id: "sub2", status: .pending)) }
            try await e.change(.subscriptionStatus(id: "sub2", status: .cancelled))
            #expect(e.readDirectory { $0.subscriptions["sub2"]?.status } == .cancelled)
            await peRefused(e, .conflict) { try await e.change(.subscriptionStatus(id: "sub2", status: .active)) }
            await peRefused(e, .notFound) { try await e.change(.subscriptionStatus(id: "sub9", status: .active)) }
            #expect(e.readDirectory { $0.nextSubscriptionID() } == "sub3")
        }
    }

    @Test func shareSourcesAndLotsThatNameThem() async throws {
        try await withEngine { e, _ in
            try await e.change(.sourceCreated(ShareSource(id: "src1", kind: .company, counterparty: "Acme", notes: "primary")))
            #expect(e.readDirectory { $0.sourceFields("src1")?[field: "counterparty_name"] } == "Acme")
            await peRefused(e, .exists) { try await e.change(.sourceCreated(ShareSource(id: "src1", kind: .fund))) }
            await peRefused(e, .invalid) { try await e.change(.sourceCreated(ShareSource(id: "", kind: .fund))) }
            try await openDeal(e)
            await peRefused(e, .notFound, containing: "share source") {
                try await e.addLot(deal: "d1", LotSpec(id: "L9", unitsTotal: u("10"), unitCost: p("1"), source: "nope"))
            }
            #expect(try await e.inventory(deal: "d1").lots.count == 1)
            // The refused lot's id was not taken.
            try await e.addLot(deal: "d1", LotSpec(id: "L9", unitsTotal: u("10"), unitCost: p("1"), source: "src1"))
            #expect(try await peFields(e, "d1", .getLot("L9"))[field: "source"] == "src1")
        }
    }
}

// MARK: - Memberships

@Suite("PeopleEngine: deal memberships")
struct PeopleEngineMembershipTests {
    @Test func addNeedsKnownUserAndInvestorReAddUpdatesRemoveEnds() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            await peRefused(e, .notFound, containing: "user") {
                try await pePeople(e, .addMember(user: "ghost", role: .investor, investor: "invA"), as: peOps)
            }
            await peRefused(e, .notFound, containing: "investor") {
                try await pePeople(e, .addMember(user: "alice", role: .investor, investor: "ghost"), as: peOps)
            }
            await peRefused(e, .invalid) { try await pePeople(e, .addMember(user: "bad user", role: .investor, investor: nil), as: peOps) }
            try await pePeople(e, .addMember(user: "alice", role: .investor, investor: "invA"), as: peOps)
            var m = try await peFields(e, .people(.getMember(user: "alice")))
            #expect(m[field: "role"] == "investor" && m[field: "investor"] == "invA" && m[field: "invited_by"] == "ops1")
            #expect(m[field: "accepted_at"] == String(t0) && m[field: "invited_at"] == String(t0) && m[field: "deal"] == "d1")

            clock.advance(millis: minute)
            // Re-adding the same way changes nothing.
            let same = await e.digest()
            try await pePeople(e, .addMember(user: "alice", role: .investor, investor: "invA"), as: peOps)
            #expect(await e.digest() == same)
            // Re-adding with another role updates the row in place.
            try await pePeople(e, .addMember(user: "alice", role: .coInvestor, investor: nil), as: peOps2)
            m = try await peFields(e, .people(.getMember(user: "alice")))
            #expect(m[field: "role"] == "co_investor" && m[field: "investor"] == nil)
            #expect(await e.deal("d1")!.read { $0.people.members.count } == 1, "a re-add updates the row, no new one")

            try await pePeople(e, .removeMember(user: "alice"), as: peOps)
            await peRefused(e, .notFound) { try await pePeople(e, .getMember(user: "alice")) }
            await peRefused(e, .notFound) { try await pePeople(e, .removeMember(user: "alice"), as: peOps) }
            await peRefused(e, .notFound) { try await pePeople(e, .removeMember(user: "bob"), as: peOps) }
            await peRefused(e, .notFound) { try await pePeople(e, .removeMember(user: "ghost"), as: peOps) }
            // A removed member can no longer act in the deal.
            await peRefused(e, .noPermission, containing: "not a member") {
                try await peHold(e, holdReq("1", investor: "invA"), as: pePrincipal(e, "alice"))
            }
            // Added again: a new row.
            try await pePeople(e, .addMember(user: "alice", role: .viewer, investor: nil), as: peOps)
            #expect(try await peFields(e, .people(.getMember(user: "alice")))[field: "role"] == "viewer")
            #expect(await e.deal("d1")!.read { $0.people.members.count } == 2)
        }
    }

    @Test func listWalksEveryPresentMemberOnceWithCountOne() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            let users = ["alice", "bob", "carol", "dave", "eve", "rm1"]
            for user in users { try await pePeople(e, .addMember(user: user, role: .viewer, investor: nil), as: peOps) }
            try await pePeople(e, .removeMember(user: "bob"), as: peOps)
            try await pePeople(e, .removeMember(user: "rm1"), as: peOps)  // the last slot
            try await pePeople(e, .addMember(user: "ops2", role: .versoStaff, investor: nil), as: peOps)
            let expected = ["alice", "carol", "dave", "eve", "ops2"]

            var seen: [String] = []
            var cursor: UInt64 = 0
            var pages = 0
            repeat {
                let page = try await pePage(e, .listMembers(cursor: cursor, count: 1), as: peOps)
                #expect(page.rows.count <= 1)
                seen += page.rows.compactMap { $0[field: "user"] }
                cursor = try #require(UInt64(page.cursor))
                pages += 1
            } while cursor != 0 && pages < 50
            #expect(cursor == 0, "the walk ends with cursor 0")
            #expect(seen == expected, "every present member once, in slot order, removed ones skipped")

            let all = try await pePage(e, .listMembers(cursor: 0, count: 100), as: peOps)
            #expect(all.cursor == "0")
            #expect(all.rows.compactMap { $0[field: "user"] } == expected)
            // A cursor past the end is the end.
            let past = try await pePage(e, .listMembers(cursor: 1_000, count: 10), as: peOps)
            #expect(past.cursor == "0" && past.rows.isEmpty)
            // A member who is not staff sees only its own row.
            let own = try await pePage(e, .listMembers(cursor: 0, count: 100), as: pePrincipal(e, "carol"))
            #expect(own.rows.compactMap { $0[field: "user"] } == ["carol"])
            // And may read only its own membership.
            await peRefused(e, .noPermission) { try await pePeople(e, .getMember(user: "alice"), as: pePrincipal(e, "carol")) }
            #expect(try await peFields(e, .people(.getMember(user: "carol")), as: pePrincipal(e, "carol"))[field: "user"] == "carol")
        }
    }
}

// MARK: - Invites

@Suite("PeopleEngine: invite links")
struct PeopleEngineInviteTests {
    @Test func acceptMakesAMembershipWithTheInvitesRole() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            let (id, token) = try await peInvite(e, role: .coInvestor, ttl: 3600, uses: 2)
            #expect(peIsHex64(token), "invite token: \(token)")
            #expect(id.hasPrefix("i"))
            var fields = try await peFields(e, .people(.getInvite(id: id)))
            for f in fields {
                #expect(f.value != token && f.value != SHA256.hex(token), "field \(f.name) shows the token or its hash")
            }
            #expect(fields[field: "status"] == "active" && fields[field: "used_count"] == "0" && fields[field: "max_uses"] == "2")
            #expect(fields[field: "role"] == "co_investor" && fields[field: "created_by"] == "ops1")
            #expect(fields[field: "expires_at"] == String(t0 + 3_600_000))
            // The token routes to the deal through the engine-wide index; an unknown one does not.
            let number = e.deal("d1")!.number
            #expect(e.indexes.inviteTokens.lookup(SHA256.hex(token))?.deal == number)
            #expect(e.indexes.inviteTokens.lookup(SHA256.hex("unknown")) == nil)

            clock.advance(millis: minute)
            try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(token), investor: "invA"), as: pePrincipal(e, "alice"))
            let m = try await peFields(e, .people(.getMember(user: "alice")))
            #expect(m[field: "role"] == "co_investor")
            #expect(m[field: "investor"] == "invA")
            #expect(m[field: "accepted_at"] == String(t0 + minute))
            #expect(m[field: "invited_at"] == String(t0))
            #expect(m[field: "invited_by"] == "ops1")
            fields = try await peFields(e, .people(.getInvite(id: id)))
            #expect(fields[field: "used_count"] == "1" && fields[field: "status"] == "active")

            // The new member acts by its role: co_investor holds for its investor.
            _ = try await peHold(e, holdReq("5", investor: "invA"), as: pePrincipal(e, "alice"))

            try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(token), investor: nil), as: pePrincipal(e, "bob"))
            fields = try await peFields(e, .people(.getInvite(id: id)))
            #expect(fields[field: "used_count"] == "2" && fields[field: "status"] == "used_up")
            #expect(try await peFields(e, .people(.getMember(user: "bob")))[field: "investor"] == nil)
            await peRefused(e, .conflict) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(token), investor: nil), as: pePrincipal(e, "carol"))
            }
            await peRefused(e, .notFound) { try await pePeople(e, .getMember(user: "carol")) }
        }
    }

    @Test func refusedAcceptsChangeNothing() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            let alice = pePrincipal(e, "alice")
            // Already a member.
            try await pePeople(e, .addMember(user: "bob", role: .investor, investor: "invB"), as: peOps)
            let open = try await peInvite(e, role: .viewer, ttl: 86_400, uses: 10)
            await peRefused(e, .conflict, containing: "already a member") {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(open.token), investor: nil), as: pePrincipal(e, "bob"))
            }
            // An investor the user is not linked to.
            await peRefused(e, .noPermission) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(open.token), investor: "invB"), as: alice)
            }
            await peRefused(e, .notFound) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(open.token), investor: "ghost"), as: alice)
            }
            // A user the directory does not know.
            await peRefused(e, .notFound) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(open.token), investor: nil), as: Principal(user: "stranger", role: .investor))
            }
            // No principal at all.
            await peRefused(e, .invalid) { try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(open.token), investor: nil)) }
            // Unknown token: not in the engine-wide index, not in the deal.
            let unknown = SHA256.hex("no-such-token")
            #expect(e.indexes.inviteTokens.lookup(unknown) == nil)
            await peRefused(e, .notFound) { try await pePeople(e, .acceptInvite(tokenHash: unknown, investor: nil), as: alice) }
            // An invite of another deal does not work here.
            try await openDeal(e, "d2")
            let other = try await peInvite(e, "d2", role: .viewer)
            #expect(e.indexes.inviteTokens.lookup(SHA256.hex(other.token))?.deal == e.deal("d2")!.number)
            await peRefused(e, .notFound) { try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(other.token), investor: nil), as: alice) }

            // Used up.
            let once = try await peInvite(e, role: .viewer, uses: 1)
            try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(once.token), investor: nil), as: pePrincipal(e, "carol"))
            await peRefused(e, .conflict) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(once.token), investor: nil), as: pePrincipal(e, "dave"))
            }
            // Revoked (revoking twice is fine; an unknown id is not).
            let revoked = try await peInvite(e, role: .viewer)
            try await pePeople(e, .revokeInvite(id: revoked.id), as: peOps)
            let afterRevoke = await e.digest()
            try await pePeople(e, .revokeInvite(id: revoked.id), as: peOps)
            #expect(await e.digest() == afterRevoke)
            #expect(try await peFields(e, .people(.getInvite(id: revoked.id)))[field: "status"] == "revoked")
            await peRefused(e, .expired) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(revoked.token), investor: nil), as: alice)
            }
            await peRefused(e, .notFound) { try await pePeople(e, .revokeInvite(id: "i99.99"), as: peOps) }
            await peRefused(e, .notFound) { try await pePeople(e, .getInvite(id: "nope")) }
            // Expired.
            let short = try await peInvite(e, role: .viewer, ttl: 60)
            clock.advance(millis: 60_001)
            #expect(try await peFields(e, .people(.getInvite(id: short.id)))[field: "status"] == "expired")
            await peRefused(e, .expired) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(short.token), investor: nil), as: alice)
            }
            await peRefused(e, .notFound) { try await pePeople(e, .getMember(user: "alice")) }
            // Bad TTL and USES.
            await peRefused(e, .invalid) { try await peInvite(e, role: .viewer, ttl: 0) }
            await peRefused(e, .invalid) { try await peInvite(e, role: .viewer, ttl: PeopleLimits.maxInviteTTLSeconds + 1) }
            await peRefused(e, .invalid) { try await peInvite(e, role: .viewer, uses: 0) }
            // A closed deal makes no invites and takes none.
            try await e.setStatus(deal: "d1", .cancelled)
            await peRefused(e, .closed) { try await peInvite(e, role: .viewer) }
            await peRefused(e, .closed) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(open.token), investor: nil), as: pePrincipal(e, "eve"))
            }
        }
    }

    @Test func anInviteWorksUntilTheMillisecondItExpires() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            let link = try await peInvite(e, role: .viewer, ttl: 60, uses: 5)
            clock.advance(millis: 60_000 - 1)
            try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(link.token), investor: nil), as: pePrincipal(e, "alice"))
            clock.advance(millis: 1)
            #expect(try await peFields(e, .people(.getInvite(id: link.id)))[field: "status"] == "expired")
            await peRefused(e, .expired) {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(link.token), investor: nil), as: pePrincipal(e, "bob"))
            }
        }
    }

    @Test func fiftyUsersRacingForThreeUsesGetExactlyThree() async throws {
        try await withEngine { e, _ in
            for i in 0..<50 { try await e.change(.userSet(UserProfile(id: "racer\(i)", role: .investor))) }
            try await openDeal(e)
            let (id, token) = try await peInvite(e, role: .viewer, ttl: 3600, uses: 3)
            let actor = try #require(e.deal("d1"))
            let hash = SHA256.hex(token)
            let codes = await withTaskGroup(of: String.self) { group in
                for i in 0..<50 {
                    group.addTask {
                        let r = await actor.execute([.people(.acceptInvite(tokenHash: hash, investor: nil))],
                                                    as: Principal(user: "racer\(i)", role: .investor))
                        return r.replies[0].error?.code.rawValue ?? "OK"
                    }
                }
                var out: [String] = []
                for await c in group { out.append(c) }
                return out
            }
            #expect(codes.filter { $0 == "OK" }.count == 3)
            #expect(codes.filter { $0 == "CONFLICT" }.count == 47)
            let members = try await pePage(e, .listMembers(cursor: 0, count: 100), as: peOps)
            #expect(members.rows.count == 3)
            #expect(Set(members.rows.compactMap { $0[field: "user"] }).count == 3)
            let fields = try await peFields(e, .people(.getInvite(id: id)))
            #expect(fields[field: "used_count"] == "3" && fields[field: "status"] == "used_up")
        }
    }
}

// MARK: - Access rules

@Suite("PeopleEngine: access rules in the deal actor")
struct PeopleEngineAccessTests {
    @Test func nonMembersAreRefusedAndDoNotSeeTheDeal() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            let eve = pePrincipal(e, "eve")  // linked to invA, KYC approved, not a member
            #expect(eve.investors == ["invA": .approved])
            await peRefused(e, .noPermission, containing: "not a member of deal") { try await peHold(e, holdReq("1", investor: "invA"), as: eve) }
            await peRefused(e, .noPermission, containing: "not a member of deal") { try await peCommit(e, investor: "invA", units: "1", as: eve) }
            await peRefused(e, .notFound) { try await peRun(e, .getDeal, as: eve) }
            await peRefused(e, .notFound) { try await peRun(e, .inventory, as: eve) }
            await peRefused(e, .notFound) { try await peRun(e, .getLot("L1"), as: eve) }
            await peRefused(e, .noPermission) { try await peInvite(e, role: .viewer, as: eve) }
            // The same user through a token.
            let token = try await e.createToken(user: "eve")
            let fromToken = try #require(e.principal(forToken: token))
            await peRefused(e, .noPermission, containing: "not a member of deal") { try await peHold(e, holdReq("1", investor: "invA"), as: fromToken) }
            await peRefused(e, .notFound, containing: "deal d1 not found") { try await peRun(e, .getDeal, as: fromToken) }
        }
    }

    @Test(arguments: [DealMemberRole.viewer, .lawyer, .banker, .spouse, .advisor, .introducer, .versoStaff])
    func readingRolesReadButDoNotHoldOrCommit(role: DealMemberRole) async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            try await pePeople(e, .addMember(user: "alice", role: role, investor: "invA"), as: peOps)
            let alice = pePrincipal(e, "alice")
            await peRefused(e, .noPermission, containing: "reads only") { try await peHold(e, holdReq("1", investor: "invA"), as: alice) }
            await peRefused(e, .noPermission) { try await peCommit(e, investor: "invA", units: "1", as: alice) }
            #expect(try await peFields(e, .getDeal, as: alice)[field: "id"] == "d1")
            _ = try await peRun(e, .inventory, as: alice)
            _ = try await peRun(e, .getLot("L1"), as: alice)
        }
    }

    @Test func holdingMemberMustActForTheInvestorWithKYCApproved() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            for (user, inv) in [("alice", "invA"), ("bob", "invB"), ("carol", "invP"), ("dave", "invR")] {
                try await pePeople(e, .addMember(user: user, role: .investor, investor: inv), as: peOps)
            }
            // Not linked: alice for invB, and a principal without links.
            let alice = pePrincipal(e, "alice")
            await peRefused(e, .noPermission, containing: "does not act for investor invB") { try await peHold(e, holdReq("1", investor: "invB"), as: alice) }
            await peRefused(e, .noPermission, containing: "does not act for investor") { try await peCommit(e, investor: "invB", units: "1", as: alice) }
            let unlinked = Principal(user: "alice", role: .investor)
            await peRefused(e, .noPermission) { try await peHold(e, holdReq("1", investor: "invA"), as: unlinked) }
            // KYC pending and rejected.
            let carol = pePrincipal(e, "carol")
            await peRefused(e, .noPermission, containing: "KYC pending for investor") { try await peHold(e, holdReq("1", investor: "invP"), as: carol) }
            await peRefused(e, .noPermission, containing: "KYC pending for investor") { try await peCommit(e, investor: "invP", units: "1", as: carol) }
            let dave = pePrincipal(e, "dave")
            await peRefused(e, .noPermission, containing: "KYC rejected for investor") { try await peHold(e, holdReq("1", investor: "invR"), as: dave) }
            await peRefused(e, .noPermission, containing: "KYC rejected for investor") { try await peCommit(e, investor: "invR", amount: "100", as: dave) }

            // KYC approved later: the refreshed principal holds.
            try await e.change(.investorKYC(investor: "invP", status: .approved))
            _ = try await peHold(e, holdReq("1", investor: "invP"), as: pePrincipal(e, "carol"))

            // Everything right: the hold is placed and records its creator.
            let hold = try await peHold(e, holdReq("10", investor: "invA"), as: alice)
            #expect(try await e.holdFields(hold)[field: "created_by"] == "alice")
            #expect(try await e.lot("d1", "L1").unitsHeld == u("11"))
            // Members read their own investors' rows, not others'.
            #expect(try await peFields(e, .getHold(hold), as: alice)[field: "investor"] == "invA")
            await peRefused(e, .noPermission) { try await peRun(e, .getHold(hold), as: pePrincipal(e, "bob")) }
            await peRefused(e, .noPermission) { try await peRun(e, .release(hold: hold), as: pePrincipal(e, "bob")) }
            // A member does not allocate for someone else, nor approve.
            let c = try await peCommit(e, investor: "invA", units: "3", as: alice)
            #expect(try await peCommitment(e, c)[field: "created_by"] == "alice")
            await peRefused(e, .noPermission) { try await pePeople(e, .commitStatus(id: c, to: .underReview), as: alice) }
            await peRefused(e, .noPermission) { try await pePeople(e, .commitStatus(id: c, to: .cancelled), as: pePrincipal(e, "bob")) }
            try await pePeople(e, .commitStatus(id: c, to: .cancelled), as: alice)
            #expect(try await peCommitment(e, c)[field: "status"] == "cancelled")
            let allocation = try await peID(e, .allocate(hold: hold, id: nil), as: alice)
            await peRefused(e, .noPermission) { try await peRun(e, .approve(allocation: allocation), as: alice) }
        }
    }

    @Test func staffHoldForAnyInvestorOnANormalDeal() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            _ = try await peHold(e, holdReq("5", investor: "never-registered"), as: peOps)
            _ = try await peHold(e, holdReq("5", investor: "invP"), as: Principal(user: "rm1", role: .staffRM))
            _ = try await peCommit(e, investor: "never-registered", units: "5", as: peOps)
            _ = try await peHold(e, holdReq("5", investor: "also-unregistered"))  // in process
            #expect(try await e.lot("d1", "L1").unitsHeld == u("15"))
        }
    }

    @Test func kycRequiredDealGatesEveryHoldAndCommitment() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            var spec = DealSpec(id: "dk", offerUnitPrice: p("10"))
            spec.kycRequired = true
            try await e.createDeal(spec)
            try await e.addLot(deal: "dk", LotSpec(id: "dk-L1", unitsTotal: u("100"), unitCost: p("5")))
            #expect(try await peFields(e, "dk", .getDeal)[field: "kyc_required"] == "1")
            await peRefused(e, .noPermission, containing: "not registered") { try await peHold(e, "dk", holdReq("1", investor: "unregistered"), as: peOps) }
            await peRefused(e, .noPermission, containing: "not registered") { try await e.hold(deal: "dk", holdReq("1", investor: "unregistered")) }
            await peRefused(e, .noPermission, containing: "KYC pending for investor") { try await peHold(e, "dk", holdReq("1", investor: "invP"), as: peOps) }
            await peRefused(e, .noPermission, containing: "KYC rejected for investor") { try await peHold(e, "dk", holdReq("1", investor: "invR"), as: peOps) }
            await peRefused(e, .noPermission) { try await peCommit(e, "dk", investor: "unregistered", units: "1", as: peOps) }
            await peRefused(e, .noPermission) { try await peCommit(e, "dk", investor: "invP", units: "1", as: peOps) }
            _ = try await peHold(e, "dk", holdReq("1", investor: "invA"), as: peOps)
            _ = try await peCommit(e, "dk", investor: "invA", units: "1", as: peOps)
            // Members follow the member rules and the gate.
            try await pePeople(e, "dk", .addMember(user: "alice", role: .investor, investor: "invA"), as: peOps)
            _ = try await peHold(e, "dk", holdReq("2", investor: "invA"), as: pePrincipal(e, "alice"))
            // KYC withdrawn: the gate follows the directory.
            try await e.change(.investorKYC(investor: "invA", status: .rejected))
            await peRefused(e, .noPermission) { try await peHold(e, "dk", holdReq("1", investor: "invA"), as: peOps) }
            await peRefused(e, .noPermission) { try await peHold(e, "dk", holdReq("1", investor: "invA"), as: pePrincipal(e, "alice")) }
            #expect(try await e.lot("dk", "dk-L1").unitsHeld == u("3"))
        }
    }
}

// MARK: - Commitments

@Suite("PeopleEngine: commitments")
struct PeopleEngineCommitmentTests {
    @Test func unitsOrAmountExactlyOne() async throws {
        try await withEngine { e, _ in
            try await openDeal(e)
            await peRefused(e, .invalid) { try await peCommit(e, investor: "invA", units: "1", amount: "10") }
            await peRefused(e, .invalid) { try await peCommit(e, investor: "invA") }
            await peRefused(e, .invalid) {
                try await peRun(e, .people(.commit(investor: "invA", units: Units(raw: 0), amount: nil, id: nil)))
            }
            await peRefused(e, .invalid) {
                try await peRun(e, .people(.commit(investor: "invA", units: nil, amount: Money(raw: -5), id: nil)))
            }
            await peRefused(e, .invalid) { try await peCommit(e, investor: "bad inv", units: "1") }
            let byUnits = try await peCommit(e, investor: "invA", units: "12.5")
            let byAmount = try await peCommit(e, investor: "invB", amount: "5000.25")
            var f = try await peCommitment(e, byUnits)
            #expect(f[field: "requested_units"] == u("12.5").description && f[field: "requested_amount"] == nil)
            #expect(f[field: "status"] == "submitted" && f[field: "investor"] == "invA" && f[field: "created_at"] == String(t0))
            f = try await peCommitment(e, byAmount)
            #expect(f[field: "requested_amount"] == (try Money.parse("5000.25")).description && f[field: "requested_units"] == nil)
            await peRefused(e, .notFound) { try await peCommitment(e, "c-none") }
        }
    }

    @Test func statusMachineAndItsApproval() async throws {
        try await withEngine { e, clock in
            try await openDeal(e)
            func status(_ id: String) async throws -> String? { try await peCommitment(e, id)[field: "status"] }
            func move(_ id: String, _ to: CommitmentStatus, as p: Principal? = peOps) async throws {
                try await pePeople(e, .commitStatus(id: id, to: to), as: p)
            }

            // submitted -> under_review -> approved
            let a = try await peCommit(e, investor: "invA", units: "10", as: peOps)
            await peRefused(e, .conflict, containing: "COMMIT.REVIEW") { try await move(a, .approved) }
            await peRefused(e, .conflict) { try await move(a, .rejected) }
            try await move(a, .underReview)
            try await move(a, .underReview)  // the same state again: no-op
            #expect(try await status(a) == "under_review")
            clock.advance(millis: minute)
            try await move(a, .approved, as: peOps2)
            #expect(try await status(a) == "approved")
            let approvalA = try #require(try await peCommitment(e, a)[field: "approval"])
            var ap = try await peApproval(e, approvalA)
            #expect(ap[field: "status"] == "approved" && ap[field: "decided_by"] == "ops2" && ap[field: "decided_at"] == String(t0 + minute))
            #expect(ap[field: "entity_type"] == "deal_commitment" && ap[field: "entity_id"] == a)
            for to in [CommitmentStatus.underReview, .cancelled, .rejected, .submitted] {
                await peRefused(e, .conflict) { try await move(a, to) }
            }

            // under_review -> rejected
            let b = try await peCommit(e, investor: "invA", amount: "100")
            try await move(b, .underReview)
            try await move(b, .rejected)
            #expect(try await status(b) == "rejected")
            #expect(try await peApproval(e, try #require(try await peCommitment(e, b)[field: "approval"]))[field: "status"] == "rejected")
            for to in [CommitmentStatus.approved, .underReview, .cancelled, .submitted] {
                await peRefused(e, .conflict) { try await move(b, to) }
            }

            // submitted -> cancelled
            let c = try await peCommit(e, investor: "invA", units: "1")
            try await move(c, .cancelled)
            #expect(try await status(c) == "cancelled")
            ap = try await peApproval(e, try #require(try await peCommitment(e, c)[field: "approval"]))
            #expect(ap[field: "status"] == "rejected" && ap[field: "notes"] == "commitment cancelled")
            for to in [CommitmentStatus.underReview, .approved, .rejected, .submitted] {
                await peRefused(e, .conflict) { try await move(c, to) }
            }

            // under_review -> cancelled
            let d = try await peCommit(e, investor: "invA", units: "2")
            try await move(d, .underReview)
            await peRefused(e, .conflict) { try await move(d, .submitted) }
            try await move(d, .cancelled)
            #expect(try await status(d) == "cancelled")

            await peRefused(e, .notFound) { try await move("c-unknown", .underReview) }
        }
    }

    @Test func approvalDecideMovesAReviewedCommitment() async throws {
        try await withEngine { e, _ in
            try await openDeal(e)
            let c = try await peCommit(e, investor: "invA", units: "10")
            let approval = try #require(try await peCommitment(e, c)[field: "approval"])
            await peRefused(e, .conflict, containing: "COMMIT.REVIEW") {
                try await pePeople(e, .decideApproval(id: approval, approve: true, note: nil), as: peOps)
            }
            try await pePeople(e, .commitStatus(id: c, to: .underReview), as: peOps)
            try await pePeople(e, .decideApproval(id: approval, approve: true, note: "fine"), as: peOps2)
            #expect(try await peCommitment(e, c)[field: "status"] == "approved")
            let ap = try await peApproval(e, approval)
            #expect(ap[field: "status"] == "approved" && ap[field: "decided_by"] == "ops2" && ap[field: "notes"] == "fine")
            try await pePeople(e, .decideApproval(id: approval, approve: true, note: nil), as: peOps)
            await peRefused(e, .conflict) { try await pePeople(e, .decideApproval(id: approval, approve: false, note: nil), as: peOps) }

            let r = try await peCommit(e, investor: "invA", units: "3")
            let rApproval = try #require(try await peCommitment(e, r)[field: "approval"])
            try await pePeople(e, .commitStatus(id: r, to: .underReview), as: peOps)
            try await pePeople(e, .decideApproval(id: rApproval, approve: false, note: nil), as: peOps)
            #expect(try await peCommitment(e, r)[field: "status"] == "rejected")
        }
    }

    @Test func callerIDsAreIdempotent() async throws {
        try await withEngine { e, _ in
            try await openDeal(e)
            try await openDeal(e, "d2")
            let id = try await peCommit(e, investor: "invA", units: "10", id: "c-x")
            #expect(id == "c-x")
            let state = await e.digest()
            #expect(try await peCommit(e, investor: "invA", units: "10", id: "c-x") == "c-x")
            #expect(await e.digest() == state, "a retried commitment changes nothing")
            #expect(await e.deal("d1")!.read { $0.people.commitments.count } == 1)
            await peRefused(e, .conflict) { try await peCommit(e, investor: "invA", units: "11", id: "c-x") }
            await peRefused(e, .conflict) { try await peCommit(e, investor: "invB", units: "10", id: "c-x") }
            await peRefused(e, .conflict) { try await peCommit(e, investor: "invA", amount: "10", id: "c-x") }
            await peRefused(e, .conflict) { try await peCommit(e, "d2", investor: "invA", units: "10", id: "c-x") }
            await peRefused(e, .invalid) { try await peCommit(e, investor: "invA", units: "10", id: "c1.5") }
            // The retry answers the same even after the commitment moved on.
            try await pePeople(e, .commitStatus(id: "c-x", to: .cancelled))
            #expect(try await peCommit(e, investor: "invA", units: "10", id: "c-x") == "c-x")
            // Generated ids name their deal and slot.
            let generated = try await peCommit(e, investor: "invA", units: "1")
            #expect(generated.hasPrefix("c") && generated != "c-x")
            #expect(try await peCommitment(e, generated)[field: "investor"] == "invA")
            await peRefused(e, .notFound) { try await peCommitment(e, "d2", generated) }
        }
    }

    @Test func approvalsOpenWithTheDealsSLA() async throws {
        try await withEngine { e, clock in
            try await openDeal(e)
            clock.advance(millis: 5 * minute)
            let before = try await peCommit(e, investor: "invA", units: "1")
            let beforeApproval = try await peApproval(e, try #require(try await peCommitment(e, before)[field: "approval"]))
            let created0 = try #require(Int64(beforeApproval[field: "created_at"] ?? ""))
            #expect(created0 == t0 + 5 * minute)
            #expect(beforeApproval[field: "sla_breach_at"] == String(created0 + PeopleLimits.defaultSLASeconds * 1000))

            await peRefused(e, .invalid) { try await pePeople(e, .setSLA(entity: .commitment, seconds: PeopleLimits.minSLASeconds - 1), as: peOps) }
            await peRefused(e, .invalid) { try await pePeople(e, .setSLA(entity: .commitment, seconds: PeopleLimits.maxSLASeconds + 1), as: peOps) }
            try await pePeople(e, .setSLA(entity: .commitment, seconds: 3600), as: peOps)
            let same = await e.digest()
            try await pePeople(e, .setSLA(entity: .commitment, seconds: 3600), as: peOps)
            #expect(await e.digest() == same)
            clock.advance(millis: 7)
            let c = try await peCommit(e, investor: "invA", units: "1", as: peOps)
            let ap = try await peApproval(e, try #require(try await peCommitment(e, c)[field: "approval"]))
            let created = try #require(Int64(ap[field: "created_at"] ?? ""))
            #expect(created == t0 + 5 * minute + 7)
            #expect(ap[field: "sla_breach_at"] == String(created + 3600 * 1000))
            #expect(ap[field: "requested_by"] == "ops1" && ap[field: "status"] == "pending" && ap[field: "priority"] == "normal")
            // The earlier approval keeps its deadline.
            #expect(try await peApproval(e, beforeApproval[field: "id"]!)[field: "sla_breach_at"] == beforeApproval[field: "sla_breach_at"])
            // The allocation SLA is its own.
            let hold = try await peHold(e, holdReq("1"))
            let allocation = try await e.allocate(hold: hold)
            let allocationApproval = try #require(try await e.allocationFields(allocation)[field: "approval"])
            let aap = try await peApproval(e, allocationApproval)
            #expect(aap[field: "sla_breach_at"] == String(Int64(aap[field: "created_at"]!)! + PeopleLimits.defaultSLASeconds * 1000))
        }
    }
}

// MARK: - Approvals

@Suite("PeopleEngine: approvals")
struct PeopleEngineApprovalTests {
    /// d1 with 100 units; a hold of `units` for `investor` allocated by ops1. Returns (allocation, approval).
    private func allocation(_ e: Engine, _ units: String = "30", investor: String = "invA") async throws -> (String, String) {
        let hold = try await peHold(e, holdReq(units, investor: investor), as: peOps)
        let a = try await peID(e, .allocate(hold: hold, id: nil), as: peOps)
        let approval = try #require(try await e.allocationFields(a)[field: "approval"])
        return (a, approval)
    }

    @Test func everyAllocationOpensAnApprovalAndApproveClosesIt() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            let (a, approval) = try await allocation(e)
            #expect(approval.hasPrefix("p"))
            var ap = try await peApproval(e, approval)
            #expect(ap[field: "entity_type"] == "allocation" && ap[field: "entity_id"] == a)
            #expect(ap[field: "status"] == "pending" && ap[field: "requested_by"] == "ops1" && ap[field: "decided_by"] == nil)
            #expect(ap[field: "decided_at"] == nil && ap[field: "created_at"] == String(t0))
            clock.advance(millis: minute)
            try await peRun(e, .approve(allocation: a), as: peOps2)
            ap = try await peApproval(e, approval)
            #expect(ap[field: "status"] == "approved" && ap[field: "decided_by"] == "ops2" && ap[field: "decided_at"] == String(t0 + minute))
            #expect(try await e.allocationFields(a)[field: "approved_by"] == "ops2")
            // The approval then refuses the other decision, and takes the same one.
            try await pePeople(e, .decideApproval(id: approval, approve: true, note: nil), as: peOps)
            await peRefused(e, .conflict) { try await pePeople(e, .decideApproval(id: approval, approve: false, note: nil), as: peOps) }
            // REJECT of the allocation closes its approval too.
            let (b, bApproval) = try await allocation(e, "5")
            try await peRun(e, .reject(allocation: b), as: peOps)
            ap = try await peApproval(e, bApproval)
            #expect(ap[field: "status"] == "rejected" && ap[field: "decided_by"] == "ops1")
            await peRefused(e, .notFound) { try await peApproval(e, "p99.1") }
            await peRefused(e, .notFound) { try await peApproval(e, "junk") }
        }
    }

    @Test func decideApproveApprovesTheAllocationAndThePosition() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            let (a, approval) = try await allocation(e, "30")
            #expect(try await e.position(deal: "d1", investor: "invA").units == .zero)
            clock.advance(millis: minute)
            try await pePeople(e, .decideApproval(id: approval, approve: true, note: "ok"), as: peOps2)
            let af = try await e.allocationFields(a)
            #expect(af[field: "status"] == "approved" && af[field: "approved_by"] == "ops2" && af[field: "approved_at"] == String(t0 + minute))
            let position = try await e.position(deal: "d1", investor: "invA")
            #expect(position.units == u("30") && position.lastUpdated == t0 + minute)
            let ap = try await peApproval(e, approval)
            #expect(ap[field: "status"] == "approved" && ap[field: "decided_by"] == "ops2" && ap[field: "notes"] == "ok")
            #expect(try await e.lot("d1", "L1").unitsAllocated == u("30"))
            // Twice the same way is fine; the other way is not.
            try await pePeople(e, .decideApproval(id: approval, approve: true, note: nil), as: peOps)
            await peRefused(e, .conflict) { try await pePeople(e, .decideApproval(id: approval, approve: false, note: nil), as: peOps) }
            await peRefused(e, .conflict) { try await e.reject(allocation: a) }
            // The allocation settles as usual.
            try await e.settle(allocation: a)
            try await pePeople(e, .decideApproval(id: approval, approve: true, note: nil), as: peOps)
            await peRefused(e, .conflict) { try await pePeople(e, .decideApproval(id: approval, approve: false, note: nil), as: peOps) }
            #expect(try await e.allocationStatus(a) == "settled")
        }
    }

    @Test func decideRejectReturnsTheUnits() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            let (a, approval) = try await allocation(e, "40")
            #expect(try await e.lot("d1", "L1").unitsRemaining == u("60"))
            try await pePeople(e, .decideApproval(id: approval, approve: false, note: "no"), as: peOps)
            #expect(try await e.allocationStatus(a) == "rejected")
            let lot = try await e.lot("d1", "L1")
            #expect(lot.unitsRemaining == u("100") && lot.unitsAllocated == .zero)
            #expect(try await e.position(deal: "d1", investor: "invA").units == .zero)
            #expect(try await peApproval(e, approval)[field: "status"] == "rejected")
            try await pePeople(e, .decideApproval(id: approval, approve: false, note: nil), as: peOps)
            await peRefused(e, .conflict) { try await pePeople(e, .decideApproval(id: approval, approve: true, note: nil), as: peOps) }
            await peRefused(e, .conflict) { try await e.approve(allocation: a) }
            await peRefused(e, .invalid) { try await pePeople(e, .decideApproval(id: approval, approve: false, note: "bad\u{01}"), as: peOps) }
        }
    }

    @Test func assignAndPrioritizeOnlyPendingApprovalsToStaff() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            let (a, approval) = try await allocation(e)
            await peRefused(e, .invalid, containing: "staff") { try await pePeople(e, .assignApproval(id: approval, user: "alice"), as: peOps) }
            await peRefused(e, .notFound) { try await pePeople(e, .assignApproval(id: approval, user: "ghost"), as: peOps) }
            await peRefused(e, .notFound) { try await pePeople(e, .assignApproval(id: "p1.99", user: "rm1"), as: peOps) }
            try await pePeople(e, .assignApproval(id: approval, user: "rm1"), as: peOps)
            let same = await e.digest()
            try await pePeople(e, .assignApproval(id: approval, user: "rm1"), as: peOps)
            #expect(await e.digest() == same)
            try await pePeople(e, .prioritizeApproval(id: approval, priority: .high), as: peOps)
            var ap = try await peApproval(e, approval)
            #expect(ap[field: "assigned_to"] == "rm1" && ap[field: "priority"] == "high")
            try await pePeople(e, .assignApproval(id: approval, user: "ops2"), as: peOps)
            try await pePeople(e, .prioritizeApproval(id: approval, priority: .low), as: peOps)
            ap = try await peApproval(e, approval)
            #expect(ap[field: "assigned_to"] == "ops2" && ap[field: "priority"] == "low")
            try await e.approve(allocation: a)
            await peRefused(e, .conflict) { try await pePeople(e, .assignApproval(id: approval, user: "rm1"), as: peOps) }
            await peRefused(e, .conflict) { try await pePeople(e, .prioritizeApproval(id: approval, priority: .high), as: peOps) }
            // Members do not assign.
            try await pePeople(e, .addMember(user: "alice", role: .investor, investor: "invA"), as: peOps)
            let (_, other) = try await allocation(e, "1")
            await peRefused(e, .noPermission) { try await pePeople(e, .assignApproval(id: other, user: "rm1"), as: pePrincipal(e, "alice")) }
        }
    }

    @Test func listFiltersAndPages() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            try await pePeople(e, .setSLA(entity: .allocation, seconds: 60), as: peOps)
            let (a1, p1) = try await allocation(e, "10")
            let (_, p2) = try await allocation(e, "10")
            let (_, p3) = try await allocation(e, "10")
            let c = try await peCommit(e, investor: "invA", units: "5")  // commitment SLA: the default day
            let p4 = try #require(try await peCommitment(e, c)[field: "approval"])
            try await e.approve(allocation: a1)
            try await pePeople(e, .assignApproval(id: p2, user: "rm1"), as: peOps)
            try await pePeople(e, .assignApproval(id: p4, user: "rm1"), as: peOps)

            func ids(_ filter: ApprovalFilter) async throws -> [String] {
                try await pePage(e, .listApprovals(filter, cursor: 0, count: 100), as: peOps).rows.compactMap { $0[field: "id"] }
            }
            #expect(try await ids(ApprovalFilter()) == [p1, p2, p3, p4])
            #expect(try await ids(ApprovalFilter(status: .pending)) == [p2, p3, p4])
            #expect(try await ids(ApprovalFilter(status: .approved)) == [p1])
            #expect(try await ids(ApprovalFilter(status: .rejected)) == [])
            #expect(try await ids(ApprovalFilter(assignee: "rm1")) == [p2, p4])
            #expect(try await ids(ApprovalFilter(status: .pending, assignee: "ops2")) == [])
            #expect(try await ids(ApprovalFilter(breached: true)) == [])
            clock.advance(millis: 61_000)
            #expect(try await ids(ApprovalFilter(breached: true)) == [p2, p3], "pending allocation approvals past their minute")
            #expect(try await peApproval(e, p3)[field: "breached"] == "1")
            #expect(try await peApproval(e, p1)[field: "breached"] == "0", "a decided approval is never breached")
            #expect(try await peApproval(e, p4)[field: "breached"] == "0")
            #expect(try await ids(ApprovalFilter(assignee: "rm1", breached: true)) == [p2])
            clock.advance(millis: 86_400_000)
            #expect(try await ids(ApprovalFilter(breached: true)) == [p2, p3, p4])

            // COUNT 1 walks every row exactly once.
            var seen: [String] = []
            var cursor: UInt64 = 0
            var pages = 0
            repeat {
                let page = try await pePage(e, .listApprovals(ApprovalFilter(), cursor: cursor, count: 1), as: peOps)
                #expect(page.rows.count <= 1)
                seen += page.rows.compactMap { $0[field: "id"] }
                cursor = try #require(UInt64(page.cursor))
                pages += 1
            } while cursor != 0 && pages < 20
            #expect(seen == [p1, p2, p3, p4] && cursor == 0)
            // A filtered walk with COUNT 1 also sees each match once.
            seen = []
            cursor = 0
            pages = 0
            repeat {
                let page = try await pePage(e, .listApprovals(ApprovalFilter(status: .pending), cursor: cursor, count: 1), as: peOps)
                seen += page.rows.compactMap { $0[field: "id"] }
                cursor = try #require(UInt64(page.cursor))
                pages += 1
            } while cursor != 0 && pages < 20
            #expect(seen == [p2, p3, p4])
        }
    }

    @Test func approvalsAreNeverDatedBeforeTheOneBeforeThem() async throws {
        try await withEngine { e, clock in
            try await openDeal(e)
            clock.advance(millis: 10 * minute)
            let first = try await peCommit(e, investor: "invA", units: "1")
            clock.set(millis: t0 + minute)  // the clock steps back
            let second = try await peCommit(e, investor: "invA", units: "2")
            let a1 = try await peApproval(e, try #require(try await peCommitment(e, first)[field: "approval"]))
            let a2 = try await peApproval(e, try #require(try await peCommitment(e, second)[field: "approval"]))
            #expect(a1[field: "created_at"] == String(t0 + 10 * minute))
            #expect(a2[field: "created_at"] == String(t0 + 10 * minute), "dated no earlier than the approval before it")
            #expect(a2[field: "sla_breach_at"] == String(t0 + 10 * minute + PeopleLimits.defaultSLASeconds * 1000))
            // The commitment itself keeps the clock's time.
            #expect(try await peCommitment(e, second)[field: "created_at"] == String(t0 + minute))
        }
    }

    @Test func theQueueWalksByKeyEveryApprovalOnce() async throws {
        try await withEngine { e, clock in
            try await peDirectory(e)
            try await openDeal(e)
            var expected: [String] = []
            for i in 0..<7 {
                if i % 3 == 0 { clock.advance(millis: 1000) }  // several approvals share a time
                if i % 2 == 0 {
                    expected.append(try await allocation(e, "1").1)
                } else {
                    let c = try await peCommit(e, investor: "invA", units: "1")
                    expected.append(try #require(try await peCommitment(e, c)[field: "approval"]))
                }
            }
            try await pePeople(e, .decideApproval(id: expected[2], approve: true, note: nil), as: peOps)
            let actor = try #require(e.deal("d1"))
            let now = clock.nowMillis()
            // COUNT 1, by cursor text, as a client would page.
            var cursor = "0"
            var seen: [String] = []
            var pages = 0
            while pages < 20 {
                let after = ApprovalKey(cursor: cursor)
                let part = await actor.read { $0.approvals(after: after, filter: ApprovalFilter(), count: 1, budget: 100, now: now, index: e.indexes) }
                guard let row = part.rows.first else { break }
                #expect(ApprovalKey(cursor: row.key.cursor) == row.key, "a key survives its cursor")
                seen.append(row.fields[field: "id"] ?? "?")
                cursor = row.key.cursor
                pages += 1
            }
            #expect(seen == expected)
            // A filtered walk with a budget of one row examined goes on from its frontier.
            var key = ApprovalKey(cursor: "0")
            var pending: [String] = []
            pages = 0
            while pages < 50 {
                let part = await actor.read { $0.approvals(after: key, filter: ApprovalFilter(status: .pending), count: 10, budget: 1, now: now, index: e.indexes) }
                pending += part.rows.map { $0.fields[field: "id"] ?? "?" }
                guard let next = part.rows.last?.key ?? part.frontier else { break }
                if let last = part.rows.last?.key, let frontier = part.frontier { key = max(last, frontier) } else { key = next }
                pages += 1
                if part.frontier == nil { break }
            }
            #expect(pending == expected.enumerated().filter { $0.offset != 2 }.map(\.element))
        }
    }

    @Test func cancellingTheDealRejectsPendingAllocationApprovals() async throws {
        try await withEngine { e, _ in
            try await peDirectory(e)
            try await openDeal(e)
            let (done, pDone) = try await allocation(e, "10")
            try await e.approve(allocation: done)
            let (pending, pPending) = try await allocation(e, "20")
            try await pePeople(e, .assignApproval(id: pPending, user: "rm1"), as: peOps)
            try await e.setStatus(deal: "d1", .cancelled)
            #expect(try await e.allocationStatus(pending) == "rejected")
            let ap = try await peApproval(e, pPending)
            #expect(ap[field: "status"] == "rejected" && ap[field: "decided_at"] != nil)
            #expect(try await peApproval(e, pDone)[field: "status"] == "approved")
            #expect(try await pePage(e, .listApprovals(ApprovalFilter(status: .pending), cursor: 0, count: 100), as: peOps).rows.isEmpty)
            await peRefused(e, .conflict) { try await pePeople(e, .decideApproval(id: pPending, approve: true, note: nil), as: peOps) }
            await peRefused(e, .conflict) { try await pePeople(e, .assignApproval(id: pPending, user: "ops2"), as: peOps) }
            try await pePeople(e, .decideApproval(id: pPending, approve: false, note: nil), as: peOps)
        }
    }
}

// MARK: - Replay

/// What a history hands back for checks after recovery.
private struct PEHistory: Equatable {
    var aliceToken = ""
    var bobToken = ""
    var bobRevokedToken = ""
    var earlyInviteToken = ""
    var activeInviteToken = ""
    var approvals: [String] = []
}

/// A history touching every people record type. Run on two engines with the
/// same secrets and clocks it gives the same state; `snapshot` takes one in the middle.
private func peHistory(_ d: DurableEngine, _ clock: ManualClock, snapshot: Bool) async throws -> PEHistory {
    let e = d.engine
    var out = PEHistory()
    // Directory.
    try await e.change(.userSet(UserProfile(id: "ops1", role: .staffOps, name: "Ops One", email: "ops@verso.test")))
    try await e.change(.userSet(UserProfile(id: "rm1", role: .staffRM, title: "Relationship manager")))
    try await e.change(.userSet(UserProfile(id: "alice", role: .investor, name: "Alice", email: "Alice@Example.com")))
    for user in ["bob", "carol", "dan", "erin"] { try await e.change(.userSet(UserProfile(id: user, role: .investor))) }
    clock.advance(millis: 1000)
    try await e.change(.userSet(UserProfile(id: "alice", role: .investor, name: "Alice A", email: "alice@example.com", title: "CIO")))
    try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "Alpha LLC", type: "entity", country: "GB")))
    try await e.change(.investorCreated(InvestorRecord(id: "invB", legalName: "Bob B", type: "individual", country: "US")))
    try await e.change(.investorCreated(InvestorRecord(id: "invC", legalName: "Carol C")))
    try await e.change(.investorKYC(investor: "invA", status: .approved))
    try await e.change(.investorKYC(investor: "invB", status: .approved))
    try await e.change(.investorKYC(investor: "invC", status: .rejected))
    try await e.change(.investorLinked(investor: "invA", user: "alice"))
    try await e.change(.investorLinked(investor: "invB", user: "bob"))
    try await e.change(.investorLinked(investor: "invC", user: "carol"))
    try await e.change(.investorLinked(investor: "invB", user: "alice"))
    try await e.change(.investorUnlinked(investor: "invB", user: "alice"))
    out.aliceToken = try await e.createToken(user: "alice")
    out.bobRevokedToken = try await e.createToken(user: "bob")
    try await e.change(.tokensRevoked(user: "bob"))
    out.bobToken = try await e.createToken(user: "bob")
    _ = try await e.createToken(user: "lg", role: "co_investor", investors: ["invL"])
    try await e.change(.legacyToken(user: "old", role: .investor, investors: ["invOld"], tokenHash: SHA256.hex("legacy-token-1")))
    try await e.change(.vehicleCreated(Vehicle(id: "v1", name: "Fund I SPV", type: .spv, domicile: "KY")))
    let commitment = try Money.parse("250000.00")
    try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "invA", vehicle: "v1", commitment: commitment)))
    try await e.change(.subscriptionCreated(Subscription(id: "sub2", investor: "invB", vehicle: "v1", commitment: commitment, currency: "EUR")))
    try await e.change(.subscriptionCreated(Subscription(id: "sub3", investor: "invA", vehicle: "v1", commitment: commitment)))
    try await e.change(.subscriptionStatus(id: "sub1", status: .active))
    try await e.change(.subscriptionStatus(id: "sub2", status: .cancelled))
    try await e.change(.sourceCreated(ShareSource(id: "src1", kind: .company, counterparty: "Acme", notes: "direct")))

    // Deals.
    var spec = DealSpec(id: "d1", name: "Deal One", offerUnitPrice: Price.whole(10))
    spec.vehicle = "v1"
    spec.kycRequired = true
    try await e.createDeal(spec, by: "ops1")
    try await e.addLot(deal: "d1", LotSpec(id: "L1", unitsTotal: Units.whole(1000), unitCost: Price.whole(5), source: "src1"))
    try await e.createDeal(DealSpec(id: "d2", offerUnitPrice: Price.whole(3)))
    try await e.addLot(deal: "d2", LotSpec(id: "d2-L1", unitsTotal: Units.whole(100), unitCost: Price.whole(1)))

    // Members.
    let ops = Principal(user: "ops1", role: .staffOps)
    try await pePeople(e, .addMember(user: "alice", role: .investor, investor: "invA"), as: ops)
    try await pePeople(e, .addMember(user: "bob", role: .investor, investor: "invB"), as: ops)
    try await pePeople(e, .addMember(user: "carol", role: .viewer, investor: nil), as: ops)
    try await pePeople(e, .addMember(user: "dan", role: .lawyer, investor: nil), as: ops)
    try await pePeople(e, .addMember(user: "carol", role: .advisor, investor: "invC"), as: ops)
    try await pePeople(e, .removeMember(user: "dan"), as: ops)
    try await pePeople(e, .setSLA(entity: .commitment, seconds: 3600), as: ops)
    out.earlyInviteToken = try await peInvite(e, role: .viewer, ttl: 86_400, uses: 5, as: ops).token
    let early = try await peCommit(e, investor: "invA", units: "10", id: "c-early", as: pePrincipal(e, "alice"))
    try await pePeople(e, .commitStatus(id: early, to: .underReview), as: ops)
    let h0 = try await peHold(e, holdReq("15", investor: "invA"), as: pePrincipal(e, "alice"))
    let a0 = try await peID(e, .allocate(hold: h0, id: "a-early"), as: ops)
    let p0 = try #require(try await e.allocationFields(a0)[field: "approval"])
    try await pePeople(e, .assignApproval(id: p0, user: "rm1"), as: ops)
    clock.advance(millis: 5000)

    if snapshot { try await d.snapshot() }

    clock.advance(millis: 1000)
    try await pePeople(e, .prioritizeApproval(id: p0, priority: .high), as: ops)
    try await pePeople(e, .decideApproval(id: p0, approve: true, note: "after the snapshot"), as: ops)
    try await pePeople(e, .setSLA(entity: .allocation, seconds: 7200), as: ops)
    // Invites: accepted, revoked, left active.
    let accepted = try await peInvite(e, role: .coInvestor, ttl: 3600, uses: 2, as: ops)
    try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(accepted.token), investor: nil), as: pePrincipal(e, "dan"))
    try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(out.earlyInviteToken), investor: nil), as: pePrincipal(e, "erin"))
    let revoked = try await peInvite(e, role: .viewer, as: ops)
    try await pePeople(e, .revokeInvite(id: revoked.id), as: ops)
    out.activeInviteToken = try await peInvite(e, role: .banker, ttl: 86_400, uses: 3, as: ops).token

    // Commitments in every status.
    let alice = pePrincipal(e, "alice")
    _ = try await peCommit(e, investor: "invA", units: "5", id: "c-sub", as: alice)
    let rev = try await peCommit(e, investor: "invB", amount: "1000.00", id: "c-rev", as: pePrincipal(e, "bob"))
    try await pePeople(e, .commitStatus(id: rev, to: .underReview), as: ops)
    let app = try await peCommit(e, investor: "invA", units: "7", as: ops)
    try await pePeople(e, .commitStatus(id: app, to: .underReview), as: ops)
    let appApproval = try #require(try await peCommitment(e, app)[field: "approval"])
    try await pePeople(e, .decideApproval(id: appApproval, approve: true, note: "approved by committee"), as: ops)
    let rej = try await peCommit(e, investor: "invA", amount: "50.00", as: ops)
    try await pePeople(e, .commitStatus(id: rej, to: .underReview), as: ops)
    try await pePeople(e, .commitStatus(id: rej, to: .rejected), as: ops)
    let can = try await peCommit(e, investor: "invA", units: "1", as: alice)
    try await pePeople(e, .commitStatus(id: can, to: .cancelled), as: alice)
    let subApproval = try #require(try await peCommitment(e, "c-sub")[field: "approval"])
    try await pePeople(e, .assignApproval(id: subApproval, user: "rm1"), as: ops)

    // Allocations and their approvals.
    let h1 = try await peHold(e, holdReq("30", investor: "invA"), as: alice)
    let a1 = try await peID(e, .allocate(hold: h1, id: nil), as: alice)
    let p1 = try #require(try await e.allocationFields(a1)[field: "approval"])
    try await pePeople(e, .assignApproval(id: p1, user: "ops1"), as: ops)
    try await pePeople(e, .prioritizeApproval(id: p1, priority: .high), as: ops)
    clock.advance(millis: 2000)
    try await pePeople(e, .decideApproval(id: p1, approve: true, note: nil), as: ops)
    let h2 = try await peHold(e, holdReq("20", investor: "invB"), as: pePrincipal(e, "bob"))
    let a2 = try await peID(e, .allocate(hold: h2, id: "a-bob"), as: ops)
    let p2 = try #require(try await e.allocationFields(a2)[field: "approval"])
    try await pePeople(e, .decideApproval(id: p2, approve: false, note: "over allocation"), as: ops)
    let h3 = try await peHold(e, holdReq("10", investor: "invA"), as: ops)
    let a3 = try await peID(e, .allocate(hold: h3, id: nil), as: ops)
    try await peRun(e, .approve(allocation: a3), as: ops)
    try await peRun(e, .settle(allocation: a3), as: ops)
    let h4 = try await peHold(e, holdReq("5", investor: "invB"), as: ops)
    let a4 = try await peID(e, .allocate(hold: h4, id: nil), as: ops)
    let p4 = try #require(try await e.allocationFields(a4)[field: "approval"])
    try await pePeople(e, .assignApproval(id: p4, user: "rm1"), as: ops)
    try await pePeople(e, .prioritizeApproval(id: p4, priority: .low), as: ops)
    // d2: a pending allocation, then the deal is cancelled.
    let h5 = try await peHold(e, "d2", holdReq("10", investor: "inv9"), as: ops)
    let a5 = try await peID(e, "d2", .allocate(hold: h5, id: nil), as: ops)
    let p5 = try #require(try await e.allocationFields(a5)[field: "approval"])
    try await e.setStatus(deal: "d2", .cancelled)
    // More directory changes after the snapshot.
    try await e.change(.investorKYC(investor: "invC", status: .approved))
    try await e.change(.userSet(UserProfile(id: "frank", role: .investor, email: "frank@example.com")))
    try await e.change(.investorLinked(investor: "invA", user: "frank"))
    clock.advance(millis: 3_600_000)
    out.approvals = [p1, p2, p4, p5, subApproval, appApproval, p0]
    return out
}

@Suite("PeopleEngine: replay")
struct PeopleEngineReplayTests {
    /// The refusal checks compare digests: every kind of people change must show in the digest.
    @Test func theDigestSeesEveryKindOfPeopleChange() async throws {
        try await withEngine { e, clock in
            var last = await e.digest()
            func changed(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async throws {
                clock.advance(millis: 1)
                try await body()
                let now = await e.digest()
                #expect(now != last, "\(what) does not show in the digest", sourceLocation: sourceLocation)
                last = now
            }
            try await changed("user.set") { try await e.change(.userSet(UserProfile(id: "alice", role: .investor))) }
            try await changed("user.set update") { try await e.change(.userSet(UserProfile(id: "alice", role: .investor, title: "CFO"))) }
            try await changed("user.set email") { try await e.change(.userSet(UserProfile(id: "alice", role: .investor, email: "a@x.com"))) }
            try await changed("staff user") { try await e.change(.userSet(UserProfile(id: "rm1", role: .staffRM))) }
            try await changed("investor.created") { try await e.change(.investorCreated(InvestorRecord(id: "invA", legalName: "A"))) }
            try await changed("investor.kyc") { try await e.change(.investorKYC(investor: "invA", status: .approved)) }
            try await changed("investor.linked") { try await e.change(.investorLinked(investor: "invA", user: "alice")) }
            try await changed("investor.unlinked") { try await e.change(.investorUnlinked(investor: "invA", user: "alice")) }
            try await e.change(.investorLinked(investor: "invA", user: "alice"))
            last = await e.digest()
            try await changed("token.issued") { _ = try await e.createToken(user: "alice") }
            try await changed("tokens.revoked") { try await e.change(.tokensRevoked(user: "alice")) }
            try await changed("vehicle.created") { try await e.change(.vehicleCreated(Vehicle(id: "v1", name: "V"))) }
            try await changed("subscription.created") {
                try await e.change(.subscriptionCreated(Subscription(id: "sub1", investor: "invA", vehicle: "v1", commitment: Money(raw: 100))))
            }
            try await changed("subscription.status") { try await e.change(.subscriptionStatus(id: "sub1", status: .active)) }
            try await changed("source.created") { try await e.change(.sourceCreated(ShareSource(id: "s1", kind: .other))) }
            try await changed("deal") { try await openDeal(e) }
            try await changed("member.added") { try await pePeople(e, .addMember(user: "alice", role: .viewer, investor: nil), as: peOps) }
            try await changed("member role") { try await pePeople(e, .addMember(user: "alice", role: .investor, investor: "invA"), as: peOps) }
            try await changed("member.removed") { try await pePeople(e, .removeMember(user: "alice"), as: peOps) }
            var token = ""
            var id = ""
            try await changed("invite.created") { (id, token) = try await peInvite(e, role: .viewer, uses: 2) }
            try await changed("invite.accepted") {
                try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(token), investor: nil), as: pePrincipal(e, "alice"))
            }
            try await changed("invite.revoked") { try await pePeople(e, .revokeInvite(id: id), as: peOps) }
            var c = ""
            try await changed("commitment.created") { c = try await peCommit(e, investor: "invA", units: "1") }
            try await changed("commitment.status") { try await pePeople(e, .commitStatus(id: c, to: .underReview), as: peOps) }
            let approval = try #require(try await peCommitment(e, c)[field: "approval"])
            try await changed("approval.assigned") { try await pePeople(e, .assignApproval(id: approval, user: "rm1"), as: peOps) }
            try await changed("approval.priority") { try await pePeople(e, .prioritizeApproval(id: approval, priority: .high), as: peOps) }
            try await changed("commitment decided") { try await pePeople(e, .decideApproval(id: approval, approve: true, note: nil), as: peOps) }
            var allocationApproval = ""
            try await changed("allocation.created") {
                let hold = try await peHold(e, holdReq("1"), as: peOps)
                let a = try await peID(e, .allocate(hold: hold, id: nil), as: peOps)
                allocationApproval = try #require(try await e.allocationFields(a)[field: "approval"])
            }
            try await changed("allocation.decided") { try await pePeople(e, .decideApproval(id: allocationApproval, approve: false, note: nil), as: peOps) }
            try await changed("deal.sla") { try await pePeople(e, .setSLA(entity: .allocation, seconds: 120), as: peOps) }
        }
    }

    @Test func everyPeopleRecordReplaysToTheLiveState() async throws {
        let ioA = SimulatedFileIO(seed: 7001), ioB = SimulatedFileIO(seed: 7002)
        let clockA = ManualClock(), clockB = ManualClock()
        let a = try await openDurable(ioA, clockA, secrets: SeededSecrets(seed: 4242))
        let b = try await openDurable(ioB, clockB, secrets: SeededSecrets(seed: 4242))
        let hA = try await peHistory(a, clockA, snapshot: true)
        let hB = try await peHistory(b, clockB, snapshot: false)
        #expect(hA == hB, "the same history makes the same tokens and ids")
        #expect(a.snapshots.taken == 1 && b.snapshots.taken == 0)
        let live = await a.engine.digest()
        #expect(await b.engine.digest() == live, "two engines through the same history differ")
        #expect(await a.engine.invariantViolations().isEmpty)

        // Every people record type is in the log (B's log is whole: no snapshot deleted any of it).
        let names = Set(try logRecords(ioB).map(\.typeName))
        let expected = Set(DirectoryChange.typeNames.filter { $0.key < 80 }.values).union(DealPeopleChange.typeNames.values)  // 80-83: the money ledger (MoneyEngineTests)
        #expect(expected.count == 23)
        for name in expected.sorted() { #expect(names.contains(name), "the history should log a \(name) record") }
        let lastLSN = b.lastLSN
        try await a.close()
        try await b.close()

        // Snapshot + replay.
        let (fromSnapshot, reportA) = try recoverDigest(ioA)
        #expect(fromSnapshot == live, "snapshot + replay differs from the live state")
        #expect(reportA.snapshotLSN > 0)
        // The whole log from LSN 1.
        let (fromLog, reportB) = try recoverDigest(ioB)
        #expect(fromLog == live, "replay from LSN 1 differs from the live state")
        let changesB = try logRecords(ioB).count
        #expect(reportB.snapshotLSN == 0 && reportB.recordsReplayed == changesB && lastLSN > 0)

        // Reopened: the same state, and the indexes and tokens work again.
        for (io, clock) in [(ioA, clockA), (ioB, clockB)] {
            let r = try await openDurable(io, clock, secrets: SeededSecrets(seed: 99))
            let e = r.engine
            #expect(await e.digest() == live)
            #expect(await e.invariantViolations().isEmpty)
            #expect(e.principal(forToken: hA.aliceToken)?.investors == ["invA": .approved])
            #expect(e.principal(forToken: hA.bobToken)?.user == "bob")
            #expect(e.principal(forToken: hA.bobRevokedToken) == nil, "a revoked token stays revoked")
            #expect(e.readDirectory { $0.nextSubscriptionID() } == "sub4")
            #expect(e.readDirectory { $0.subscriptions["sub1"]?.status } == .active)
            await peRefused(e, .exists) { try await e.change(.userSet(UserProfile(id: "zed", role: .investor, email: "ALICE@example.com"))) }
            let early = try await peApproval(e, hA.approvals[6])
            #expect(early[field: "status"] == "approved" && early[field: "assigned_to"] == "rm1" && early[field: "priority"] == "high")
            #expect(try await e.allocationStatus("a-early") == "approved")
            #expect(try await e.position(deal: "d1", investor: "invA").units == u("55"), "a-early 15 + a1 30 + a3 10")
            #expect(e.readDirectory { $0.users["lg"]?.investors } == ["invL"])
            #expect(e.readDirectory { $0.tokens[SHA256.hex("legacy-token-1")]?.user } == "old")
            #expect(e.readDirectory { $0.investors["invOld"]?.users } == ["old"])
            let number = try #require(e.deal("d1")).number
            #expect(e.indexes.inviteTokens.lookup(SHA256.hex(hA.earlyInviteToken))?.deal == number, "an invite from the snapshot routes")
            #expect(e.indexes.inviteTokens.lookup(SHA256.hex(hA.activeInviteToken))?.deal == number, "an invite from the log routes")
            // Commitment ids keep their meaning (from the snapshot and from the log).
            let alice = pePrincipal(e, "alice")
            #expect(try await peCommit(e, investor: "invA", units: "10", id: "c-early", as: alice) == "c-early")
            #expect(try await peCommit(e, investor: "invA", units: "5", id: "c-sub", as: alice) == "c-sub")
            await peRefused(e, .conflict) { try await peCommit(e, investor: "invA", units: "6", id: "c-sub", as: alice) }
            #expect(try await peCommitment(e, "c-early")[field: "status"] == "under_review")
            #expect(try await peApproval(e, hA.approvals[0])[field: "priority"] == "high")
            #expect(try await peApproval(e, "d2", hA.approvals[3])[field: "status"] == "rejected")
            #expect(try await peFields(e, .getDeal)[field: "kyc_required"] == "1")
            // The active invite is still accepted after recovery.
            try await pePeople(e, .acceptInvite(tokenHash: SHA256.hex(hA.activeInviteToken), investor: nil), as: pePrincipal(e, "frank"))
            #expect(try await peFields(e, .people(.getMember(user: "frank")))[field: "role"] == "banker")
            try await r.close()
        }
    }
}

/// The memory bound docs/protocol.md states for the people rows beside an allocation.
@Suite struct PeopleMemoryTests {
    @Test func approvalRowSize() {
        #expect(MemoryLayout<Approval>.stride <= 128, "Approval is \(MemoryLayout<Approval>.stride) bytes")
        #expect(MemoryLayout<Allocation>.stride <= 160, "Allocation is \(MemoryLayout<Allocation>.stride) bytes")
    }
}
