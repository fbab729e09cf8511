#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
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

    /// Waits up to `seconds` for the child to exit and returns its exit status (128 + signal if
    /// it was killed). A child still running then is killed with SIGKILL, an issue is recorded
    /// and -1 returned: a test never hangs on a child that does not exit.
    public func waitForExit(seconds: Int = 30, sourceLocation: SourceLocation = #_sourceLocation) -> Int32 {
        let child = ChildProcess(pid: pid)
        for _ in 0..<(seconds * 1000) {
            do {
                if let status = try child.exitStatusIfExited() { return status.code }
            } catch {
                Issue.record("waitpid(\(pid)): \(error)", sourceLocation: sourceLocation)
                return -1
            }
            usleep(1000)
        }
        Issue.record("process \(pid) did not exit within \(seconds) s: killed", sourceLocation: sourceLocation)
        kill(pid, SIGKILL)
        _ = try? child.waitForExit()
        return -1
    }
}
