#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing

/// A child process started from a built product, with chosen descriptors mapped into it.
///
/// Thread-safety: use from one test at a time.
public struct PeerProcess: Sendable {
    public let pid: pid_t

    public enum SpawnError: Error, CustomStringConvertible {
        case productNotFound(String)
        case spawnFailed(Int32)
        public var description: String {
            switch self {
            case .productNotFound(let name): return "\(name) was not built beside the test binary"
            case .spawnFailed(let code): return "posix_spawn failed: errno \(code)"
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
        // dup2(fd, fd) is a no-op that would leave FD_CLOEXEC set, and a later pair could
        // overwrite an earlier source: first copy every source above the children's numbers.
        var staged: [Int32] = []
        defer { staged.forEach { close($0) } }
        for (parent, _) in descriptors {
            let copy = fcntl(parent, F_DUPFD_CLOEXEC, 64)
            guard copy >= 0 else { throw SpawnError.spawnFailed(errno) }
            staged.append(copy)
        }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = withSpawnSetup(defaultSignals: [SIGTERM, SIGINT, SIGPIPE]) { actions, attributes in
            for (copy, (_, child)) in zip(staged, descriptors) {
                posix_spawn_file_actions_adddup2(&actions, copy, child)
            }
            return posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        }
        guard rc == 0 else { throw SpawnError.spawnFailed(rc) }
        return PeerProcess(pid: pid)
    }

    /// Waits up to `seconds` for the child to exit and returns its exit status (128 + signal if
    /// it was killed). A child still running then is killed with SIGKILL, an issue is recorded
    /// and -1 returned: a test never hangs on a child that does not exit.
    public func waitForExit(seconds: Int = 30, sourceLocation: SourceLocation = #_sourceLocation) -> Int32 {
        var status: Int32 = 0
        for _ in 0..<(seconds * 1000) {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { return exitCode(fromWaitStatus: status) }
            if done == -1 && errno != EINTR {
                Issue.record("waitpid(\(pid)): errno \(errno)", sourceLocation: sourceLocation)
                return -1
            }
            usleep(1000)
        }
        Issue.record("process \(pid) did not exit within \(seconds) s: killed", sourceLocation: sourceLocation)
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return -1
    }
}
