// The load: a few client threads, each driving its share of the connections
// with poll(). A connection sends `pipeline` commands, waits for all their
// replies, then sends the next batch: mostly HOLDs with a 1 s TTL; the replies
// decide the follow-ups of the next batch (1 % of the holds are released,
// 0.2 % allocated; every allocation is then approved or rejected, in turn).
//
// Every acknowledged hold is counted; the ids kept for the restart check are
// one generated id in `sample` (deal number and row number packed in 8
// bytes), the highest generated id acknowledged in each deal, and every hold
// placed with a client id (1 hold in 97 carries `ID c<connection>-<n>`).

import WAL
import Dispatch
import Foundation
import Glibc
import Synchronization

struct LoadConfig: Sendable {
    var port: Int
    var deals: Int
    var connections: Int
    var pipeline: Int
    var threads: Int
    /// Keep one generated hold id in this many (1 = all).
    var sample: Int
    var ttlSeconds = 1
    var investors = 10_000
    /// Out of 10,000 acknowledged holds: released, allocated.
    var releasePerTenThousand = 100
    var allocatePerTenThousand = 20
    /// One hold in this many carries a client id.
    var clientIDEvery = 97

    static func dealID(_ n: Int) -> String { "soak-\(n)" }
}

/// Counters of one client thread (read by the main thread for the table).
final class LoadCounters: Sendable {
    let holds = Atomic<Int>(0)
    let replies = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let releases = Atomic<Int>(0)
    let allocations = Atomic<Int>(0)
    let approvals = Atomic<Int>(0)
    let rejections = Atomic<Int>(0)
    /// Error replies by code.
    let insufficient = Atomic<Int>(0)
    let expired = Atomic<Int>(0)
    let conflict = Atomic<Int>(0)
    let notFound = Atomic<Int>(0)
    let limit = Atomic<Int>(0)
    let readOnly = Atomic<Int>(0)
    let otherErrors = Atomic<Int>(0)
}

/// What a client thread recorded, handed over when it ends.
struct RecordedHolds: Sendable {
    /// Sampled generated ids: deal number << 32 | row number.
    var sampled: [UInt64] = []
    /// Per deal number (index 0 = deal 1): the highest generated row number acknowledged.
    var highest: [UInt32] = []
    /// Client-id holds acknowledged: connection << 32 | sequence (id `c<connection>-<sequence>`).
    var clientIDs: [UInt64] = []
    var connectFailures = 0
    var firstOtherError: String?

    static func generatedID(_ packed: UInt64) -> String { "h\(packed >> 32).\(packed & 0xFFFF_FFFF)" }
    static func clientID(_ packed: UInt64) -> String { "c\(packed >> 32)-\(packed & 0xFFFF_FFFF)" }
}

final class LoadControl: Sendable {
    let stop = Atomic<Bool>(false)
    let group = DispatchGroup()
    let results = Locked<[RecordedHolds]>([])
}

/// Starts `config.threads` client threads; join with `control.group.wait()`.
func startLoad(_ config: LoadConfig, control: LoadControl) -> [LoadCounters] {
    var all: [LoadCounters] = []
    for t in 0..<config.threads {
        let counters = LoadCounters()
        all.append(counters)
        let mine = Array(stride(from: t, to: config.connections, by: config.threads))
        control.group.enter()
        let thread = Thread {
            var worker = LoadWorker(config: config, connections: mine, counters: counters, control: control)
            worker.run()
            control.results.withLock { $0.append(worker.recorded) }
            control.group.leave()
        }
        thread.name = "soak-load-\(t)"
        thread.start()
    }
    return all
}

private enum SentKind: UInt8 { case hold, holdWithID, release, allocate, approve, reject }

private struct Sent {
    var kind: SentKind
    var sequence: UInt32 = 0
}

private struct FollowUp {
    var kind: SentKind
    var id: [UInt8]
}

private struct Connection {
    var fd: Int32
    var index: Int
    var input: [UInt8] = []
    var sent: [Sent] = []
    var answered = 0
    var followUps: [FollowUp] = []
    var rng: UInt64
    var clientSequence: UInt32 = 0
    var holdsSent = 0
    var allocationsSeen = 0
    var idPrefix: [UInt8]
    var alive = true
    var awaiting: Bool { alive && answered < sent.count }
}

/// Tallies of one batch, added to the shared counters once per batch.
private struct Tally {
    var holds = 0, replies = 0, errors = 0, releases = 0, allocations = 0, approvals = 0, rejections = 0
    var insufficient = 0, expired = 0, conflict = 0, notFound = 0, limit = 0, readOnly = 0, other = 0
}

private struct LoadWorker {
    let config: LoadConfig
    let counters: LoadCounters
    let control: LoadControl
    var connections: [Connection] = []
    var recorded = RecordedHolds()
    var sampleCountdown: Int
    var tally = Tally()
    var out: [UInt8] = []

