import EngineServer
import Foundation

/// `engine-bench --load`: the project's load generator (NetBench) against any
/// RESP server on a port, for Benchmarks/compare/run.sh. Prints one JSON object.
///
///   engine-bench --load --port P [--host H] [--connections C] [--pipeline N]
///                [--seconds S] [--cycles N] [--variants N] -- CMD ARG ... [";" CMD ARG ...]
///
/// The commands after `--` form one cycle (`;` separates them); a round trip
/// carries `--pipeline` cycles. In arguments `__seq__` becomes the cycle's number
/// (unique in the run) and `__i__` the variant's number, 12 digits like
/// redis-benchmark's `__rand_int__` (`--variants 1000` spreads the cycles over
/// 1,000 deals, taken in turn). `--cycles` stops after that many cycles.
enum LoadCommand {
    static func run(_ args: [String]) -> Int32 {
        var port = 0, connections = 50, pipeline = 1, variants = 1
        var host = "127.0.0.1"
        var seconds = 10.0
        var maxCycles: Int?
        var words: [String] = []
        var i = 0
        func value() -> String? {
            i += 1
            return i < args.count ? args[i] : nil
        }
        while i < args.count {
            let a = args[i]
            switch a {
            case "--load": break
            case "--port": port = value().flatMap { Int($0) } ?? 0
            case "--host": host = value() ?? host
            case "--connections": connections = value().flatMap { Int($0) } ?? 0
            case "--pipeline": pipeline = value().flatMap { Int($0) } ?? 0
            case "--seconds": seconds = value().flatMap { Double($0) } ?? 0
            case "--cycles": maxCycles = value().flatMap { Int($0) } ?? 0
            case "--variants": variants = value().flatMap { Int($0) } ?? 0
            case "--":
                words = Array(args[(i + 1)...])
                i = args.count
            default:
                return fail("unknown option \(a); usage: engine-bench --load --port P [--connections C] [--pipeline N] [--seconds S] [--cycles N] [--variants N] -- CMD ARG ... [; CMD ...]")
            }
            i += 1
        }
        guard (1...65535).contains(port) else { return fail("--port must be 1-65535") }
        guard connections >= 1, pipeline >= 1, variants >= 1, seconds > 0 else {
            return fail("--connections, --pipeline, --variants and --seconds must be positive")
        }
        if let m = maxCycles, m < 1 { return fail("--cycles must be positive") }
        let cycle = words.split(separator: ";", omittingEmptySubsequences: true).map(Array.init)
        guard !cycle.isEmpty else { return fail("no command after --") }
        let cycles: [[[String]]] = (0..<variants).map { v in
            let tag = String(format: "%012d", v)
            return cycle.map { $0.map { $0.replacingOccurrences(of: "__i__", with: tag) } }
        }
        let r = NetBench.runCycles(port: port, connections: connections, pipeline: pipeline, seconds: seconds,
                                   maxCycles: maxCycles, cycles: cycles, host: host)
        guard r.completed > 0 else { return fail("no reply from \(host):\(port)") }
        let codes = r.errorCodes.sorted { $0.key < $1.key }.map { "\"\(jsonEscaped($0.key))\": \($0.value)" }.joined(separator: ", ")
        print("""
        {"replies": \(r.completed), "cycles": \(r.completed / cycle.count), "commands_per_cycle": \(cycle.count), \
        "elapsed_s": \(String(format: "%.4f", r.elapsedSeconds)), "replies_per_s": \(String(format: "%.1f", r.requestsPerSecond)), \
        "cycles_per_s": \(String(format: "%.1f", r.requestsPerSecond / Double(cycle.count))), \
        "p50_ms": \(r.p50Micros / 1000), "p99_ms": \(r.p99Micros / 1000), "p999_ms": \(r.p999Micros / 1000), \
        "errors": \(r.errors), "refusals": \(r.refusals), "refusals_while_available": \(r.refusalsWhileAvailable), \
        "last_success_s": \(String(format: "%.4f", r.lastSuccessSeconds)), "error_codes": {\(codes)}}
        """)
        return 0
    }

    static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write(Data("engine-bench --load: \(message)\n".utf8))
        return 2
    }

    static func jsonEscaped(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}
