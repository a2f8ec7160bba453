/// Writes the Prometheus text exposition format, version 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/): per metric
/// family a `# HELP` and a `# TYPE` line, then its samples, one a line, as
/// `name{label="value",...} value`. Label values and help text are escaped as
/// the format asks (`\\`, `\"`, `\n`).
///
/// Integers are written exactly; seconds are written from nanoseconds as
/// plain decimals (no exponent, no binary rounding), so a histogram's `le`
/// bounds and `_sum` read the same on every scrape.
struct PrometheusText {
    enum Kind: String {
        case counter, gauge, histogram
    }

    private(set) var text = ""
    /// The family whose samples are being written (debug check of names).
    private var family = ""

    init() { text.reserveCapacity(16 << 10) }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    mutating func family(_ name: String, _ kind: Kind, _ help: String) {
        assert(Self.isValidName(name), "invalid metric name \(name)")
        family = name
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    /// One sample of the current family (`suffix` for a histogram's `_bucket`, `_sum`, `_count`).
    mutating func sample(suffix: String = "", labels: [(String, String)] = [], _ value: String) {
        text += family
        text += suffix
        if !labels.isEmpty {
            text += "{"
            for (i, (name, v)) in labels.enumerated() {
                assert(Self.isValidLabelName(name), "invalid label name \(name)")
                if i > 0 { text += "," }
                text += name
                text += "=\""
                text += Self.escapeLabel(v)
                text += "\""
            }
            text += "}"
        }
        text += " "
        text += value
        text += "\n"
    }

    mutating func sample(suffix: String = "", labels: [(String, String)] = [], _ value: UInt64) {
        sample(suffix: suffix, labels: labels, String(value))
    }

    mutating func sample(suffix: String = "", labels: [(String, String)] = [], _ value: Int) {
        sample(suffix: suffix, labels: labels, String(value))
    }

    mutating func sample(suffix: String = "", labels: [(String, String)] = [], _ value: Double) {
        sample(suffix: suffix, labels: labels, Self.format(value))
    }

    /// A family of one sample.
    mutating func single(_ name: String, _ kind: Kind, _ help: String, _ value: UInt64) {
        family(name, kind, help)
        sample(value)
    }

    mutating func single(_ name: String, _ kind: Kind, _ help: String, _ value: Int) {
        family(name, kind, help)
        sample(value)
    }

    mutating func single(_ name: String, _ kind: Kind, _ help: String, seconds: Double) {
        family(name, kind, help)
        sample(seconds)
    }

    /// A histogram family in seconds: cumulative `_bucket{le=...}` samples
    /// ending with `le="+Inf"`, then `_sum` and `_count` (equal to the `+Inf` bucket).
    mutating func histogram(_ name: String, _ help: String, _ h: DurationHistogram.Snapshot) {
        family(name, .histogram, help)
        var cumulative: UInt64 = 0
        for (i, bound) in h.boundsNanos.enumerated() {
            cumulative += h.counts[i]
            sample(suffix: "_bucket", labels: [("le", Self.seconds(nanos: bound))], cumulative)
        }
        cumulative += h.counts[h.boundsNanos.count]
        sample(suffix: "_bucket", labels: [("le", "+Inf")], cumulative)
        sample(suffix: "_sum", Self.seconds(nanos: h.sumNanos))
        sample(suffix: "_count", cumulative)
    }

    // MARK: - Formatting

    /// Nanoseconds as decimal seconds: `1500000` -> `0.0015`, `2000000000` -> `2`.
    static func seconds(nanos: UInt64) -> String {
        let whole = nanos / 1_000_000_000
        let fraction = nanos % 1_000_000_000
        if fraction == 0 { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.last == "0" { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    /// A float as the format reads it (Go's ParseFloat): `+Inf`, `-Inf`, `NaN`, or Swift's shortest round-trip form.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    static func escapeLabel(_ s: String) -> String {
        guard s.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return s }
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        guard s.contains(where: { $0 == "\\" || $0 == "\n" }) else { return s }
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) else { return false }
        return name.utf8.allSatisfy { isNameByte($0) || $0 == UInt8(ascii: ":") }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
    static func isValidLabelName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")),
              !name.hasPrefix("__") else { return false }
        return name.utf8.allSatisfy(isNameByte)
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_")
    }
}
