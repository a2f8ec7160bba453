import AllocationEngine
import Foundation
import Synchronization
import WAL

/// Progress of a long pass over the log (verify, replay, dump, recovery at
/// `serve` start), on stderr. When stderr is a terminal one line is redrawn in
/// place (`\r`, at most 4 times a second): records done, rate, and the time
/// left estimated from the log bytes still to read (the sizes of the segments
/// from the first one read on, against the segment and offset reached).
/// Otherwise nothing is printed until `summary()`, which prints exactly one
/// line: `<label>: <records> records in <s> s, <rate> records/s`.
///
/// A pass is `begin` ... `update` (any number of times, cheap when not live)
/// ... `end`; several passes (verify: the log scan, then the replay) are
/// summed in one summary line that names each of them.
final class ProgressReporter: Sendable {
    let label: String
    let walDirectory: String
    /// Redraw in place (stderr is a terminal).
    let live: Bool
    private let emit: @Sendable (String) -> Void
    private let state = Locked(State())

    private struct State {
        var phase: String?
        var started = 0.0
        var lastDraw = 0.0
        var drawn = false
        /// The segment of the first record this pass reported.
        var firstSegment: String?
        /// Bytes of the log before each segment, from `firstSegment` on; nil until the first redraw.
        var before: [String: Int]?
        var totalBytes = 0
        var passes: [(name: String?, records: Int, seconds: Double)] = []
    }

    static let refreshSeconds = 0.25

    init(_ label: String, walDirectory: String, live: Bool = isatty(2) != 0,
         summary emit: @escaping @Sendable (String) -> Void = { printError($0) }) {
        self.label = label
        self.walDirectory = walDirectory
        self.live = live
        self.emit = emit
    }

    /// Starts a pass (named when there are several).
    func begin(_ phase: String? = nil) {
        let now = monotonicSeconds()
        state.withLock {
            $0.phase = phase
            $0.started = now
            $0.lastDraw = now
            $0.firstSegment = nil
            $0.before = nil
            $0.totalBytes = 0
        }
    }

    /// `records` done so far in this pass; the record just read is in `segment` at `offset`.
    func update(records: Int, segment: String, offset: Int) {
        guard live else { return }
        let now = monotonicSeconds()
        let line: String? = state.withLock { s in
            if s.firstSegment == nil { s.firstSegment = segment }
            guard now - s.lastDraw >= Self.refreshSeconds else { return nil }
            s.lastDraw = now
            if s.before == nil { (s.before, s.totalBytes) = Self.segmentOffsets(walDirectory, from: s.firstSegment!) }
            let done = (s.before?[segment] ?? 0) + offset
            s.drawn = true
            return Self.liveLine(label: label, phase: s.phase, records: records, bytesDone: done, totalBytes: s.totalBytes,
                                 seconds: now - s.started)
        }
        if let line { writeStderr("\r" + line + "\u{1B}[K") }
    }

    /// Ends the pass: `records` done in it, in `seconds` (default: since `begin`).
    func end(records: Int, seconds: Double? = nil) {
        let now = monotonicSeconds()
        let clear = state.withLock { s -> Bool in
            s.passes.append((s.phase, records, seconds ?? (now - s.started)))
            defer { s.drawn = false }
            return s.drawn
        }
        if clear { writeStderr("\r\u{1B}[K") }
    }

    /// Clears the live line (before other output on stderr, or when a pass failed); the next update redraws it.
    func clearLine() {
        if state.withLock({ s in defer { s.drawn = false }; return s.drawn }) { writeStderr("\r\u{1B}[K") }
    }

    /// The one summary line of every pass ended so far.
    func summary() {
        emit(state.withLock { Self.summaryLine(label: label, passes: $0.passes) })
    }

    // MARK: Formatting (static, tested through the tools' output)

    static func summaryLine(label: String, passes: [(name: String?, records: Int, seconds: Double)]) -> String {
        let records = passes.reduce(0) { $0 + $1.records }
        let seconds = passes.reduce(0) { $0 + $1.seconds }
        var line = "\(label): \(records) records in \(String(format: "%.3f", seconds)) s, \(Int(Double(records) / max(seconds, 1e-9))) records/s"
        if passes.count > 1 || passes.first?.name != nil {
            line += " (" + passes.map { "\($0.name ?? "pass") \($0.records) in \(String(format: "%.3f", $0.seconds)) s" }.joined(separator: ", ") + ")"
        }
        return line
    }

    static func liveLine(label: String, phase: String?, records: Int, bytesDone: Int, totalBytes: Int, seconds: Double) -> String {
        var line = label + (phase.map { " (\($0))" } ?? "") + ": \(records) records, \(Int(Double(records) / max(seconds, 1e-9))) records/s"
        if totalBytes > 0 {
            let done = min(bytesDone, totalBytes)
            line += String(format: ", %.0f%% of %.1f MiB", Double(done) * 100 / Double(totalBytes), Double(totalBytes) / 1_048_576)
            if done > 0, seconds >= 0.5 {
                let left = Double(totalBytes - done) / (Double(done) / seconds)
                line += ", \(formatDuration(left)) left"
            }
        }
        return line
    }

    static func formatDuration(_ s: Double) -> String {
        let t = Int(s.rounded(.up))
        if t < 60 { return "\(t) s" }
        if t < 3600 { return "\(t / 60) min \(t % 60) s" }
        return "\(t / 3600) h \(t % 3600 / 60) min"
    }

    /// For each segment from `first` on: the log bytes before it; and their total.
    static func segmentOffsets(_ directory: String, from first: String) -> ([String: Int], Int) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .compactMap { name in LogFormat.parseSegmentName(name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }
        var before: [String: Int] = [:]
        var total = 0
        var started = false
        for (name, _) in names {
            if name == first { started = true }
            guard started else { continue }
            before[name] = total
            var st = stat()
            if stat(FilePath.join(directory, name), &st) == 0 { total += Int(st.st_size) }
        }
        return (before, total)
    }
}

private func writeStderr(_ s: String) {
    FileHandle.standardError.write(s.data(using: .utf8)!)
}
