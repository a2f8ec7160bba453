// The soak's table rows, its verdict rules, and the SVG and CSV it writes.

import Foundation

struct Row {
    var elapsed: Double
    var holdsPerSecond: Double
    var repliesPerSecond: Double
    var errors: Int
    var residentBytes: Int?
    var heapBytes: Double?
    var pendingHolds: Int?
    var logBytes: Int
    var historyBytes: Int
    var snapshotBytes: Int?
    var snapshotSeconds: Double?
    var snapshotLSN: UInt64?
    var snapshotsTaken: Int?
    /// The last snapshot's stages, seconds, in the order of `snapshotStageNames`.
    var snapshotStages: [Double]?
    /// The stages `INFO snapshot` reports (`last_snapshot_<name>_seconds`).
    static let snapshotStageNames = ["capture", "encode", "encode_cpu", "durable_wait", "finish"]
}

enum Table {
    static let columns: [(String, Int)] = [
        ("elapsed", 8), ("holds/s", 9), ("replies/s", 10), ("errors", 7), ("rss MB", 9), ("heap MB", 9), ("pending", 9),
        ("log MB", 9), ("hist MB", 8), ("snap MB", 8), ("snap s", 7), ("snaps", 6),
    ]

    static func header() -> String { columns.map { pad($0.0, $0.1) }.joined(separator: " ") }

    static func line(_ r: Row) -> String {
        let cells: [String] = [
            formatElapsed(r.elapsed), String(Int(r.holdsPerSecond.rounded())), String(Int(r.repliesPerSecond.rounded())), String(r.errors),
            r.residentBytes.map { mb(Double($0)) } ?? "-", r.heapBytes.map { mb($0) } ?? "-", r.pendingHolds.map(String.init) ?? "-",
            mb(Double(r.logBytes)), mb(Double(r.historyBytes)), r.snapshotBytes.map { $0 > 0 ? mb(Double($0)) : "-" } ?? "-",
            r.snapshotSeconds.map { (r.snapshotBytes ?? 0) > 0 ? String(format: "%.3f", $0) : "-" } ?? "-",
            r.snapshotsTaken.map(String.init) ?? "-",
        ]
        return zip(cells, columns).map { pad($0, $1.1) }.joined(separator: " ")
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    static func mb(_ bytes: Double) -> String { String(format: "%.1f", bytes / 1_048_576) }

    static func formatElapsed(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t < 60 ? "\(t)s" : "\(t / 60)m\(String(format: "%02d", t % 60))s"
    }

    static func csv(_ rows: [Row]) -> String {
        var out = "elapsed_s,holds_per_s,replies_per_s,errors,rss_bytes,heap_bytes,pending_holds,log_bytes,history_bytes,snapshot_bytes,snapshot_seconds,snapshot_lsn,snapshots_taken,"
            + Row.snapshotStageNames.map { "snapshot_\($0)_s" }.joined(separator: ",") + "\n"
        for r in rows {
            var cells: [String] = [
                String(format: "%.1f", r.elapsed), String(format: "%.0f", r.holdsPerSecond), String(format: "%.0f", r.repliesPerSecond),
                String(r.errors), r.residentBytes.map(String.init) ?? "", r.heapBytes.map { String(format: "%.0f", $0) } ?? "",
                r.pendingHolds.map(String.init) ?? "", String(r.logBytes), String(r.historyBytes), r.snapshotBytes.map(String.init) ?? "",
                r.snapshotSeconds.map { String(format: "%.3f", $0) } ?? "", r.snapshotLSN.map(String.init) ?? "",
                r.snapshotsTaken.map(String.init) ?? "",
            ]
            let stages: [String] = r.snapshotStages.map { $0.map { String(format: "%.3f", $0) } }
                ?? Array(repeating: "", count: Row.snapshotStageNames.count)
            cells += stages
            out += cells.joined(separator: ",") + "\n"
        }
        return out
    }
}

// MARK: - Verdict

struct Rule {
    enum Outcome: String { case pass = "PASS", fail = "FAIL", notApplicable = "n/a" }
    var outcome: Outcome
    var name: String
    var detail: String
}

enum Verdict {
    static let warmupSeconds = 60.0

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Every value within ±limit of the median: (ok, median, lowest deviation, highest deviation).
    static func flat(_ xs: [Double], limit: Double) -> (ok: Bool, median: Double, low: Double, high: Double) {
        let m = median(xs)
        guard m > 0 else { return (xs.allSatisfy { $0 == 0 }, m, 0, 0) }
        let low = (xs.min()! - m) / m, high = (xs.max()! - m) / m
        return (-low <= limit && high <= limit, m, low, high)
    }

