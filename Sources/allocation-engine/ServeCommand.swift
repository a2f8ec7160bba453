import AllocationEngine
import CLinux
import Dispatch
import EngineServer
import Foundation
import Synchronization
import WAL

enum ServeCommand {
    static let version = "0.1.0"

    static let specs: [Options.Spec] = [
        .init(name: "data-dir", value: "DIR", help: "data directory, created if missing (default ./data)"),
        .init(name: "bind", value: "HOST", help: "address to listen on (default 127.0.0.1)"),
        .init(name: "port", value: "N", help: "TCP port (default 7379)"),
        .init(name: "metrics-port", value: "N", help: "serve Prometheus metrics at http://HOST:N/metrics (default off; 0 = any free port)"),
        .init(name: "metrics-bind", value: "HOST", help: "address of the metrics endpoint (default 127.0.0.1)"),
        .init(name: "durability", value: "MODE", help: "strict (fsync before every reply, default) | periodic | none"),
        .init(name: "fsync-interval-ms", value: "N", help: "periodic mode: fsync at most every N ms (default 1000)"),
        .init(name: "admin-token-file", value: "PATH", help: "file holding the staff admin token; every client must AUTH"),
        .init(name: "snapshot-every-records", value: "N", help: "snapshot after N logged changes (default 5000000, 0 = off)"),
        .init(name: "snapshot-every-seconds", value: "S", help: "snapshot after S seconds with changes (default 600, 0 = off)"),
        .init(name: "keep-snapshots", value: "K", help: "snapshots kept; older log segments are deleted (default 3)"),
        .init(name: "segment-mb", value: "N", help: "log segment size in MiB (default 64)"),
        .init(name: "retain-ended-seconds", value: "S", help: "ended holds stay in memory S seconds, then leave for the on-disk history (default 10, 0 = keep all in memory)"),
        .init(name: "retain-ended-rows", value: "N", help: "... or sooner once a deal has N ended holds in memory (default 65536)"),
        .init(name: "retain-ended-rows-total", value: "N", help: "... or once all deals together have N (each then keeps its fair share; default 262144, about 28 MiB)"),
        .init(name: "hold-ids-in-memory", value: "N", help: "caller hold ids of ended holds kept in memory before they move to an on-disk id run (default 65536)"),
        .init(name: "prune-log", value: nil, help: "delete log segments covered by the oldest kept snapshot (default: keep them as history)"),
        .init(name: "hold-ttl-seconds", value: "S", help: "TTL of a hold without TTL (default 1800)"),
        .init(name: "max-clients", value: "N", help: "maximum connections (default 10000)"),
        .init(name: "max-output-buffer-mb", value: "N", help: "per-client unsent reply limit; a client over it is disconnected (default 64)"),
        .init(name: "max-bulk-bytes", value: "N", help: "largest bulk argument (default 524288)"),
        .init(name: "max-inline-bytes", value: "N", help: "longest inline command line (default 65536)"),
        .init(name: "max-pipeline", value: "N", help: "commands taken from one client per batch (default 1024)"),
        .init(name: "idle-timeout", value: "S", help: "close clients idle for S seconds (default 0 = never)"),
        .init(name: "loops", value: "N", help: "event-loop threads (default: one per two cores, at most 2)"),
        .init(name: "truncate-corrupt", value: nil, help: "cut the log at a damaged record instead of refusing to start"),
        .init(name: "replicaof", value: "HOST:PORT", help: "start as a replica of that primary (default: as the data directory was left; see docs/replication.md)"),
        .init(name: "masterauth-file", value: "PATH", help: "file holding the token a replica AUTHs with at its primary (default: the --admin-token-file token)"),
        .init(name: "min-replicas-to-write", value: "N", help: "acknowledge a change only once N replicas have it durable; refuse changes (NOREPLICAS) with fewer connected (default 0)"),
        .init(name: "replica-ack-timeout-ms", value: "N", help: "how long a change waits for those replicas before NOREPLICAS (default 10000)"),
        .init(name: "repl-backlog-mb", value: "N", help: "recent log kept in memory for replicas, in MiB (default 16)"),
        .init(name: "replica-priority", value: "N", help: "Sentinel's slave_priority (default 100; 0 = never promote)"),
    ] + debugSpecs

