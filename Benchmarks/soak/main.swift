import TestSupport
// soak: runs `allocation-engine serve` under steady hold traffic for minutes,
// prints a row every interval (throughput, memory, log and snapshot sizes),
// then kills it with kill -9, restarts it, checks that every recorded
// acknowledged hold is still there, and gives a pass/fail verdict. Writes an
// SVG chart (and optionally a CSV of the rows). See docs/benchmarks.md, "Soak".
//
//   swift build -c release && swift run -c release soak --deals 1 --minutes 10

import Dispatch
import Foundation
import Glibc
import Synchronization

struct SoakOptions {
    var deals = 1
    var minutes = 10.0
    var interval = 30.0
    var connections = 50
    var pipeline = 16
    var threads = 2
    var sample = 1000
    var clientIDEvery = 97
    var allocatePerTenThousand = 20
    var engine: String?
    var svg: String?
    var csv: String?
    var durability = "strict"
    var workDir: String?
    var keepData = false
    var maxResidentMB: Int?
    var serverArgs: [String] = []

    static let help = """
    soak: the engine under steady hold traffic for minutes, then kill -9 and a restart check.

    Usage: swift run -c release soak [options]      (build the engine first: swift build -c release)

    Options:
      --deals 1|1000          one deal with one lot of 1,000,000 units, or 1,000 such deals (default 1)
      --minutes M             how long the load runs (default 10; fractions allowed)
      --interval S            seconds between table rows (default 30)
      --connections N         client connections (default 50)
      --pipeline N            commands in flight per connection (default 16)
      --threads N             client threads (default 2)
      --sample N              keep one generated hold id in N for the restart check (default 1000; 1 = all)
      --client-id-every N     one hold in N carries a client ID (default 97; 0 = none)
      --allocate-per-10k N    of 10,000 acknowledged holds, N are allocated (default 20)
      --engine PATH           the allocation-engine binary (default: next to this one, .build/release/)
      --svg PATH              the chart (default soak-<mode>.svg: soak-1deal.svg, soak-1000deals.svg)
      --csv PATH              also write the rows as CSV
      --durability MODE       the server's durability: strict (default) | periodic | none
      --work-dir DIR          where the temporary data directory is made (default the system temp dir)
      --keep-data             keep the data directory and the server log at the end
      --max-rss-mb N          stop the load early when the server's resident memory passes N MB (default half the RAM)
      --server-arg ARG        one more argument for `serve` (repeatable), e.g. --server-arg=--snapshot-every-records=2000000
      --help                  this text
    """

    init(_ args: [String]) throws {
        var i = 0
        func value(_ name: String, _ inline: String?) throws -> String {
            if let inline { return inline }
            guard i < args.count else { throw SoakError("--\(name) needs a value") }
            i += 1
            return args[i - 1]
        }
        func number<T: LosslessStringConvertible & Comparable>(_ name: String, _ inline: String?, _ range: ClosedRange<T>) throws -> T {
            let text = try value(name, inline)
            guard let v = T(text), range.contains(v) else { throw SoakError("--\(name) must be a number in \(range), got '\(text)'") }
            return v
        }
        while i < args.count {
            let arg = args[i]
            i += 1
            guard arg.hasPrefix("--") else { throw SoakError("unexpected argument '\(arg)'") }
            var name = String(arg.dropFirst(2))
            var inline: String?
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            switch name {
            case "help": print(Self.help); exit(0)
            case "deals": deals = try number(name, inline, 1...100_000)
            case "minutes": minutes = try number(name, inline, 0.05...10_000)
            case "interval": interval = try number(name, inline, 1...3600)
            case "connections": connections = try number(name, inline, 1...10_000)
            case "pipeline": pipeline = try number(name, inline, 1...1024)
            case "threads": threads = try number(name, inline, 1...64)
            case "sample": sample = try number(name, inline, 1...1_000_000_000)
            case "client-id-every": clientIDEvery = try number(name, inline, 0...1_000_000_000)
            case "allocate-per-10k": allocatePerTenThousand = try number(name, inline, 0...1_000)
            case "engine": engine = try value(name, inline)
            case "svg": svg = try value(name, inline)
            case "csv": csv = try value(name, inline)
            case "durability":
                durability = try value(name, inline)
                guard ["strict", "periodic", "none"].contains(durability) else { throw SoakError("--durability must be strict, periodic or none") }
            case "work-dir": workDir = try value(name, inline)
            case "keep-data": keepData = true
            case "max-rss-mb": maxResidentMB = try number(name, inline, 16...100_000_000)
            case "server-arg": serverArgs.append(try value(name, inline))
            default: throw SoakError("unknown option --\(name); see --help")
            }
        }
        threads = min(threads, connections)
    }
}

