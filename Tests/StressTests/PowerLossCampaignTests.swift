import Foundation
import Testing
import WAL

/// The power-loss campaign (PowerLossSupport.swift): `POWERLOSS_SEEDS` seeds
/// from `POWERLOSS_SEED`, each a whole engine on the simulated file layer
/// losing power `POWERLOSS_CYCLES` times at random file operations (and
/// sometimes again during recovery). A failure names its seed; rerun exactly
/// that seed with `POWERLOSS_SEED=<seed> POWERLOSS_SEEDS=1`. The long run
/// (README): `POWERLOSS_SEEDS=10000 swift test -c release --filter PowerLossCampaign`.
@Suite(.serialized) struct PowerLossCampaignTests {
    @Test func acknowledgedChangesSurvivePowerLossAtRandomPoints() async {
        let started = Date()
        var tally = PowerLossTally()
        var failures: [String] = []
        let first = PowerLossSettings.firstSeed
        for seed in first..<(first + UInt64(PowerLossSettings.seeds)) {
            let run = PowerLossRun(seed: seed)
            let problems = await run.run()
            tally.add(run.tally)
            if !problems.isEmpty {
                failures += problems
                print("[powerloss] FAILED seed \(seed) (rerun: POWERLOSS_SEED=\(seed) POWERLOSS_SEEDS=1): \(problems.joined(separator: " | "))")
            }
        }
        let seconds = Date().timeIntervalSince(started)
        print("[powerloss] \(tally.seeds) seeds from \(first) in \(String(format: "%.1f", seconds)) s: \(tally.powerLosses) power losses "
            + "(\(tally.lossesDuringRecovery) more during recovery, \(tally.truncatingOpens) opens that had to cut a reordered tail), "
            + "\(tally.batches) batches, \(tally.commands) commands, \(tally.acknowledged) acknowledged, \(tally.snapshots) snapshots, "
            + "\(failures.count) failures")
        #expect(failures.isEmpty, "\(failures.prefix(5).joined(separator: "\n"))")
        // The campaign did what it says: crashes, traffic, acknowledgements.
        #expect(tally.powerLosses >= tally.seeds && tally.acknowledged > tally.seeds)
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
            let faulty = PowerLossRun(seed: seed, skipOneFdatasync: true)
            let problems = await faulty.run()
            if problems.contains(where: { $0.contains("lost") }) { caught += 1 }
            if let p = problems.first, lines.count < 3 { lines.append(p) }
            let sound = await PowerLossRun(seed: seed).run()
            #expect(sound.isEmpty, "seed \(seed) fails with every fdatasync in place: \(sound)")
        }
        print("[powerloss] skipped fdatasync caught in \(caught) of \(seeds) seeds, e.g. \(lines.first ?? "-")")
        #expect(caught >= seeds / 2, "a skipped fdatasync went unnoticed in \(seeds - caught) of \(seeds) seeds: \(lines)")
    }
}
