/// The little of HTTP/1.1 the metrics endpoint speaks: it reads one request
/// head (request line and header lines, no body), answers it and closes the
/// connection (`Connection: close`). `GET`/`HEAD /metrics` is the metrics;
/// any other path is 404, any other method on `/metrics` 405, anything that is
/// not a well-formed HTTP/1.x request head 400. Pure functions over bytes, so
/// hostile input is tested without sockets.
enum HTTPExchange {
    struct Response: Equatable {
        var status: Int
        var reason: String
        var contentType = "text/plain; charset=utf-8"
        var headers: [(String, String)] = []
        var body: [UInt8]
        /// A `HEAD` request: the same headers, no body.
        var headOnly = false

        init(status: Int, reason: String, contentType: String = "text/plain; charset=utf-8",
             headers: [(String, String)] = [], body: String) {
            self.status = status
            self.reason = reason
            self.contentType = contentType
            self.headers = headers
            self.body = Array(body.utf8)
        }

        static func == (a: Response, b: Response) -> Bool {
            a.status == b.status && a.reason == b.reason && a.contentType == b.contentType && a.body == b.body
                && a.headOnly == b.headOnly && a.headers.map { "\($0.0):\($0.1)" } == b.headers.map { "\($0.0):\($0.1)" }
        }

        /// The bytes on the wire.
        var encoded: [UInt8] {
            var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            head += "Connection: close\r\n\r\n"
            var out = Array(head.utf8)
            if !headOnly { out += body }
            return out
        }

        static func error(_ status: Int, _ reason: String, _ detail: String, headers: [(String, String)] = []) -> Response {
            Response(status: status, reason: reason, headers: headers, body: detail + "\n")
        }
        static let badRequest = error(400, "Bad Request", "bad request: this endpoint serves GET /metrics")
        static let notFound = error(404, "Not Found", "not found: metrics are at /metrics")
        static let methodNotAllowed = error(405, "Method Not Allowed", "method not allowed: use GET or HEAD", headers: [("Allow", "GET, HEAD")])
        static let timeout = error(408, "Request Timeout", "request timeout: the request was not received in time")
        static let tooLarge = error(431, "Request Header Fields Too Large", "request too large")
        static let unavailable = error(503, "Service Unavailable", "metrics collection timed out; try again")
        static let versionNotSupported = error(505, "HTTP Version Not Supported", "HTTP/1.0 or HTTP/1.1 only")

        static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"
        static func metrics(_ text: String) -> Response {
            Response(status: 200, reason: "OK", contentType: metricsContentType, body: text)
        }
    }

    /// What to do with a complete request head.
    enum Route: Equatable {
        /// Serve the metrics (`headOnly` for `HEAD`).
        case metrics(headOnly: Bool)
        case respond(Response)
    }

    /// The index just past the blank line that ends a request head in
    /// `bytes` (CRLF CRLF, or bare LF LF from lenient clients), searching from
    /// `from` (where the previous search stopped, so every byte is looked at
    /// about once); nil while incomplete.
    static func headEnd(_ bytes: [UInt8], from: Int) -> Int? {
        var i = max(0, from - 3)
        while i < bytes.count {
            if bytes[i] == 10 {
                if i + 1 < bytes.count && bytes[i + 1] == 10 { return i + 2 }
                if i + 2 < bytes.count && bytes[i + 1] == 13 && bytes[i + 2] == 10 { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    static let maxTargetBytes = 2048

    /// Decides the answer to a complete request head (`head` ends with its blank line).
    static func route(_ head: ArraySlice<UInt8>) -> Route {
        var lines: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        for i in head.indices where head[i] == 10 {
            var line = head[start..<i]
            if line.last == 13 { line = line.dropLast() }
            lines.append(line)
            start = i + 1
        }
        // A client may send empty lines before the request line (RFC 9112 2.2).
        while let first = lines.first, first.isEmpty { lines.removeFirst() }
        guard let requestLine = lines.first else { return .respond(.badRequest) }
        let parts = requestLine.split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .respond(.badRequest) }
        let method = parts[0], target = parts[1], version = parts[2]
        guard (1...20).contains(method.count), method.allSatisfy(isTokenByte) else { return .respond(.badRequest) }
        // Header lines: `name: value`, visible bytes and tabs, no folding.
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                  line[line.startIndex..<colon].allSatisfy(isTokenByte),
                  line.allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) else { return .respond(.badRequest) }
        }
        switch Array(version) {
        case Array("HTTP/1.1".utf8), Array("HTTP/1.0".utf8): break
        case let v where v.count == 8 && v.starts(with: Array("HTTP/".utf8)) && isDigit(v[5]) && v[6] == UInt8(ascii: ".") && isDigit(v[7]):
            return .respond(.versionNotSupported)
        default: return .respond(.badRequest)
        }
        guard (1...maxTargetBytes).contains(target.count), target.first == UInt8(ascii: "/"),
              target.allSatisfy({ $0 > 32 && $0 < 127 }) else { return .respond(.badRequest) }
        let path = target.prefix { $0 != UInt8(ascii: "?") }
        let headOnly = Array(method) == Array("HEAD".utf8)
        var response: Response
        if Array(path) == Array("/metrics".utf8) {
            if headOnly || Array(method) == Array("GET".utf8) { return .metrics(headOnly: headOnly) }
            response = .methodNotAllowed
        } else {
            response = .notFound
        }
        response.headOnly = headOnly
        return .respond(response)
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
    }
}
