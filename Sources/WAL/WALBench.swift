// Small benchmarks, callable from engine-bench or tests.
import Foundation
import Synchronization

public enum WALBench {
    /// Appends `records` records of `payloadBytes` from `appenders` concurrent
    /// tasks, each waiting for durability of every record (as a request would).
    /// The directory should be empty or missing; it is left in place.
    public static func appendThroughput(
        directory: String, records: Int, payloadBytes: Int, mode: DurabilityMode, appenders: Int
    ) async throws -> (recordsPerSecond: Double, fsyncsPerSecond: Double, recordsPerFsync: Double) {
        precondition(records > 0 && appenders > 0 && payloadBytes >= 0)
        let io = PosixFileIO()
        let log = try LogWriter(config: LogConfig(directory: directory, mode: mode), io: io, nextLSN: 1)
        let payload = [UInt8](repeating: 0xAB, count: payloadBytes)
        let start = LogWriter.monotonicNanos()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for a in 0..<appenders {
                let share = records / appenders + (a < records % appenders ? 1 : 0)
                group.addTask {
                    for _ in 0..<share {
                        let lsn = try log.append(type: 1, time: 0) { $0.bytes(payload) }
                        try await log.durable(lsn)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = Double(LogWriter.monotonicNanos() - start) / 1e9
        let stats = log.stats
        try log.close()
        let fsyncs = Double(stats.fsyncs)
        return (Double(records) / elapsed, fsyncs / elapsed, fsyncs == 0 ? 0 : Double(records) / fsyncs)
    }

    /// Scans the log in `directory` and returns records per second.
    public static func scanThroughput(directory: String) throws -> Double {
        let start = LogWriter.monotonicNanos()
        var checksum: UInt64 = 0
        let summary = try LogReader.scan(directory: directory, io: PosixFileIO()) { record in
            checksum &+= record.lsn &+ UInt64(record.payload.count)
        }
        let elapsed = Double(LogWriter.monotonicNanos() - start) / 1e9
        precondition(checksum != 0 || summary.records == 0)
        return Double(summary.records) / max(elapsed, 1e-9)
    }
}
