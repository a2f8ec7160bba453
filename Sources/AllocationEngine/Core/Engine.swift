import WAL
import Synchronization

public struct EngineConfig: Sendable {
    /// TTL of a hold that does not name one (the seed's 30 minutes).
    public var defaultHoldTTLMillis: Int64 = EngineLimits.defaultHoldTTLMillis
    /// How often the expiry ticker looks at the shared timer queue.
    public var expiryTickMillis: Int64 = 100
    public init(defaultHoldTTLMillis: Int64 = EngineLimits.defaultHoldTTLMillis, expiryTickMillis: Int64 = 100) {
        self.defaultHoldTTLMillis = defaultHoldTTLMillis
        self.expiryTickMillis = expiryTickMillis
    }
    public func validated() throws(EngineError) -> EngineConfig {
        guard defaultHoldTTLMillis >= EngineLimits.minHoldTTLMillis && defaultHoldTTLMillis <= EngineLimits.maxHoldTTLMillis else {
            throw EngineError(.invalid, "default hold TTL must be between \(EngineLimits.minHoldTTLMillis / 1000) and \(EngineLimits.maxHoldTTLMillis / 1000) seconds")
        }
        guard expiryTickMillis >= 1 && expiryTickMillis <= 60_000 else {
            throw EngineError(.invalid, "expiry tick must be between 1 ms and 60 s")
        }
        return self
    }
}

/// What every deal actor shares: the id maps, the log, the clock, the timer queue.
final class EngineContext: Sendable {
    let indexes: EngineIndexes
    let sink: (any ChangeSink)?
    let clock: any EngineClock
    let config: EngineConfig
    let scheduler = ExpiryScheduler()
    /// Holds expired or cancelled by the engine, for metrics (HoldEndCounters.swift).
    let holdEnds = HoldEndCounters()
    /// Users, investors, tokens, vehicles, subscriptions, sources: engine-wide,
    /// rarely written, so one lock is enough (People/Directory.swift).
    let directory: Locked<Directory>
    /// Bumped by every directory change, so a connection re-resolves its
    /// principal (links, KYC, revoked tokens) before its next batch.
    let directoryGeneration = Atomic<UInt64>(1)
    let secrets: any SecretSource
    init(indexes: EngineIndexes, sink: (any ChangeSink)?, clock: any EngineClock, config: EngineConfig, directory: Directory,
         secrets: any SecretSource) {
        self.secrets = secrets
        self.indexes = indexes
        self.sink = sink
        self.clock = clock
        self.config = config
        self.directory = Locked(directory)
    }
}

/// What `DEAL.CREATE` asks for.
public struct DealSpec: Sendable, Hashable {
    public var id: String
    public var name: String?
    public var dealType: String = "equity_secondary"
    public var vehicle: String?
    public var currency: String = "USD"
    public var offerUnitPrice: Price?
    public var openAt: Int64?
    public var closeAt: Int64?
    public var status: DealStatus = .open
    public var kycRequired = false
    public init(id: String, name: String? = nil, currency: String = "USD", offerUnitPrice: Price? = nil,
                openAt: Int64? = nil, closeAt: Int64? = nil, status: DealStatus = .open) {
        self.id = id
        self.name = name
        self.currency = currency
        self.offerUnitPrice = offerUnitPrice
        self.openAt = openAt
        self.closeAt = closeAt
        self.status = status
    }
}

/// The engine: a directory of deal actors plus what they share. Finding a deal
/// takes one short lock on one of 64 shards, so traffic to different deals never
/// queues behind one global lock; the work itself runs in the deal's actor.
public final class Engine: Sendable {
    static let shardCount = 64
    let context: EngineContext
    private let byID: [Locked<[String: DealActor]>]
    private let byNumber: [Locked<[UInt32: DealActor]>]
    private let nextNumber: Atomic<UInt32>
    private let ticker = Locked<Task<Void, Never>?>(nil)
    /// Held while a deal's creation is logged and registered, and while a
    /// snapshot reads its LSN floor and lists the deals, so a snapshot can never
    /// see a deal's creation in the log without seeing the deal (creations are
    /// rare; lookups never take this lock).
    /// (It guards no data of its own; the value is a byte, not `Void`, because the
    /// thread sanitizer takes an inout access to an empty value for a write to the
    /// lock object's header and reports it against other threads' reads of it.)
    let creationLock = Locked<UInt8>(0)

