import AllocationEngine
import Foundation
import WAL

/// The metric collection: everything `GET /metrics` shows, read fresh at each
/// scrape from the counters the server and the engine already keep (the
/// handler's hold outcomes and batch durations, the network layer's
/// `ServerStats`, the log writer's `LogStats`, the snapshot and recovery
/// reports, the process) and written in Prometheus' text format. Every metric
/// is listed, with its meaning and unit, in docs/metrics.md.
///
/// A scrape costs nothing on the hold path: counters are relaxed atomics the
/// hot path adds to once per batch; engine-wide row counts are read from each
/// deal's actor in turn (one short hop per deal, like `INFO`'s deal count);
/// the log's segments are counted from its directory.
public final class EngineMetrics: Sendable {
    let handler: EngineRequestHandler
    /// Rows the row retention moved out of memory (`allocation_engine_archived_rows`).
    let archivedRows: @Sendable () -> Int

    /// - Parameter archivedRows: added to `allocation_engine_archived_rows` (rows of other kinds, when they leave memory too):
    ///   how many rows retention has archived. Reports 0 until it is wired,
    ///   in one line where the metrics are made (ServeCommand.swift).
    public init(handler: EngineRequestHandler, archivedRows: @escaping @Sendable () -> Int = { 0 }) {
        self.handler = handler
        self.archivedRows = archivedRows
    }

    /// Rows held in memory by every deal, summed.
    struct RowCounts: Sendable {
        var deals = 0
        var pendingHolds = 0
        var holds = 0
        var allocations = 0
        var archivedHolds = 0
    }

    /// Visits each deal's actor in turn; only plain counts cross the `await`.
    static func rowCounts(_ engine: Engine) async -> RowCounts {
        var total = RowCounts()
        for actor in engine.allDeals {
            let (pending, holds, allocations, archived) = await actor.read { state in
                (state.pendingHolds, state.holds.inMemory, state.allocations.inMemory, state.holds.archivedRows + state.allocations.archivedRows)
            }
            total.archivedHolds += archived
            total.deals += 1
            total.pendingHolds += pending
            total.holds += holds
            total.allocations += allocations
        }
        return total
    }

    /// The exposition text of one scrape.
    public func render() async -> String {
        let rows = await Self.rowCounts(handler.engine)
        var w = PrometheusText()
        writeRequests(&w)
        writeEngine(&w, rows)
        writeProcess(&w)
        writeConnections(&w)
        if let durable = handler.durable { writeStorage(&w, durable) }
        return w.text
    }

    // MARK: - Families

    private func writeRequests(_ w: inout PrometheusText) {
        let m = handler.requestMetrics
        let ends = handler.engine.holdEnds
        w.family("allocation_engine_holds_total", .counter,
                 "Holds by outcome: placed (HOLD answered with a hold), refused (HOLD answered with an error, by code), released (RELEASE answered OK), allocated (ALLOCATE answered with an allocation), expired (the engine expired it), cancelled (pending when its deal closed or was cancelled).")
        w.sample(labels: [("outcome", "placed")], m.placed.load)
        for (i, code) in RequestMetrics.refusalCodes.enumerated() {
            w.sample(labels: [("outcome", "refused"), ("code", code)], m.refused[i].load)
        }
        w.sample(labels: [("outcome", "released")], m.released.load)
        w.sample(labels: [("outcome", "allocated")], m.allocated.load)
        w.sample(labels: [("outcome", "expired")], ends.expired)
        w.sample(labels: [("outcome", "cancelled")], ends.cancelled)

        w.single("allocation_engine_commands_total", .counter,
                 "Commands received, every kind (engine and connection commands, errors included).",
                 handler.commandsProcessed.load(ordering: .relaxed))
        w.single("allocation_engine_command_errors_total", .counter,
                 "Commands answered with an error.", handler.errorReplies.load(ordering: .relaxed))
        w.histogram("allocation_engine_command_duration_seconds",
                    "Engine commands (not PING, INFO, AUTH, ...): from the parse of their batch to its replies being ready, after the batch's changes are durable.",
                    m.commandDuration.snapshot())
        w.histogram("allocation_engine_hold_duration_seconds",
                    "HOLD commands: from the parse of their batch to its replies being ready, after the batch's changes are durable.",
                    m.holdDuration.snapshot())
    }

