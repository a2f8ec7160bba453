import Dispatch
import Synchronization

/// Where this server stands in replication, and what that asks of every
/// change: on a replica nothing but the primary's stream changes state
/// (`READONLY`); on a primary with `--min-replicas-to-write N` a change is
/// acknowledged only once N replicas have it durable, and refused
/// (`NOREPLICAS`) while fewer than N are connected. docs/replication.md.
///
/// The sink consults it for admission and after each durable LSN, so the
/// rule lives in one place and every path (holds, engine-wide commands,
/// reads' barrier) follows it.
public final class ReplicationGate: Sendable {
    public struct Replica: Sendable {
        public var id: UInt64
        public var address: String
        public var listeningPort: Int
        /// Every record up to this LSN is durable on the replica.
        public var ackLSN: UInt64
        public var lastSeen: Double
    }

    struct Waiter {
        var lsn: UInt64
        var deadline: Double
        var callback: @Sendable (EngineError?) -> Void
    }

    struct State {
        var isReplica = false
        var minReplicas = 0
        var replicas: [UInt64: Replica] = [:]
        var waiters: [Waiter] = []
        /// Every LSN up to this one reached enough replicas once (monotonic: a
        /// replica leaving later does not un-acknowledge it, so reads of state
        /// already acknowledged never wait).
        var replicatedLSN: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Whether any rule applies (a replica, or N > 0): the hot path's admission
    /// check reads only this when none does.
    private let restricted = Atomic<Bool>(false)
    /// A replica not heard from for this long is not counted as connected (it
    /// asks at least every second while connected).
    public let replicaTimeoutSeconds: Double
    /// How long a change waits for replicas before it is answered NOREPLICAS.
    public let ackTimeoutSeconds: Double
    private let now: @Sendable () -> Double
    private let queue = DispatchQueue(label: "allocation-engine.replication-gate")

    public init(minReplicas: Int = 0, replicaTimeoutSeconds: Double = 5, ackTimeoutSeconds: Double = 10,
                now: @escaping @Sendable () -> Double = monotonicSeconds) {
        self.replicaTimeoutSeconds = replicaTimeoutSeconds
        self.ackTimeoutSeconds = ackTimeoutSeconds
        self.now = now
        state.withLock { $0.minReplicas = max(0, minReplicas) }
        restricted.store(minReplicas > 0, ordering: .relaxed)
        tick()
    }

    /// Every 100 ms, while the gate lives: answers waiters whose time is up.
    private func tick() {
        queue.asyncAfter(deadline: .now() + .milliseconds(100)) { [weak self] in
            guard let self else { return }
            self.expire()
            self.tick()
        }
    }

    // MARK: Role

    public var isReplica: Bool { state.withLock { $0.isReplica } }