/// The engine binary next to this one (both in .build/<config>/), else in ./.build/release.
func defaultEngine() -> String {
    var candidates: [String] = []
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("allocation-engine").path)
    }
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("allocation-engine").path)
    candidates.append(FileManager.default.currentDirectoryPath + "/.build/release/allocation-engine")
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}

/// One line on stdout, written at once (unbuffered, so a pipe sees each row as it
/// comes); a closed stdout (`soak | head`) is ignored, so the run still cleans up.
func say(_ s: String) {
    let bytes = Array((s + "\n").utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + off, $0.count - off) }
        if n > 0 { off += n } else if n < 0 && errno == EINTR { continue } else { return }
    }
}

// MARK: - Reads from the server

struct InventoryTotals {
    var pending = 0
    /// Empty when the invariant holds in every deal, else the first broken deals.
    var problem = ""
}

func inventory(_ admin: AdminClient, deals: Int) throws -> InventoryTotals {
    let replies = try admin.pipeline((1...deals).map { ["INVENTORY", LoadConfig.dealID($0)] })
    var totals = InventoryTotals()
    var broken: [String] = []
    for (i, r) in replies.enumerated() {
        let f = r.fields
        guard let t = f["units_total"].flatMap({ Decimal(string: $0) }), let rem = f["units_remaining"].flatMap({ Decimal(string: $0) }),
              let held = f["units_held"].flatMap({ Decimal(string: $0) }), let alloc = f["units_allocated"].flatMap({ Decimal(string: $0) }) else {
            broken.append("\(LoadConfig.dealID(i + 1)): unreadable INVENTORY reply \(r)")
            continue
        }
        totals.pending += f["holds_pending"].flatMap { Int($0) } ?? 0
        if t != rem + held + alloc {
            broken.append("\(LoadConfig.dealID(i + 1)): total \(t) != remaining \(rem) + held \(held) + allocated \(alloc)")
        }
    }
    totals.problem = broken.prefix(3).joined(separator: "; ") + (broken.count > 3 ? "; ... (\(broken.count) deals)" : "")
    return totals
}

func infoFields(_ admin: AdminClient, _ section: String) throws -> [String: String] {
    guard let text = try admin.command("INFO", section).string else { return [:] }
    var out: [String: String] = [:]
    // "\r\n" is one Character in Swift: split on it (or a bare "\n").
    for line in text.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) where !line.hasPrefix("#") {
        if let colon = line.firstIndex(of: ":") { out[String(line[..<colon])] = String(line[line.index(after: colon)...]) }
    }
    return out
}

// MARK: - The run

