import WAL
import Dispatch
import Foundation
import Synchronization

/// Runs one seed of the power-loss campaign and reports it as hung if it has
/// not finished within `POWERLOSS_SEED_LIMIT` seconds (default 180; a seed
/// takes well under a second, a few under a sanitizer). A hang is a failure
/// with its seed number, never a pass: the campaign records it and goes on
/// with the next seed (the hung run is abandoned, its threads left blocked),
/// so one hang neither stops a long run nor hides the seeds after it.
///
/// The limit is measured on a Dispatch timer, not on the Swift concurrency
/// pool, so it fires even if every cooperative thread is blocked. It is far
/// above the harness's own 60 s stall checks (`PowerLossRun.waitUntil`):
/// those report a stuck batch from inside the run; this catches an await
/// that never returns anywhere else (a continuation never resumed after a
/// crash, a close waiting on a writer that will not write).
enum SeedWatchdog {
    static let limitSeconds = Int(PowerLossSettings.number("POWERLOSS_SEED_LIMIT") ?? 180)

    struct Outcome: Sendable {
        var problems: [String]
        var tally: PowerLossTally
        var hung = false
    }

    static func run(seed: UInt64, skipOneFdatasync: Bool = false) async -> Outcome {
        let recent = RecentEvents()
        let limit = limitSeconds
        return await withCheckedContinuation { (k: CheckedContinuation<Outcome, Never>) in
            let once = ResumeOnce(k)
            let timer = DispatchWorkItem {
                var tally = PowerLossTally()
                tally.seeds = 1
                let events = recent.lines
                once.resume(Outcome(problems: ["seed \(seed): HUNG, not finished after \(limit) s (an await that never returns); its last events: "
                                                + (events.isEmpty ? "-" : events.joined(separator: " / "))],
                                    tally: tally, hung: true))
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(limit), execute: timer)
            Task {
                let run = PowerLossRun(seed: seed, skipOneFdatasync: skipOneFdatasync, recent: recent)
                let problems = await run.run()
                timer.cancel()
                once.resume(Outcome(problems: problems, tally: run.tally))
            }
        }
    }
}

/// Resumes a continuation with whichever result comes first (the run or the
/// watchdog's timer); later ones are dropped.
final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Locked<CheckedContinuation<T, Never>?>
    init(_ k: CheckedContinuation<T, Never>) { continuation = Locked(k) }
    func resume(_ value: T) {
        let k = continuation.withLock { k in
            defer { k = nil }
            return k
        }
        k?.resume(returning: value)
    }
}

/// The last few trace events of a run (without `POWERLOSS_TRACE`), kept so a
/// hung seed can say where it stopped.
final class RecentEvents: Sendable {
    static let kept = 12
    private let ring = Locked<[String]>([])
    /// Whether a watchdog may print the events (a bare `PowerLossRun` keeps none).
    let isWatched: Bool
    init(watched: Bool = true) { isWatched = watched }

    func note(_ line: String) {
        ring.withLock { r in
            if r.count == Self.kept { r.removeFirst() }
            r.append(line)
        }
    }

    var lines: [String] { ring.withLock { $0 } }
}
