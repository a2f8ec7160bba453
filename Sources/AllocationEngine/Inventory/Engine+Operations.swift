/// Typed one-request calls for in-process users and tests. Each routes to the
/// owning deal actor, runs as a batch of one and waits for durability. Network
/// traffic uses `submit(_:to:)` with whole batches instead.
extension Engine {
    @discardableResult
    public func hold(deal: String, _ request: HoldRequest) async throws(EngineError) -> HoldReceipt {
        guard case .hold(let receipt) = try await submit(.hold(request), deal: deal) else { preconditionFailure("hold reply") }
        return receipt
    }

    public func release(hold: String) async throws(EngineError) {
        _ = try await submit(.release(hold: hold), holdOwner: hold)
    }

    @discardableResult
    public func allocate(hold: String, id: String? = nil) async throws(EngineError) -> String {
        guard case .id(let id) = try await submit(.allocate(hold: hold, id: id), holdOwner: hold) else { preconditionFailure("allocate reply") }
        return id
    }

    public func approve(allocation: String) async throws(EngineError) {
        _ = try await submit(.approve(allocation: allocation), allocationOwner: allocation)
    }
    public func reject(allocation: String) async throws(EngineError) {
        _ = try await submit(.reject(allocation: allocation), allocationOwner: allocation)
    }
    public func settle(allocation: String) async throws(EngineError) {
        _ = try await submit(.settle(allocation: allocation), allocationOwner: allocation)
    }

    public func setStatus(deal: String, _ status: DealStatus) async throws(EngineError) {
        _ = try await submit(.setStatus(status), deal: deal)
    }
    public func addLot(deal: String, _ lot: LotSpec) async throws(EngineError) {
        _ = try await submit(.addLot(lot), deal: deal)
    }
    public func resizeLot(deal: String, lot: String, unitsTotal: Units) async throws(EngineError) {
        _ = try await submit(.resizeLot(lot: lot, unitsTotal: unitsTotal), deal: deal)
    }

    public func inventory(deal: String) async throws(EngineError) -> Inventory {
        guard let actor = self.deal(deal) else { throw EngineError(.notFound, "deal \(deal) not found") }
        return await actor.read { $0.inventory() }
    }
    public func position(deal: String, investor: String) async throws(EngineError) -> Position {
        guard let actor = self.deal(deal) else { throw EngineError(.notFound, "deal \(deal) not found") }
        return await actor.read { $0.position(investor: investor) }
    }
    public func holdFields(_ hold: String) async throws(EngineError) -> [Field] {
        guard case .fields(let f) = try await submit(.getHold(hold), holdOwner: hold) else { preconditionFailure("fields reply") }
        return f
    }
    public func allocationFields(_ id: String) async throws(EngineError) -> [Field] {
        guard case .fields(let f) = try await submit(.getAllocation(id), allocationOwner: id) else { preconditionFailure("fields reply") }
        return f
    }

    /// Sends a request about a hold to the deal that owns it.
    public func submit(_ request: DealRequest, holdOwner hold: String) async throws(EngineError) -> DealReply {
        guard let actor = dealForHold(hold) else { throw EngineError(.notFound, "hold \(hold) not found") }
        let reply = await submit([request], to: actor)[0]
        if let e = reply.error { throw e }
        return reply
    }

    /// Sends a request about an allocation to the deal that owns it.
    public func submit(_ request: DealRequest, allocationOwner allocation: String) async throws(EngineError) -> DealReply {
        guard let actor = dealForAllocation(allocation) else { throw EngineError(.notFound, "allocation \(allocation) not found") }
        let reply = await submit([request], to: actor)[0]
        if let e = reply.error { throw e }
        return reply
    }
}

extension [Field] {
    /// The value of a field by name, for tests and tools.
    public subscript(field name: String) -> String? {
        first { $0.name == name }?.value ?? nil
    }
}