    public var indexes: EngineIndexes { context.indexes }
    public var clock: any EngineClock { context.clock }
    public var config: EngineConfig { context.config }
    public var sink: (any ChangeSink)? { context.sink }
    /// Holds the engine expired or cancelled since the process started (metrics).
    public var holdEnds: HoldEndCounters { context.holdEnds }

    /// An engine holding `states` (from a snapshot and replay; empty for a new
    /// engine) whose ids are already in `indexes`.
    public init(config: EngineConfig = EngineConfig(), clock: any EngineClock = SystemClock(), sink: (any ChangeSink)? = nil,
                restoring states: [DealState] = [], indexes: EngineIndexes = EngineIndexes(), directory: Directory = Directory(),
                secrets: any SecretSource = SystemSecrets()) {
        context = EngineContext(indexes: indexes, sink: sink, clock: clock, config: config, directory: directory, secrets: secrets)
        byID = (0..<Self.shardCount).map { _ in Locked([:]) }
        byNumber = (0..<Self.shardCount).map { _ in Locked([:]) }
        var maxNumber: UInt32 = 0
        for state in states {
            let actor = DealActor(state: state, context: context)
            byID[Self.shard(state.info.id)].withLock { $0[state.info.id] = actor }
            byNumber[Int(state.info.number) % Self.shardCount].withLock { $0[state.info.number] = actor }
            maxNumber = max(maxNumber, state.info.number)
            if let v = state.info.vehicle { indexes.holdings.addDeal(state.info.number, vehicle: v) }
            if let earliest = state.earliestWake { context.scheduler.register(at: earliest, deal: state.info.number) }
        }
        nextNumber = Atomic(maxNumber + 1)
    }

    deinit { ticker.withLock { $0?.cancel() } }

    private static func shard(_ id: String) -> Int {
        var h: UInt32 = 2_166_136_261
        for b in id.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return Int(h % UInt32(shardCount))
    }

    // MARK: - Finding deals

    public func deal(_ id: String) -> DealActor? { byID[Self.shard(id)].withLock { $0[id] } }
    public func deal(number: UInt32) -> DealActor? { byNumber[Int(number) % Self.shardCount].withLock { $0[number] } }
    public func dealForHold(_ hold: String) -> DealActor? { indexes.holds.lookup(hold).flatMap { deal(number: $0.deal) } }
    public func dealForAllocation(_ a: String) -> DealActor? { indexes.allocations.lookup(a).flatMap { deal(number: $0.deal) } }
    public func dealForLot(_ lot: String) -> DealActor? { indexes.lots.lookup(lot).flatMap { deal(number: $0.deal) } }

    public var allDeals: [DealActor] {
        byNumber.flatMap { $0.withLock { Array($0.values) } }.sorted { $0.number < $1.number }
    }

    // MARK: - Creating deals

