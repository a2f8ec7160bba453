// libFuzzer target `log`: the log segment decoder (LogReader's scan: segment
// header, record framing, checksums, LSN order, torn tails), the record payload
// decoder (ChangeCodec) and replay (Recovery applying each change to the deals).
// The first byte of the input picks the mode:
// - even: the rest is one raw segment file. Scanned with both corruption
//   policies: records come in LSN order (each the previous + 1), the summary
//   counts what was visited, `.truncate` never throws LogCorruption (only a
//   newer format is refused), and where `.stop` reads the whole log without an
//   error, `.truncate` reads exactly the same records. Every record the scan
//   accepts is decoded.
// - odd: the rest is a list of records `type u8, length u16 LE, payload`; the
//   target writes them as a well-formed segment (right checksums, LSNs from 1)
//   and recovers a data directory from it, so the fuzzer reaches the payload
//   decoder and replay without forging a CRC. Recovery must return or throw an
//   error that says what is wrong; what it returns keeps every deal invariant.
// Also, each payload decoded on its own: a decoded change encodes to a payload
// that decodes to a change encoding identically (the next snapshot or copy
// writes what was read). Nothing may trap, hang or allocate beyond
// -malloc_limit_mb.
import AllocationEngine
import WAL

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLog(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzFiles.bytes(data, size)
    guard let mode = input.first else { return 0 }
    let rest = Array(input[1...])
    if mode & 1 == 0 {
        scanSegment(rest)
    } else {
        replay(FuzzRecords.split(rest))
    }
    return 0
}

enum FuzzRecords {
    /// `type u8, length u16 LE, payload`, as many as the bytes hold (a short last one is cut).
    static func split(_ bytes: [UInt8]) -> [(type: UInt8, time: Int64, payload: [UInt8])] {
        var out: [(type: UInt8, time: Int64, payload: [UInt8])] = []
        var i = 0
        while i + 3 <= bytes.count {
            let type = bytes[i]
            let length = Int(bytes[i + 1]) | Int(bytes[i + 2]) << 8
            let end = min(bytes.count, i + 3 + length)
            // Logged times one second apart from a fixed day, as a writer would.
            out.append((type, 1_764_000_000_000 + Int64(out.count) * 1000, Array(bytes[(i + 3)..<end])))
            i = end
        }
        return out
    }
}

/// Decodes one payload; when it decodes, checks the encode/decode round trip.
func checkPayload(type: UInt8, _ payload: UnsafeRawBufferPointer) {
    guard let change = try? ChangeCodec.decode(type: type, payload: payload) else { return }
    var first = ByteWriter(capacity: 256)
    ChangeCodec.encode(change, into: &first)
    let encoded = first.bytes
    let decoded: Result<Change, DecodeError> = encoded.withUnsafeBytes { raw in
        do throws(DecodeError) { return .success(try ChangeCodec.decode(type: change.recordType, payload: raw)) } catch { return .failure(error) }
    }
    guard case .success(let again) = decoded else {
        fatalError("a decoded change (type \(type)) encodes to a payload that does not decode: \(decoded)")
    }
    var second = ByteWriter(capacity: 256)
    ChangeCodec.encode(again, into: &second)
    precondition(second.bytes == encoded, "a decoded change (type \(type)) does not encode the same after a round trip")
}

func scanSegment(_ bytes: [UInt8]) {
    let io = SimulatedFileIO(seed: 1)
    FuzzFiles.write(bytes, to: LogFormat.segmentName(firstLSN: 1), in: "/log", io: io)
    var read: [[UInt64]] = []
    var stopFailed = false
    for policy in [CorruptionPolicy.stop, .truncate] {
        var seen: [UInt64] = []
        do {
            let summary = try LogReader.scan(directory: "/log", io: io, onCorruption: policy) { record in
                precondition(seen.isEmpty || record.lsn == seen[seen.count - 1] + 1, "the scan passed records out of order")
                seen.append(record.lsn)
                checkPayload(type: record.type, record.payload)
            }
            precondition(summary.records == seen.count, "the summary counts \(summary.records) records, \(seen.count) were visited")
            precondition(summary.lastLSN == seen.last, "the summary's last LSN is not the last record visited")
        } catch let e as LogCorruption {
            precondition(policy == .stop, "the truncate policy threw \(e)")
            stopFailed = true
        } catch is LogFormatError {
            // A newer format (or not a log): refused under every policy.
        } catch {
            fatalError("the scan threw an unexpected error: \(error)")
        }
        read.append(seen)
    }
    if !stopFailed {
        precondition(read[0] == read[1], "stop and truncate read different records from a log stop accepts")
    }
}

func replay(_ records: [(type: UInt8, time: Int64, payload: [UInt8])]) {
    for r in records { r.payload.withUnsafeBytes { checkPayload(type: r.type, $0) } }
    let io = SimulatedFileIO(seed: 1)
    let dir = DataDirectory("/data")
    do {
        try io.createDirectory("/data")
    } catch {
        fatalError("the simulated file layer refused a directory: \(error)")
    }
    FuzzFiles.write(FuzzFiles.segment(salt: 0x5eed, firstLSN: 1, records: records),
                    to: LogFormat.segmentName(firstLSN: 1), in: dir.wal, io: io)
    let result: Recovery.Result
    do {
        result = try Recovery.recover(dir, io: io, now: { 0 })
    } catch let e as RecoveryError {
        fuzzNote("recovery refused: \(e.message)")
        precondition(!"\(e)".isEmpty, "a recovery error without a message")
        return
    } catch {
        fatalError("recovery threw something other than a RecoveryError: \(error)")
    }
    precondition(result.report.recordsReplayed + result.report.recordsSkipped <= records.count, "replayed more records than the log holds")
    fuzzNote("recovered \(result.states.count) deals, \(result.report.recordsReplayed) records replayed, snapshot \(result.report.snapshotPath ?? "none"), skipped \(result.report.skippedSnapshots)")
    for state in result.states {
        let problems = state.invariantViolations()
        precondition(problems.isEmpty, "recovery accepted a log that breaks invariants: \(problems.prefix(3))")
    }
}
