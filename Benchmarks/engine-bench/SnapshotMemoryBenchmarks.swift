import AllocationEngine
import CLinux
import Foundation
import Snapshot
import Synchronization
import WAL

/// Issue 10: how much memory a snapshot takes on top of the live state, the old
/// way (every deal copied, the whole payload encoded, then copied once more into
/// the file image) against the streamed one (`DurableEngine.snapshot`: one deal
/// copied, encoded and appended at a time). Both in the same process, on the same
/// state, while callers keep placing and releasing holds in every deal (so the
/// copy-on-write copies are paid for, as in a server under load).
///
///   swift run -c release engine-bench --only snapmem [--quick]
///
/// Peak: VmHWM after resetting it (`/proc/self/clear_refs`), minus VmRSS before.
struct SnapshotMemoryBenchmarks {
    let options: BenchOptions

    func run(into report: inout BenchReport) async {
        let shapes: [(deals: Int, holds: Int)] = options.quick ? [(200, 500), (1, 100_000)] : [(1000, 1000), (1, 1_000_000)]
        for shape in shapes {
            for method in ["one-piece", "streamed", "one-piece", "streamed"] {
                let r = await measure(deals: shape.deals, holdsPerDeal: shape.holds, streamed: method == "streamed")
                report.row("snapshot, \(shape.deals) deals x \(shape.holds) holds, \(method)",
                           String(format: "peak +%.1f MB over %.1f MB resident, %.1f MB file, %.2f s", r.peak / 1e6, r.base / 1e6, r.bytes / 1e6, r.seconds))
            }
        }
    }

    struct Result { var peak: Double; var base: Double; var bytes: Double; var seconds: Double }

    func measure(deals: Int, holdsPerDeal: Int, streamed: Bool) async -> Result {
        let dir = options.workDir + "/snapmem"
        try? FileManager.default.removeItem(atPath: dir)
        var config = DurableConfig(dataDir: dir)
        config.mode = .none
        config.snapshotEveryRecords = 0
        config.snapshotEverySeconds = 0
        let durable = try! await DurableEngine.open(config)
        let engine = durable.engine
        var actors: [DealActor] = []
        for d in 0..<deals {
            try! await engine.createDeal(DealSpec(id: "d\(d)"))
            try! await engine.addLot(deal: "d\(d)", LotSpec(id: "d\(d)-a", unitsTotal: .whole(holdsPerDeal * 4), unitCost: .whole(20)))
            actors.append(engine.deal("d\(d)")!)
        }
        // Holds with caller ids, so the traffic below can release them by name.
        for (d, a) in actors.enumerated() {
            var placed = 0
            while placed < holdsPerDeal {
                let n = min(1024, holdsPerDeal - placed)
                let batch = (0..<n).map { k -> DealRequest in
                    var h = HoldRequest(investor: "inv-\(k % 50)", units: .whole(1), price: .whole(25))
                    h.id = "x\(d)-\(placed + k)"
                    return .hold(h)
                }
                _ = await engine.submit(batch, to: a)
                placed += n
            }
        }
        _ = malloc_trim(0)
        let base = Double(Self.status("VmRSS"))
        Self.resetPeak()
        // Traffic during the snapshot that changes rows without adding any:
        // releases, 64 at a time, deal after deal (each deal's first change
        // after its copy is taken pays for the copy-on-write copy of what it touches).
        let stop = Stop()
        let traffic = Task {
            var round = 0
            while !stop.isSet && round * 64 < holdsPerDeal {
                for (d, a) in actors.enumerated() where !stop.isSet {
                    let releases = (0..<min(64, holdsPerDeal - round * 64)).map { DealRequest.release(hold: "x\(d)-\(round * 64 + $0)") }
                    _ = await engine.submit(releases, to: a)
                }
                round += 1
            }
        }
        let started = monotonicSeconds()
        var bytes = 0
        if streamed {
            bytes = try! await durable.snapshot().lastBytes
        } else {
            let (floor, states, audit) = await engine.captureWithAudit()
            let (directory, directoryLSN) = engine.captureDirectory()
            let image = EngineImage(floorLSN: floor, deals: states, directory: directory, directoryLSN: directoryLSN, audit: audit)
            let store = SnapshotStore(directory: dir + "/one-piece", io: PosixFileIO())
            let payload = StateCodec.encode(image)
            bytes = payload.count
            _ = try! store.write(lsn: image.replayFrom, time: 0, payload: payload)
        }
        let seconds = monotonicSeconds() - started
        let peak = Double(Self.status("VmHWM")) - base
        stop.set()
        _ = await traffic.value
        try! await durable.close()
        try? FileManager.default.removeItem(atPath: dir)
        _ = malloc_trim(0)
        return Result(peak: peak, base: base, bytes: Double(bytes), seconds: seconds)
    }

    /// A field of /proc/self/status, in bytes.
    static func status(_ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    /// Resets VmHWM to the current resident size (Linux: "5" to clear_refs).
    static func resetPeak() {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { return }
        _ = "5".withCString { write(fd, $0, 1) }
        close(fd)
    }

    final class Stop: Sendable {
        private let flag = Atomic<Bool>(false)
        var isSet: Bool { flag.load(ordering: .relaxed) }
        func set() { flag.store(true, ordering: .relaxed) }
    }
}
