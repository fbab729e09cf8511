#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// A child benchmark process: `EXECUTABLE --child ROLE ARGS...` with chosen fds mapped in.
///
/// The child echoes until it is killed by `stop()` (it also arms `alarm` so it cannot outlive a
/// crashed parent by long). Thread-safety: owned by one runner.
final class ChildProcess {
    let pid: pid_t
    private var reaped = false

    /// Spawns `executable --child role arguments...`; each parent fd in `descriptors` becomes fd
    /// 3, 4, ... in the child, in order (not close-on-exec there). The parent keeps its copies.
    ///
    /// - Throws: `SystemCallError` from `fcntl` or `posix_spawn`.
    init(executable: String, role: String, arguments: [String], descriptors: [Int32]) throws {
        // Copy each fd above the target range first: posix_spawn's dup2(fd, fd) would keep
        // FD_CLOEXEC set when a parent fd already has its target number.
        var high: [Int32] = []
        defer { for fd in high { _ = systemClose(fd) } }
        for fd in descriptors {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 64)
            if copy == -1 { throw SystemCallError("fcntl(F_DUPFD_CLOEXEC)", Errno.current) }
            high.append(copy)
        }
        #if os(Linux)
        var actions = posix_spawn_file_actions_t()
        #else
        var actions: posix_spawn_file_actions_t? = nil
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, fd) in high.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, fd, Int32(3 + index))
        }
        let argv = ([executable, "--child", role] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw SystemCallError("posix_spawn", Errno(rawValue: rc)) }
        pid = child
    }

    /// Kills the child and reaps it.
    func stop() {
        guard !reaped else { return }
        reaped = true
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    }

    deinit { stop() }
}
