// swift-tools-version: 6.1
import PackageDescription
import Foundation

// io_uring for the block back-end: on Linux only, and only where liburing's header is installed
// (Debian: liburing-dev), so the package builds everywhere without it. The C side checks again
// with __has_include; VMM_NO_LIBURING=1 builds without it on purpose (the threads engine only).
#if os(Linux)
let liburingFound =
    ProcessInfo.processInfo.environment["VMM_NO_LIBURING"] == nil
    && ["/usr/include/liburing.h", "/usr/local/include/liburing.h"].contains {
        FileManager.default.fileExists(atPath: $0)
    }
#else
let liburingFound = false
#endif

let package = Package(
    name: "swift-vhost-user",
    // Duration and ContinuousClock (Poller timeouts) need macOS 13.
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "VMMSysUtil", targets: ["VMMSysUtil"]),
        .library(name: "Virtio", targets: ["Virtio"]),
        .library(name: "VhostUserProtocol", targets: ["VhostUserProtocol"]),
        .library(name: "VhostUserBackend", targets: ["VhostUserBackend"]),
        .library(name: "VhostUserFrontend", targets: ["VhostUserFrontend"]),
        .library(name: "VirtioBlock", targets: ["VirtioBlock"]),
        .library(name: "VirtioBlockDriver", targets: ["VirtioBlockDriver"]),
        .library(name: "VMMSystemInterop", targets: ["VMMSystemInterop"]),
        .executable(name: "vhost-user-rng", targets: ["vhost-user-rng"]),
        .executable(name: "vhost-user-blk", targets: ["vhost-user-blk"]),
        .executable(name: "vhost-user-net", targets: ["vhost-user-net"]),
    ],
    dependencies: [
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        // The only C in the package: what Swift cannot import (macros, inline atomics, raw syscalls).
        .target(
            name: "CVMMPlatform",
            path: "Platform",
            exclude: ["fileio"],
            linkerSettings: [.linkedLibrary("bsd", .when(platforms: [.linux]))]
        ),
        // O_DIRECT / F_NOCACHE, direct-I/O alignment and io_uring (liburing, linked as a system
        // library only where found): the C half of VMMSysUtil's asynchronous file I/O.
        .target(
            name: "CVMMFileIO",
            path: "Platform/fileio",
            cSettings: liburingFound ? [.define("VMM_HAVE_LIBURING")] : [],
            linkerSettings: liburingFound ? [.linkedLibrary("uring", .when(platforms: [.linux]))] : []
        ),
        .target(name: "VMMSysUtil", dependencies: ["CVMMPlatform", "CVMMFileIO"]),
        // swift-system interop: our owned descriptors and errors to and from SystemPackage's
        // FileDescriptor and Errno. Apart from VMMSysUtil so that it stays libc-only.
        .target(
            name: "VMMSystemInterop",
            dependencies: ["VMMSysUtil", .product(name: "SystemPackage", package: "swift-system")]
        ),
        .target(name: "Virtio", dependencies: ["VMMSysUtil", "CVMMPlatform"]),
        // The vhost-user wire protocol: header, request codes, typed payloads; decoding that owns
        // the received fds. No I/O (that is what makes it fuzzable).
        .target(name: "VhostUserProtocol", dependencies: ["VMMSysUtil", "Virtio", "CVMMPlatform"]),
        // The back-end framework: devices, sessions, queue workers, the server and daemon helpers.
        .target(
            name: "VhostUserBackend",
            dependencies: [
                "VhostUserProtocol", "VMMSysUtil", "Virtio", "CVMMPlatform",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The front-end: negotiation, shared guest memory, driver rings, config, inflight, reconnect.
        .target(
            name: "VhostUserFrontend", dependencies: ["VhostUserProtocol", "VMMSysUtil", "Virtio", "CVMMPlatform"]),
        // What every back-end program shares: QEMU's command-line conventions (swift-argument-parser),
        // the capabilities JSON (Codable, FoundationEssentials: executables only, so not a product),
        // SIGTERM/SIGINT as a clean stop, serving --socket-path or --fd.
        .target(
            name: "VhostUserDaemon",
            dependencies: [
                "VhostUserBackend", "VMMSysUtil", "Virtio",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A virtio-rng vhost-user back-end: the one-page example device.
        .executableTarget(
            name: "vhost-user-rng",
            dependencies: [
                "VhostUserDaemon", "VhostUserBackend", "Virtio",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Example: a virtio-console back-end driven by its own fds (a host Unix socket).
        .executableTarget(
            name: "vhost-user-console",
            dependencies: [
                "VhostUserDaemon", "VhostUserBackend", "Virtio", "VMMSysUtil",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/vhost-user-console"
        ),
        // Shared by the test targets: fd counting, locating the peer executable, spawning, a guest rig.
        .target(
            name: "VMMTestSupport",
            dependencies: ["VMMSysUtil", "Virtio", "VhostUserProtocol", "VhostUserBackend", "VhostUserFrontend"],
            path: "Tests/VMMTestSupport"),
        // Spawned by cross-process tests: receives fds, maps memory, answers notifications.
        .executableTarget(name: "vmm-test-peer", dependencies: ["VMMSysUtil"], path: "Tests/vmm-test-peer"),
        // virtio-blk: request parsing and execution against a raw image file.
        .target(name: "VirtioBlock", dependencies: ["Virtio", "VMMSysUtil", "CVMMPlatform", "CVMMFileIO"]),
        // virtio-net: headers, config space, control queue, receive filter, the packet paths, and
        // the switch's learning table and frame queues.
        .target(name: "VirtioNet", dependencies: ["Virtio", "VMMSysUtil", "CVMMPlatform"]),
        // The driver side of virtio-blk over VhostUserFrontend: request slots in guest memory.
        .target(name: "VirtioBlockDriver", dependencies: ["VirtioBlock", "VhostUserFrontend", "Virtio"]),
        // The virtio-blk vhost-user back-end program.
        .executableTarget(
            name: "vhost-user-blk",
            dependencies: [
                "VhostUserDaemon", "VhostUserProtocol", "VhostUserBackend", "Virtio", "VirtioBlock", "VMMSysUtil",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The virtio-net vhost-user back-end program: TAP, switch, sink and source ports.
        .executableTarget(
            name: "vhost-user-net",
            dependencies: [
                "VhostUserDaemon", "VhostUserProtocol", "VhostUserBackend", "Virtio", "VirtioNet", "VMMSysUtil",
                "CVMMPlatform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The front-end half of scripts/soak (connect/disconnect cycles and killed writers).
        .executableTarget(
            name: "vhost-user-soak",
            dependencies: [
                "VhostUserDaemon", "VhostUserFrontend", "Virtio", "VirtioBlock", "VirtioBlockDriver", "VMMSysUtil",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks: each case and its raw-syscall twin, written once, run by vmm-bench and by
        // package-benchmark (`swift package benchmark`).
        .target(name: "VMMBenchCases", dependencies: ["VMMSysUtil", "Virtio", "VirtioNet", "CVMMPlatform"]),
        .executableTarget(
            name: "vmm-bench",
            dependencies: [
                "VMMBenchCases", "VhostUserDaemon", "VhostUserProtocol", "VhostUserBackend", "VhostUserFrontend",
                "Virtio",
                "VirtioBlock", "VirtioBlockDriver", "VMMSysUtil", "CVMMFileIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "VMMBenchmarks",
            dependencies: [.product(name: "Benchmark", package: "benchmark"), "VMMBenchCases", "vmm-bench"],
            path: "Benchmarks/VMMBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .testTarget(
            name: "VMMBenchCasesTests",
            dependencies: ["VMMBenchCases", "VMMSysUtil", "Virtio", "VirtioBlock", "VMMTestSupport", "vmm-bench"]),
        .testTarget(
            name: "VMMSysUtilTests",
            dependencies: [
                "VMMSysUtil", "VMMSystemInterop", "CVMMPlatform", "VMMTestSupport", "vmm-test-peer",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .testTarget(
            name: "VirtioTests",
            dependencies: [
                "Virtio", "VMMSysUtil", "VMMTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(name: "VirtioNetTests", dependencies: ["VirtioNet", "Virtio", "VMMSysUtil", "VMMTestSupport"]),
        .testTarget(
            name: "VirtioBlockTests",
            dependencies: ["VirtioBlock", "Virtio", "VMMSysUtil", "CVMMPlatform", "VMMTestSupport"]),
        .testTarget(
            name: "VhostUserBlockTests",
            dependencies: [
                "VhostUserProtocol", "VhostUserBackend", "VhostUserFrontend", "Virtio", "VMMSysUtil", "VMMTestSupport",
                "vhost-user-blk",
            ]
        ),
        // The daemons are dependencies so the front-end tests can run them in their own processes.
        .testTarget(
            name: "VhostUserTests",
            dependencies: [
                "VhostUserProtocol", "VhostUserBackend", "VhostUserFrontend", "Virtio", "VirtioBlock",
                "VirtioBlockDriver", "VMMSysUtil", "VMMTestSupport", "vhost-user-rng", "vhost-user-blk",
                "vhost-user-console",
                "VirtioNet", "vhost-user-net",
            ]
        ),
        .testTarget(
            name: "HostileFrontendTests",
            dependencies: [
                "VhostUserProtocol", "VhostUserBackend", "VhostUserFrontend", "Virtio", "VMMSysUtil", "VMMTestSupport",
                "vhost-user-rng", "vhost-user-blk",
                "vhost-user-net", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Written as a package user would: imports only the public library products (no test
        // support, no @testable), spawns its own child program, serves and drives its own device.
        .executableTarget(name: "consumer-peer", dependencies: ["VMMSysUtil"], path: "Tests/consumer-peer"),
        .testTarget(
            name: "ConsumerTests",
            dependencies: [
                "VMMSysUtil", "Virtio", "VhostUserProtocol", "VhostUserBackend", "VhostUserFrontend", "consumer-peer",
            ]
        ),
        .testTarget(
            name: "VhostUserBackendTests",
            dependencies: [
                "VhostUserProtocol", "VhostUserBackend", "VhostUserDaemon", "VhostUserFrontend", "Virtio", "VMMSysUtil",
                "VMMTestSupport", "vhost-user-rng",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