    #if DEBUG
    /// Fault injection for the process tests of the fail-stop path; not in release builds.
    static let debugSpecs: [Options.Spec] = [
        .init(name: "debug-fail-fdatasync", value: "N", help: "debug builds: fail the Nth fdatasync with EIO (tests of the fail-stop exit)"),
    ]
    static func debugFileIO(_ o: Options) throws -> (any FileIO)? {
        guard o.string("debug-fail-fdatasync") != nil else { return nil }
        return FaultInjectingFileIO(base: PosixFileIO(), failingFdatasync: try o.int("debug-fail-fdatasync", default: 1, range: 1...Int.max))
    }
    #else
    static let debugSpecs: [Options.Spec] = []
    static func debugFileIO(_ o: Options) throws -> (any FileIO)? { nil }
    #endif

    static func run(_ args: [String]) async throws -> Int32 {
        let o = try Options(command: "allocation-engine serve", specs: specs, arguments: args)
        if o.wantsHelp {
            print(o.helpText(summary: "Starts the allocation engine: a Redis-protocol server in front of a durable engine.",
                             usage: "allocation-engine serve [options]"))
            return 0
        }
        guard o.positional.isEmpty else { throw UsageError("unexpected argument '\(o.positional[0])'") }
        // One malloc arena per core, before any thread allocates (HeapTrimmer.limitArenas).
        HeapTrimmer.limitArenas(to: max(2, ProcessInfo.processInfo.activeProcessorCount))
        // Chunks of holds as mappings of their own, freed to the kernel when they leave.
        HeapTrimmer.mapLargeBlocks()
        let signals = StopSignals()
        var durable = DurableConfig(dataDir: o.string("data-dir") ?? "./data")
        let modeText = o.string("durability") ?? "strict"
        guard let mode = DurabilityMode(rawValue: modeText) else {
            throw UsageError("--durability must be strict, periodic or none, got '\(modeText)'")
        }
        durable.mode = mode
        durable.periodicIntervalMillis = try o.int("fsync-interval-ms", default: 1000, range: 1...60_000)
        durable.snapshotEveryRecords = UInt64(try o.int("snapshot-every-records", default: 5_000_000, range: 0...Int.max))
        durable.snapshotEverySeconds = Double(try o.int("snapshot-every-seconds", default: 600, range: 0...86_400 * 30))
        durable.keepSnapshots = try o.int("keep-snapshots", default: 3, range: 1...100)
        durable.segmentBytes = try o.int("segment-mb", default: 64, range: 1...4096) << 20
        durable.engine.defaultHoldTTLMillis = Int64(try o.int("hold-ttl-seconds", default: 1800, range: 1...7 * 86_400)) * 1000
        durable.truncateCorruption = o.flag("truncate-corrupt")
        let retainSeconds = try o.int("retain-ended-seconds", default: 10, range: 0...86_400 * 30)
        durable.retention.enabled = retainSeconds > 0
        durable.retention.endedMillis = Int64(retainSeconds) * 1000
        durable.retention.maxEndedPerDeal = try o.int("retain-ended-rows", default: 65_536, range: 1024...1 << 30)
        durable.retention.maxEndedTotal = try o.int("retain-ended-rows-total", default: 262_144, range: 1024...1 << 34)
        durable.retention.callerIDsInMemory = try o.int("hold-ids-in-memory", default: 65_536, range: 1...1 << 30)
        durable.pruneLog = o.flag("prune-log")
        durable.minReplicasToWrite = try o.int("min-replicas-to-write", default: 0, range: 0...16)
        durable.replicaAckTimeoutSeconds = Double(try o.int("replica-ack-timeout-ms", default: 10_000, range: 10...3_600_000)) / 1000
        var replicaOf: (host: String, port: Int)?
        if let text = o.string("replicaof") {
            guard let parsed = Replication.parseAddress(text) else { throw UsageError("--replicaof must be HOST:PORT or 'HOST PORT', got '\(text)'") }
            replicaOf = parsed
        } else if let saved = Replication.savedPrimary(dataDir: durable.dataDir) {
            replicaOf = saved
        }
        durable.startAsReplica = replicaOf != nil
        var replicationSettings = Replication.Settings()
        replicationSettings.backlogBytes = try o.int("repl-backlog-mb", default: 16, range: 1...4096) << 20
        replicationSettings.priority = try o.int("replica-priority", default: 100, range: 0...1_000_000)

        var limits = NetLimits()
        limits.maxConnections = try o.int("max-clients", default: 10_000, range: 1...1_000_000)
        limits.maxOutputBufferBytes = try o.int("max-output-buffer-mb", default: 64, range: 1...4096) << 20
        limits.maxBulkLength = try o.int("max-bulk-bytes", default: NetLimits.defaultMaxBulkLength, range: 1024...(64 << 20))
        limits.maxInlineLength = try o.int("max-inline-bytes", default: NetLimits.defaultMaxInlineLength, range: 1024...(64 << 20))
        limits.maxPendingCommands = try o.int("max-pipeline", default: NetLimits.defaultMaxPendingCommands, range: 1...EngineLimits.maxBatch)
        limits.idleTimeoutSeconds = Double(try o.int("idle-timeout", default: 0, range: 0...86_400 * 30))
        let host = o.string("bind") ?? "127.0.0.1"
        let port = try o.int("port", default: 7379, range: 0...65_535)
        let metricsPort: Int? = o.string("metrics-port") == nil ? nil : try o.int("metrics-port", default: 0, range: 0...65_535)
        let metricsHost = o.string("metrics-bind") ?? "127.0.0.1"
        if o.string("metrics-bind") != nil && metricsPort == nil { throw UsageError("--metrics-bind needs --metrics-port") }
        let loops = try o.int("loops", default: ServerConfig.defaultLoopCount, range: 1...64)

        var access = AccessMode.loopbackAdmin
        if let path = o.string("admin-token-file") {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw UsageError("cannot read --admin-token-file \(path)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.count >= 16 else { throw UsageError("the admin token in \(path) must be at least 16 characters") }
            access = .tokens(adminTokenHash: SHA256.hex(token))
            replicationSettings.masterAuth = token
        }
        if let path = o.string("masterauth-file") {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw UsageError("cannot read --masterauth-file \(path)")
            }
            replicationSettings.masterAuth = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        raiseOpenFileLimit(wanted: limits.maxConnections + 256)

        // One server per data directory.
        let lock = try DataDirectoryLock(DataDirectory(durable.dataDir))
        defer { lock.release() }

        // A replica whose log parted from its primary's starts over (Replication.setAsideDiverged).
        if let aside = try Replication.setAsideDiverged(dataDir: durable.dataDir) {
            if aside.fromSnapshot {
                logLine("replication: this replica is further behind than its primary's log reaches; its data was moved to \(aside.folder) and it copies the primary's snapshot")
            } else {
                logLine("replication: this replica's log had parted from its primary's; its data was moved to \(aside.folder) and it syncs again from the primary's log")
            }
        }
        // A replica marked for a full resync copies its primary's snapshot, the
        // log after it and the history before recovery opens them (SnapshotTransfer).
        var bootstrapSettings = replicationSettings
        bootstrapSettings.listeningPort = port
        _ = try Replication.bootstrapIfMarked(dataDir: durable.dataDir, primary: replicaOf, settings: bootstrapSettings,
                                              segmentBytes: durable.segmentBytes, log: logLine)
        // Recovery's progress: redrawn on a terminal, one summary line otherwise.
        let progress = ProgressReporter("recovery", walDirectory: DataDirectory(durable.dataDir).wal, summary: { logLine($0) })
        durable.recoveryProgress = { records, _, segment, offset in progress.update(records: records, segment: segment, offset: offset) }
        progress.begin()
        let engine: DurableEngine
        do {
            let io: any FileIO = try debugFileIO(o) ?? PosixFileIO()
            engine = try await DurableEngine.open(durable, io: io, log: { progress.clearLine(); logLine($0) })
        } catch {
            progress.clearLine()
            throw error
        }
        progress.end(records: engine.recovery.recordsReplayed, seconds: engine.recovery.seconds)
        progress.summary()
        var settings = EngineRequestHandler.Settings()
        settings.access = access
        settings.host = host
        settings.port = port
        settings.dataDir = durable.dataDir
        settings.durability = mode.rawValue
        settings.version = version
        replicationSettings.listeningPort = port
        let replication = Replication(durable: engine, settings: replicationSettings, log: logLine)
        // Before any change is taken: what this primary writes is a history of its own.
        if replicaOf == nil { try replication.startAsPrimary() }
        let handler = EngineRequestHandler(engine: engine.engine, durable: engine, settings: settings, replication: replication, log: logLine)
        let server = try EventLoopServer(config: ServerConfig(host: host, port: port, loops: loops, limits: limits, logger: logLine),
                                         handler: handler)
        try server.start()
        handler.attach(statsFrom: server)
        engine.startBackground()
        replication.setListeningPort(server.boundPort)
        if let replicaOf { await replication.replicate(from: replicaOf.host, port: replicaOf.port) }
        if case .loopbackAdmin = access {
            logLine("WARNING: no --admin-token-file: only loopback clients are served, each as the staff admin (protected mode)")
        }
        logLine("listening on \(host):\(server.boundPort), data in \(durable.dataDir), durability \(mode.rawValue), pid \(getpid())")
        var metrics: MetricsHTTPServer?
        if let metricsPort {
            do {
                let collection = EngineMetrics(handler: handler)
                let listener = try MetricsHTTPServer(config: MetricsHTTPConfig(host: metricsHost, port: metricsPort),
                                                     render: { await collection.render() })
                metrics = listener
                logLine("metrics on \(listener.url)")
            } catch {
                logLine("cannot serve metrics on \(metricsHost):\(metricsPort): \(error); shutting down")
                server.shutdown(gracefulTimeoutSeconds: 0)
                try? await engine.close()
                throw error
            }
        }

        let stop = await waitForStop(engine, replication: replication, signals: signals)
        /// Every way out: no new connections, requests in flight finished
        /// (or cut after `graceSeconds`), the follower stopped, the log closed.
        func shutDown(graceSeconds: Double) async throws {
            metrics?.stop()
            server.stopAccepting()
            server.shutdown(gracefulTimeoutSeconds: graceSeconds)
            await replication.stop()
            try await engine.close()
        }
        if case .replicationStopped(let reason) = stop {
            logLine("FATAL: replication stopped: \(reason). Exiting with status \(Replication.resyncExitCode) so a supervisor restarts this replica (into a full resync from the primary's log when its log parted)")
            try? await shutDown(graceSeconds: 5)
            return Replication.resyncExitCode
        }
        if case .durabilityFailure(let reason) = stop {
            // Fail-stop, as PostgreSQL PANICs after a failed fsync: memory may
            // hold changes the disk does not, and the kernel may have dropped
            // the failed pages, so retrying is no way back. Nothing is answered
            // from memory any more (the engine refuses every command); requests
            // in flight get their error, then the process exits for its
            // supervisor to restart it into the durable state by recovery.
            logLine("FATAL: durability failure: \(reason). Nothing more is answered from memory; exiting with status \(durabilityFailureExitCode) so a supervisor restarts the engine into the durable state (recovery from the log)")
            try? await shutDown(graceSeconds: 5)
            return durabilityFailureExitCode
        }
        logLine("shutting down: no new connections, finishing requests in flight")
        do {
            try await shutDown(graceSeconds: 10)
            logLine("log flushed and closed; shutdown complete")
        } catch {
            logLine("error closing the log: \(error)")
            return 1
        }
        return 0
    }

    /// The exit status after a failed write or fsync of the log (sysexits'
    /// EX_IOERR), distinct from a usage error (2) or a failed start (1), so a
    /// supervisor (systemd `Restart=on-failure`) restarts the engine.
    static let durabilityFailureExitCode: Int32 = 74

    enum Stop: Sendable {
        case signal
        case durabilityFailure(String)
        case replicationStopped(String)
    }

    /// Waits for SIGTERM/SIGINT (caught by `signals` since the start) or a
    /// durability failure of the engine, whichever comes first.
    static func waitForStop(_ engine: DurableEngine, replication: Replication, signals: StopSignals) async -> Stop {
        let latch = StopLatch()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Stop, Never>) in
            latch.arm(continuation)
            engine.onDurabilityFailure { latch.finish(.durabilityFailure($0)) }
            replication.onRestartNeeded { latch.finish(.replicationStopped($0)) }
            signals.onFirst { latch.finish(.signal) }
        }
    }

    /// Resumes the wait once, with whichever stop came first.
    final class StopLatch: Sendable {
        private let continuation = Locked<CheckedContinuation<Stop, Never>?>(nil)
        func arm(_ k: CheckedContinuation<Stop, Never>) { continuation.withLock { $0 = k } }
        func finish(_ stop: Stop) {
            let k = continuation.withLock { k in
                defer { k = nil }
                return k
            }
            k?.resume(returning: stop)
        }
    }
}

