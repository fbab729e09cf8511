#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with chosen descriptors: how a VMM hands an `ScmSocket` end, an
/// `EventNotifier` or a `SharedMemory` descriptor to a back-end it runs.
///
/// Every descriptor this package creates is close-on-exec, so a child inherits nothing by
/// accident; `spawn` gives it exactly the descriptors listed, at the numbers listed (not
/// close-on-exec there), and nothing else of ours. The child starts with no signal blocked and
/// the default disposition for the usual termination signals (a parent that ignores SIGPIPE or
/// blocks SIGTERM in some thread would otherwise pass that on across `exec`).
///
/// The value is only the pid: the caller reaps the child (`waitForExit`) so it does not stay a
/// zombie, and signals it with `signal` / `signalGroup`.
///
/// Thread-safety: a value type. `spawn` may run on any thread; reap a child from one thread.
public struct ChildProcess: Hashable, Sendable {
    /// How a child ended.
    public enum ExitStatus: Hashable, Sendable {
        /// It called `exit` with this code.
        case exited(Int32)
        /// A signal ended it.
        case signalled(Int32)

        /// The shell's convention: the exit code, or 128 + the signal number.
        public var code: Int32 {
            switch self {
            case .exited(let code): return code
            case .signalled(let signal): return 128 + signal
            }
        }
    }

    /// The child's process id (and, after `newProcessGroup`, its process group id).
    public let pid: pid_t

    /// Refers to a child started elsewhere (e.g. to reap it with `waitForExit`).
    public init(pid: pid_t) { self.pid = pid }

    /// Starts `executable` (a path; no `PATH` search) with `arguments` (after argv[0], which is
    /// `executable`) and this process's environment, or `environment` if given.
    ///
    /// - Parameters:
    ///   - executable: the program's path.
    ///   - arguments: its arguments, after argv[0].
    ///   - descriptors: each parent descriptor and the number it gets in the child, e.g.
    ///     `[(socket.descriptor, 3)]`. The parent keeps its own copies (close them when the child
    ///     owns the resource). Child numbers must be distinct and not negative.
    ///   - outputPath: if given, standard input is `/dev/null` and standard output and error go
    ///     to this file (created 0600, or truncated). Otherwise the child shares ours.
    ///   - newProcessGroup: the child leads a process group of its own, so `signalGroup` reaches it
    ///     and its children (and a terminal's Ctrl-C does not).
    ///   - environment: the child's whole environment as `NAME=value` entries; nil for ours. (A
    ///     parent that runs threads cannot `setenv` for one child safely.)
    /// - Throws: `SystemCallError`: `.badFileDescriptor` (operation `fcntl(F_DUPFD_CLOEXEC)`) for a
    ///   parent descriptor that is not open, `.invalidArgument` (operation `posix_spawn`) for a
    ///   repeated or negative child number, or the errno of `posix_spawn` (e.g. `.noSuchFile`).
    public static func spawn(
        _ executable: String,
        arguments: [String] = [],
        descriptors: [(parent: Int32, child: Int32)] = [],
        outputPath: String? = nil,
        newProcessGroup: Bool = false,
        environment: [String]? = nil
    ) throws(SystemCallError) -> ChildProcess {
        let targets = descriptors.map(\.child)
        guard targets.allSatisfy({ $0 >= 0 }), Set(targets).count == targets.count else {
            throw SystemCallError("posix_spawn", .invalidArgument)
        }
        // dup2(fd, fd) in the child is a no-op that would leave FD_CLOEXEC set, and one mapping
        // could overwrite the source of a later one: first copy every source above all targets.
        let floor = max(64, (targets.max() ?? 0) + 1)
        var staged: [Int32] = []
        defer { for fd in staged { _ = systemClose(fd) } }
        for (parent, _) in descriptors {
            staged.append(try systemCall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(parent, F_DUPFD_CLOEXEC, floor) })
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }

        var actions = SpawnFileActions()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let outputPath {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        for (copy, target) in zip(staged, targets) {
            posix_spawn_file_actions_adddup2(&actions, copy, target)
        }

        var attributes = SpawnAttributes()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGALRM, SIGUSR1, SIGUSR2, SIGCHLD] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var envp = environment.map { $0.map { strdup($0) } + [nil] }
        defer { for entry in envp ?? [] { free(entry) } }
        var pid: pid_t = 0
        let rc: Int32
        if envp != nil {
            rc = posix_spawn(&pid, executable, &actions, &attributes, argv, &envp!)
        } else {
            rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        }
        guard rc == 0 else { throw SystemCallError("posix_spawn", Errno(rawValue: rc)) }
        return ChildProcess(pid: pid)
    }

    /// Sends `signal` to the child.
    ///
    /// - Throws: `SystemCallError` from `kill` (ESRCH once it was reaped).
    public func signal(_ signal: Int32) throws(SystemCallError) {
        _ = try systemCall("kill") { kill(pid, signal) }
    }

    /// Sends `signal` to the child's process group (started with `newProcessGroup: true`).
    ///
    /// - Throws: `SystemCallError` from `kill`.
    public func signalGroup(_ signal: Int32) throws(SystemCallError) {
        _ = try systemCall("kill") { kill(-pid, signal) }
    }

    /// Blocks until the child exits, and reaps it. EINTR is retried.
    ///
    /// - Throws: `SystemCallError` from `waitpid` (ECHILD if it was reaped already).
    public func waitForExit() throws(SystemCallError) -> ExitStatus {
        var status: Int32 = 0
        _ = try systemCall("waitpid") { waitpid(pid, &status, 0) }
        return Self.decode(status)
    }

    /// Reaps the child if it has exited; `nil` while it runs. Never blocks.
    ///
    /// - Throws: `SystemCallError` from `waitpid` (ECHILD if it was reaped already).
    public func exitStatusIfExited() throws(SystemCallError) -> ExitStatus? {
        var status: Int32 = 0
        let result = try systemCall("waitpid") { waitpid(pid, &status, WNOHANG) }
        return result == pid ? Self.decode(status) : nil
    }

    /// Asks the child to stop (`signal`, then SIGKILL once `grace` is over) and reaps it.
    /// `group: true` signals its process group instead. Returns how it ended; `nil` if it had been
    /// reaped already.
    @discardableResult
    public func terminate(with signal: Int32 = SIGTERM, grace: Duration = .seconds(5), group: Bool = false)
        -> ExitStatus?
    {
        _ = group ? kill(-pid, signal) : kill(pid, signal)
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while true {
            do throws(SystemCallError) {
                if let status = try exitStatusIfExited() { return status }
            } catch {
                return nil
            }
            if clock.now >= deadline { break }
            usleep(10_000)
        }
        _ = group ? kill(-pid, SIGKILL) : kill(pid, SIGKILL)
        return try? waitForExit()
    }

    private static func decode(_ status: Int32) -> ExitStatus {
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }
}

// posix_spawn's file actions and attributes are structs on Linux and optional pointers on Darwin
// and the BSDs.
#if os(Linux)
private typealias SpawnFileActions = posix_spawn_file_actions_t
private typealias SpawnAttributes = posix_spawnattr_t
#else
private typealias SpawnFileActions = posix_spawn_file_actions_t?
private typealias SpawnAttributes = posix_spawnattr_t?
#endif