    private func writeEngine(_ w: inout PrometheusText, _ rows: RowCounts) {
        w.single("allocation_engine_deals", .gauge, "Deals in the engine.", rows.deals)
        w.single("allocation_engine_pending_holds", .gauge, "Holds pending (placed, not yet allocated, released, expired or cancelled).", rows.pendingHolds)
        w.family("allocation_engine_live_rows", .gauge, "Rows kept in memory by the deals, every status, by kind.")
        w.sample(labels: [("kind", "hold")], rows.holds)
        w.sample(labels: [("kind", "allocation")], rows.allocations)
        w.single("allocation_engine_archived_rows", .gauge, "Ended holds and rejected allocations that left memory for the on-disk history (read back from it by HOLD.GET, ALLOCATION.GET and statements).", rows.archivedHolds + archivedRows())
        w.single("allocation_engine_read_only", .gauge,
                 "1 when the engine refuses changes after a durability failure (fail-stop; restart to recover), else 0.",
                 handler.engine.sink?.failureReason == nil ? 0 : 1)
    }

    private func writeProcess(_ w: inout PrometheusText) {
        w.single("allocation_engine_resident_bytes", .gauge, "Resident set size of the process (/proc/self/statm), bytes.", residentBytes())
        w.single("allocation_engine_heap_bytes", .gauge, "C heap in use (glibc mallinfo2: arena chunks in use plus mmapped chunks), bytes.", heapBytes())
        w.single("allocation_engine_uptime_seconds", .gauge, "Seconds since the server started.", seconds: monotonicSeconds() - handler.startedAt)
        w.family("allocation_engine_build_info", .gauge, "Always 1; the server's version as a label.")
        w.sample(labels: [("version", handler.settings.version)], 1)
    }

    private func writeConnections(_ w: inout PrometheusText) {
        let net = handler.statsSource.withLock { $0 }?() ?? ServerStats()
        w.single("allocation_engine_connections", .gauge, "Client connections open now.", net.connectedClients)
        w.single("allocation_engine_connections_total", .counter, "Client connections accepted.", net.totalConnections)
        w.single("allocation_engine_connections_rejected_total", .counter, "Client connections refused at the --max-clients limit.", net.rejectedConnections)
        w.family("allocation_engine_disconnects_total", .counter, "Clients the server disconnected, by reason.")
        w.sample(labels: [("reason", "protocol_error")], net.protocolErrors)
        w.sample(labels: [("reason", "output_buffer")], net.outputBufferDisconnects)
        w.sample(labels: [("reason", "idle")], net.idleDisconnects)
        w.single("allocation_engine_network_received_bytes_total", .counter, "Bytes read from clients.", net.bytesIn)
        w.single("allocation_engine_network_sent_bytes_total", .counter, "Bytes written to clients.", net.bytesOut)
    }

