import Foundation

/// A small command-line parser: `--flag value`, `--flag=value` and bare
/// switches, each declared with its help text, so `--help` lists them all.
struct Options {
    struct Spec {
        let name: String
        let value: String?    // nil for a switch
        let help: String
    }
    let command: String
    let specs: [Spec]
    private(set) var values: [String: String] = [:]
    private(set) var switches: Set<String> = []
    private(set) var positional: [String] = []

    init(command: String, specs: [Spec], arguments: [String]) throws {
        self.command = command
        self.specs = specs
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            i += 1
            if a == "--help" || a == "-h" { switches.insert("help"); continue }
            guard a.hasPrefix("--") else { positional.append(a); continue }
            var name = String(a.dropFirst(2))
            var inline: String?
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let spec = specs.first(where: { $0.name == name }) else {
                throw UsageError("unknown option --\(name) for '\(command)'; see '\(command) --help'")
            }
            if spec.value == nil {
                guard inline == nil else { throw UsageError("--\(name) takes no value") }
                switches.insert(name)
            } else if let inline {
                values[name] = inline
            } else {
                guard i < arguments.count else { throw UsageError("--\(name) needs a value: --\(name) \(spec.value!)") }
                values[name] = arguments[i]
                i += 1
            }
        }
    }

    var wantsHelp: Bool { switches.contains("help") }
    func flag(_ name: String) -> Bool { switches.contains(name) }
    func string(_ name: String) -> String? { values[name] }

    func int(_ name: String, default d: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = values[name] else { return d }
        guard let v = Int(text), range.contains(v) else {
            throw UsageError("--\(name) must be a whole number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return v
    }

    func helpText(summary: String, usage: String) -> String {
        var out = "\(summary)\n\nUsage: \(usage)\n\nOptions:\n"
        let width = specs.map { $0.name.count + ($0.value.map { $0.count + 1 } ?? 0) }.max() ?? 0
        for s in specs {
            let left = "--\(s.name)" + (s.value.map { " \($0)" } ?? "")
            out += "  " + left.padding(toLength: width + 4, withPad: " ", startingAt: 0) + s.help + "\n"
        }
        out += "  --help" + String(repeating: " ", count: max(1, width - 2)) + "show this help\n"
        return out
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func printError(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}

/// One line per event on stderr, with a UTC timestamp.
func logLine(_ s: String) {
    var t = time(nil)
    var tmv = tm()
    gmtime_r(&t, &tmv)
    let stamp = String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec)
    FileHandle.standardError.write("\(stamp) \(s)\n".data(using: .utf8)!)
}
