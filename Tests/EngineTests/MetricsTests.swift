import AllocationEngine
import Foundation
import Glibc
import Testing
@testable import EngineServer

/// `/metrics`: an in-process server with the metrics endpoint on a free port,
/// scraped with a plain-socket HTTP client and parsed strictly; the counters
/// against the traffic made; hostile requests; the `serve` binary's flags.
@Suite struct MetricsTests {

    // MARK: - Scrapes against traffic

    @Test func scrapesMatchTheTrafficAndOnlyGrow() async throws {
        try await withMetrics { h, m in
            let first = try await scrape(m.boundPort)
            let c = try h.client()
            await srvSetupDeal(c, "d1", units: "100")
            var holdCommands = 0           // HOLDs that reached the engine (the hold histogram's count)
            var ids: [String] = []
            for _ in 0..<5 {
                let r = await c.call("HOLD", "d1", "inv-1", "10", "10")
                ids.append(r.elements?.first?.string ?? "")
                holdCommands += 1
            }
            #expect(ids.allSatisfy { !$0.isEmpty }, "\(ids)")
            for _ in 0..<2 {
                #expect(await c.call("HOLD", "d1", "inv-1", "1000", "10").errorCode == "INSUFFICIENT")
                holdCommands += 1
            }
            #expect(await c.call("HOLD", "d1", "inv-1", "abc", "10").errorCode == "INVALID")     // refused when parsed
            #expect(await c.call("HOLD", "nope", "inv-1", "1", "10").errorCode == "NOTFOUND")
            holdCommands += 1
            #expect(await c.call("RELEASE", ids[0]) == .simple("OK"))
            #expect(await c.call("ALLOCATE", ids[1]).string?.isEmpty == false)
            // One hold that expires: TTL 1 s, then SWEEP.
            let short = await c.call("HOLD", "d1", "inv-2", "1", "10", "TTL", "1")
            #expect(short.elements?.first?.string != nil, "\(short)")
            holdCommands += 1
            try await Task.sleep(for: .milliseconds(1150))
            #expect(await c.call("SWEEP") == .int(1))

            let second = try await scrape(m.boundPort)
            func delta(_ name: String, _ labels: [String: String] = [:]) -> Double {
                (second.value(name, labels) ?? .nan) - (first.value(name, labels) ?? .nan)
            }
            let holds = "allocation_engine_holds_total"
            #expect(delta(holds, ["outcome": "placed"]) == 6)
            #expect(delta(holds, ["outcome": "refused", "code": "INSUFFICIENT"]) == 2)
            #expect(delta(holds, ["outcome": "refused", "code": "INVALID"]) == 1)
            #expect(delta(holds, ["outcome": "refused", "code": "NOTFOUND"]) == 1)
            #expect(delta(holds, ["outcome": "released"]) == 1)
            #expect(delta(holds, ["outcome": "allocated"]) == 1)
            #expect(delta(holds, ["outcome": "expired"]) == 1)
            #expect(delta(holds, ["outcome": "cancelled"]) == 0)
            let refused = second.samples(holds).filter { $0.labels["outcome"] == "refused" }.map(\.value).reduce(0, +)
            #expect(refused == 4)
            #expect(delta("allocation_engine_hold_duration_seconds_count") == Double(holdCommands))
            #expect(delta("allocation_engine_commands_total") >= 14)
            #expect(delta("allocation_engine_command_errors_total") == 4)
            // Gauges: 6 placed, 1 released, 1 allocated, 1 expired.
            #expect(second.value("allocation_engine_pending_holds") == 3)
            #expect(second.value("allocation_engine_deals") == 1)
            #expect(second.value("allocation_engine_live_rows", ["kind": "hold"]) == 6)
            #expect(second.value("allocation_engine_live_rows", ["kind": "allocation"]) == 1)
            #expect(second.value("allocation_engine_archived_rows") == 0)
            #expect(second.value("allocation_engine_read_only") == 0)
            #expect((second.value("allocation_engine_connections") ?? 0) >= 1)
            #expect((second.value("allocation_engine_resident_bytes") ?? 0) > Double(1 << 20))
            #expect((second.value("allocation_engine_heap_bytes") ?? 0) > 0)
            #expect((second.value("allocation_engine_uptime_seconds") ?? 0) > 0)
            #expect(delta("allocation_engine_log_records_total") >= 11)
            #expect(delta("allocation_engine_log_fsyncs_total") >= 1)          // strict mode
            #expect(delta("allocation_engine_log_appended_bytes_total") > 0)
            #expect((second.value("allocation_engine_log_segments") ?? 0) >= 1)
            #expect(second.value("allocation_engine_log_durable_lsn") == second.value("allocation_engine_log_last_lsn"))
            #expect(second.value("allocation_engine_build_info", ["version": h.settings.version]) == 1)

            // Every counter and histogram series is there in both, and none went down.
            for family in second.families.values where family.type == "counter" || family.type == "histogram" {
                for s in family.samples {
                    guard let before = first.value(s.name, s.labels) else {
                        Issue.record("\(s.name)\(s.labels) missing from the first scrape")
                        continue
                    }
                    #expect(s.value >= before, "\(s.name)\(s.labels) went from \(before) to \(s.value)")
                }
            }
            #expect(Set(first.families.keys) == Set(second.families.keys))

            // A snapshot shows up.
            #expect(await c.call("SNAPSHOT") == .simple("OK"))
            let third = try await scrape(m.boundPort)
            #expect((third.value("allocation_engine_snapshots_total") ?? 0) == (second.value("allocation_engine_snapshots_total") ?? 0) + 1)
            #expect((third.value("allocation_engine_snapshot_last_size_bytes") ?? 0) > 0)
            #expect((third.value("allocation_engine_snapshot_last_lsn") ?? 0) > 0)
            #expect(third.value("allocation_engine_snapshot_last_failed") == 0)
            // The stages: every one reported, none negative, and (being parts of one
            // interval, one after another) together no longer than the snapshot.
            let stages = ["capture", "encode", "encode_cpu", "durable_wait", "finish"].map {
                third.value("allocation_engine_snapshot_last_stage_seconds", ["stage": $0])
            }
            #expect(stages.allSatisfy { ($0 ?? -1) >= 0 }, "\(stages)")
            let duration = try #require(third.value("allocation_engine_snapshot_last_duration_seconds"))
            let parts = [stages[0], stages[1], stages[3], stages[4]].reduce(0.0) { $0 + ($1 ?? 0) }
            #expect(parts <= duration + 0.001, "stages \(stages) sum past the duration \(duration)")
            #expect((stages[2] ?? 0) <= (stages[1] ?? 0) + 0.001, "encoding's CPU time past its wall time: \(stages)")
        }
    }

