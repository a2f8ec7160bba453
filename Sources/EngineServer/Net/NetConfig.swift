// Limits, configuration, statistics and errors of the network front.
// Every limit is a named constant with a reason; `NetLimits.validate()` checks
// them against each other at start-up (see docs/network.md).


import Glibc
/// Limits applied to every connection. Defaults are documented in docs/network.md.
public struct NetLimits: Sendable, Equatable {
    /// Longest inline (plain-text) command line, terminator excluded. Redis uses 64 KiB.
    public static let defaultMaxInlineLength = 64 * 1024
    /// Largest single bulk string argument. Our commands carry ids and numbers, so
    /// 512 KiB is generous; Redis allows 512 MiB.
    public static let defaultMaxBulkLength = 512 * 1024
    /// Most arguments in one command.
    public static let defaultMaxArgsPerCommand = 1024
    /// Most commands handed to the handler in one batch (one `handle` call).
    public static let defaultMaxPendingCommands = 1024
    /// While a batch is outstanding, the server keeps reading until this many
    /// unparsed input bytes are buffered, then stops reading that connection.
    public static let defaultMaxPendingInputBytes = 1024 * 1024
    /// Largest input buffer (one incomplete command can need up to
    /// maxArgs * maxBulk bytes); above it the connection gets a protocol error.
    public static let defaultMaxInputBufferBytes = 64 * 1024 * 1024
    /// A client whose unsent replies exceed this is disconnected, so a client that
    /// stops reading cannot make the server hold unbounded memory for it.
    public static let defaultMaxOutputBufferBytes = 64 * 1024 * 1024
    public static let defaultMaxConnections = 10_000
    /// Longest `*<count>` or `$<length>` header line: 20 digits and a sign are enough.
    public static let maxLengthLineBytes = 32

    public var maxInlineLength: Int
    public var maxBulkLength: Int
    public var maxArgsPerCommand: Int
    public var maxPendingCommands: Int
    public var maxPendingInputBytes: Int
    public var maxInputBufferBytes: Int
    public var maxOutputBufferBytes: Int
    public var maxConnections: Int
    /// Seconds without input after which an idle connection (no batch outstanding)
    /// is closed; 0 disables the check. Fractions are allowed (tests use them).
    public var idleTimeoutSeconds: Double

    public init(
        maxInlineLength: Int = NetLimits.defaultMaxInlineLength,
        maxBulkLength: Int = NetLimits.defaultMaxBulkLength,
        maxArgsPerCommand: Int = NetLimits.defaultMaxArgsPerCommand,
        maxPendingCommands: Int = NetLimits.defaultMaxPendingCommands,
        maxPendingInputBytes: Int = NetLimits.defaultMaxPendingInputBytes,
        maxInputBufferBytes: Int = NetLimits.defaultMaxInputBufferBytes,
        maxOutputBufferBytes: Int = NetLimits.defaultMaxOutputBufferBytes,
        maxConnections: Int = NetLimits.defaultMaxConnections,
        idleTimeoutSeconds: Double = 0
    ) {
        self.maxInlineLength = maxInlineLength
        self.maxBulkLength = maxBulkLength
        self.maxArgsPerCommand = maxArgsPerCommand
        self.maxPendingCommands = maxPendingCommands
        self.maxPendingInputBytes = maxPendingInputBytes
        self.maxInputBufferBytes = maxInputBufferBytes
        self.maxOutputBufferBytes = maxOutputBufferBytes
        self.maxConnections = maxConnections
        self.idleTimeoutSeconds = idleTimeoutSeconds
    }