    // Pre-encoded pieces of the commands.
    let dealBulks: [[UInt8]]
    let holdHead: [UInt8] = Array("*7\r\n$4\r\nHOLD\r\n".utf8)
    let holdHeadWithID: [UInt8] = Array("*9\r\n$4\r\nHOLD\r\n".utf8)
    let holdTail: [UInt8]
    let idOption: [UInt8] = Array("$2\r\nID\r\n".utf8)
    let investorPrefix: [UInt8] = Array("inv-".utf8)
    let heads: [SentKind: [UInt8]] = [
        .release: Array("*2\r\n$7\r\nRELEASE\r\n".utf8),
        .allocate: Array("*2\r\n$8\r\nALLOCATE\r\n".utf8),
        .approve: Array("*2\r\n$7\r\nAPPROVE\r\n".utf8),
        .reject: Array("*2\r\n$6\r\nREJECT\r\n".utf8),
    ]

    init(config: LoadConfig, connections indices: [Int], counters: LoadCounters, control: LoadControl) {
        self.config = config
        self.counters = counters
        self.control = control
        sampleCountdown = config.sample
        recorded.highest = [UInt32](repeating: 0, count: config.deals)
        dealBulks = (1...config.deals).map { d in
            var b: [UInt8] = []
            RESP.appendBulk(&b, LoadConfig.dealID(d))
            return b
        }
        var tail: [UInt8] = []
        for a in ["1", "28.5", "TTL", String(config.ttlSeconds)] { RESP.appendBulk(&tail, a) }
        holdTail = tail
        for i in indices {
            guard let fd = connectLoopback(port: config.port) else { recorded.connectFailures += 1; continue }
            connections.append(Connection(fd: fd, index: i, rng: 0x9E37_79B9_7F4A_7C15 &* UInt64(i + 1),
                                          idPrefix: Array("c\(i)-".utf8)))
        }
    }