func runSoak(_ o: SoakOptions) throws -> Bool {
    let engine = o.engine ?? defaultEngine()
    guard FileManager.default.isExecutableFile(atPath: engine) else {
        throw SoakError("no engine binary at \(engine): build it first (swift build -c release) or give --engine PATH")
    }
    let mode = o.deals == 1 ? "1deal" : "\(o.deals)deals"
    let svgPath = o.svg ?? "soak-\(mode).svg"
    let parent = o.workDir ?? NSTemporaryDirectory()
    var template = Array((URL(fileURLWithPath: parent).appendingPathComponent("soak-\(mode)-XXXXXX").path).utf8CString)
    guard let made = mkdtemp(&template) else { throw SoakError("cannot make a temporary directory under \(parent)") }
    let workDir = String(cString: made)
    let dataDir = workDir + "/data"
    let logPath = workDir + "/server.log"
    let port = try freePort()
    let metricsPort = supportsMetricsPort(binary: engine) ? try freePort() : nil
    let server = ServerUnderTest(binary: engine, dataDir: dataDir, port: port, metricsPort: metricsPort,
                                 durability: o.durability, extra: o.serverArgs, logPath: logPath)
    let maxResident = (o.maxResidentMB.map { $0 << 20 }) ?? (memoryTotalBytes().map { $0 / 2 } ?? Int.max)

    // Whatever happens (an error included), the server is gone and the data removed at the end.
    defer {
        server.kill9()
        if !o.keepData { try? FileManager.default.removeItem(atPath: workDir) }
    }
    // Ctrl-C: stop the server and remove the data, as at the end.
    signal(SIGPIPE, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    let pidBox = PidBox()
    interrupt.setEventHandler {
        let pid = pidBox.pid
        if pid > 0 { kill(pid, SIGKILL) }
        if !o.keepData { try? FileManager.default.removeItem(atPath: workDir) }
        FileHandle.standardError.write("\nsoak: interrupted; server killed\n".data(using: .utf8)!)
        exit(130)
    }
    interrupt.resume()

    let built = (try? FileManager.default.attributesOfItem(atPath: engine)[.modificationDate] as? Date).map { "\($0)" } ?? "?"
    say("soak: \(o.deals == 1 ? "1 deal" : "\(o.deals) deals"), one lot of 1,000,000 units each; \(Table.formatElapsed(o.minutes * 60)) of load, a row every \(Int(o.interval)) s")
    say("load: \(o.connections) connections x \(o.pipeline) pipelined on \(o.threads) client threads; HOLD ... 1 28.5 TTL 1, 1 % released, \(Double(o.allocatePerTenThousand) / 100) % allocated (then approved or rejected in turn), " + (o.clientIDEvery > 0 ? "1 in \(o.clientIDEvery) with a client ID" : "no client IDs"))
    say("engine: \(engine) (built \(built)), durability \(o.durability)\(o.serverArgs.isEmpty ? "" : ", serve " + o.serverArgs.joined(separator: " "))")
    say("data: \(dataDir), port \(port); heap: " + (metricsPort.map { "allocation_engine_heap_bytes from --metrics-port \($0)" } ?? "- (this build has no --metrics-port)"))

    try server.start(timeoutSeconds: 60)
    pidBox.pid = server.pid
    var admin = try AdminClient(port: port)
    var setup: [[String]] = []
    for d in 1...o.deals {
        setup.append(["DEAL.CREATE", LoadConfig.dealID(d), "NAME", "Soak deal \(d)", "PRICE", "28.5"])
        setup.append(["LOT.ADD", LoadConfig.dealID(d), LoadConfig.dealID(d) + "-lot", "1000000", "20", "ACQUIRED", "2024-01-15"])
    }
    if let bad = try admin.pipeline(setup).first(where: \.isError) { throw SoakError("setting up the deals: \(bad)") }

    var config = LoadConfig(port: port, deals: o.deals, connections: o.connections, pipeline: o.pipeline, threads: o.threads, sample: o.sample)
    config.clientIDEvery = o.clientIDEvery
    config.allocatePerTenThousand = o.allocatePerTenThousand
    let control = LoadControl()
    let counters = startLoad(config, control: control)
    func total(_ pick: (LoadCounters) -> Int) -> Int { counters.reduce(0) { $0 + pick($1) } }

    say("")
    say(Table.header())
    let started = monotonicSeconds()
    let duration = o.minutes * 60
    var rows: [Row] = []
    var last = (time: started, holds: 0, replies: 0, errors: 0)
    var stoppedEarly: String?
    var tick = 1
    while true {
        let target = min(started + Double(tick) * o.interval, started + duration)
        while monotonicSeconds() < target { usleep(UInt32(min(200_000, max(1_000, (target - monotonicSeconds()) * 1e6)))) }
        tick += 1
        let now = monotonicSeconds()
        let holds = total { $0.holds.load(ordering: .relaxed) }
        let replies = total { $0.replies.load(ordering: .relaxed) }
        let errors = total { $0.errors.load(ordering: .relaxed) }
        let dt = max(now - last.time, 1e-9)
        var row = Row(elapsed: now - started, holdsPerSecond: Double(holds - last.holds) / dt, repliesPerSecond: Double(replies - last.replies) / dt,
                      errors: errors - last.errors, residentBytes: server.residentBytes, heapBytes: server.heapBytes,
                      pendingHolds: nil, logBytes: treeBytes(dataDir + "/wal"), historyBytes: treeBytes(dataDir + "/history"))
        last = (now, holds, replies, errors)
        do {
            row.pendingHolds = try inventory(admin, deals: o.deals).pending
            let snap = try infoFields(admin, "snapshot")
            row.snapshotBytes = snap["last_snapshot_bytes"].flatMap { Int($0) }
            row.snapshotSeconds = snap["last_snapshot_seconds"].flatMap { Double($0) }
            row.snapshotLSN = snap["last_snapshot_lsn"].flatMap { UInt64($0) }
            row.snapshotsTaken = snap["snapshots_taken"].flatMap { Int($0) }
            let stages = Row.snapshotStageNames.compactMap { snap["last_snapshot_\($0)_seconds"].flatMap { Double($0) } }
            row.snapshotStages = stages.count == Row.snapshotStageNames.count ? stages : nil
        } catch {
            if let fresh = try? AdminClient(port: port) { admin = fresh }
        }
        rows.append(row)
        say(Table.line(row))
        if !server.isRunning { stoppedEarly = "the server exited; its log:\n" + tail(of: logPath); break }
        if let rss = row.residentBytes, rss > maxResident {
            stoppedEarly = "the server's resident memory \(rss >> 20) MB passed --max-rss-mb \(maxResident >> 20)"
            break
        }
        if let free = freeBytes(workDir), free < 1 << 30 { stoppedEarly = "less than 1 GiB left on the disk of \(workDir)"; break }
        if now - started >= duration - 0.001 { break }
    }
    if let stoppedEarly { say("stopped early: \(stoppedEarly)") }

    // The end: the invariant under load, then kill -9 under load.
    let atEnd = try? inventory(admin, deals: o.deals)
    let loadSeconds = monotonicSeconds() - started
    let serverWasRunning = server.isRunning
    server.kill9()
    control.stop.store(true, ordering: .relaxed)
    control.group.wait()
    let recorded = control.results.withLock { $0 }
    say("")
    say("load: \(total { $0.holds.load(ordering: .relaxed) }) holds acknowledged in \(String(format: "%.0f", loadSeconds)) s"
        + " (\(total { $0.releases.load(ordering: .relaxed) }) released, \(total { $0.allocations.load(ordering: .relaxed) }) allocated,"
        + " \(total { $0.approvals.load(ordering: .relaxed) }) approved, \(total { $0.rejections.load(ordering: .relaxed) }) rejected)")
    say("errors: \(total { $0.errors.load(ordering: .relaxed) }) (INSUFFICIENT \(total { $0.insufficient.load(ordering: .relaxed) }),"
        + " EXPIRED \(total { $0.expired.load(ordering: .relaxed) }), CONFLICT \(total { $0.conflict.load(ordering: .relaxed) }),"
        + " NOTFOUND \(total { $0.notFound.load(ordering: .relaxed) }), LIMIT \(total { $0.limit.load(ordering: .relaxed) }),"
        + " READONLY \(total { $0.readOnly.load(ordering: .relaxed) }), other \(total { $0.otherErrors.load(ordering: .relaxed) }))"
        + (recorded.compactMap(\.firstOtherError).first.map { "; first other: \($0)" } ?? ""))
    let refused = recorded.reduce(0) { $0 + $1.connectFailures }
    if refused > 0 { say("WARNING: \(refused) of \(o.connections) connections could not connect") }

    // Restart on the same data directory.
    var restart: RestartCheck?
    var afterRestart: InventoryTotals?
    if serverWasRunning {
        let seconds = try server.start()
        pidBox.pid = server.pid
        say("restart: kill -9 under load, then the server answered PING \(String(format: "%.3f", seconds)) s after it was started again")
        if let line = (try? String(contentsOfFile: logPath, encoding: .utf8))?.split(separator: "\n").last(where: { $0.contains(" recovery: ") }) {
            say("server: \(line)")
        }
        let check = try AdminClient(port: port, timeoutSeconds: 120)
        afterRestart = try? inventory(check, deals: o.deals)
        var ids: [String] = []
        var sampled = 0, highest = 0, client = 0
        for r in recorded {
            sampled += r.sampled.count
            client += r.clientIDs.count
            ids += r.sampled.map(RecordedHolds.generatedID)
            ids += r.clientIDs.map(RecordedHolds.clientID)
        }
        // The highest generated id acknowledged in each deal (the newest: the likeliest to be lost).
        var top = [UInt32](repeating: 0, count: o.deals)
        for r in recorded { for (d, n) in r.highest.enumerated() where d < top.count && n > top[d] { top[d] = n } }
        for (d, n) in top.enumerated() where n > 0 {
            ids.append("h\(d + 1).\(n)")
            highest += 1
        }
        var missing = 0
        var examples: [String] = []
        var start = 0
        while start < ids.count {
            let chunk = Array(ids[start..<min(ids.count, start + 10_000)])
            for (id, reply) in zip(chunk, try check.pipeline(chunk.map { ["HOLD.GET", $0] }, round: 1000)) {
                if case .array(let a?) = reply, !a.isEmpty { continue }
                missing += 1
                if examples.count < 5 { examples.append("\(id): \(reply)") }
            }
            start += chunk.count
        }
        say("restart check: HOLD.GET of \(ids.count) recorded holds (\(sampled) sampled 1 in \(o.sample), \(highest) highest per deal, \(client) with client ids): \(ids.count - missing) answered, \(missing) missing")
        restart = RestartCheck(seconds: seconds, checked: ids.count, missing: missing, examples: examples)
        let status = server.stop()
        if status != 0 { say("WARNING: the restarted server exited with status \(status)") }
    } else {
        say("restart: skipped, the server was not running at the end")
    }

    // Verdict.
    let rules = Verdict.rules(rows: rows, invariantAtEnd: atEnd?.problem, invariantAfterRestart: afterRestart?.problem, restart: restart)
    let passed = stoppedEarly == nil && !rules.contains { $0.outcome == .fail }
    say("")
    say("verdict (rules over the rows after the first minute):")
    for r in rules { say("  \(r.outcome.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0)) \(r.name): \(r.detail)") }
    if stoppedEarly != nil { say("  FAIL the load ran to the end: stopped early") }
    let notApplicable = rules.filter { $0.outcome == .notApplicable }.count
    say("soak: \(passed ? "PASS" : "FAIL")" + (notApplicable > 0 ? " (\(notApplicable) rules not applicable: run longer)" : ""))

    let title = "soak: \(o.deals == 1 ? "1 deal" : "\(o.deals) deals"), \(o.durability), \(o.connections) conns x \(o.pipeline) pipelined, \(Table.formatElapsed(loadSeconds))"
    try Chart.svg(rows: rows, title: title).write(toFile: svgPath, atomically: true, encoding: .utf8)
    say("chart: \(svgPath)")
    if let csv = o.csv {
        try Table.csv(rows).write(toFile: csv, atomically: true, encoding: .utf8)
        say("csv: \(csv)")
    }
    if o.keepData { say("kept: \(workDir) (data/ and server.log)") }
    return passed
}

/// The server's pid for the Ctrl-C handler.
final class PidBox: Sendable {
    private let value = Atomic<Int32>(0)
    var pid: Int32 {
        get { value.load(ordering: .relaxed) }
        set { value.store(newValue, ordering: .relaxed) }
    }
}

do {
    let options = try SoakOptions(Array(CommandLine.arguments.dropFirst()))
    exit(try runSoak(options) ? 0 : 1)
} catch {
    FileHandle.standardError.write("soak: \(error)\n".data(using: .utf8)!)
    exit(2)
}
