import AllocationEngine

/// Users, investors and their links, tokens, vehicles, subscriptions and
/// share sources (the engine-wide directory), and the people side of each
/// deal: memberships, invite links, commitments and approvals.
enum PeopleCommands {
    static let specs: [CommandSpec] = directory + deals

    // MARK: - The directory

    static let directory: [CommandSpec] = [
        CommandSpec("USER.CREATE", "USER.CREATE <user> <investor|staff_admin|staff_ops|staff_rm> [NAME <text>] [EMAIL <email>] [TITLE <text>]", .manageUsers) { a throws(CommandError) in
            let id = try a.id("user")
            let role = try userRole(try a.req("role"))
            var u = UserProfile(id: id, role: role)
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "NAME": u.name = value
                case "EMAIL": u.email = value
                case "TITLE": u.title = value
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [u] c in
                await c.reply { () throws(EngineError) in
                    try await c.engine.change(.userSet(u)) { d throws(EngineError) in
                        if d.users[u.id] != nil { throw EngineError(.exists, "user \(u.id) already exists") }
                    }
                    return .ok
                }
            }
        },
        CommandSpec("USER.GET", "USER.GET <user>", .read) { a throws(CommandError) in
            let id = try a.id("user"); try a.end()
            return .engine { c in
                // A user who is not staff reads only itself.
                guard c.principal.isStaff || c.principal.user == id,
                      let f = c.engine.readDirectory({ $0.userFields(id) }) else { return .failure(EngineError(.notFound, "user \(id.prefix(128)) not found")) }
                return .fields(f)
            }
        },
        CommandSpec("INVESTOR.CREATE", "INVESTOR.CREATE <investor> <legal name> [TYPE individual|entity] [COUNTRY <ISO 3166 alpha-2>] [KYC pending|approved|rejected]", .administer) { a throws(CommandError) in
            var i = InvestorRecord(id: try a.id("investor"), legalName: try a.req("legal name"))
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "TYPE": i.type = value.lowercased()
                case "COUNTRY": i.country = value.uppercased()
                case "KYC": i.kycStatus = try kyc(value)
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [i] c in await c.reply { () throws(EngineError) in try await c.engine.change(.investorCreated(i)); return .ok } }
        },
        CommandSpec("INVESTOR.KYC", "INVESTOR.KYC <investor> <pending|approved|rejected>", .administer) { a throws(CommandError) in
            let id = try a.id("investor"), status = try kyc(try a.req("status")); try a.end()
            return .engine { c in await c.reply { () throws(EngineError) in try await c.engine.change(.investorKYC(investor: id, status: status)); return .ok } }
        },
        CommandSpec("INVESTOR.GET", "INVESTOR.GET <investor>", .read) { a throws(CommandError) in
            let id = try a.id("investor"); try a.end()
            return .engine { c in
                guard c.principal.actsFor(id), let f = c.engine.readDirectory({ $0.investorFields(id) }) else {
                    return .failure(EngineError(.notFound, "investor \(id.prefix(128)) not found"))
                }
                return .fields(f)
            }
        },
        CommandSpec("INVESTOR.LINK", "INVESTOR.LINK <investor> <user>", .manageUsers) { a throws(CommandError) in
            let investor = try a.id("investor"), user = try a.id("user"); try a.end()
            return .engine { c in await c.reply { () throws(EngineError) in try await c.engine.change(.investorLinked(investor: investor, user: user)); return .ok } }
        },
        CommandSpec("INVESTOR.UNLINK", "INVESTOR.UNLINK <investor> <user>", .manageUsers) { a throws(CommandError) in
            let investor = try a.id("investor"), user = try a.id("user"); try a.end()
            return .engine { c in await c.reply { () throws(EngineError) in try await c.engine.change(.investorUnlinked(investor: investor, user: user)); return .ok } }
        },
        CommandSpec("TOKEN.CREATE", "TOKEN.CREATE <user> | TOKEN.CREATE <user> <role> [INVESTOR <investor> ...]", .manageUsers) { a throws(CommandError) in
            let user = try a.id("user")
            guard let role = a.next() else {
                return .engine { c in await c.reply { () throws(EngineError) in .id(try await c.engine.createToken(user: user)) } }
            }
            var investors: [String] = []
            while let option = a.next() {
                guard option.uppercased() == "INVESTOR" else { throw CommandError.arity(a.name, a.usage) }
                investors.append(try a.id("investor"))
            }
            return .engine { [investors] c in
                await c.reply { () throws(EngineError) in .id(try await c.engine.createToken(user: user, role: role.lowercased(), investors: investors)) }
            }
        },
        CommandSpec("TOKEN.REVOKE", "TOKEN.REVOKE <user>", .manageUsers) { a throws(CommandError) in
            let user = try a.id("user"); try a.end()
            return .engine { c in await c.reply { () throws(EngineError) in try await c.engine.change(.tokensRevoked(user: user)); return .ok } }
        },
        CommandSpec("VEHICLE.CREATE", "VEHICLE.CREATE <vehicle> <name> [TYPE fund|spv|securitization|note|other] [DOMICILE <text>] [CURRENCY <code>]", .administer) { a throws(CommandError) in
            var v = Vehicle(id: try a.id("vehicle"), name: try a.req("name"))
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "TYPE":
                    guard let t = VehicleType(rawValue: value.lowercased()) else {
                        throw CommandError("INVALID", "unknown vehicle TYPE '\(value.prefix(32))': one of \(VehicleType.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    v.type = t
                case "DOMICILE": v.domicile = value
                case "CURRENCY": v.currency = value.uppercased()
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [v] c in await c.reply { () throws(EngineError) in try await c.engine.change(.vehicleCreated(v)); return .ok } }
        },
        CommandSpec("VEHICLE.GET", "VEHICLE.GET <vehicle>", .read) { a throws(CommandError) in
            let id = try a.id("vehicle"); try a.end()
            return .engine { c in
                guard let f = c.engine.readDirectory({ $0.vehicleFields(id) }) else { return .failure(EngineError(.notFound, "vehicle \(id.prefix(128)) not found")) }
                return .fields(f)
            }
        },
        CommandSpec("SUBSCRIPTION.CREATE", "SUBSCRIPTION.CREATE <investor> <vehicle> <commitment money> [CURRENCY <code>] [ID <id>]", .administer) { a throws(CommandError) in
            let investor = try a.id("investor"), vehicle = try a.id("vehicle"), amountText = try a.id("commitment")
            _ = try engine { () throws(EngineError) in try Money.parse(amountText, field: "commitment") }  // refused at parse time
            var currency = "USD"
            var id: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "CURRENCY": currency = value.uppercased()
                case "ID": id = try Arguments.checkID(value, "id")
                default: throw a.unknownOption(option)
                }
            }
            // The amount stays text until the change is built under the
            // directory's lock: no 128-bit value may be captured by an async
            // closure on Linux (see Paging).
            return .engine { [currency, id] c in
                await c.reply { () throws(EngineError) in
                    var chosen = id ?? ""
                    try await c.engine.change { d throws(EngineError) in
                        let amount = try Money.parse(amountText, field: "commitment")
                        if let id, let existing = d.subscriptions[id] {
                            // A retry with the same ID and fields answers the same id.
                            guard existing.investor == investor, existing.vehicle == vehicle, existing.commitment == amount, existing.currency == currency else {
                                throw EngineError(.conflict, "subscription id \(id) was used with different parameters")
                            }
                            return nil
                        }
                        if id == nil { chosen = d.nextSubscriptionID() }
                        return .subscriptionCreated(Subscription(id: chosen, investor: investor, vehicle: vehicle, commitment: amount, currency: currency))
                    }
                    return .id(chosen)
                }
            }
        },
        CommandSpec("SUBSCRIPTION.ACTIVATE", "SUBSCRIPTION.ACTIVATE <subscription>", .administer) { a throws(CommandError) in
            let id = try a.id("subscription"); try a.end()
            return .engine { c in await c.reply { () throws(EngineError) in try await subscriptionStatus(c, id, .active) } }
        },
        CommandSpec("SUBSCRIPTION.CANCEL", "SUBSCRIPTION.CANCEL <subscription>", .administer) { a throws(CommandError) in
            let id = try a.id("subscription"); try a.end()
            return .engine { c in await c.reply { () throws(EngineError) in try await subscriptionStatus(c, id, .cancelled) } }
        },
        CommandSpec("SUBSCRIPTION.GET", "SUBSCRIPTION.GET <subscription>", .read) { a throws(CommandError) in
            let id = try a.id("subscription"); try a.end()
            return .engine { c in
                let row = c.engine.readDirectory { d in d.subscriptions[id].map { ($0.investor, d.subscriptionFields(id)!) } }
                guard let (investor, f) = row, c.principal.actsFor(investor) else {
                    return .failure(EngineError(.notFound, "subscription \(id.prefix(128)) not found"))
                }
                return .fields(f)
            }
        },
        CommandSpec("SOURCE.CREATE", "SOURCE.CREATE <source> <company|fund|colleague|other> [COUNTERPARTY <text>] [NOTES <text>]", .administer) { a throws(CommandError) in
            let id = try a.id("source"), kindText = try a.req("kind")
            guard let kind = ShareSourceKind(rawValue: kindText.lowercased()) else {
                throw CommandError("INVALID", "unknown share source kind '\(kindText.prefix(32))': one of \(ShareSourceKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var s = ShareSource(id: id, kind: kind)
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "COUNTERPARTY": s.counterparty = value
                case "NOTES": s.notes = value
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [s] c in await c.reply { () throws(EngineError) in try await c.engine.change(.sourceCreated(s)); return .ok } }
        },
        CommandSpec("SOURCE.GET", "SOURCE.GET <source>", .staffRead) { a throws(CommandError) in
            let id = try a.id("source"); try a.end()
            return .engine { c in
                guard let f = c.engine.readDirectory({ $0.sourceFields(id) }) else { return .failure(EngineError(.notFound, "share source \(id.prefix(128)) not found")) }
                return .fields(f)
            }
        },
    ]

    // MARK: - Deals: members, invites, commitments, approvals

    static let deals: [CommandSpec] = [
        CommandSpec("MEMBER.ADD", "MEMBER.ADD <deal> <user> <role> [INVESTOR <investor>]", .invite) { a throws(CommandError) in
            let deal = try a.id("deal"), user = try a.id("user"), role = try memberRole(try a.req("role"))
            var investor: String?
            while let option = a.next() {
                guard option.uppercased() == "INVESTOR" else { throw a.unknownOption(option) }
                investor = try a.id("investor")
            }
            return .deal(.people(.addMember(user: user, role: role, investor: investor)), .deal(deal))
        },
        CommandSpec("MEMBER.REMOVE", "MEMBER.REMOVE <deal> <user>", .invite) { a throws(CommandError) in
            let deal = try a.id("deal"), user = try a.id("user"); try a.end()
            return .deal(.people(.removeMember(user: user)), .deal(deal))
        },
        CommandSpec("MEMBER.GET", "MEMBER.GET <deal> <user>", .read) { a throws(CommandError) in
            let deal = try a.id("deal"), user = try a.id("user"); try a.end()
            return .deal(.people(.getMember(user: user)), .deal(deal))
        },
        CommandSpec("MEMBER.LIST", "MEMBER.LIST <deal> [CURSOR <cursor>] [COUNT <n>]", .read) { a throws(CommandError) in
            let deal = try a.id("deal")
            var paging = Paging()
            while let option = a.next() { guard try paging.take(option, &a) else { throw a.unknownOption(option) } }
            return .deal(.people(.listMembers(cursor: try paging.slotCursor(), count: paging.count)), .deal(deal))
        },
        CommandSpec("INVITE.CREATE", "INVITE.CREATE <deal> <role> [TTL <seconds>] [USES <n>]", .invite) { a throws(CommandError) in
            let deal = try a.id("deal"), role = try memberRole(try a.req("role"))
            var ttl: Int64?
            var uses: Int32?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "TTL":
                    guard let v = Int64(value), v >= 1, v <= PeopleLimits.maxInviteTTLSeconds else {
                        throw CommandError("INVALID", "TTL must be a whole number of seconds between 1 and \(PeopleLimits.maxInviteTTLSeconds), got '\(value.prefix(32))'")
                    }
                    ttl = v
                case "USES":
                    guard let v = Int32(value), v >= 1, Int(v) <= PeopleLimits.maxInviteUses else {
                        throw CommandError("INVALID", "USES must be a whole number between 1 and \(PeopleLimits.maxInviteUses), got '\(value.prefix(32))'")
                    }
                    uses = v
                default: throw a.unknownOption(option)
                }
            }
            // 256 random bits made in the deal actor; it keeps only the hash, the reply shows the token once.
            return .deal(.people(.createInvite(role: role, ttlSeconds: ttl, uses: uses)), .deal(deal))
        },
        CommandSpec("INVITE.ACCEPT", "INVITE.ACCEPT <token> [INVESTOR <investor>]", .read) { a throws(CommandError) in
            let token = try a.req("token")
            var investor: String?
            while let option = a.next() {
                guard option.uppercased() == "INVESTOR" else { throw a.unknownOption(option) }
                investor = try a.id("investor")
            }
            let hash = SHA256.hex(token)
            return .deal(.people(.acceptInvite(tokenHash: hash, investor: investor)), .row(.inviteToken, hash))
        },
        CommandSpec("INVITE.REVOKE", "INVITE.REVOKE <invite id>", .invite) { a throws(CommandError) in
            let id = try a.id("invite id"); try a.end()
            return .deal(.people(.revokeInvite(id: id)), .row(.invite, id))
        },
        CommandSpec("INVITE.GET", "INVITE.GET <invite id>", .invite) { a throws(CommandError) in
            let id = try a.id("invite id"); try a.end()
            return .deal(.people(.getInvite(id: id)), .row(.invite, id))
        },
        CommandSpec("COMMIT", "COMMIT <deal> <investor> UNITS <units> | AMOUNT <money> [ID <id>]", .hold) { a throws(CommandError) in
            let deal = try a.id("deal"), investor = try a.id("investor")
            var units: Units?
            var amount: Money?
            var id: String?
            while let option = a.next() {
                let value = try a.req(option)
                switch option.uppercased() {
                case "UNITS": units = try engine { () throws(EngineError) in try Units.parse(value) }
                case "AMOUNT": amount = try engine { () throws(EngineError) in try Money.parse(value) }
                case "ID": id = try Arguments.checkID(value, "id")
                default: throw a.unknownOption(option)
                }
            }
            guard (units == nil) != (amount == nil) else { throw CommandError("INVALID", "COMMIT names UNITS or AMOUNT, exactly one: usage \(a.usage)") }
            return .deal(.people(.commit(investor: investor, units: units, amount: amount, id: id)), .deal(deal))
        },
        commitMove("COMMIT.REVIEW", .underReview, .decide),
        commitMove("COMMIT.APPROVE", .approved, .decide),
        commitMove("COMMIT.REJECT", .rejected, .decide),
        commitMove("COMMIT.CANCEL", .cancelled, .hold),
        CommandSpec("COMMIT.GET", "COMMIT.GET <commitment>", .read) { a throws(CommandError) in
            let id = try a.id("commitment"); try a.end()
            return .deal(.people(.getCommitment(id: id)), .row(.commitment, id))
        },
        CommandSpec("APPROVAL.ASSIGN", "APPROVAL.ASSIGN <approval> <user>", .decide) { a throws(CommandError) in
            let id = try a.id("approval"), user = try a.id("user"); try a.end()
            return .deal(.people(.assignApproval(id: id, user: user)), .row(.approval, id))
        },
        CommandSpec("APPROVAL.PRIORITY", "APPROVAL.PRIORITY <approval> <low|normal|high>", .decide) { a throws(CommandError) in
            let id = try a.id("approval"), text = try a.req("priority"); try a.end()
            guard let p = ApprovalPriority(name: text.lowercased()) else { throw CommandError("INVALID", "priority is low, normal or high, got '\(text.prefix(32))'") }
            return .deal(.people(.prioritizeApproval(id: id, priority: p)), .row(.approval, id))
        },
        CommandSpec("APPROVAL.DECIDE", "APPROVAL.DECIDE <approval> approve|reject [NOTE <text>]", .decide) { a throws(CommandError) in
            let id = try a.id("approval"), text = try a.req("decision").lowercased()
            guard text == "approve" || text == "reject" else { throw CommandError("INVALID", "decision is approve or reject, got '\(text.prefix(32))'") }
            var note: String?
            while let option = a.next() {
                guard option.uppercased() == "NOTE" else { throw a.unknownOption(option) }
                note = try a.req("note")
            }
            return .deal(.people(.decideApproval(id: id, approve: text == "approve", note: note)), .row(.approval, id))
        },
        CommandSpec("APPROVAL.GET", "APPROVAL.GET <approval>", .staffRead) { a throws(CommandError) in
            let id = try a.id("approval"); try a.end()
            return .deal(.people(.getApproval(id: id)), .row(.approval, id))
        },
        CommandSpec("APPROVAL.LIST", "APPROVAL.LIST [DEAL <deal>] [STATUS pending|approved|rejected] [ASSIGNEE <user>] [BREACHED] [CURSOR <cursor>] [COUNT <n>]", .staffRead) { a throws(CommandError) in
            var filter = ApprovalFilter()
            var deal: String?
            var paging = Paging()
            while let option = a.next() {
                if try paging.take(option, &a) { continue }
                switch option.uppercased() {
                case "DEAL": deal = try a.id("deal")
                case "STATUS":
                    let v = try a.req("status")
                    guard let s = ApprovalStatus(name: v.lowercased()) else { throw CommandError("INVALID", "approval STATUS is pending, approved or rejected, got '\(v.prefix(32))'") }
                    filter.status = s
                case "ASSIGNEE": filter.assignee = try a.id("user")
                case "BREACHED": filter.breached = true
                default: throw a.unknownOption(option)
                }
            }
            return .engine { [filter, deal, paging] c in await DealWalk.approvals(c, deal: deal, filter: filter, paging: paging) }
        },
        CommandSpec("DEAL.SLA", "DEAL.SLA <deal> <deal_commitment|allocation> <seconds>", .administer) { a throws(CommandError) in
            let deal = try a.id("deal"), entityText = try a.req("entity type"), secondsText = try a.req("seconds"); try a.end()
            guard let entity = ApprovalEntity(name: entityText.lowercased()) else {
                throw CommandError("INVALID", "entity type is deal_commitment or allocation, got '\(entityText.prefix(32))'")
            }
            guard let seconds = Int64(secondsText), seconds >= PeopleLimits.minSLASeconds, seconds <= PeopleLimits.maxSLASeconds else {
                throw CommandError("INVALID", "SLA must be a whole number of seconds between \(PeopleLimits.minSLASeconds) and \(PeopleLimits.maxSLASeconds), got '\(secondsText.prefix(32))'")
            }
            return .deal(.people(.setSLA(entity: entity, seconds: seconds)), .deal(deal))
        },
    ]

    static func commitMove(_ name: String, _ target: CommitmentStatus, _ permission: UserRole.Permission) -> CommandSpec {
        CommandSpec(name, "\(name) <commitment>", permission) { a throws(CommandError) in
            let id = try a.id("commitment"); try a.end()
            return .deal(.people(.commitStatus(id: id, to: target)), .row(.commitment, id))
        }
    }

    static func subscriptionStatus(_ c: CommandContext, _ id: String, _ status: SubscriptionStatus) async throws(EngineError) -> DealReply {
        if c.engine.readDirectory({ $0.subscriptions[id]?.status }) == status { return .ok }
        try await c.engine.change(.subscriptionStatus(id: id, status: status))
        return .ok
    }

    static func userRole(_ text: String) throws(CommandError) -> UserRole {
        guard let r = UserRole(rawValue: text.lowercased()) else {
            throw CommandError("INVALID", "unknown user role '\(text.prefix(32))': one of \(UserRole.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return r
    }
    static func memberRole(_ text: String) throws(CommandError) -> DealMemberRole {
        guard let r = DealMemberRole(rawValue: text.lowercased()) else {
            throw CommandError("INVALID", "unknown deal member role '\(text.prefix(32))': one of \(DealMemberRole.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return r
    }
    static func kyc(_ text: String) throws(CommandError) -> KYCStatus {
        guard let s = KYCStatus(rawValue: text.lowercased()) else {
            throw CommandError("INVALID", "KYC status is pending, approved or rejected, got '\(text.prefix(32))'")
        }
        return s
    }
}
