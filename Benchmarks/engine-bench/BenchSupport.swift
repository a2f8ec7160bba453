import CLinux
import EngineServer
import Foundation

struct BenchOptions {
    var json = false
    var quick = false
    var only: Set<String> = []
    var workDir = NSTemporaryDirectory() + "engine-bench-\(getpid())"

    init(_ args: ArraySlice<String>) {
        var it = args.makeIterator()
        while let a = it.next() {
            switch a {
            case "--json": json = true
            case "--quick": quick = true
            case "--only": if let v = it.next() { only.formUnion(v.split(separator: ",").map(String.init)) }
            case "--dir": if let v = it.next() { workDir = v }
            case "--help", "-h":
                print("""
                engine-bench [--json] [--quick] [--only engine,wal,net|hot] [--dir PATH]
                  --json   print one JSON object instead of a table
                  --quick  smaller sizes (a smoke run, numbers less stable)
                  --only   run only these groups (engine: issue 2, wal: issue 3, net: issue 4;
                           hot: the hot-deal run repeated, to see the spread between runs)
                  --dir    scratch directory for durable runs (default: a temp dir)
                engine-bench --load --port P [--host H] [--connections C] [--pipeline N] [--seconds S]
                             [--cycles N] [--variants N] -- CMD ARG ... [";" CMD ARG ...]
                  the load generator alone against any RESP server (one JSON object; see
                  LoadCommand.swift): __seq__ = the cycle's number, __i__ = the variant's
                """)
                exit(0)
            default:
                FileHandle.standardError.write("unknown option \(a); see --help\n".data(using: .utf8)!)
                exit(2)
            }
        }
    }
    func runs(_ group: String) -> Bool { only.isEmpty || only.contains(group) }
    func size(_ full: Int, quick q: Int) -> Int { quick ? q : full }
}

struct BenchReport {
    private(set) var rows: [(String, String)] = []
    private(set) var json: [(String, String)] = []

    mutating func row(_ label: String, _ value: String) { rows.append((label, value)) }
    mutating func key(_ k: String, _ v: Double) { json.append((k, String(format: "%.1f", v))) }
    mutating func key(_ k: String, _ v: Bool) { json.append((k, v ? "true" : "false")) }
    mutating func key(_ k: String, _ v: Int) { json.append((k, String(v))) }

    func print(json asJSON: Bool) {
        if asJSON {
            Swift.print("{" + json.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
        } else {
            let width = rows.map(\.0.count).max() ?? 0
            for (l, v) in rows { Swift.print(l.padding(toLength: width + 2, withPad: " ", startingAt: 0) + v) }
        }
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func formatRate(_ v: Double) -> String {
    if v >= 1e6 { return String(format: "%.2fM/s", v / 1e6) }
    if v >= 1e3 { return String(format: "%.1fk/s", v / 1e3) }
    return String(format: "%.0f/s", v)
}

/// Bytes the allocator has handed out and not had back (mallinfo2), to tell
/// live data from pages the allocator keeps.
func heapBytesInUse() -> Int {
    let m = mallinfo2()
    return Int(m.uordblks) + Int(m.hblkhd)
}