    /// Creates a deal. Its creation is logged inside the directory lock, so no
    /// change of the deal can reach the log before its creation does.
    @discardableResult
    public func createDeal(_ spec: DealSpec, by user: String? = nil) async throws(EngineError) -> DealInfo {
        try Validate.id(spec.id, field: "deal id")
        if let name = spec.name { try Validate.text(name, field: "name") }
        if let v = spec.vehicle {
            try Validate.id(v, field: "vehicle")
            guard context.directory.withLock({ $0.vehicles[v] != nil }) else {
                throw EngineError(.notFound, "vehicle \(v) not found; VEHICLE.CREATE it first")
            }
        }
        try Validate.id(spec.dealType, field: "deal type")
        try Validate.currency(spec.currency)
        guard spec.status == .draft || spec.status == .open else {
            throw EngineError(.invalid, "a new deal is draft or open, not \(spec.status.name)")
        }
        if let o = spec.openAt, let c = spec.closeAt, c <= o { throw EngineError(.invalid, "close time must be after open time") }
        if let admission = sink?.admission, admission != .open { throw admission.refusal }
        let now = clock.nowMillis()
        let result: Result<(DealInfo, UInt64?), EngineError> = creationLock.withLock { _ in byID[Self.shard(spec.id)].withLock { dict in
            if dict[spec.id] != nil { return .failure(EngineError(.exists, "deal \(spec.id) already exists")) }
            let number = nextNumber.wrappingAdd(1, ordering: .relaxed).oldValue
            var info = DealInfo(id: spec.id, number: number, name: spec.name, dealType: spec.dealType, vehicle: spec.vehicle,
                                currency: spec.currency, offerUnitPrice: spec.offerUnitPrice, openAt: spec.openAt,
                                closeAt: spec.closeAt, status: spec.status)
            info.createdAt = now
            info.kycRequired = spec.kycRequired
            info.createdBy = user
            var lsn: UInt64?
            if let sink {
                do throws(EngineError) { lsn = try sink.append([.dealCreated(info)], time: now) } catch { return .failure(error) }
            }
            // A read of the new deal waits for its creation to be durable (the read barrier).
            let actor = DealActor(state: DealState(info: info), context: context, lastLSN: lsn ?? 0)
            if let v = info.vehicle { context.indexes.holdings.addDeal(number, vehicle: v) }
            dict[spec.id] = actor
            byNumber[Int(number) % Self.shardCount].withLock { $0[number] = actor }
            return .success((info, lsn))
        } }
        let (info, lsn) = try result.get()
        if let lsn, let sink { try await sink.waitDurable(lsn) }
        return info
    }

    /// A deal a primary created, arriving on a replica's stream (logged there
    /// already): registered as `createDeal` does, without deciding or logging.
    public func adoptShippedDeal(_ info: DealInfo, lsn: UInt64) throws(EngineError) {
        try creationLock.withLock { (_) throws(EngineError) in
            try byID[Self.shard(info.id)].withLock { (dict) throws(EngineError) in
                guard dict[info.id] == nil else { throw EngineError(.conflict, "LSN \(lsn): deal \(info.id) created twice") }
                let actor = DealActor(state: DealState(info: info), context: context, lastLSN: lsn)
                if let v = info.vehicle { context.indexes.holdings.addDeal(info.number, vehicle: v) }
                dict[info.id] = actor
                byNumber[Int(info.number) % Self.shardCount].withLock { $0[info.number] = actor }
                // Numbers the primary handed out are never handed out again here.
                var current = nextNumber.load(ordering: .relaxed)
                while current <= info.number {
                    let (exchanged, original) = nextNumber.compareExchange(expected: current, desired: info.number + 1, ordering: .relaxed)
                    if exchanged { break }
                    current = original
                }
            }
        }
    }

    /// A directory change arriving on a replica's stream (logged there already).
    public func applyShippedDirectory(_ change: DirectoryChange, time: Int64, lsn: UInt64) throws(EngineError) {
        try context.directory.withLock { (d) throws(EngineError) in
            do throws(EngineError) { try d.apply(change, time: time) } catch {
                throw EngineError(error.code, "LSN \(lsn): directory change does not apply: \(error.message)")
            }
        }
        context.directoryGeneration.add(1, ordering: .releasing)
    }

    // MARK: - Batches

