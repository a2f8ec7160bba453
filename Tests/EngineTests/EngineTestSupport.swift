import Testing
@testable import AllocationEngine

// Shared helpers for the engine-core tests. Every test builds its own engine on a
// ManualClock through `withEngine`, which checks the full invariant set after
// the test body has run.

/// 2026-01-01T00:00:00Z, the ManualClock's default start.
let t0: Int64 = 1_767_225_600_000
let minute: Int64 = 60_000
let defaultTTL: Int64 = 30 * 60_000

func u(_ s: String) -> Units { try! Units.parse(s) }
func p(_ s: String) -> Price { try! Price.parse(s) }
func date(_ s: String) -> CivilDate { try! CivilDate.parse(s) }

/// Runs `body` with a fresh engine and its manual clock, then checks every invariant.
func withEngine(config: EngineConfig = EngineConfig(), sourceLocation: SourceLocation = #_sourceLocation,
                _ body: (Engine, ManualClock) async throws -> Void) async throws {
    let clock = ManualClock(millis: t0)
    let engine = Engine(config: config, clock: clock)
    try await body(engine, clock)
    let problems = await engine.invariantViolations()
    #expect(problems.isEmpty, "invariant violations: \(problems)", sourceLocation: sourceLocation)
}

/// Creates an open deal with the given lots (id, units, acquired date). Lot ids
/// are unique across the engine; the default lot is "L1" in d1 and "<deal>-L1" elsewhere.
@discardableResult
func openDeal(_ engine: Engine, _ id: String = "d1", lots: [(String, String, String?)]? = nil,
              status: DealStatus = .open, openAt: Int64? = nil, closeAt: Int64? = nil) async throws -> DealInfo {
    let lots = lots ?? [(id == "d1" ? "L1" : "\(id)-L1", "100", nil)]
    let info = try await engine.createDeal(DealSpec(id: id, offerUnitPrice: p("10"), openAt: openAt, closeAt: closeAt, status: status))
    for (lot, units, acquired) in lots {
        try await engine.addLot(deal: id, LotSpec(id: lot, unitsTotal: u(units), unitCost: p("5"), acquiredAt: acquired.map(date)))
    }
    return info
}

func holdReq(_ units: String, investor: String = "inv1", price: String = "10", ttl: Int64? = nil, id: String? = nil,
             partial: Bool = false) -> HoldRequest {
    HoldRequest(investor: investor, units: u(units), price: p(price), ttlMillis: ttl, id: id, partial: partial)
}

/// Expects `body` to fail with `code` (and, if given, exactly `message`). Returns the error.
@discardableResult
func expectError<T>(_ code: EngineError.Code, message: String? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                    _ body: () async throws -> T) async -> EngineError? {
    do {
        let value = try await body()
        Issue.record("expected \(code.rawValue), got success: \(value)", sourceLocation: sourceLocation)
        return nil
    } catch let error as EngineError {
        #expect(error.code == code, "got \(error)", sourceLocation: sourceLocation)
        if let message { #expect(error.message == message, sourceLocation: sourceLocation) }
        return error
    } catch {
        Issue.record("expected EngineError \(code.rawValue), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Expects a synchronous parse to fail with INVALID.
func expectInvalid<T>(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws(EngineError) -> T) {
    do {
        let value = try body()
        Issue.record("'\(what)' should be INVALID, parsed as \(value)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.code == .invalid, "'\(what)': \(error)", sourceLocation: sourceLocation)
    }
}

extension Engine {
    func holdStatus(_ id: String) async throws -> String? { try await holdFields(id)[field: "status"] }
    func allocationStatus(_ id: String) async throws -> String? { try await allocationFields(id)[field: "status"] }
    func lot(_ deal: String, _ lot: String) async throws -> Inventory.LotLine {
        let inv = try await inventory(deal: deal)
        return try #require(inv.lots.first { $0.id == lot })
    }
    func dealStatus(_ deal: String) async throws -> DealStatus { try await inventory(deal: deal).status }
}

/// A lot split as "lot:units" pairs, oldest first, e.g. ["L2:50", "L1:10"].
func split(_ r: HoldReceipt) -> [String] { r.parts.map { "\($0.lot):\($0.units)" } }
