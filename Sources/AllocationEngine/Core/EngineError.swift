/// A refused request. The code is stable (clients match on it); the message is
/// for a person. A request that fails changes nothing.
public struct EngineError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notFound = "NOTFOUND"
        case insufficient = "INSUFFICIENT"
        case closed = "CLOSED"
        case conflict = "CONFLICT"
        case expired = "EXPIRED"
        case invalid = "INVALID"
        case exists = "EXISTS"
        case noPermission = "NOPERM"
        case readOnly = "READONLY"
        case limit = "LIMIT"
        /// The audit chain does not link: history was rewritten.
        case corrupt = "CORRUPT"
        /// `--min-replicas-to-write`: too few replicas to take or acknowledge a change (Redis' code).
        case noReplicas = "NOREPLICAS"
    }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue) \(message)" }
}
