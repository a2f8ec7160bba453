import Foundation
import TestSupport
import Testing
@testable import AllocationEngine
@testable import WAL

/// The data-directory tools of the real binary: verify, dump, replay, digest.
/// Data directories are written in process with PosixFileIO (fast), then the
/// tools and a server run as child processes.
@Suite(.enabled(if: EngineBinary.path != nil, "allocation-engine is not built (.build/debug/allocation-engine): run `swift build` first"))
struct DurabilityToolTests {
    /// A real data directory with every kind of record and one snapshot in the middle.
    /// Times are an hour ahead of the wall clock so no hold is due when a real server opens it.
    static func makeDataDir(_ label: String) async throws -> (dir: String, records: [DurRecord], digest: String) {
        let dir = try makeTempDir(label)
        let clock = ManualClock(millis: SystemClock().nowMillis() + 3_600_000)
        let config = durConfig(dir, segmentBytes: 64 << 10)
        let d = try await DurableEngine.open(config, io: PosixFileIO(), clock: clock)
        try await buildFixture(d, clock)
        try await d.snapshot()
        try await buildFixture(d, clock, prefix: "x")
        for i in 0..<5 {
            try await d.engine.hold(deal: "d1", HoldRequest(investor: "inv\(i)", units: Units.whole(1 + i), price: Price.whole(10), id: "tool-\(i)"))
            try await d.engine.hold(deal: "xd1", HoldRequest(investor: "inv\(i)", units: Units.whole(1), price: Price.whole(10)))
        }
        let digest = await d.engine.digest()
        try await d.close()
        return (dir, try logRecords(PosixFileIO(), dir), digest)
    }

    static func digestLine(_ out: String) -> String? {
        out.split(separator: "\n").first { $0.hasPrefix("digest: ") }.map { String($0.dropFirst("digest: ".count)) }
    }

    @Test func verifyAcceptsAGoodDirectoryAndRejectsACorruptedMiddleRecord() async throws {
        let (dir, records, digest) = try await Self.makeDataDir("verify")
        defer { removeTempTree(dir) }
        let good = try runTool(["verify", dir])
        #expect(good.status == 0, "verify on a good directory: \(good.out)\n\(good.err)")
        #expect(good.out.contains("verify: ok"), "\(good.out)")
        #expect(Self.digestLine(good.out) == digest, "\(good.out)")

        let bad = records[records.count / 2]
        let path = dir + "/wal/" + bad.segment
        let file = try #require(FileHandle(forUpdatingAtPath: path))
        try file.seek(toOffset: UInt64(bad.offset + 22))
        let byte = try #require(try file.read(upToCount: 1)).first!
        try file.seek(toOffset: UInt64(bad.offset + 22))
        try file.write(contentsOf: [byte ^ 0x10])
        try file.close()
        let damaged = try runTool(["verify", dir])
        #expect(damaged.status != 0, "verify must fail on a corrupted middle record: \(damaged.out)")
        #expect(damaged.out.contains("DAMAGED") && damaged.out.contains(bad.segment), "\(damaged.out)")

        let missing = try runTool(["verify", dir + "-does-not-exist"])
        #expect(missing.status != 0)
    }

