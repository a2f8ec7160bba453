import AllocationEngine
import Foundation

/// INFO: `key:value` lines in `# Section` blocks, like Redis.
extension EngineRequestHandler {
    func info(section: String) -> String {
        var out = ""
        func add(_ name: String, _ lines: [(String, String)]) {
            guard section == "all" || section == "everything" || section == "default" || section == name.lowercased() else { return }
            out += "# \(name)\r\n"
            for (k, v) in lines { out += "\(k):\(v)\r\n" }
            out += "\r\n"
        }
        add("Server", [
            ("server", "allocation-engine"), ("version", settings.version),
            // The Redis version whose protocol and Sentinel interface this server speaks (clients gate features on it).
            ("redis_version", "7.0.0"), ("redis_mode", "standalone"), ("run_id", runID), ("process_id", String(getpid())),
            ("tcp_port", String(boundPort.load(ordering: .relaxed) == 0 ? settings.port : boundPort.load(ordering: .relaxed))), ("bind", settings.host),
            ("uptime_in_seconds", String(Int(monotonicSeconds() - startedAt))),
            ("data_dir", settings.dataDir ?? ""), ("durability", settings.durability),
        ])
        add("Memory", [
            ("used_memory_rss", String(residentBytes())),
            ("used_memory_rss_human", String(format: "%.1fM", Double(residentBytes()) / 1_048_576)),
        ])
        let net = statsSource.withLock { $0 }?()
        add("Clients", [
            ("connected_clients", String(net?.connectedClients ?? 0)),
            ("total_connections_received", String(net?.totalConnections ?? 0)),
            ("rejected_connections", String(net?.rejectedConnections ?? 0)),
            ("protocol_errors", String(net?.protocolErrors ?? 0)),
            ("refused_inline_lines", String(net?.refusedInlineLines ?? 0)),
            ("output_buffer_disconnects", String(net?.outputBufferDisconnects ?? 0)),
            ("idle_disconnects", String(net?.idleDisconnects ?? 0)),
            ("total_net_input_bytes", String(net?.bytesIn ?? 0)),
            ("total_net_output_bytes", String(net?.bytesOut ?? 0)),
        ])
        // The fields Redis Sentinel and operators read (Replication/Replication.swift).
        add("Replication", replication?.infoLines() ?? [("role", "master"), ("connected_slaves", "0")])
        add("Engine", [
            ("deals", String(engine.allDeals.count)),
            ("total_commands_processed", String(commandsProcessed.load(ordering: .relaxed))),
            ("total_error_replies", String(errorReplies.load(ordering: .relaxed))),
            ("holds_requested", String(holdsPlaced.load(ordering: .relaxed))),
            ("read_only", engine.sink?.failureReason == nil ? "0" : "1"),
            ("read_only_reason", engine.sink?.failureReason ?? ""),
        ])
        if let durable {
            let s = durable.writer.stats
            add("WAL", [
                ("records_appended", String(s.recordsAppended)), ("next_lsn", String(s.nextLSN)),
                ("durable_lsn", String(s.durableLSN)), ("batches", String(s.batches)), ("fsyncs", String(s.fsyncs)),
                ("fsyncs_per_sec", String(format: "%.1f", s.fsyncsPerSecond)),
                ("records_per_fsync", String(format: "%.1f", s.recordsPerFsync)),
                ("last_batch_records", String(s.lastBatchRecords)), ("bytes_written", String(s.bytesWritten)),
                ("pending_bytes", String(s.pendingBytes)), ("segments_created", String(s.segmentsCreated)),
                ("failure", s.failure ?? ""),
                ("recovered_records", String(durable.recovery.recordsReplayed)),
                ("recovery_seconds", String(format: "%.3f", durable.recovery.seconds)),
            ])
            let snap = durable.snapshots
            add("Snapshot", [
                ("snapshots_taken", String(snap.taken)), ("last_snapshot_lsn", String(snap.lastLSN)),
                ("last_snapshot_bytes", String(snap.lastBytes)),
                ("last_snapshot_seconds", String(format: "%.3f", snap.lastSeconds)),
            ] + snap.lastStages.named.map { ("last_snapshot_\($0.name)_seconds", String(format: "%.3f", $0.seconds)) } + [
                ("last_snapshot_error", snap.lastError ?? ""),
            ])
            let a = durable.archiving
            let ids = durable.holdIDRuns.stats
            add("History", [
                ("retention_enabled", durable.config.retention.enabled ? "1" : "0"),
                ("retain_ended_seconds", String(durable.config.retention.endedMillis / 1000)),
                ("retain_ended_rows", String(durable.config.retention.maxEndedPerDeal)),
                ("retain_ended_rows_total", String(durable.config.retention.maxEndedTotal)),
                ("holds_archived_since_start", String(a.rows)), ("history_entries_since_start", String(a.entries)),
                ("history_bytes", String(durable.history.bytes)), ("history_last_error", a.lastError ?? ""),
                ("log_pruned", durable.config.pruneLog ? "1" : "0"),
                ("hold_ids_in_memory", String(durable.engine.indexes.holds.countInMemory)),
                ("hold_ids_moved_since_start", String(a.idsMoved)),
                ("hold_id_runs", String(ids.runs)), ("hold_id_run_ids", String(ids.ids)),
                ("hold_id_run_bytes", String(ids.fileBytes)), ("hold_id_run_memory_bytes", String(ids.memoryBytes)),
                ("hold_id_run_lookups", String(ids.lookupsOnDisk)),
            ])
        }
        add("Latency", [
            ("hold_samples", String(holdLatency.total)),
            ("hold_p50_usec", String(holdLatency.percentile(50))),
            ("hold_p99_usec", String(holdLatency.percentile(99))),
            ("hold_p999_usec", String(holdLatency.percentile(99.9))),
        ])
        return out
    }
}

/// Resident set size of this process, from /proc/self/statm.
public func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