    /// Runs a batch on a deal (as `principal`: its access rules and its name on
    /// what it changes; nil in process) and waits until everything its replies
    /// may show is durable: its own changes and, for reads, the deal's changes
    /// before them (the read barrier). If that never becomes durable, every
    /// reply becomes an error: none may show state a crash could take back.
    public func submit(_ requests: [DealRequest], to deal: DealActor, as principal: Principal? = nil) async -> [DealReply] {
        var result = await deal.execute(requests, as: principal)
        if result.observedLSN > 0, let sink {
            do {
                try await sink.waitDurable(result.observedLSN)
            } catch {
                for i in result.replies.indices { result.replies[i] = .failure(error) }
            }
        }
        return result.replies
    }

    /// One request, by the deal's id.
    public func submit(_ request: DealRequest, deal id: String) async throws(EngineError) -> DealReply {
        guard let actor = deal(id) else { throw EngineError(.notFound, "deal \(id) not found") }
        let reply = await submit([request], to: actor)[0]
        if let e = reply.error { throw e }
        return reply
    }

    // MARK: - Expiry

    /// Expires every hold that is due now, across all deals; returns how many.
    @discardableResult
    public func sweepExpired() async -> Int {
        var total = 0
        var last: UInt64 = 0
        for number in context.scheduler.takeDue(now: clock.nowMillis()) {
            guard let actor = deal(number: number) else { continue }
            let (count, lsn) = await actor.expireDue()
            total += count
            if let lsn { last = max(last, lsn) }
        }
        // One wait for the whole sweep (group commit covers every deal's records).
        if last > 0, let sink { try? await sink.waitDurable(last) }
        return total
    }

    /// Starts the background expiry ticker (idempotent).
    public func startExpiryTicker() {
        ticker.withLock { task in
            guard task == nil else { return }
            let interval = context.config.expiryTickMillis
            task = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(interval))
                    guard let self else { return }
                    await self.sweepExpired()
                }
            }
        }
    }

    public func stopExpiryTicker() {
        ticker.withLock { task in
            task?.cancel()
            task = nil
        }
    }

    // MARK: - Whole-state views

    /// Copies of every deal's state with the LSN each is complete up to, and
    /// the floor: every record at or below it belongs to a captured deal (or to
    /// the access state, captured separately).
    public func capture() async -> (floor: UInt64, deals: [(state: DealState, lsn: UInt64)]) {
        let (floor, deals, _) = await captureWithAudit()
        return (floor, deals)
    }

    /// `capture`, with the audit chain's head at the floor: the floor is the
    /// LSN of the seal that covers the head (a batch boundary), read with it.
    public func captureWithAudit() async -> (floor: UInt64, deals: [(state: DealState, lsn: UInt64)], audit: AuditHead?) {
        let (floor, audit, actors) = snapshotPlan()
        var out: [(DealState, UInt64)] = []
        for actor in actors { out.append(await actor.capture()) }
        return (floor, out, audit)
    }

    /// Where a snapshot starts: the LSN every record at or below is in what is
    /// captured after it, the audit chain's head there, and the deals that
    /// exist (each captured afterwards in its actor, at its own LSN >= floor).
    public func snapshotPlan() -> (floor: UInt64, audit: AuditHead?, deals: [DealActor]) {
        creationLock.withLock { _ -> (UInt64, AuditHead?, [DealActor]) in
            if let (head, lsn) = sink?.auditHeadAndLSN { return (lsn, head, allDeals) }
            return (sink?.lastAppendedLSN ?? 0, nil, allDeals)
        }
    }

    public func digest() async -> String {
        let (_, deals) = await capture()
        return Self.digest(of: deals.map(\.state), directory: captureDirectory().0)
    }

    public static func digest(of states: [DealState], directory: Directory) -> String {
        var h = StateHasher()
        let sorted = states.sorted { $0.info.id < $1.info.id }
        h.int(Int64(sorted.count))
        for s in sorted { s.hash(into: &h) }
        directory.hash(into: &h)
        return h.hex
    }

    /// Every broken invariant in every deal (empty when all hold).
    public func invariantViolations() async -> [String] {
        var problems: [String] = []
        for actor in allDeals { problems += await actor.read { $0.invariantViolations() } }
        return problems
    }
}
