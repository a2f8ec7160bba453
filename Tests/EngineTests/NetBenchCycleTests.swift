import Foundation
import Testing
@testable import EngineServer

/// The load generator's cycles (`__seq__`), fixed demand and reply counting, as
/// Benchmarks/compare/run.sh uses them for the sell-out and the full cycle.
@Suite struct NetBenchCycleTests {
    @Test func templateNumbersEachCycle() {
        let t = CycleTemplate([["HOLD", "d", "inv-1", "5", "28.5", "ID", "h__seq__"], ["ALLOCATE", "h__seq__", "ID", "a__seq__x"]])
        #expect(t.usesSequence)
        var out: [UInt8] = []
        t.encode(sequence: 12, into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
            "*7\r\n$4\r\nHOLD\r\n$1\r\nd\r\n$5\r\ninv-1\r\n$1\r\n5\r\n$4\r\n28.5\r\n$2\r\nID\r\n$3\r\nh12\r\n"
            + "*4\r\n$8\r\nALLOCATE\r\n$3\r\nh12\r\n$2\r\nID\r\n$4\r\na12x\r\n")
        #expect(!CycleTemplate([["PING"]]).usesSequence)
    }

    @Test func refusalsAreCheckedAgainstWhatTheySayRemained() {
        var r = NetBenchResult(requestsPerSecond: 0, p50Micros: 0, p99Micros: 0, p999Micros: 0, errors: 0, completed: 0)
        for line in ["INSUFFICIENT requested 100, available 40\r\n", "INSUFFICIENT requested 100, available 0\r\n",
                     "INSUFFICIENT requested 100, available 100\r\n", "INSUFFICIENT requested 0.5, available 12.25\r\n",
                     "CONFLICT hold id x was used\r\n", "ERR\r\n"] {
            let bytes = Array(line.utf8)
            bytes.withUnsafeBufferPointer { r.classifyError($0) }
        }
        #expect(r.errors == 6)
        #expect(r.refusals == 4)
        #expect(r.refusalsWhileAvailable == 2)
        #expect(r.errorCodes == ["INSUFFICIENT": 4, "CONFLICT": 1, "ERR": 1])
    }

    @Test func sellOutWithFixedDemandAgainstTheServer() async throws {
        try await withSrv { h in
            let c = try h.client()
            _ = await c.call("DEAL.CREATE", "sell")
            _ = await c.call("LOT.ADD", "sell", "lot-a", "600", "20")
            _ = await c.call("LOT.ADD", "sell", "lot-b", "400", "20")
            let port = h.port
            // 25 requests of 100 units for 1,000 units: 10 holds, 15 refusals, none while units remained.
            let r = await srvBlocking {
                NetBench.runCycles(port: port, connections: 4, pipeline: 3, seconds: 60, maxCycles: 25,
                                   cycles: [[["HOLD", "sell", "inv-1", "100", "28.5", "ID", "s__seq__"]]])
            }
            #expect(r.completed == 25)
            #expect(r.refusals == 15)
            #expect(r.errors == 15)
            #expect(r.refusalsWhileAvailable == 0)
            #expect(r.lastSuccessSeconds > 0)
            let inventory = await c.call("INVENTORY", "sell")
            #expect(inventory.fields?["units_remaining"] == "0")
            #expect(inventory.fields?["units_held"] == "1000")

            // The full cycle, one per round trip and 2 per round trip: every id its own.
            _ = await c.call("DEAL.CREATE", "cyc")
            _ = await c.call("LOT.ADD", "cyc", "lot-c", "1000", "20")
            for pipeline in [1, 2] {
                let cycle = await srvBlocking {
                    NetBench.runCycles(port: port, connections: 3, pipeline: pipeline, seconds: 60, maxCycles: 10,
                                       cycles: [[["HOLD", "cyc", "inv-\(pipeline)", "5", "28.5", "ID", "p\(pipeline)h__seq__"],
                                                 ["ALLOCATE", "p\(pipeline)h__seq__", "ID", "p\(pipeline)a__seq__"],
                                                 ["APPROVE", "p\(pipeline)a__seq__"]]])
                }
                #expect(cycle.completed == 30)
                #expect(cycle.errors == 0)
                let position = await c.call("POSITION.GET", "inv-\(pipeline)", "cyc")
                #expect(position.fields?["units"] == "50")
            }
        }
    }
}
