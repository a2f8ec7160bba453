// swift-tools-version:6.0
// AllocationEngine: zero third-party packages by design (stdlib, Foundation,
// Dispatch, Glibc, Synchronization only).
import PackageDescription

let package = Package(
    name: "AllocationEngine",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "allocation-engine", targets: ["allocation-engine"]),
        .executable(name: "engine-bench", targets: ["engine-bench"]),
        .executable(name: "soak", targets: ["soak"]),
        .library(name: "AllocationEngine", targets: ["AllocationEngine"]),
    ],
    targets: [
        // Linux declarations Glibc does not export (epoll, eventfd, accept4, fallocate, mallinfo2), the stop-signal handler.
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .target(name: "WAL", dependencies: ["CLinux"], path: "Sources/WAL"),
        .target(name: "Snapshot", dependencies: ["WAL"], path: "Sources/Snapshot"),
        // SHA-256 block compression with the x86 SHA extensions (our own C; the audit chain's hashes).
        .target(name: "CSHA256", path: "Sources/CSHA256"),
        .target(name: "AllocationEngine", dependencies: ["WAL", "Snapshot", "CLinux", "CSHA256"], path: "Sources/AllocationEngine"),
        .target(name: "EngineServer", dependencies: ["AllocationEngine", "WAL", "Snapshot", "CLinux"], path: "Sources/EngineServer"),
        .executableTarget(name: "allocation-engine", dependencies: ["EngineServer", "AllocationEngine", "WAL", "Snapshot", "CLinux"], path: "Sources/allocation-engine"),
        .executableTarget(name: "engine-bench", dependencies: ["AllocationEngine", "EngineServer", "WAL", "Snapshot", "CLinux"], path: "Benchmarks/engine-bench"),
        // The soak benchmark: drives a built `allocation-engine serve` over TCP (the engine runs in that
        // process; the soak borrows the load generator's reply parser and the process tests' RESP
        // client; not run in CI).
        .executableTarget(name: "soak", dependencies: ["EngineServer", "TestSupport", "WAL"], path: "Benchmarks/soak"),
        // Helpers shared by both test targets (child server processes, a RESP client).
        .target(name: "TestSupport", dependencies: ["WAL"], path: "Tests/TestSupport"),
        .testTarget(name: "EngineTests", dependencies: ["AllocationEngine", "WAL", "Snapshot", "EngineServer", "TestSupport"], path: "Tests/EngineTests"),
        .testTarget(name: "StressTests", dependencies: ["AllocationEngine", "WAL", "Snapshot", "EngineServer", "TestSupport"], path: "Tests/StressTests"),
    ],
    swiftLanguageModes: [.v6]
)