    public func setReplica(_ replica: Bool) {
        let released: [Waiter] = state.withLock { s in
            s.isReplica = replica
            restricted.store(replica || s.minReplicas > 0, ordering: .relaxed)
            if replica { s.replicas = [:] }
            // A server that became a replica answers what waited with the error
            // below; one promoted has no replicas yet and keeps its waiters.
            guard replica else { return [] }
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in released { w.callback(Self.lostPrimacy) }
    }

    public var minReplicas: Int {
        get { state.withLock { $0.minReplicas } }
    }

    public func setMinReplicas(_ n: Int) {
        state.withLock { s in
            s.minReplicas = max(0, n)
            restricted.store(s.isReplica || n > 0, ordering: .relaxed)
        }
        release()
    }

    // MARK: Admission

    /// nil when changes may be taken.
    public var refusal: EngineError? {
        guard restricted.load(ordering: .relaxed) else { return nil }
        let t = now()
        return state.withLock { s -> EngineError? in
            if s.isReplica { return Self.readOnlyReplica }
            guard s.minReplicas > 0 else { return nil }
            let connected = s.replicas.values.reduce(0) { $0 + (t - $1.lastSeen <= replicaTimeoutSeconds ? 1 : 0) }
            return connected < s.minReplicas ? Self.noReplicas : nil
        }
    }

    public static let readOnlyReplica = EngineError(.readOnly, "You can't write against a read only replica.")
    public static let noReplicas = EngineError(.noReplicas, "Not enough good replicas to write.")
    static let lostPrimacy = EngineError(.readOnly, "this server became a replica before the change was acknowledged by enough replicas; it may be lost: check it on the new primary")
    static let ackTimeout = EngineError(.noReplicas, "the change is durable here but not acknowledged by enough replicas in time; it may be lost on failover: check it (a retry with the same ID is safe)")

    // MARK: Acknowledgement

    /// Runs `done` once `lsn` is on enough replicas (at once without the rule).
    public func whenReplicated(_ lsn: UInt64, _ done: @escaping @Sendable (EngineError?) -> Void) {
        // Every durable batch passes here: without a rule, no lock and no clock.
        guard restricted.load(ordering: .relaxed) else { return done(nil) }
        let deadline = now() + ackTimeoutSeconds
        let ready: Bool = state.withLock { s in
            if s.isReplica || s.minReplicas == 0 || Self.replicated(s, lsn) { return true }
            s.waiters.append(Waiter(lsn: lsn, deadline: deadline, callback: done))
            return false
        }
        if ready { done(nil) }
    }

    static func replicated(_ s: State, _ lsn: UInt64) -> Bool {
        lsn <= s.replicatedLSN || s.replicas.values.reduce(0) { $0 + ($1.ackLSN >= lsn ? 1 : 0) } >= s.minReplicas
    }

    /// A replica asked for records from `ackLSN + 1`: it has everything before durable.
    public func replicaSeen(id: UInt64, address: String, listeningPort: Int, ackLSN: UInt64) {
        let t = now()
        state.withLock { s in
            var r = s.replicas[id] ?? Replica(id: id, address: address, listeningPort: listeningPort, ackLSN: 0, lastSeen: t)
            r.ackLSN = max(r.ackLSN, ackLSN)
            r.lastSeen = t
            r.listeningPort = listeningPort
            s.replicas[id] = r
            if s.minReplicas > 0 && s.replicas.count >= s.minReplicas {
                let acks = s.replicas.values.map(\.ackLSN).sorted(by: >)
                s.replicatedLSN = max(s.replicatedLSN, acks[s.minReplicas - 1])
            }
        }
        release()
    }

    public func replicaGone(id: UInt64) {
        _ = state.withLock { $0.replicas.removeValue(forKey: id) }
    }

    /// Replicas heard from recently, by id.
    public var replicas: [Replica] {
        let t = now()
        return state.withLock { s in s.replicas.values.filter { t - $0.lastSeen <= replicaTimeoutSeconds }.sorted { $0.id < $1.id } }
    }

    /// How many connected replicas have `lsn` durable.
    public func acknowledged(_ lsn: UInt64) -> Int {
        replicas.reduce(0) { $0 + ($1.ackLSN >= lsn ? 1 : 0) }
    }

    private func release() {
        let ready: [Waiter] = state.withLock { s in
            guard !s.waiters.isEmpty else { return [] }
            var ready: [Waiter] = []
            var kept: [Waiter] = []
            for w in s.waiters {
                if s.minReplicas == 0 || Self.replicated(s, w.lsn) { ready.append(w) } else { kept.append(w) }
            }
            s.waiters = kept
            return ready
        }
        for w in ready { w.callback(nil) }
    }

    private func expire() {
        let t = now()
        let late: [Waiter] = state.withLock { s in
            guard !s.waiters.isEmpty else { return [] }
            var late: [Waiter] = []
            s.waiters.removeAll { w in
                if w.deadline <= t { late.append(w); return true }
                return false
            }
            return late
        }
        for w in late { w.callback(Self.ackTimeout) }
    }
}