    private func writeStorage(_ w: inout PrometheusText, _ durable: DurableEngine) {
        let log = durable.writer.stats
        w.single("allocation_engine_log_appended_bytes_total", .counter, "Bytes written to the log's segments.", log.bytesWritten)
        w.single("allocation_engine_log_records_total", .counter, "Records appended to the log.", log.recordsAppended)
        w.single("allocation_engine_log_writes_total", .counter, "Write calls of the log writer (one per group of batches).", log.batches)
        w.single("allocation_engine_log_fsyncs_total", .counter,
                 "fdatasync calls of the log writer; records per fsync = rate(allocation_engine_log_records_total) / rate(allocation_engine_log_fsyncs_total).",
                 log.fsyncs)
        w.single("allocation_engine_log_last_lsn", .gauge, "LSN of the last record appended.", log.nextLSN - 1)
        w.single("allocation_engine_log_durable_lsn", .gauge, "Highest LSN on disk (covered by a completed fdatasync).", log.durableLSN)
        w.single("allocation_engine_log_pending_bytes", .gauge, "Bytes appended and waiting for the writer thread.", log.pendingBytes)
        w.single("allocation_engine_log_segments", .gauge, "Log segment files in the data directory.", Self.segmentFiles(durable))
        w.single("allocation_engine_log_segments_created_total", .counter, "Log segments this process created.", log.segmentsCreated)

        let snap = durable.snapshots
        w.single("allocation_engine_snapshots_total", .counter, "Snapshots written by this process.", snap.taken)
        w.single("allocation_engine_snapshot_last_duration_seconds", .gauge, "How long the last snapshot took (capture, encode, write, fsync), seconds; 0 before the first.", seconds: snap.lastSeconds)
        w.family("allocation_engine_snapshot_last_stage_seconds", .gauge, "Where the last snapshot's time went, seconds, by stage: capture (waiting for the deals' actors to copy their state), encode, encode_cpu (the CPU part of encode), durable_wait (the log reaching the newest copy), finish (tail, fsync, rename, pruning).")
        for stage in snap.lastStages.named { w.sample(labels: [("stage", stage.name)], stage.seconds) }
        w.single("allocation_engine_snapshot_last_size_bytes", .gauge, "Payload size of the last snapshot, bytes; 0 before the first.", snap.lastBytes)
        w.single("allocation_engine_snapshot_last_lsn", .gauge, "LSN the last snapshot replays from; 0 before the first.", snap.lastLSN)
        w.single("allocation_engine_snapshot_last_failed", .gauge, "1 when the last snapshot attempt failed, else 0.", snap.lastError == nil ? 0 : 1)

        let archive = durable.archiving
        w.single("allocation_engine_history_bytes", .gauge, "Bytes in the on-disk history of ended holds (DIR/history).", durable.history.bytes)
        w.single("allocation_engine_history_rows_written_total", .counter, "Ended holds this process moved out of memory into the history.", archive.rows)
        w.single("allocation_engine_history_entries_written_total", .counter, "History entries (one per chunk or batch of stragglers) this process wrote.", archive.entries)
        let ids = durable.holdIDRuns.stats
        w.single("allocation_engine_hold_ids_in_memory", .gauge, "Caller-chosen hold ids in the in-memory id map (pending holds' and those of ended holds not yet moved to an id run).", durable.engine.indexes.holds.countInMemory)
        w.single("allocation_engine_hold_ids_moved_total", .counter, "Caller hold ids this process moved from memory to on-disk id runs.", archive.idsMoved)
        w.single("allocation_engine_hold_id_runs", .gauge, "On-disk id runs (DIR/history/ids-*.run).", ids.runs)
        w.single("allocation_engine_hold_id_run_ids", .gauge, "Caller hold ids in the on-disk id runs.", ids.ids)
        w.single("allocation_engine_hold_id_run_bytes", .gauge, "Bytes of the on-disk id runs.", ids.fileBytes)
        w.single("allocation_engine_hold_id_run_memory_bytes", .gauge, "Memory the id runs keep (Bloom filters and block fences), bytes.", ids.memoryBytes)
        w.single("allocation_engine_hold_id_run_reads_total", .counter, "Lookups that passed a run's Bloom filter and read a block from disk.", ids.lookupsOnDisk)
        w.single("allocation_engine_history_failed", .gauge, "1 when the history's last write failed (ended holds then stay in memory until a restart), else 0.", archive.lastError == nil ? 0 : 1)

        w.single("allocation_engine_recovery_duration_seconds", .gauge, "How long recovery (snapshot load and log replay) took at start, seconds.", seconds: durable.recovery.seconds)
        w.single("allocation_engine_recovery_records", .gauge, "Log records replayed by recovery at start.", durable.recovery.recordsReplayed)
    }

    /// `wal-*.log` files in the data directory's log folder (not `*.dropped`).
    static func segmentFiles(_ durable: DurableEngine) -> Int {
        let dir = DataDirectory(durable.config.dataDir).wal
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
        return names.reduce(0) { $0 + (LogFormat.parseSegmentName($1) != nil ? 1 : 0) }
    }
}
