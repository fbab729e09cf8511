#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// A child process started from a built product, with chosen descriptors mapped into it
/// (`ChildProcess.spawn` with the product located beside the test binary).
///
/// Thread-safety: use from one test at a time.
public struct PeerProcess: Sendable {
    public let pid: pid_t

    public enum SpawnError: Error, CustomStringConvertible {
        case productNotFound(String)
        case spawnFailed(SystemCallError)
        public var description: String {
            switch self {
            case .productNotFound(let name): return "\(name) was not built beside the test binary"
            case .spawnFailed(let error): return "spawn failed: \(error)"
            }
        }
    }

    /// Spawns `product` (built beside the tests) with `arguments`; each `(parentFD, childFD)` pair is
    /// `dup2`ed into the child (the child's copy is not close-on-exec). The parent keeps its copies.
    public static func spawn(
        _ product: String = "vmm-test-peer",
        arguments: [String],
        mapping descriptors: [(parent: Int32, child: Int32)] = []
    ) throws -> PeerProcess {
        guard let path = builtProductPath(product) else { throw SpawnError.productNotFound(product) }
        do {
            return PeerProcess(pid: try ChildProcess.spawn(path, arguments: arguments, descriptors: descriptors).pid)
        } catch {
            throw SpawnError.spawnFailed(error)
        }
    }

    /// Waits for the child to exit and returns its exit status (128 + signal if it was killed).
    public func waitForExit() -> Int32 {
        do {
            return try ChildProcess(pid: pid).waitForExit().code
        } catch {
            return -1
        }
    }
}
