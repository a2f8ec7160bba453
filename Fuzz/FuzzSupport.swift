// Helpers shared by the log and snapshot fuzz targets (compiled into each of
// them by Fuzz/run.sh): building files on the simulated file layer and
// writing well-formed log segments, so a target can hand the engine records
// whose checksums are right and reach the decoders behind them.
import WAL
import Glibc

enum FuzzFiles {
    /// The fuzzer's input as an array (libFuzzer passes a null pointer for size 0).
    static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// Writes `bytes` as the file `path` (creating its directory), synced.
    /// The simulated layer refusing is a bug of the target, not a finding.
    static func write(_ bytes: [UInt8], to path: String, in directory: String, io: SimulatedFileIO) {
        do {
            if !io.fileExists(directory) { try io.createDirectory(directory) }
            let fd = try io.create(directory + "/" + path)
            try io.write(fd, bytes)
            try io.fsync(fd)
            try io.close(fd)
        } catch {
            fatalError("the simulated file layer refused a write: \(error)")
        }
    }

    /// A log segment as the writer lays it out (docs/wal-format.md): a
    /// 32-byte header, then records `length lsn type time payload crc`, each
    /// checksummed with the segment's salt.
    static func segment(salt: UInt32, firstLSN: UInt64, records: [(type: UInt8, time: Int64, payload: [UInt8])]) -> [UInt8] {
        var w = ByteWriter(capacity: 4096)
        w.bytes(LogFormat.segmentMagic)
        w.u16(LogFormat.version)
        w.u16(0)
        w.u32(salt)
        w.u64(firstLSN)
        w.u32(0)
        w.u32(CRC32C.checksum(w.bytes))
        var lsn = firstLSN
        for r in records {
            var record = ByteWriter(capacity: LogFormat.recordOverheadBytes + r.payload.count)
            record.u32(UInt32(LogFormat.recordOverheadBytes + r.payload.count))
            record.u64(lsn)
            record.u8(r.type)
            record.i64(r.time)
            record.bytes(r.payload)
            record.u32(CRC32C.checksum(record.bytes, seed: salt))
            w.bytes(record.bytes)
            lsn += 1
        }
        return w.bytes
    }
}

/// `FUZZ_VERBOSE=1 .build-fuzz/fuzz-bin/fuzz-<target> FILE` says what an
/// input reached (a seed, a crash input): which error refused it, or what
/// recovery returned. Off while fuzzing (it would only slow it down).
let fuzzVerbose = getenv("FUZZ_VERBOSE") != nil

func fuzzNote(_ text: @autoclosure () -> String) {
    if fuzzVerbose { print("fuzz: " + text()) }
}
