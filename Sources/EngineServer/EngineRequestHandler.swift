import WAL
import AllocationEngine
import Foundation
import Synchronization

/// Turns batches of commands from one connection into engine work and replies.
///
/// On the loop thread it parses every command, answers the connection-level ones
/// (PING, HELLO, AUTH, CLIENT, INFO, ...) and checks permissions. The engine
/// commands then run in one task per batch: consecutive deal commands are
/// grouped by deal and each group reaches its actor in one call; the batch waits
/// once for the highest LSN it produced; all replies go out in one buffer, in
/// order. Replies to changes are sent only once the change is durable.
public final class EngineRequestHandler: RequestHandler {
    public struct Settings: Sendable {
        public var access: AccessMode = .loopbackAdmin
        public var host = "127.0.0.1"
        public var port = 7379
        public var dataDir: String?
        public var durability = "none"
        public var version = "0.1.0"
        public init() {}
    }

    let engine: Engine
    let durable: DurableEngine?
    let settings: Settings
    let log: @Sendable (String) -> Void
    public let holdLatency = LatencyHistogram()
    let startedAt = monotonicSeconds()
    let commandsProcessed = Atomic<UInt64>(0)
    let errorReplies = Atomic<UInt64>(0)
    let holdsPlaced = Atomic<UInt64>(0)
    /// Hold outcomes and batch durations for `/metrics` (Metrics/RequestMetrics.swift).
    public let requestMetrics = RequestMetrics()
    let statsSource = Locked<(@Sendable () -> ServerStats)?>(nil)
    /// Per event loop (by `Session.loopIndex`), the single-deal batches of the
    /// current round (see `roundEnded`).
    let rounds: [PendingRound] = (0..<64).map { _ in PendingRound() }
    let boundPort = Atomic<Int>(0)

    /// Replication (nil without a data directory).
    let replication: Replication?
    /// Pub/sub channels and the connections' registry (PubSub/).
    let pubsub = PubSub()
    let clients = ClientRegistry()
    /// INFO's `run_id`: random per process, as Redis (Sentinel tells restarts by it).
    let runID = ReplicationIDs.random()

    public init(engine: Engine, durable: DurableEngine? = nil, settings: Settings = Settings(),
                replication: Replication? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.engine = engine
        self.durable = durable
        self.replication = replication
        self.settings = settings
        self.log = log
    }

    /// Lets INFO report the network layer's counters and the port it bound.
    public func attach(statsFrom server: EventLoopServer) {
        statsSource.withLock { $0 = { server.stats } }
        boundPort.store(server.boundPort, ordering: .relaxed)
    }

    public func sessionOpened(_ session: Session) {
        switch settings.access {
        case .loopbackAdmin: session.attachment = ConnectionState(principal: session.isLoopback ? .admin : nil)
        case .tokens: session.attachment = ConnectionState(principal: nil)
        }
        clients.opened(session, user: session.user ?? ((session.attachment as? ConnectionState)?.principal?.user))
    }

    public func sessionClosed(_ session: Session) {
        replication?.replicaGone(session: session.id)
        dropSubscriptions(session)
        clients.closed(session.id)
    }

    private func connection(_ session: Session) -> ConnectionState {
        if let c = session.attachment as? ConnectionState { return c }
        sessionOpened(session)
        return session.attachment as! ConnectionState
    }

    // MARK: - Batches

    /// Who a pending command runs as: the investors it may act for (nil: all)
    /// and the connection's authentication epoch when it was parsed, so an AUTH
    /// in the middle of a pipeline applies exactly to the commands after it.
    struct Scope: Sendable {
        var principal: Principal
        var epoch: Int
    }

    enum Step: Sendable {
        case encoded([UInt8])
        /// `tracked`: whether the reply is counted as a hold outcome (RequestMetrics).
        case pending(Operation, proto: Int, scope: Scope, tracked: RequestMetrics.Tracked)
    }

