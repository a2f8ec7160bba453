import Foundation
import Testing
@testable import EngineServer

/// Throughput of the toy server. Opt-in: `NET_BENCH=1 swift test -c release
/// -Xswiftc -enable-testing --filter NetBenchTests` (also runs redis-benchmark
/// when it is installed).
@Suite struct NetBenchTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["NET_BENCH"] != nil))
    func toyServerThroughput() throws {
        let loops = Int(ProcessInfo.processInfo.environment["NET_BENCH_LOOPS"] ?? "") ?? ServerConfig.defaultLoopCount
        let server = try EventLoopServer(config: ServerConfig(port: 0, loops: loops), handler: ToyHandler())
        print("loops: \(loops)")
        try server.start()
        defer { server.shutdown(gracefulTimeoutSeconds: 1) }
        let port = server.boundPort
        for pipeline in [1, 16] {
            let r = NetBench.runPingLoad(port: port, connections: 50, pipeline: pipeline, seconds: 3)
            print("NetBench PING c=50 P=\(pipeline): \(Int(r.requestsPerSecond)) req/s p50=\(r.p50Micros)us p99=\(r.p99Micros)us p99.9=\(r.p999Micros)us")
        }
        let tool = "/usr/bin/redis-benchmark"
        guard FileManager.default.isExecutableFile(atPath: tool) else { return }
        for extra in [[], ["-P", "16"]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = ["-p", String(port), "-t", "ping", "-c", "50", "-n", "200000", "-q"] + extra
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            p.waitUntilExit()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            print("redis-benchmark \(extra.joined(separator: " ")):\n\(out)")
        }
    }
}
