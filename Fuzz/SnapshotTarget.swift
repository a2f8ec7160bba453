// libFuzzer target `snapshot`: the snapshot file decoder (SnapshotFormat:
// magic, version, length, checksum), the engine state decoder behind it
// (StateCodec: deals, lots, holds, allocations, the people and money sides,
// the directory) and what recovery does with a decoded image (invariants,
// id indexes). The first byte of the input picks the mode:
// - even: the rest is a whole snapshot file;
// - odd: the rest is a state payload, which the target wraps in a snapshot
//   file with the right checksum, so the fuzzer reaches the state decoder
//   without forging a CRC.
// Checks: nothing traps, hangs or allocates beyond -malloc_limit_mb; the file
// decoder either returns a payload or throws a SnapshotError; a state that
// decodes, keeps its invariants and indexes (what recovery accepts) encodes to
// bytes that decode again and encode to the same bytes (the next snapshot
// writes what was read); and recovering a data directory holding the file
// either returns a state keeping every invariant or throws an error that says
// what is wrong.
import AllocationEngine
import Snapshot
import WAL

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSnapshot(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzFiles.bytes(data, size)
    guard let mode = input.first else { return 0 }
    let rest = Array(input[1...])
    let file = mode & 1 == 0 ? rest : SnapshotFormat.encode(lsn: 7, time: 1_764_000_000_000, payload: rest)

    var payload: [UInt8]?
    do throws(SnapshotError) {
        payload = try SnapshotFormat.decode(file, path: "fuzz").payload
    } catch {
        precondition(!"\(error)".isEmpty, "a snapshot error without a message")
    }
    if let payload { checkState(payload) }
    recover(file)
    return 0
}

/// The state decoder on its own, with the round trip of an accepted image.
func checkState(_ payload: [UInt8]) {
    let image: EngineImage
    do throws(DecodeError) {
        image = try StateCodec.decode(payload)
    } catch {
        precondition(!error.message.isEmpty, "a decode error without a message")
        return
    }
    let states = image.deals.map(\.state)
    guard states.allSatisfy({ $0.invariantViolations().isEmpty }) else { return }
    guard (try? StateCodec.index(states, into: EngineIndexes())) != nil else { return }
    let encoded = StateCodec.encode(image)
    let again: EngineImage
    do throws(DecodeError) {
        again = try StateCodec.decode(encoded)
    } catch {
        fatalError("an accepted image encodes to a state that does not decode: \(error)")
    }
    precondition(again.deals.count == image.deals.count, "the round trip changed the number of deals")
    precondition(StateCodec.encode(again) == encoded, "an accepted image does not encode the same after a round trip")
}

/// Recovery of a data directory whose only content is this snapshot file.
func recover(_ file: [UInt8]) {
    let io = SimulatedFileIO(seed: 1)
    let dir = DataDirectory("/data")
    do {
        try io.createDirectory("/data")
        try io.createDirectory(dir.wal)
    } catch {
        fatalError("the simulated file layer refused a directory: \(error)")
    }
    FuzzFiles.write(file, to: SnapshotFormat.name(lsn: 7), in: dir.snapshots, io: io)
    let result: Recovery.Result
    do {
        result = try Recovery.recover(dir, io: io, now: { 0 })
    } catch let e as RecoveryError {
        fuzzNote("recovery refused: \(e.message)")
        precondition(!e.message.isEmpty, "a recovery error without a message")
        return
    } catch {
        fatalError("recovery threw something other than a RecoveryError: \(error)")
    }
    fuzzNote("recovered \(result.states.count) deals, \(result.report.recordsReplayed) records replayed, snapshot \(result.report.snapshotPath ?? "none"), skipped \(result.report.skippedSnapshots)")
    for state in result.states {
        let problems = state.invariantViolations()
        precondition(problems.isEmpty, "recovery accepted a snapshot that breaks invariants: \(problems.prefix(3))")
    }
}