    public func handle(_ commands: [RESPCommand], session: Session,
                       complete: @escaping @Sendable (_ replyBytes: [UInt8], _ close: Bool) -> Void) {
        let conn = connection(session)
        if case .loopbackAdmin = settings.access, !session.isLoopback {
            // Protected mode: without an admin token file only loopback clients are served.
            var e = RESPEncoder(protocolVersion: session.protocolVersion)
            e.error(code: "DENIED", message: "this server runs without --admin-token-file and serves only loopback clients; start it with --admin-token-file to accept remote clients")
            log("refused a non-loopback client \(session.remoteAddress): protected mode (no --admin-token-file)")
            complete(e.bytes, true)
            return
        }
        // A directory change since the principal was resolved (a link, a KYC
        // status, a revoked token) takes effect from this batch on.
        if let hash = conn.tokenHash {
            let generation = engine.directoryGeneration
            if generation != conn.generation {
                conn.principal = engine.principal(forTokenHash: hash)
                conn.generation = generation
                if conn.principal == nil { conn.tokenHash = nil; session.user = nil }
            }
        }
        if commands.count == 1, commands[0].name == "REPLSYNC" {
            replicationSync(commands[0], session: session, connection: conn, complete: complete)
            return
        }
        if commands.count == 1, commands[0].name == "REPLSNAPSHOT" {
            replicationSnapshot(commands[0], session: session, connection: conn, complete: complete)
            return
        }
        var batch = BatchBuilder()
        batch.steps.reserveCapacity(commands.count)
        commandsProcessed.add(UInt64(commands.count), ordering: .relaxed)
        for command in commands where !batch.close { process(command, session: session, connection: conn, into: &batch) }
        let steps = batch.steps, pending = batch.pending, holds = batch.holds, close = batch.close
        if pending == 0 {
            complete(Self.join(steps), close)
            return
        }
        let started = DispatchTime.now().uptimeNanoseconds
        if let single = singleDealBatch(steps, pending: pending), session.loopIndex < rounds.count {
            rounds[session.loopIndex].add(single.requests, to: single.actor, as: single.principal,
                                          RoundMember(steps: steps, slots: single.slots, offset: 0, close: close,
                                                      holds: holds, started: started, complete: complete))
            return
        }
        Task {
            await self.run(steps, close: close, holds: holds, started: started, complete: complete)
        }
    }

    /// What `handle` builds from one read's commands.
    struct BatchBuilder {
        var steps: [Step] = []
        var pending = 0
        var holds = 0
        var close = false
    }