    @Test func dealClosingCountsItsPendingHoldsAsCancelled() async throws {
        try await withMetrics { h, m in
            let c = try h.client()
            await srvSetupDeal(c, "d2", units: "100")
            for _ in 0..<3 { #expect(await c.call("HOLD", "d2", "inv-1", "1", "10").elements != nil) }
            #expect(await c.call("DEAL.STATUS", "d2", "cancelled") == .simple("OK"))
            let s = try await scrape(m.boundPort)
            #expect(s.value("allocation_engine_holds_total", ["outcome": "cancelled"]) == 3)
            #expect(s.value("allocation_engine_pending_holds") == 0)
        }
    }

    @Test func archivedRowsComeFromTheirHook() async throws {
        try await withSrv { h in
            let text = await EngineMetrics(handler: h.handler, archivedRows: { 42 }).render()
            let e = try Exposition.parse(text)
            #expect(e.value("allocation_engine_archived_rows") == 42)
            #expect(e.families["allocation_engine_archived_rows"]?.type == "gauge")
        }
    }

    // MARK: - Hostile and wrong requests

    @Test func wrongAndHostileRequestsGetTheirStatusAndNeverStopTheServer() async throws {
        try await withMetrics { _, m in
            let port = m.boundPort
            func status(_ request: String) async -> Int? {
                await MetricsClient.exchange(port: port, Array(request.utf8)).response?.status
            }
            #expect(await status("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n") == 404)
            #expect(await status("GET / HTTP/1.1\r\n\r\n") == 404)
            let post = await MetricsClient.exchange(port: port, Array("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".utf8))
            #expect(post.response?.status == 405)
            #expect(post.response?.headers["allow"] == "GET, HEAD")
            #expect(await status("DELETE /metrics HTTP/1.1\r\n\r\n") == 405)
            #expect(await status("get /metrics HTTP/1.1\r\n\r\n") == 405)
            #expect(await status("GET /metrics HTTP/2.0\r\n\r\n") == 505)
            #expect(await status("GET /metrics\r\n\r\n") == 400)
            #expect(await status("GET  /metrics HTTP/1.1\r\n\r\n") == 400)
            #expect(await status("GET metrics HTTP/1.1\r\n\r\n") == 400)
            #expect(await status("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n") == 400)
            #expect(await status("GET /metrics HTTP/1.1\r\n folded: header\r\n\r\n") == 400)
            #expect(await status("\u{0}\u{1}\u{2}garbage\u{7f}\r\n\r\n") == 400)
            #expect(await status("\r\n\r\n") == 400)
            // Bare LF line ends and a query string are fine.
            #expect(await status("GET /metrics?x=1 HTTP/1.0\nHost: x\n\n") == 200)
            // HEAD: the headers with the length, no body.
            let head = await MetricsClient.exchange(port: port, Array("HEAD /metrics HTTP/1.1\r\n\r\n".utf8))
            #expect(head.response?.status == 200)
            #expect(head.response?.body.isEmpty == true)
            #expect(Int(head.response?.headers["content-length"] ?? "") ?? 0 > 1000)

            // A head over 8 KiB: 431.
            let big = "GET /metrics HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 9000) + "\r\n\r\n"
            #expect(await status(big) == 431)
            // Random bytes, with and without an end of head: some 4xx/5xx answer or a close, never a crash.
            var rng = SystemRandomNumberGenerator()
            for i in 0..<40 {
                var bytes = (0..<Int.random(in: 1...600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if i % 2 == 0 { bytes += Array("\r\n\r\n".utf8) }
                let r = await MetricsClient.exchange(port: port, bytes, timeoutSeconds: 5, halfClose: true)
                if let s = r.response?.status { #expect([400, 404, 405, 408, 431, 505].contains(s), "status \(s)") }
            }
            // A megabyte of junk: answered 431 or cut; the server goes on.
            let junk = await MetricsClient.exchange(port: port, [UInt8](repeating: 65, count: 1 << 20), timeoutSeconds: 5)
            if let s = junk.response?.status { #expect(s == 431) }
            // More connections than it serves at once, left idle, then gone.
            let idle = (0..<40).compactMap { _ in NetBench.connectBlocking(host: "127.0.0.1", port: port) }
            for fd in idle { Glibc.close(fd) }

            // Still serving once it has seen them close (the listener turns away
            // connections over its limit until then), and the text still parses.
            var served = false
            for _ in 0..<50 where !served {
                if (try? await scrape(port)) != nil { served = true } else { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(served, "the listener never served again after the idle connections closed")
        }
    }

    @Test func aSlowOrPartialRequestIsTimedOutWithoutBlockingScrapes() async throws {
        // Long enough that a scrape delayed by a whole test suite sharing two
        // cores (the render runs on the cooperative pool) still ends first.
        let timeout = 15.0
        try await withMetrics(requestTimeout: timeout) { _, m in
            let port = m.boundPort
            let started = Date()
            // Half a request, and nothing at all: each answered 408 and closed, the timeout after connecting.
            async let slow = MetricsClient.exchange(port: port, Array("GET /metr".utf8), timeoutSeconds: 20)
            async let silent = MetricsClient.exchange(port: port, [], timeoutSeconds: 20)
            // Meanwhile a whole scrape is answered: before the slow ones are let go.
            try await Task.sleep(for: .milliseconds(50))
            _ = try await scrape(port)
            let scraped = Date().timeIntervalSince(started)
            for r in [await slow, await silent] {
                #expect(r.response?.status == 408)
                #expect(r.eof)
                #expect(r.seconds >= timeout - 0.1 && r.seconds < timeout + 10, "closed after \(r.seconds) s")
                #expect(scraped < r.seconds, "the scrape waited for a slow client: \(scraped) s vs \(r.seconds) s")
            }
        }
    }

    // MARK: - Pure parts

    @Test func requestHeadsRouteAsExpected() {
        func route(_ s: String) -> HTTPExchange.Route { HTTPExchange.route(Array(s.utf8)[...]) }
        #expect(route("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n") == .metrics(headOnly: false))
        #expect(route("HEAD /metrics HTTP/1.0\r\n\r\n") == .metrics(headOnly: true))
        #expect(route("\r\nGET /metrics HTTP/1.1\r\n\r\n") == .metrics(headOnly: false))
        #expect(route("PUT /metrics HTTP/1.1\r\n\r\n") == .respond(.methodNotAllowed))
        #expect(route("GET /metricsx HTTP/1.1\r\n\r\n") == .respond(.notFound))
        #expect(route("GET /metrics HTTP/1.1\r\nHost\r\n\r\n") == .respond(.badRequest))
        #expect(route("GET /metrics HTTP/1.1\r\nHo st: a\r\n\r\n") == .respond(.badRequest))
        #expect(route("GET /met\u{1}rics HTTP/1.1\r\n\r\n") == .respond(.badRequest))
        #expect(route("GET /" + String(repeating: "a", count: 3000) + " HTTP/1.1\r\n\r\n") == .respond(.badRequest))
        #expect(HTTPExchange.headEnd(Array("GET / HTTP/1.1\r\n\r\nrest".utf8), from: 0) == 18)
        #expect(HTTPExchange.headEnd(Array("GET / HTTP/1.1\n\n".utf8), from: 0) == 16)
        #expect(HTTPExchange.headEnd(Array("GET / HTTP/1.1\r\n".utf8), from: 0) == nil)
        // Found when the blank line is split across reads.
        #expect(HTTPExchange.headEnd(Array("GET / HTTP/1.1\r\n\r\n".utf8), from: 17) == 18)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in
                [UInt8(ascii: " "), 10, 13, UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "G"), UInt8.random(in: 0...255, using: &rng)].randomElement(using: &rng)!
            }
            _ = HTTPExchange.route(bytes[...])
            _ = HTTPExchange.headEnd(bytes, from: Int.random(in: 0...bytes.count, using: &rng))
        }
    }

    @Test func exposition() throws {
        var w = PrometheusText()
        w.family("a_total", .counter, "help with \\ and\nnewline")
        w.sample(labels: [("l", "quote \" backslash \\ newline \n")], 3)
        let h = DurationHistogram(boundsNanos: [1_000, 1_000_000])
        h.record(nanos: 500, count: 2)
        h.record(nanos: 2_000_000)
        w.histogram("lat_seconds", "latency", h.snapshot())
        let text = w.text
        #expect(text.contains(#"# HELP a_total help with \\ and\nnewline"#))
        #expect(text.contains(#"a_total{l="quote \" backslash \\ newline \n"} 3"#))
        #expect(text.contains("lat_seconds_bucket{le=\"0.000001\"} 2\nlat_seconds_bucket{le=\"0.001\"} 2\nlat_seconds_bucket{le=\"+Inf\"} 3\n"))
        #expect(text.contains("lat_seconds_sum 0.002001\nlat_seconds_count 3\n"))
        let e = try Exposition.parse(text)
        #expect(e.value("a_total", ["l": "quote \" backslash \\ newline \n"]) == 3)
        #expect(PrometheusText.seconds(nanos: 0) == "0")
        #expect(PrometheusText.seconds(nanos: 2_500_000_000) == "2.5")
        #expect(PrometheusText.seconds(nanos: 50_000) == "0.00005")
        #expect(PrometheusText.format(.infinity) == "+Inf")
        #expect(PrometheusText.format(1.5) == "1.5")
        // The parser is strict: a sample before its family's HELP and TYPE is refused.
        #expect(throws: ExpositionError.self) { try Exposition.parse("x 1\n") }
        #expect(throws: ExpositionError.self) { try Exposition.parse("# HELP x h\n# TYPE x gauge\nx{a=\"1} 1\n") }
        #expect(throws: ExpositionError.self) { try Exposition.parse("# HELP x h\n# TYPE x gauge\nx 1\nx 2\n") }
    }

    @Test func everyEngineErrorCodeHasItsRefusalLabel() {
        let codes: [EngineError.Code] = [.notFound, .insufficient, .closed, .conflict, .expired, .invalid, .exists,
                                         .noPermission, .readOnly, .limit, .corrupt]
        for code in codes {
            #expect(RequestMetrics.refusalCodes[RequestMetrics.refusalIndex(code)] == code.rawValue)
            #expect(RequestMetrics.refusalIndex(code.rawValue) == RequestMetrics.refusalIndex(code))
        }
        #expect(RequestMetrics.refusalCodes[RequestMetrics.refusalIndex("SOMETHING")] == "OTHER")
    }

    // MARK: - The binary

    @Test func serveBinaryServesMetrics() async throws {
        guard let bin = ServerProcessTests.binary() else { return }
        let dir = SrvHarness.newTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // --metrics-bind alone is a usage error.
        if let r = try await srvRun(bin, ["serve", "--data-dir", dir + "/x", "--metrics-bind", "127.0.0.1"]) {
            #expect(r.status == 2, "\(r.err)")
            #expect(r.err.contains("--metrics-bind needs --metrics-port"), "\(r.err)")
        }
        let s = try ServerProcessTests.Served(binary: bin, args: ["--port", "0", "--metrics-port", "0", "--data-dir", dir + "/data",
                                                                  "--durability", "none", "--segment-mb", "1"])
        guard let port = await s.waitListening() else {
            Issue.record("serve did not start: \(s.log.text)")
            _ = await s.stop()
            return
        }
        var metricsPort: Int?
        for _ in 0..<500 where metricsPort == nil {
            if let m = s.log.text.firstMatch(of: #/metrics on http://127\.0\.0\.1:(\d+)/metrics/#) { metricsPort = Int(m.1) }
            else { try await Task.sleep(for: .milliseconds(20)) }
        }
        guard let metricsPort else {
            Issue.record("no metrics line: \(s.log.text)")
            _ = await s.stop()
            return
        }
        let c = try SrvClient(port: port)
        await srvSetupDeal(c, "d1")
        #expect(await c.call("HOLD", "d1", "inv-1", "1", "10").elements != nil)
        let e = try await scrape(metricsPort)
        #expect(e.value("allocation_engine_holds_total", ["outcome": "placed"]) == 1)
        #expect((e.value("allocation_engine_recovery_duration_seconds") ?? -1) >= 0)
        #expect(await s.stop() == 0, "\(s.log.text)")
        #expect(s.log.text.contains("shutdown complete"), "\(s.log.text)")
    }

    // MARK: - Helpers

    /// A server (SrvHarness) with the metrics endpoint on a free port.
    func withMetrics(requestTimeout: Double = 2, _ body: (SrvHarness, MetricsHTTPServer) async throws -> Void) async throws {
        try await withSrv { h in
            var config = MetricsHTTPConfig(host: "127.0.0.1", port: 0)
            config.requestTimeoutSeconds = requestTimeout
            // The whole suite shares two cores: collection (a hop to each deal
            // actor) may wait its turn far longer than on a server.
            config.renderTimeoutSeconds = 60
            let collection = EngineMetrics(handler: h.handler)
            let m = try MetricsHTTPServer(config: config, render: { await collection.render() })
            do {
                try await body(h, m)
            } catch {
                await srvBlocking { m.stop() }
                throw error
            }
            await srvBlocking { m.stop() }
        }
    }

    /// `GET /metrics`: a 200 with the exposition content type, parsed strictly.
    func scrape(_ port: Int) async throws -> Exposition {
        // A generous wait: under the whole suite the collection may queue behind other tests' work.
        let r = await MetricsClient.exchange(port: port, Array("GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n".utf8),
                                             timeoutSeconds: 60)
        guard let response = r.response else { throw ExpositionError("no response: \(r)") }
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true, "\(response.headers)")
        #expect(response.headers["connection"] == "close")
        #expect(r.eof)
        return try Exposition.parse(response.body)
    }
}

/// A blocking HTTP/1.1 client over a plain socket: sends bytes, reads to EOF.
enum MetricsClient {
    struct Response {
        var status: Int
        /// Lower-cased names.
        var headers: [String: String]
        var body: String
    }

    struct Exchange: Sendable, CustomStringConvertible {
        var raw: [UInt8]
        /// Seconds from connect to EOF (or to the timeout).
        var seconds: Double
        var eof: Bool
        var response: Response? { MetricsClient.parse(raw) }
        var description: String { "\(seconds) s, eof \(eof): \(String(decoding: raw.prefix(300), as: UTF8.self))" }
    }

    /// `halfClose`: shut the write side after sending (the server sees EOF).
    static func exchange(port: Int, _ request: [UInt8], timeoutSeconds: Int = 10, halfClose: Bool = false) async -> Exchange {
        await srvBlocking { exchangeSync(port: port, request, timeoutSeconds: timeoutSeconds, halfClose: halfClose) }
    }

    static func exchangeSync(port: Int, _ request: [UInt8], timeoutSeconds: Int, halfClose: Bool) -> Exchange {
        let started = Date()
        guard let fd = NetBench.connectBlocking(host: "127.0.0.1", port: port) else { return Exchange(raw: [], seconds: 0, eof: false) }
        defer { Glibc.close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var off = 0
        while off < request.count {
            let n = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }           // the server answered and closed early (an oversized request)
            off += n
        }
        if halfClose { Glibc.shutdown(fd, Int32(SHUT_WR)) }
        var raw: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var eof = false
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n > 0 { raw += chunk[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            eof = n == 0 || errno == ECONNRESET
            break
        }
        return Exchange(raw: raw, seconds: Date().timeIntervalSince(started), eof: eof)
    }

    /// Status line, headers, and a body whose length matches Content-Length (none for HEAD).
    static func parse(_ raw: [UInt8]) -> Response? {
        guard let end = HTTPExchange.headEnd(raw, from: 0) else { return nil }
        let head = String(decoding: raw[0..<end], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        guard !lines.isEmpty else { return nil }
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count == 3, statusLine[0] == "HTTP/1.1", let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = Array(raw[end...])
        if !body.isEmpty, let length = headers["content-length"].flatMap({ Int($0) }), length != body.count { return nil }
        return Response(status: status, headers: headers, body: String(decoding: body, as: UTF8.self))
    }
}

struct ExpositionError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The Prometheus text format (0.0.4), parsed strictly: every family starts
/// with `# HELP` then `# TYPE`, its samples follow together, every sample line
/// is `name{label="value",...} value` with a name of its family, no series
/// twice; histograms have increasing `le` bounds, cumulative counts, a last
/// `+Inf` bucket equal to `_count`, and a `_sum`; counters end in `_total`.
struct Exposition {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }
    struct Family {
        var name: String
        var help: String
        var type: String
        var samples: [Sample] = []
    }

    var families: [String: Family] = [:]

    func samples(_ family: String) -> [Sample] { families[family]?.samples ?? [] }

    /// The sample `name` with exactly `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        for f in families.values {
            if let s = f.samples.first(where: { $0.name == name && $0.labels == labels }) { return s.value }
        }
        return nil
    }

    static func parse(_ text: String) throws -> Exposition {
        guard text.hasSuffix("\n") else { throw ExpositionError("the text does not end with a newline") }
        var e = Exposition()
        var current: Family?
        var seen = Set<String>()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        lines.removeLast()
        func close() throws {
            guard let f = current else { return }
            guard !f.samples.isEmpty else { throw ExpositionError("family \(f.name) has no samples") }
            if f.type == "histogram" { try checkHistogram(f) }
            e.families[f.name] = f
            current = nil
        }
        for (number, lineText) in lines.enumerated() {
            let line = String(lineText)
            let at = "line \(number + 1) '\(line.prefix(120))'"
            if line.hasPrefix("# HELP ") {
                try close()
                let rest = line.dropFirst(7)
                let name = String(rest.prefix { $0 != " " })
                guard PrometheusText.isValidName(name), rest.count > name.count else { throw ExpositionError("\(at): bad HELP") }
                guard e.families[name] == nil else { throw ExpositionError("\(at): family \(name) twice") }
                current = Family(name: name, help: String(rest.dropFirst(name.count + 1)), type: "")
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 4, var f = current, f.type.isEmpty, parts[2] == f.name,
                      ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                    throw ExpositionError("\(at): TYPE must follow its family's HELP")
                }
                f.type = String(parts[3])
                if f.type == "counter" && !f.name.hasSuffix("_total") { throw ExpositionError("\(at): counter without _total") }
                current = f
            } else if line.hasPrefix("#") || line.isEmpty {
                throw ExpositionError("\(at): unexpected line")
            } else {
                guard var f = current, !f.type.isEmpty else { throw ExpositionError("\(at): sample before its family's HELP and TYPE") }
                let sample = try parseSample(line, at: at)
                let allowed = f.type == "histogram" ? [f.name + "_bucket", f.name + "_sum", f.name + "_count"] : [f.name]
                guard allowed.contains(sample.name) else { throw ExpositionError("\(at): \(sample.name) outside its family \(f.name)") }
                let key = sample.name + "|" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                guard seen.insert(key).inserted else { throw ExpositionError("\(at): series twice") }
                f.samples.append(sample)
                current = f
            }
        }
        try close()
        guard !e.families.isEmpty else { throw ExpositionError("no metrics") }
        return e
    }

    static func parseSample(_ line: String, at: String) throws -> Sample {
        let bytes = Array(line.utf8)
        var i = 0
        while i < bytes.count && bytes[i] != UInt8(ascii: "{") && bytes[i] != UInt8(ascii: " ") { i += 1 }
        let name = String(decoding: bytes[0..<i], as: UTF8.self)
        guard PrometheusText.isValidName(name) else { throw ExpositionError("\(at): bad metric name") }
        var labels: [String: String] = [:]
        if i < bytes.count && bytes[i] == UInt8(ascii: "{") {
            i += 1
            while true {
                guard i < bytes.count else { throw ExpositionError("\(at): unterminated labels") }
                if bytes[i] == UInt8(ascii: "}") { i += 1; break }
                let start = i
                while i < bytes.count && bytes[i] != UInt8(ascii: "=") { i += 1 }
                let label = String(decoding: bytes[start..<i], as: UTF8.self)
                guard PrometheusText.isValidLabelName(label), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\"") else {
                    throw ExpositionError("\(at): bad label")
                }
                i += 2
                var value: [UInt8] = []
                while true {
                    guard i < bytes.count else { throw ExpositionError("\(at): unterminated label value") }
                    let b = bytes[i]
                    if b == UInt8(ascii: "\"") { i += 1; break }
                    if b == UInt8(ascii: "\\") {
                        guard i + 1 < bytes.count else { throw ExpositionError("\(at): bad escape") }
                        switch bytes[i + 1] {
                        case UInt8(ascii: "\\"): value.append(UInt8(ascii: "\\"))
                        case UInt8(ascii: "\""): value.append(UInt8(ascii: "\""))
                        case UInt8(ascii: "n"): value.append(10)
                        default: throw ExpositionError("\(at): bad escape")
                        }
                        i += 2
                        continue
                    }
                    value.append(b)
                    i += 1
                }
                guard labels.updateValue(String(decoding: value, as: UTF8.self), forKey: label) == nil else {
                    throw ExpositionError("\(at): label \(label) twice")
                }
                guard i < bytes.count else { throw ExpositionError("\(at): unterminated labels") }
                if bytes[i] == UInt8(ascii: ",") { i += 1 } else if bytes[i] != UInt8(ascii: "}") { throw ExpositionError("\(at): bad label list") }
            }
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: " ") else { throw ExpositionError("\(at): no value") }
        let valueText = String(decoding: bytes[(i + 1)...], as: UTF8.self)
        let value: Double? = switch valueText {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: valueText.contains(" ") || valueText.isEmpty ? nil : Double(valueText)
        }
        guard let value else { throw ExpositionError("\(at): bad value '\(valueText)'") }
        return Sample(name: name, labels: labels, value: value)
    }

    static func checkHistogram(_ f: Family) throws {
        let buckets = f.samples.filter { $0.name == f.name + "_bucket" }
        guard let last = buckets.last, last.labels["le"] == "+Inf" else { throw ExpositionError("\(f.name): no le=\"+Inf\" bucket last") }
        var bound = -Double.infinity, count = 0.0
        for b in buckets {
            guard let text = b.labels["le"], let le = text == "+Inf" ? .infinity : Double(text), le > bound else {
                throw ExpositionError("\(f.name): le bounds must increase")
            }
            guard b.value >= count else { throw ExpositionError("\(f.name): buckets must be cumulative") }
            bound = le
            count = b.value
        }
        guard let total = f.samples.first(where: { $0.name == f.name + "_count" }), total.value == last.value else {
            throw ExpositionError("\(f.name): _count must equal the +Inf bucket")
        }
        guard f.samples.contains(where: { $0.name == f.name + "_sum" }) else { throw ExpositionError("\(f.name): no _sum") }
    }
}