    /// With stderr not a terminal (a file here), each long pass prints exactly one
    /// summary line, `<label>: <records> records in <s> s, <rate> records/s`, and
    /// no in-place refresh.
    @Test func progressIsOneSummaryLineWhenStderrIsNotATerminal() async throws {
        let (dir, records, _) = try await Self.makeDataDir("progress")
        defer { removeTempTree(dir) }
        let summary = try Regex<AnyRegexOutput>(#"^([a-z]+): ([0-9]+) records in [0-9]+\.[0-9]{3} s, [0-9]+ records/s( \(.*\))?$"#)
        /// The summary lines of `label` in `err`, as (records, the part in parentheses); fails on any `\r`.
        func summaries(_ err: String, _ label: String) -> [(records: Int, passes: String)] {
            #expect(!err.contains("\r"), "no in-place refresh without a terminal: \(err.debugDescription)")
            return err.split(separator: "\n").compactMap { line -> (Int, String)? in
                guard let m = try? summary.wholeMatch(in: String(line)), m[1].substring.map(String.init) == label else { return nil }
                return (Int(m[2].substring!)!, m[3].substring.map(String.init) ?? "")
            }
        }
        func replayed(_ out: String) -> Int? {
            out.split(separator: "\n").first { $0.hasPrefix("replayed ") }.flatMap { Int($0.split(separator: " ")[1]) }
        }

        let digest = try runTool(["digest", dir])
        #expect(digest.status == 0, "\(digest.err)")
        let d = summaries(digest.err, "digest")
        #expect(d.count == 1 && d.first?.passes == "", "one summary line: \(digest.err)")
        #expect(d.first?.records == replayed(digest.out), "\(digest.out)\n\(digest.err)")

        let dump = try runTool(["dump", dir])
        let dumped = summaries(dump.err, "dump")
        #expect(dumped.count == 1, "one summary line: \(dump.err)")
        #expect(dumped.first?.records == dump.out.split(separator: "\n").count, "every record scanned is counted")
        #expect(dump.out.split(separator: "\n").count > records.count)

        let verify = try runTool(["verify", dir])
        #expect(verify.status == 0, "\(verify.out)")
        let v = summaries(verify.err, "verify")
        #expect(v.count == 1, "one summary line for both passes: \(verify.err)")
        #expect(v.first?.passes.hasPrefix(" (log scan ") == true && v.first?.passes.contains(", replay ") == true, "\(verify.err)")

        // Recovery at serve start: one summary line among the server's log lines.
        let server = try ServerProcess(dataDir: dir)
        #expect(server.stop() == 0)
        let lines = server.log.split(separator: "\n").filter { $0.contains(" recovery: ") }
        #expect(lines.count == 1, "\(server.log)")
        let recovered = server.log.split(separator: "\n").first { $0.contains(" recovered ") }
            .flatMap { line in line.split(separator: " ").firstIndex(of: "recovered").map { Int(line.split(separator: " ")[$0 + 1]) } } ?? nil
        let line = lines.first.map { String($0.drop { $0 != " " }.dropFirst()) } ?? ""
        let r = try? summary.wholeMatch(in: line)
        #expect(r != nil && r?[2].substring.flatMap { Int($0) } == recovered, "\(line) vs \(recovered ?? -1)")
    }

    @Test func dumpFiltersByDealAndType() async throws {
        let (dir, records, _) = try await Self.makeDataDir("dump")
        defer { removeTempTree(dir) }
        let r = try runTool(["dump", dir, "--deal", "d1", "--type", "hold.placed"])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        let expected = records.filter {
            if case .holdPlaced(let deal, _) = $0.change { return deal == "d1" }
            return false
        }.map(\.lsn)
        #expect(!expected.isEmpty)
        #expect(lines.count == expected.count, "\(r.out)")
        #expect(lines.compactMap { $0.split(separator: " ").first.flatMap { UInt64($0) } } == expected, "\(r.out)")
        for line in lines {
            let parts = line.split(separator: " ")
            #expect(parts.count > 3 && parts[2] == "hold.placed" && parts[3] == "deal=d1", "unexpected line: \(line)")
        }
        // Every record when unfiltered; only the deal when filtered by deal.
        let all = try runTool(["dump", dir])
        #expect(all.out.split(separator: "\n").filter { !$0.contains(" audit.seal ") }.count == records.count)
        #expect(all.out.contains(" audit.seal entries="))
        let deal = try runTool(["dump", dir, "--deal", "xd1"])
        let dealLines = deal.out.split(separator: "\n")
        #expect(!dealLines.isEmpty && dealLines.allSatisfy { $0.contains("deal=xd1 ") }, "\(deal.out)")
        let unknown = try runTool(["dump", dir, "--type", "no.such.type"])
        #expect(unknown.status != 0)
    }

    @Test func replayToLSNBuildsADirectoryAServerStartsFromWithTheSameDigest() async throws {
        let (dir, records, fullDigest) = try await Self.makeDataDir("replay")
        defer { removeTempTree(dir) }
        let out = dir + "-out"
        defer { removeTempTree(out) }
        // Whole directory first.
        let whole = try runTool(["digest", dir])
        #expect(whole.status == 0, "\(whole.err)")
        #expect(Self.digestLine(whole.out) == fullDigest, "\(whole.out)")

        let n = records[records.count * 2 / 3].lsn
        let digest = try runTool(["digest", dir, "--to-lsn", String(n)])
        #expect(digest.status == 0, "\(digest.err)")
        let expected = try #require(Self.digestLine(digest.out), "no digest line in: \(digest.out)")
        #expect(expected != fullDigest)
        #expect(try recoverDigest(PosixFileIO(), dir, options: RecoveryOptions(toLSN: n)).0 == expected)

        let replay = try runTool(["replay", dir, "--to-lsn", String(n), "--out", out])
        #expect(replay.status == 0, "\(replay.out)\n\(replay.err)")
        #expect(Self.digestLine(replay.out) == expected, "\(replay.out)")
        let verify = try runTool(["verify", out])
        #expect(verify.status == 0, "\(verify.out)")

        let server = try ServerProcess(dataDir: out)
        defer { server.kill9() }
        let c = try RESPClient(port: server.port)
        #expect(try c.command("DIGEST") == .bulk(expected), "server started from the replayed directory")
        // It takes changes and keeps them.
        let hold = try c.command("HOLD", "d1", "inv9", "1", "10", "ID", "after-replay")
        #expect(hold.array?.first == .bulk("after-replay"), "\(hold)")
        let after = try #require(try c.command("DIGEST").string)
        #expect(server.stop() == 0, "\(server.log)")
        let restarted = try ServerProcess(dataDir: out)
        defer { restarted.kill9() }
        #expect(try RESPClient(port: restarted.port).command("DIGEST") == .bulk(after))
        #expect(restarted.stop() == 0)

        // A second replay into a non-empty directory is refused.
        let again = try runTool(["replay", dir, "--to-lsn", String(n), "--out", out])
        #expect(again.status != 0)
    }
}