    /// Checks the limits against each other; throws `NetError.invalidConfig`.
    public func validate() throws(NetError) {
        func require(_ ok: Bool, _ what: String) throws(NetError) {
            if !ok { throw NetError.invalidConfig(what) }
        }
        try require(maxInlineLength >= 16, "maxInlineLength must be >= 16")
        try require(maxBulkLength >= 1, "maxBulkLength must be >= 1")
        try require(maxArgsPerCommand >= 1, "maxArgsPerCommand must be >= 1")
        try require(maxPendingCommands >= 1, "maxPendingCommands must be >= 1")
        try require(maxPendingInputBytes >= 1, "maxPendingInputBytes must be >= 1")
        try require(maxInputBufferBytes >= maxInlineLength + 2,
                    "maxInputBufferBytes must hold one inline line")
        try require(maxInputBufferBytes >= maxBulkLength + 2 * NetLimits.maxLengthLineBytes,
                    "maxInputBufferBytes must hold one bulk argument")
        try require(maxOutputBufferBytes >= 1, "maxOutputBufferBytes must be >= 1")
        try require(maxConnections >= 1, "maxConnections must be >= 1")
        try require(idleTimeoutSeconds >= 0, "idleTimeoutSeconds must be >= 0")
    }
}

/// Server configuration.
public struct ServerConfig: Sendable {
    /// Default port of the engine (Redis is 6379; we sit next to it).
    public static let defaultPort = 7379
    /// Cap on event-loop threads; the machine this runs on has 2 cores.
    public static let maxLoops = 2

    /// Address to bind: a numeric IPv4/IPv6 address or a host name. Non-loopback
    /// addresses are allowed; policy is the engine's decision.
    public var host: String
    /// TCP port; 0 picks an ephemeral port (read it back with `boundPort`).
    public var port: Int
    /// Event-loop threads, each with its own epoll fd. Clamped to 1...maxLoops.
    public var loops: Int
    public var limits: NetLimits
    /// listen(2) backlog.
    public var backlog: Int32
    /// Receives one line per notable event (protocol errors, disconnects for
    /// output limits, accept failures). Called from loop threads.
    public var logger: @Sendable (String) -> Void

    public init(
        host: String = "127.0.0.1",
        port: Int = ServerConfig.defaultPort,
        loops: Int = ServerConfig.defaultLoopCount,
        limits: NetLimits = NetLimits(),
        backlog: Int32 = 511,
        logger: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.loops = loops
        self.limits = limits
        self.backlog = backlog
        self.logger = logger
    }

    /// One loop per two cores, at most `maxLoops`: the other cores run the deal
    /// actors and the log writer. Measured on 2 cores with redis-benchmark
    /// (50 clients): 1 loop answered 48k unpipelined holds/s and 441k with 16
    /// pipelined, 2 loops 45k and 413k.
    public static var defaultLoopCount: Int {
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, min(cores / 2, maxLoops))
    }
}

/// A snapshot of the server's counters.
public struct ServerStats: Sendable, Equatable {
    public var connectedClients: Int = 0
    public var totalConnections: Int = 0
    public var commandsProcessed: Int = 0
    public var rejectedConnections: Int = 0
    public var protocolErrors: Int = 0
    /// Inline lines refused for a control character (the connection stays open).
    public var refusedInlineLines: Int = 0
    public var outputBufferDisconnects: Int = 0
    public var idleDisconnects: Int = 0
    public var bytesIn: Int = 0
    public var bytesOut: Int = 0
    public init() {}
}

/// Errors thrown by the server API.
public enum NetError: Error, Equatable, CustomStringConvertible {
    case addressInUse(host: String, port: Int)
    case cannotResolve(host: String, detail: String)
    case systemCall(String, errno: Int32)
    case invalidConfig(String)
    case alreadyStarted
    case notStarted

    public var description: String {
        switch self {
        case .addressInUse(let host, let port):
            return "port \(port) is already in use (bind \(host):\(port): EADDRINUSE)"
        case .cannotResolve(let host, let detail):
            return "cannot resolve bind address \(host): \(detail)"
        case .systemCall(let call, let code):
            return "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .invalidConfig(let what):
            return "invalid network config: \(what)"
        case .alreadyStarted:
            return "server already started"
        case .notStarted:
            return "server not started"
        }
    }
}