    mutating func run() {
        defer { for c in connections { close(c.fd) } }
        for i in connections.indices { sendBatch(i) }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
        defer { scratch.deallocate() }
        var fds: [pollfd] = []
        var which: [Int] = []
        var stopDeadline: Double?
        while true {
            if control.stop.load(ordering: .relaxed) {
                let now = Date().timeIntervalSince1970
                if stopDeadline == nil { stopDeadline = now + 3 }
                if now > stopDeadline! || !connections.contains(where: \.awaiting) { break }
            }
            fds.removeAll(keepingCapacity: true)
            which.removeAll(keepingCapacity: true)
            for (i, c) in connections.enumerated() where c.awaiting {
                fds.append(pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0))
                which.append(i)
            }
            if fds.isEmpty { break }  // every live connection has a batch in flight, so: all closed, or stopped
            let n = poll(&fds, nfds_t(fds.count), 100)
            if n < 0 { if errno == EINTR { continue }; break }
            if n == 0 { continue }
            for (k, p) in fds.enumerated() where p.revents != 0 {
                let i = which[k]
                let r = read(connections[i].fd, scratch.baseAddress, scratch.count)
                if r <= 0 {
                    if r < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                    connections[i].alive = false
                    continue
                }
                connections[i].input.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<r]))
                consumeReplies(i)
                if connections[i].alive && connections[i].answered == connections[i].sent.count {
                    flushTally()
                    if !control.stop.load(ordering: .relaxed) { sendBatch(i) }
                }
            }
        }
        flushTally()
    }

    // MARK: Sending

    mutating func sendBatch(_ i: Int) {
        out.removeAll(keepingCapacity: true)
        connections[i].sent.removeAll(keepingCapacity: true)
        connections[i].answered = 0
        var n = 0
        while n < config.pipeline, let f = connections[i].followUps.popLast() {
            out.append(contentsOf: heads[f.kind]!)
            RESP.appendBulk(&out, f.id)
            connections[i].sent.append(Sent(kind: f.kind))
            n += 1
        }
        while n < config.pipeline {
            let r = next(&connections[i].rng)
            let deal = config.deals == 1 ? 0 : Int(r % UInt64(config.deals))
            connections[i].holdsSent += 1
            let withID = config.clientIDEvery > 0 && connections[i].holdsSent % config.clientIDEvery == 0
            out.append(contentsOf: withID ? holdHeadWithID : holdHead)
            out.append(contentsOf: dealBulks[deal])
            RESP.appendBulk(&out, prefix: investorPrefix, number: Int((r >> 32) % UInt64(config.investors)))
            out.append(contentsOf: holdTail)
            if withID {
                connections[i].clientSequence += 1
                out.append(contentsOf: idOption)
                RESP.appendBulk(&out, prefix: connections[i].idPrefix, number: Int(connections[i].clientSequence))
                connections[i].sent.append(Sent(kind: .holdWithID, sequence: connections[i].clientSequence))
            } else {
                connections[i].sent.append(Sent(kind: .hold))
            }
            n += 1
        }
        if !sendAll(connections[i].fd, out) { connections[i].alive = false }
    }

    @inline(__always)
    func next(_ state: inout UInt64) -> UInt64 {
        // splitmix64
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: Replies

    mutating func consumeReplies(_ i: Int) {
        var input = connections[i].input
        connections[i].input = []
        var pos = 0
        input.withUnsafeBufferPointer { buf in
            while connections[i].answered < connections[i].sent.count, let end = RESP.skipReply(buf, from: pos) {
                let sent = connections[i].sent[connections[i].answered]
                connections[i].answered += 1
                handle(sent, buf, pos, i)
                pos = end
            }
        }
        if pos > 0 { input.removeSubrange(0..<pos) }
        connections[i].input = input
    }

    mutating func handle(_ sent: Sent, _ buf: UnsafeBufferPointer<UInt8>, _ pos: Int, _ i: Int) {
        tally.replies += 1
        let first = buf[pos]
        if first == UInt8(ascii: "-") {
            countError(buf, pos)
            return
        }
        switch sent.kind {
        case .hold, .holdWithID:
            guard first == UInt8(ascii: "*"), let idRange = RESP.firstBulk(buf, at: pos) else { return }
            tally.holds += 1
            if sent.kind == .holdWithID {
                recorded.clientIDs.append(UInt64(connections[i].index) << 32 | UInt64(sent.sequence))
            } else {
                recordGenerated(buf, idRange)
            }
            let r = next(&connections[i].rng) % 10_000
            if r < UInt64(config.releasePerTenThousand) {
                connections[i].followUps.append(FollowUp(kind: .release, id: Array(buf[idRange])))
            } else if r < UInt64(config.releasePerTenThousand + config.allocatePerTenThousand) {
                connections[i].followUps.append(FollowUp(kind: .allocate, id: Array(buf[idRange])))
            }
        case .allocate:
            guard first == UInt8(ascii: "$"), let idRange = RESP.firstBulk(buf, at: pos) else { return }
            tally.allocations += 1
            connections[i].allocationsSeen += 1
            let kind: SentKind = connections[i].allocationsSeen % 2 == 0 ? .approve : .reject
            connections[i].followUps.append(FollowUp(kind: kind, id: Array(buf[idRange])))
        case .release: tally.releases += 1
        case .approve: tally.approvals += 1
        case .reject: tally.rejections += 1
        }
    }

    /// `h<deal number>.<row>`: sampled, and the deal's highest row kept.
    mutating func recordGenerated(_ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        guard range.count > 3, buf[range.lowerBound] == UInt8(ascii: "h"),
              let dot = (range.lowerBound + 1..<range.upperBound).first(where: { buf[$0] == UInt8(ascii: ".") }),
              let deal = RESP.decimal(buf, range.lowerBound + 1, dot), let row = RESP.decimal(buf, dot + 1, range.upperBound),
              deal >= 1, row >= 1 else { return }
        if deal > recorded.highest.count { recorded.highest += [UInt32](repeating: 0, count: deal - recorded.highest.count) }
        if UInt32(row) > recorded.highest[deal - 1] { recorded.highest[deal - 1] = UInt32(row) }
        sampleCountdown -= 1
        if sampleCountdown == 0 {
            sampleCountdown = config.sample
            recorded.sampled.append(UInt64(deal) << 32 | UInt64(row))
        }
    }

    mutating func countError(_ buf: UnsafeBufferPointer<UInt8>, _ pos: Int) {
        tally.errors += 1
        func starts(_ s: StaticString) -> Bool {
            let n = s.utf8CodeUnitCount
            guard pos + 1 + n <= buf.count else { return false }
            return s.withUTF8Buffer { code in (0..<n).allSatisfy { buf[pos + 1 + $0] == code[$0] } }
        }
        if starts("INSUFFICIENT") { tally.insufficient += 1 }
        else if starts("EXPIRED") { tally.expired += 1 }
        else if starts("CONFLICT") { tally.conflict += 1 }
        else if starts("NOTFOUND") { tally.notFound += 1 }
        else if starts("LIMIT") { tally.limit += 1 }
        else if starts("READONLY") { tally.readOnly += 1 }
        else {
            tally.other += 1
            if recorded.firstOtherError == nil {
                var end = pos
                while end < buf.count && buf[end] != 13 { end += 1 }
                recorded.firstOtherError = String(decoding: UnsafeBufferPointer(rebasing: buf[pos..<end]), as: UTF8.self)
            }
        }
    }

    mutating func flushTally() {
        let t = tally
        tally = Tally()
        func add(_ a: borrowing Atomic<Int>, _ v: Int) { if v != 0 { a.add(v, ordering: .relaxed) } }
        add(counters.holds, t.holds)
        add(counters.replies, t.replies)
        add(counters.errors, t.errors)
        add(counters.releases, t.releases)
        add(counters.allocations, t.allocations)
        add(counters.approvals, t.approvals)
        add(counters.rejections, t.rejections)
        add(counters.insufficient, t.insufficient)
        add(counters.expired, t.expired)
        add(counters.conflict, t.conflict)
        add(counters.notFound, t.notFound)
        add(counters.limit, t.limit)
        add(counters.readOnly, t.readOnly)
        add(counters.otherErrors, t.other)
    }
}