    static func percent(_ x: Double) -> String { String(format: "%+.1f %%", x * 100) }

    static func flatRule(_ name: String, _ xs: [Double], limit: Double, unit: (Double) -> String, what: String, minimum: Int = 2) -> Rule {
        guard xs.count >= minimum else {
            return Rule(outcome: .notApplicable, name: name, detail: "\(xs.count) \(what) after the first minute, fewer than \(minimum)")
        }
        let f = flat(xs, limit: limit)
        return Rule(outcome: f.ok ? .pass : .fail, name: name,
                    detail: "median \(unit(f.median)), \(unit(xs.min()!)) to \(unit(xs.max()!)) (\(percent(f.low)) / \(percent(f.high))) over \(xs.count) \(what), limit ±\(Int(limit * 100)) %")
    }

    /// The premise of the memory rule: pending holds do not trend (expiry keeps up). One
    /// INVENTORY read is an instant (it moves with the throughput and the expiry ticks),
    /// so the means of the two halves of the samples are compared, within ±50 %.
    static func pendingRule(_ xs: [Double]) -> Rule {
        let name = "pending holds flat (expiry keeps up)"
        guard xs.count >= 2 else { return Rule(outcome: .notApplicable, name: name, detail: "fewer than 2 samples after the first minute") }
        let half = xs.count / 2
        let first = xs[..<half].reduce(0, +) / Double(half), second = xs[(xs.count - half)...].reduce(0, +) / Double(half)
        let ratio = first > 0 ? second / first : (second == 0 ? 1 : .infinity)
        return Rule(outcome: ratio >= 0.5 && ratio <= 1.5 ? .pass : .fail, name: name,
                    detail: String(format: "mean of the later half %.0f = %.0f %% of the earlier half's %.0f (within ±50 %%); samples %.0f to %.0f",
                                   second, ratio * 100, first, xs.min()!, xs.max()!))
    }