/// SIGTERM and SIGINT, caught from the first line of `serve`, before recovery
/// and long before the port listens: a signal that arrives while the server
/// starts is remembered and stops it as soon as it is up. (They used to be
/// dispatch sources installed after the port listened; a dispatch source
/// registers asynchronously, so a SIGTERM sent as soon as the port answered
/// could land while the signal was ignored and nobody listened: lost.)
/// The handler is a plain `sigaction` in CLinux/shim.h writing the signal
/// number to a pipe; a thread reads the pipe. A second signal exits at once:
/// the log makes that safe (nothing acknowledged is lost).
final class StopSignals: Sendable {
    private struct State {
        var count = 0
        var waiter: (@Sendable () -> Void)?
    }
    private let state = Locked(State())

    init() {
        signal(SIGPIPE, SIG_IGN)
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0, fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0,
              ae_install_stop_signals(fds[1]) == 0 else {
            // Without the handler the signals keep their default action: they
            // still stop the process (not gracefully, and the log is safe).
            logLine("WARNING: cannot install the SIGTERM/SIGINT handler: \(String(cString: strerror(errno))); a signal stops the server without a clean shutdown")
            return
        }
        let readEnd = fds[0]
        let thread = Thread { [self] in
            var b: UInt8 = 0
            while true {
                let n = read(readEnd, &b, 1)
                if n == 1 { self.received(Int32(b)) } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
        thread.name = "stop-signals"
        thread.start()
    }

    private func received(_ sig: Int32) {
        let (n, waiter) = state.withLock { s -> (Int, (@Sendable () -> Void)?) in
            s.count += 1
            defer { s.waiter = nil }
            return (s.count, s.waiter)
        }
        if n == 1 {
            logLine("signal \(sig == SIGINT ? "SIGINT" : "SIGTERM") received")
            waiter?()
        } else {
            logLine("second signal: exiting now")
            _exit(130)
        }
    }

    /// Calls `body` once the first signal has arrived (at once if it already has).
    func onFirst(_ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.count > 0 { return true }
            s.waiter = body
            return false
        }
        if now { body() }
    }
}

/// Raises the soft open-file limit (often 1024) toward the hard one, so the
/// connection limit is not silently capped by the kernel.
func raiseOpenFileLimit(wanted: Int) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    let target = min(rlim_t(wanted), limit.rlim_max)
    if limit.rlim_cur < target {
        limit.rlim_cur = target
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logLine("WARNING: could not raise the open-file limit to \(target): \(String(cString: strerror(errno)))")
        }
    }
    if Int(limit.rlim_cur) < wanted {
        logLine("WARNING: open-file limit \(limit.rlim_cur) is below --max-clients; raise it (ulimit -n) to serve that many clients")
    }
}

/// An exclusive `flock` on `DIR/LOCK`, so two servers never share a data directory.
final class DataDirectoryLock {
    let fd: Int32
    init(_ dir: DataDirectory) throws {
        try? FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        fd = open(dir.lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw UsageError("cannot open \(dir.lockFile): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw UsageError("data directory \(dir.path) is in use by another allocation-engine process")
        }
    }
    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
