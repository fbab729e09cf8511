import VMMSysUtil

/// One prepared benchmark: the resources are created up front, `run` repeats the measured operation.
///
/// `run(_:)` is the hot path: it must allocate nothing and do only the work being measured, so the
/// same runner serves the vmm-bench timer and package-benchmark's malloc counters.
///
/// Thread-safety: a runner is driven by one thread at a time; any peer thread or process it owns is
/// stopped by `tearDown()`.
public protocol BenchRunner: AnyObject {
    /// Performs the measured operation `iterations` times.
    ///
    /// - Throws: whatever the underlying calls throw; a failure ends the case.
    func run(_ iterations: Int) throws
    /// Stops peers and releases resources. Called once; `run` is not called afterwards.
    func tearDown()
}

extension BenchRunner {
    public func tearDown() {}
}

/// Which implementation a runner exercises: the package's API, or the same work done with raw syscalls.
public enum BenchImplementation: String, Sendable, CaseIterable {
    case ours
    case raw
}

/// One benchmark case: a name, and how to build the package runner and its raw-syscall twin.
///
/// Thread-safety: immutable; the factories may be called from any thread.
public struct BenchCase: Sendable {
    /// `notify`, `poller`, `scm`, `shm` or `vring`.
    public let group: String
    /// What is measured, e.g. `pingpong-threads/wait`.
    public let name: String
    /// The backend under test (e.g. `eventfd`), or `-` where there is no choice.
    public let backend: String
    /// Whether two threads or processes take part, so CPU placement matters.
    public let usesPlacement: Bool
    /// Operations timed together per sample: 1 for syscall round trips, more for nanosecond paths.
    public let batch: Int
    /// Why the case cannot run here (its backend is unavailable), or nil when it can.
    public let unavailableReason: String?
    /// Builds the runner for one implementation.
    public let make: @Sendable (BenchImplementation, BenchContext) throws -> any BenchRunner

    public init(
        group: String, name: String, backend: String, usesPlacement: Bool = false, batch: Int = 1,
        unavailableReason: String? = nil,
        make: @escaping @Sendable (BenchImplementation, BenchContext) throws -> any BenchRunner
    ) {
        self.group = group
        self.name = name
        self.backend = backend
        self.usesPlacement = usesPlacement
        self.batch = batch
        self.unavailableReason = unavailableReason
        self.make = make
    }

    /// `group/name/backend`, the identifier used on the command line and in package-benchmark.
    public var identifier: String { "\(group)/\(name)/\(backend)" }
}

/// Where the two sides of a cross-thread or cross-process case run, and how to start a child.
///
/// Thread-safety: a value type.
public struct BenchContext: Sendable {
    /// CPU for the measuring thread, or nil when not pinned.
    public var mainCPU: Int32?
    /// CPU for the peer thread or child process, or nil when not pinned.
    public var peerCPU: Int32?
    /// Executable that understands `--child ROLE ...` (vmm-bench), or nil: process cases are skipped.
    public var childExecutable: String?

    public init(mainCPU: Int32?, peerCPU: Int32?, childExecutable: String?) {
        self.mainCPU = mainCPU
        self.peerCPU = peerCPU
        self.childExecutable = childExecutable
    }

    /// Both sides on `cpu` (default), or on `cpu` and the next CPU when `spread`; unpinned where
    /// the platform cannot pin threads.
    public static func standard(spread: Bool, cpu: Int32 = 0, childExecutable: String?) -> BenchContext {
        guard Processors.pinningIsSupported else {
            return BenchContext(mainCPU: nil, peerCPU: nil, childExecutable: childExecutable)
        }
        let cpus = Int32(clamping: Processors.onlineCount)
        let main = cpu % cpus
        let peer = spread ? (main + 1) % cpus : main
        return BenchContext(mainCPU: main, peerCPU: peer, childExecutable: childExecutable)
    }

    /// Human description: "same CPU (0)", "CPUs 0 and 1", or "not pinned".
    public var placementDescription: String {
        guard let main = mainCPU, let peer = peerCPU else { return "not pinned" }
        return main == peer ? "both on CPU \(main)" : "CPU \(main) and CPU \(peer)"
    }
}

/// A case could not run here (missing backend, no child executable): reported, not fatal.
public struct BenchSkipped: Error, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
