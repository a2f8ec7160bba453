import AllocationEngine
import Synchronization

/// Every connection the handler knows, for `CLIENT LIST` and `CLIENT KILL`
/// (Sentinel kills the normal clients of a promoted replica so they find the
/// new primary). One entry per open connection (bounded by `--max-clients`);
/// updated by the rare commands that change what it shows, never per command.
final class ClientRegistry: Sendable {
    struct Entry: Sendable {
        var id: UInt64
        var address: String
        var loopIndex: Int
        var name: String?
        var user: String?
        var protocolVersion: Int
        var openedAt: Double
        var outbox: SessionOutbox?
        var subscriptions = 0
        var patterns = 0
        /// Sent REPLSYNC: a replica's link.
        var isReplica = false
        var libName: String?
        var libVersion: String?

        var type: String { isReplica ? "replica" : (subscriptions + patterns > 0 ? "pubsub" : "normal") }
    }
    private let entries = Mutex<[UInt64: Entry]>([:])

    func opened(_ session: Session, user: String?) {
        let e = Entry(id: session.id, address: session.remoteAddress, loopIndex: session.loopIndex, name: session.name, user: user,
                      protocolVersion: session.protocolVersion, openedAt: monotonicSeconds(), outbox: session.outbox)
        entries.withLock { $0[session.id] = e }
    }

    func closed(_ id: UInt64) { _ = entries.withLock { $0.removeValue(forKey: id) } }

    func update(_ id: UInt64, _ body: (inout Entry) -> Void) {
        entries.withLock { d in if d[id] != nil { body(&d[id]!) } }
    }

    var all: [Entry] { entries.withLock { Array($0.values) }.sorted { $0.id < $1.id } }
}
