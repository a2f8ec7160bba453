import Foundation
import Testing
import WAL

/// The power-loss campaign (PowerLossSupport.swift): `POWERLOSS_SEEDS` seeds
/// from `POWERLOSS_SEED` (or `POWERLOSS_FIRST_SEED`), each a whole engine on
/// the simulated file layer losing power `POWERLOSS_CYCLES` times at random
/// file operations (and sometimes again during recovery), each under a
/// watchdog (SeedWatchdog.swift) that fails a seed which does not finish. A
/// failure names its seed; rerun exactly that seed with
/// `POWERLOSS_SEED=<seed> POWERLOSS_SEEDS=1` (add `POWERLOSS_TRACE=1` to see
/// every batch). The long run (README): 10,000 seeds of the debug build, in
/// shards: `POWERLOSS_FIRST_SEED=1 POWERLOSS_SEEDS=5000 swift test --filter acknowledgedChangesSurvive`.
@Suite(.serialized) struct PowerLossCampaignTests {
    @Test func acknowledgedChangesSurvivePowerLossAtRandomPoints() async {
        let first = PowerLossSettings.firstSeed
        let report = await Self.campaign(Array(first..<(first + UInt64(PowerLossSettings.seeds))), label: "from \(first)")
        #expect(report.failures.isEmpty, "\(report.failures.prefix(5).joined(separator: "\n"))")
        // The campaign did what it says: crashes, traffic, acknowledgements.
        #expect(report.tally.powerLosses >= report.tally.seeds && report.tally.acknowledged > report.tally.seeds)
    }

    /// Seeds that once failed or hung, whatever the CI range: 26 put two
    /// snapshots in one round of the simulation, the second waiting behind
    /// the first while the writer was paused for the round (a deadlock of the
    /// harness that the stall check then turned into a hang, closing a paused
    /// log); 43 and 112 found snapshots written ahead of the durable log; 190
    /// was reported for a recheck with them.
    @Test func seedsThatOnceFailedOrHungPass() async {
        let report = await Self.campaign([26, 43, 112, 190], label: "that once failed or hung")
        #expect(report.failures.isEmpty, "\(report.failures.joined(separator: "\n"))")
        #expect(report.tally.powerLosses >= 4)
    }

    struct Report {
        var tally = PowerLossTally()
        var failures: [String] = []
    }

    static func campaign(_ seeds: [UInt64], label: String) async -> Report {
        let started = Date()
        var report = Report()
        var hung = 0
        for seed in seeds {
            let outcome = await SeedWatchdog.run(seed: seed)
            report.tally.add(outcome.tally)
            if outcome.hung { hung += 1 }
            if !outcome.problems.isEmpty {
                report.failures += outcome.problems
                print("[powerloss] FAILED seed \(seed) (rerun: POWERLOSS_SEED=\(seed) POWERLOSS_SEEDS=1 POWERLOSS_TRACE=1): \(outcome.problems.joined(separator: " | "))")
            }
        }
        let seconds = Date().timeIntervalSince(started)
        let t = report.tally
        print("[powerloss] \(t.seeds) seeds \(label) in \(String(format: "%.1f", seconds)) s: \(t.powerLosses) power losses "
            + "(\(t.lossesDuringRecovery) more during recovery, \(t.truncatingOpens) opens that had to cut a reordered tail), "
            + "\(t.batches) batches, \(t.commands) commands, \(t.acknowledged) acknowledged, \(t.snapshots) snapshots, "
            + "\(report.failures.count) failures, \(hung) hung")
        return report
    }

    /// A build that skips one fdatasync (the simulated disk reports success
    /// and keeps the data volatile) must fail the campaign: the checks see an
    /// acknowledged change missing once the power goes out before the next
    /// fdatasync. The same seeds pass with every fdatasync in place.
    @Test func aSkippedFdatasyncIsCaught() async {
        var caught = 0
        var seeds = 0
        var lines: [String] = []
        for seed in UInt64(900_001)...UInt64(900_020) {
            seeds += 1
            let faulty = await SeedWatchdog.run(seed: seed, skipOneFdatasync: true)
            #expect(!faulty.hung, "\(faulty.problems)")
            if faulty.problems.contains(where: { $0.contains("lost") }) { caught += 1 }
            if let p = faulty.problems.first, lines.count < 3 { lines.append(p) }
            let sound = await SeedWatchdog.run(seed: seed)
            #expect(sound.problems.isEmpty, "seed \(seed) fails with every fdatasync in place: \(sound.problems)")
        }
        print("[powerloss] skipped fdatasync caught in \(caught) of \(seeds) seeds, e.g. \(lines.first ?? "-")")
        #expect(caught >= seeds / 2, "a skipped fdatasync went unnoticed in \(seeds - caught) of \(seeds) seeds: \(lines)")
    }
}