    /// One command into the batch (an EXEC puts its queued commands in after an array header).
    private func process(_ command: RESPCommand, session: Session, connection conn: ConnectionState, into b: inout BatchBuilder) {
        let name = command.name
        do throws(CommandError) {
            if !ArgumentText.isBinarySafe(name), let error = ArgumentText.check(command) { throw error }
            if conn.queued != nil || Self.transactionCommands.contains(name) {
                switch try transaction(name, command, session: session, connection: conn) {
                case .reply(let bytes):
                    b.steps.append(.encoded(bytes))
                case .run(let queued):
                    var header = RESPEncoder(protocolVersion: session.protocolVersion)
                    header.arrayHeader(queued.count)
                    b.steps.append(.encoded(header.bytes))
                    for q in queued { process(q, session: session, connection: conn, into: &b) }
                }
                return
            }
            if conn.subscriptions > 0, session.protocolVersion == 2, !Self.subscribedModeCommands.contains(name) {
                throw CommandError("ERR", "Can't execute '\(name.prefix(40).lowercased())': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
            }
            if let reply = try connectionCommand(name, command, session: session, connection: conn, close: &b.close) {
                b.steps.append(.encoded(reply))
                return
            }
            guard let principal = conn.principal else {
                throw CommandError("NOAUTH", "Authentication required.")
            }
            guard let spec = CommandTable.byName[name] else {
                throw CommandError("ERR", "unknown command '\(name.prefix(40).lowercased())', with args beginning with: \(Self.preview(command))")
            }
            var arguments = Arguments(command, name: name, usage: spec.usage)
            let operation = try spec.parse(&arguments)
            guard principal.role.allows(spec.permission) else {
                throw CommandError("NOPERM", "user \(principal.user) (\(principal.role.rawValue)) may not run this command")
            }
            let tracked = RequestMetrics.Tracked(name: name)
            b.steps.append(.pending(operation, proto: session.protocolVersion,
                                  scope: Scope(principal: principal, epoch: conn.epoch), tracked: tracked))
            b.pending += 1
            if tracked == .hold { b.holds += 1 }
        } catch {
            errorReplies.add(1, ordering: .relaxed)
            if name == "HOLD" { requestMetrics.holdRefused(code: error.code) }
            var e = RESPEncoder(protocolVersion: session.protocolVersion)
            e.error(code: error.code, message: error.message)
            b.steps.append(.encoded(e.bytes))
        }
    }

    /// A batch whose engine commands all go to one deal actor as one user (the
    /// hot path: a pipeline of HOLDs): it joins the loop's round, otherwise nil.
    private func singleDealBatch(_ steps: [Step], pending: Int)
        -> (actor: DealActor, principal: Principal, requests: [DealRequest], slots: [Int])? {
        guard pending <= EngineLimits.maxBatch else { return nil }
        var actor: DealActor?
        var scope: Scope?
        var requests: [DealRequest] = []
        var slots: [Int] = []
        requests.reserveCapacity(pending)
        slots.reserveCapacity(pending)
        for (k, step) in steps.enumerated() {
            guard case .pending(let operation, _, let stepScope, _) = step else { continue }
            // An unknown target may be created by a command before it: the ordered path resolves it in turn.
            guard case .deal(let request, let target) = operation, let found = resolve(target) else { return nil }
            if let actor {
                guard found === actor, let scope, scope.epoch == stepScope.epoch else { return nil }
            } else {
                actor = found
                scope = stepScope
            }
            requests.append(request)
            slots.append(k)
        }
        guard let actor, let scope else { return nil }
        return (actor, scope.principal, requests, slots)
    }

    /// Called by each loop after the connections of one `epoll_wait` were
    /// served: the single-deal batches they produced run as one actor call
    /// per deal (up to `EngineLimits.maxBatch` requests), each in a task of
    /// its own, with one wait for durability, instead of a task, an actor hop
    /// and a writer callback per connection. Each connection still gets its
    /// own replies, in its own order; batches of different connections were
    /// never ordered against each other.
    public func roundEnded(loop: Int) {
        guard loop < rounds.count else { return }
        for group in rounds[loop].take() {
            Task { await self.run(group) }
        }
    }

    private func run(_ group: RoundGroup) async {
        let result = await group.actor.execute(group.requests, as: group.principal)
        var changedAt = [Bool](repeating: false, count: group.requests.count)
        for k in result.changed { changedAt[k] = true }
        var finishes: [@Sendable (EngineError?) -> Void] = []
        finishes.reserveCapacity(group.members.count)
        for member in group.members {
            var outcomes = [DealReply?](repeating: nil, count: member.steps.count)
            var changed = [Bool](repeating: false, count: member.steps.count)
            for (k, slot) in member.slots.enumerated() {
                outcomes[slot] = result.replies[member.offset + k]
                changed[slot] = changedAt[member.offset + k]
            }
            finishes.append(finisher(member.steps, outcomes, changed, close: member.close, holds: member.holds,
                                     started: member.started, complete: member.complete))
        }
        // The read barrier of every member: the deal's last appended LSN.
        if result.observedLSN > 0, let sink = engine.sink {
            sink.whenDurable(result.observedLSN) { [finishes] error in for f in finishes { f(error) } }
        } else {
            for f in finishes { f(nil) }
        }
    }

    private static func join(_ steps: [Step]) -> [UInt8] {
        var out: [UInt8] = []
        for case .encoded(let b) in steps { out.append(contentsOf: b) }
        return out
    }

    static func preview(_ command: RESPCommand) -> String {
        (1..<min(command.count, 4)).map { "'\(command.string(at: $0).prefix(32))'" }.joined(separator: " ")
    }

    /// Runs the engine part of a batch, then answers it once durable.
    ///
    /// Commands run in arrival order. Consecutive commands for the same deal (and
    /// the same user) reach its actor in one call; a command for another deal, or
    /// one whose hold/allocation/lot is not known yet (it may be created by the
    /// commands before it), starts a new call after the current one.
    private func run(_ steps: [Step], close: Bool, holds: Int, started: UInt64,
                     complete: @escaping @Sendable ([UInt8], Bool) -> Void) async {
        var outcomes = [DealReply?](repeating: nil, count: steps.count)
        var changed = [Bool](repeating: false, count: steps.count)
        var maxLSN: UInt64 = 0
        var i = 0
        while i < steps.count {
            guard case .pending(let operation, _, let scope, _) = steps[i] else { i += 1; continue }
            switch operation {
            case .deal(let first, let target):
                guard let actor = resolve(target) else {
                    outcomes[i] = .failure(notFound(target))
                    i += 1
                    continue
                }
                var requests = [first]
                var slots = [i]
                var j = i + 1
                while j < steps.count {
                    guard case .pending(let op, _, let nextScope, _) = steps[j] else { j += 1; continue }
                    guard case .deal(let request, let nextTarget) = op, nextScope.epoch == scope.epoch,
                          let nextActor = resolve(nextTarget), nextActor === actor else { break }
                    requests.append(request)
                    slots.append(j)
                    j += 1
                }
                let result = await actor.execute(requests, as: scope.principal)
                for (k, slot) in slots.enumerated() { outcomes[slot] = result.replies[k] }
                for k in result.changed { changed[slots[k]] = true }
                // The read barrier: every reply waits until what it may show
                // is durable (the batch's changes and the deal's before them).
                maxLSN = max(maxLSN, result.observedLSN)
                i = j
            case .control(let body):
                outcomes[i] = await body(CommandContext(engine: engine, durable: durable, principal: scope.principal, replication: replication))
                i += 1
            case .engine(let body):
                if let refusal = engine.sink?.admission, refusal.refusesReads {
                    // After a durability failure nothing is answered from memory.
                    outcomes[i] = .failure(refusal.refusal)
                    i += 1
                    continue
                }
                outcomes[i] = await body(CommandContext(engine: engine, durable: durable, principal: scope.principal, replication: replication))
                // An engine-wide command may read any deal and the directory:
                // its barrier is everything appended when it finished.
                if let sink = engine.sink { maxLSN = max(maxLSN, sink.lastAppendedLSN) }
                i += 1
            }
        }
        let finish = finisher(steps, outcomes, changed, close: close, holds: holds, started: started, complete: complete)
        if maxLSN > 0, let sink = engine.sink {
            sink.whenDurable(maxLSN, finish)
        } else {
            finish(nil)
        }
    }

    /// What answers a batch once it is durable (or the log failed).
    ///
    /// The replies are encoded here, before the wait, so the log writer's
    /// thread (which runs the durability callbacks after each fdatasync, one
    /// after another) only hands finished bytes to the loops instead of
    /// encoding every batch of the group commit before its next write. Only a
    /// durability failure (rare, and final) encodes them again.
    private func finisher(_ steps: [Step], _ outcomes: [DealReply?], _ changed: [Bool], close: Bool, holds: Int,
                          started: UInt64, complete: @escaping @Sendable ([UInt8], Bool) -> Void) -> @Sendable (EngineError?) -> Void {
        let optimistic = Self.encodeReplies(steps, outcomes, changed, durabilityError: nil)
        return { durabilityError in
            let replies = durabilityError.map { Self.encodeReplies(steps, outcomes, changed, durabilityError: $0) } ?? optimistic
            if replies.errors > 0 { self.errorReplies.add(replies.errors, ordering: .relaxed) }
            let nanos = DispatchTime.now().uptimeNanoseconds - started
            self.requestMetrics.add(replies.tally)
            self.requestMetrics.commandDuration.record(nanos: nanos, count: replies.engineCommands)
            if holds > 0 {
                self.holdLatency.record(micros: nanos / 1000, count: holds)
                self.requestMetrics.holdDuration.record(nanos: nanos, count: holds)
                self.holdsPlaced.add(UInt64(holds), ordering: .relaxed)
            }
            complete(replies.bytes, close)
        }
    }

    /// A batch's replies in order, with what the metrics count of them.
    struct EncodedReplies: Sendable {
        var bytes: [UInt8]
        var errors: UInt64 = 0
        var engineCommands = 0
        var tally = RequestMetrics.Tally()
    }

    /// Encodes every step's reply. With `durabilityError`, no reply of the
    /// batch may be sent as a success, reads included (they may show what a
    /// crash takes back): changes and successes become that error.
    static func encodeReplies(_ steps: [Step], _ outcomes: [DealReply?], _ changed: [Bool],
                              durabilityError: EngineError?) -> EncodedReplies {
        var encoder = RESPEncoder(protocolVersion: 2, reservingCapacity: 64 * steps.count)
        var out = EncodedReplies(bytes: [])
        for (k, step) in steps.enumerated() {
            switch step {
            case .encoded(let bytes): encoder.raw(bytes)
            case .pending(_, let proto, _, let tracked):
                encoder.protocolVersion = proto
                var reply = outcomes[k] ?? .failure(EngineError(.invalid, "not executed"))
                if let durabilityError, changed[k] || reply.error == nil { reply = .failure(durabilityError) }
                if reply.error != nil { out.errors += 1 }
                if tracked != .other { out.tally.count(tracked, reply) }
                out.engineCommands += 1
                encoder.dealReply(reply)
            }
        }
        out.bytes = encoder.bytes
        return out
    }

    private func resolve(_ target: Target) -> DealActor? {
        switch target {
        case .deal(let d): engine.deal(d)
        case .hold(let h): engine.dealForHold(h)
        case .allocation(let a): engine.dealForAllocation(a)
        case .lot(let l): engine.dealForLot(l)
        case .row(let kind, let id): kind.index(engine.indexes).lookup(id).flatMap { engine.deal(number: $0.deal) }
        }
    }

    /// Not-found errors echo at most 128 bytes of the id the client sent.
    private func notFound(_ target: Target) -> EngineError {
        func clip(_ s: String) -> String { s.utf8.count <= 128 ? s : String(s.prefix(128)) + "..." }
        switch target {
        case .deal(let d): return EngineError(.notFound, "deal \(clip(d)) not found")
        case .hold(let h): return EngineError(.notFound, "hold \(clip(h)) not found")
        case .allocation(let a): return EngineError(.notFound, "allocation \(clip(a)) not found")
        case .lot(let l): return EngineError(.notFound, "lot \(clip(l)) not found")
        // Never echo a token.
        case .row(.inviteToken, _): return EngineError(.notFound, "invite link not found")
        case .row(let kind, let id): return EngineError(.notFound, "\(kind.name) \(clip(id)) not found")
        }
    }
}

/// A batch waiting for its loop's round to end (`EngineRequestHandler.roundEnded`).
struct RoundMember: Sendable {
    var steps: [EngineRequestHandler.Step]
    /// The step of each of its requests.
    var slots: [Int]
    /// Where its requests start in the group's.
    var offset: Int
    var close: Bool
    var holds: Int
    var started: UInt64
    var complete: @Sendable ([UInt8], Bool) -> Void
}

/// The batches of one round for one deal actor and user: one actor call.
struct RoundGroup: Sendable {
    var actor: DealActor
    var principal: Principal
    var requests: [DealRequest]
    var members: [RoundMember]
}

/// One loop's round. Only that loop's thread adds and takes, so the lock is
/// never contended; it is what makes the sharing checkable (no unsafe step).
final class PendingRound: Sendable {
    private let groups = Mutex<[RoundGroup]>([])

    func add(_ requests: [DealRequest], to actor: DealActor, as principal: Principal, _ member: RoundMember) {
        groups.withLock { groups in
            var member = member
            // The newest group of this actor and user, while the call stays within the batch limit.
            if let g = groups.lastIndex(where: { $0.actor === actor && $0.principal == principal }),
               groups[g].requests.count + requests.count <= EngineLimits.maxBatch {
                member.offset = groups[g].requests.count
                groups[g].requests.append(contentsOf: requests)
                groups[g].members.append(member)
            } else {
                groups.append(RoundGroup(actor: actor, principal: principal, requests: requests, members: [member]))
            }
        }
    }

    func take() -> [RoundGroup] {
        groups.withLock { g in
            guard !g.isEmpty else { return [] }
            let out = g
            g.removeAll(keepingCapacity: true)
            return out
        }
    }
}