    static func rules(rows: [Row], invariantAtEnd: String?, invariantAfterRestart: String?, restart: RestartCheck?) -> [Rule] {
        var rules: [Rule] = []
        let steady = rows.filter { $0.elapsed > warmupSeconds }
        let mb = { (x: Double) in String(format: "%.1f MB", x / 1_048_576) }
        rules.append(flatRule("resident memory flat", steady.compactMap { $0.residentBytes.map(Double.init) }, limit: 0.15, unit: mb, what: "samples"))
        rules.append(pendingRule(steady.compactMap { $0.pendingHolds.map(Double.init) }))
        // Each snapshot once (rows repeat the last one until the next), and only those
        // first seen after the first minute (the last one of the first minute is not).
        var seen = Set<UInt64>()
        var snaps: [(bytes: Double, seconds: Double)] = []
        for r in rows {
            guard let lsn = r.snapshotLSN, lsn > 0, let b = r.snapshotBytes, let s = r.snapshotSeconds, !seen.contains(lsn) else { continue }
            seen.insert(lsn)
            if r.elapsed > warmupSeconds { snaps.append((Double(b), s)) }
        }
        // Two snapshots pass ±25 % of their median whenever the larger is under 1.67 x the smaller: ask for three.
        rules.append(flatRule("snapshot size flat", snaps.map(\.bytes), limit: 0.25, unit: mb, what: "snapshots", minimum: 3))
        rules.append(flatRule("snapshot time flat", snaps.map(\.seconds), limit: 0.5, unit: { String(format: "%.3f s", $0) }, what: "snapshots", minimum: 3))
        if rows.count >= 3 {
            let third = rows.count / 3
            let second = rows[third..<(2 * third)].map(\.holdsPerSecond)
            let last = rows[(rows.count - third)...].map(\.holdsPerSecond)
            let m2 = second.reduce(0, +) / Double(second.count), m3 = last.reduce(0, +) / Double(last.count)
            let ratio = m2 > 0 ? m3 / m2 : 0
            rules.append(Rule(outcome: ratio >= 0.85 ? .pass : .fail, name: "throughput does not drift down",
                              detail: String(format: "last third %.0f holds/s = %.0f %% of the second third's %.0f (at least 85 %%)", m3, ratio * 100, m2)))
        } else {
            rules.append(Rule(outcome: .notApplicable, name: "throughput does not drift down", detail: "fewer than 3 rows"))
        }
        for (name, problem) in [("inventory invariant at the end", invariantAtEnd), ("inventory invariant after the restart", invariantAfterRestart)] {
            if let problem {
                rules.append(Rule(outcome: problem.isEmpty ? .pass : .fail, name: name,
                                  detail: problem.isEmpty ? "units_total = remaining + held + allocated in every deal" : problem))
            } else {
                rules.append(Rule(outcome: .notApplicable, name: name, detail: "not checked"))
            }
        }
        if let restart {
            rules.append(Rule(outcome: restart.missing == 0 && restart.checked > 0 ? .pass : .fail, name: "every recorded hold answers after kill -9",
                              detail: "\(restart.checked) checked, \(restart.missing) missing" + (restart.examples.isEmpty ? "" : " (e.g. \(restart.examples.joined(separator: ", ")))")))
        } else {
            rules.append(Rule(outcome: .fail, name: "every recorded hold answers after kill -9", detail: "the restart check did not run"))
        }
        return rules
    }
}

struct RestartCheck {
    var seconds: Double
    var checked: Int
    var missing: Int
    var examples: [String]
}

// MARK: - SVG

enum Chart {
    /// A line chart of holds/s (left axis) and resident MB (right axis) over the elapsed time.
    static func svg(rows: [Row], title: String) -> String {
        let width = 960.0, height = 520.0
        let left = 90.0, right = 90.0, top = 60.0, bottom = 70.0
        let plotW = width - left - right, plotH = height - top - bottom
        let maxT = max(rows.map(\.elapsed).max() ?? 1, 1)
        let holds = rows.map(\.holdsPerSecond)
        let rss = rows.map { Double($0.residentBytes ?? 0) / 1_048_576 }
        let (holdsTicks, holdsMax) = ticks(max(holds.max() ?? 1, 1))
        let (rssTicks, rssMax) = ticks(max(rss.max() ?? 1, 1))
        let minutes = maxT > 180
        let (timeTicks, timeMax) = ticks(minutes ? maxT / 60 : maxT)
        let timeScale = minutes ? 60.0 : 1.0
        func x(_ t: Double) -> Double { left + t / (timeMax * timeScale) * plotW }
        func yL(_ v: Double) -> Double { top + plotH - v / holdsMax * plotH }
        func yR(_ v: Double) -> Double { top + plotH - v / rssMax * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let holdsColor = "#1f77b4", rssColor = "#d62728"
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="13">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(width / 2))" y="28" text-anchor="middle" font-size="17" font-weight="bold">\(esc(title))</text>

        """
        // Gridlines: horizontal at the left axis' ticks, vertical at the time ticks.
        for v in holdsTicks {
            s += "<line x1=\"\(f(left))\" y1=\"\(f(yL(v)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(yL(v)))\" stroke=\"#dddddd\"/>\n"
            s += "<text x=\"\(f(left - 8))\" y=\"\(f(yL(v) + 4))\" text-anchor=\"end\" fill=\"\(holdsColor)\">\(formatCount(v))</text>\n"
        }
        for v in rssTicks {
            s += "<text x=\"\(f(left + plotW + 8))\" y=\"\(f(yR(v) + 4))\" fill=\"\(rssColor)\">\(formatCount(v))</text>\n"
        }
        for t in timeTicks {
            let px = x(t * timeScale)
            s += "<line x1=\"\(f(px))\" y1=\"\(f(top))\" x2=\"\(f(px))\" y2=\"\(f(top + plotH))\" stroke=\"#eeeeee\"/>\n"
            s += "<text x=\"\(f(px))\" y=\"\(f(top + plotH + 20))\" text-anchor=\"middle\">\(formatCount(t))</text>\n"
        }
        // Axes and their labels.
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#333333\"/>\n"
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 22))\" text-anchor=\"middle\">elapsed (\(minutes ? "minutes" : "seconds"))</text>\n"
        s += "<text transform=\"translate(24 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" fill=\"\(holdsColor)\">holds/s (acknowledged)</text>\n"
        s += "<text transform=\"translate(\(f(width - 20)) \(f(top + plotH / 2))) rotate(90)\" text-anchor=\"middle\" fill=\"\(rssColor)\">server resident memory (MB)</text>\n"
        // The two series.
        func polyline(_ values: [Double], _ y: (Double) -> Double, _ color: String) -> String {
            let points = zip(rows, values).map { "\(f(x($0.0.elapsed))),\(f(y($0.1)))" }.joined(separator: " ")
            var out = "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points)\"/>\n"
            for (r, v) in zip(rows, values) { out += "<circle cx=\"\(f(x(r.elapsed)))\" cy=\"\(f(y(v)))\" r=\"3\" fill=\"\(color)\"/>\n" }
            return out
        }
        s += polyline(holds, yL, holdsColor)
        if rows.contains(where: { $0.residentBytes != nil }) { s += polyline(rss, yR, rssColor) }
        // Legend.
        s += "<line x1=\"\(f(left + 10))\" y1=\"\(f(top - 14))\" x2=\"\(f(left + 34))\" y2=\"\(f(top - 14))\" stroke=\"\(holdsColor)\" stroke-width=\"2\"/>\n"
        s += "<text x=\"\(f(left + 40))\" y=\"\(f(top - 10))\">holds/s (left axis)</text>\n"
        s += "<line x1=\"\(f(left + 200))\" y1=\"\(f(top - 14))\" x2=\"\(f(left + 224))\" y2=\"\(f(top - 14))\" stroke=\"\(rssColor)\" stroke-width=\"2\"/>\n"
        s += "<text x=\"\(f(left + 230))\" y=\"\(f(top - 10))\">resident MB (right axis)</text>\n"
        s += "</svg>\n"
        return s
    }

    /// Round tick values from 0 covering `maximum` (at most 6 steps of 1, 2 or 5 x 10^k), and the axis top.
    static func ticks(_ maximum: Double) -> ([Double], Double) {
        // 0.1 % slack: 120.02 s of elapsed time is drawn on an axis to 120, not to 150.
        let raw = maximum / 6 * 0.999
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let top = (maximum * 0.999 / step).rounded(.up) * step
        return (stride(from: 0, through: top + step / 2, by: step).map { $0 }, max(top, step))
    }

    static func formatCount(_ v: Double) -> String {
        if v >= 1_000_000 { return String(format: v.truncatingRemainder(dividingBy: 1_000_000) == 0 ? "%.0fM" : "%.1fM", v / 1_000_000) }
        if v >= 10_000 { return String(format: v.truncatingRemainder(dividingBy: 1000) == 0 ? "%.0fk" : "%.1fk", v / 1000) }
        return v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v)
    }
}
