#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil

/// A trait for tests that count this process's descriptors (`openFileDescriptorCount`,
/// `descriptorsLeaked`): each such test runs alone in a child process, so its count sees only its
/// own descriptors while the rest of the suite runs in parallel in the parent.
///
/// In the parent the trait does not run the test body: it starts this test binary again with a
/// filter naming the one test, under `--no-parallel`, waits for it (bounded), and records an issue
/// (with the child's output) if the child failed, timed out, or did not run the test at all. In the
/// child it prepares the process (see `settleForeignDescriptors`) and runs the body.
///
/// On a suite the trait applies to every test in it.
///
/// Thread-safety: the trait is a value; each child is the parent's alone.
public struct DescriptorIsolation: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    /// How long a child may run before it is killed and the test fails.
    static let timeout: Duration = .seconds(240)

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // Once per test function (all its cases run in the one child, one after another).
        test.isSuite || testCase != nil ? nil : self
    }

    public func provideScope(
        for test: Test, testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        let id = "\(test.id)"
        if let child = IsolatedChild.current {
            // A child runs only the test it was started for; anything else its filter matched runs in
            // its own child from the parent.
            guard child.testID == id else { return }
            // `swift test` runs the test binary with SIGPIPE ignored, and the tests rely on it as
            // `VhostUserServer` documents (a pipe notifier whose peer went away then fails with
            // EPIPE); `ChildProcess.spawn` gave this child the default disposition back.
            signal(SIGPIPE, SIG_IGN)
            awaitMainThreadParked()
            settleForeignDescriptors(warmUp: true)
            try await function()
            settleForeignDescriptors(warmUp: false)
            let differences = DescriptorBaseline.differences()
            if !differences.isEmpty {
                // Not a verdict (a test may keep descriptors on purpose): what to look at if its
                // count check failed.
                print("descriptors that differ from the first count of \(id):\n\(differences)")
            }
            child.markFinished()
            return
        }
        try await runIsolated(id, sourceLocation: test.sourceLocation)
    }
}

extension Trait where Self == DescriptorIsolation {
    /// Runs the test (or every test of a suite) alone in a child process: see `DescriptorIsolation`.
    public static var isolatedDescriptors: Self { Self() }
}

/// What a child process started by `DescriptorIsolation` was started for (from its environment).
struct IsolatedChild {
    static let testVariable = "VMM_ISOLATED_TEST"
    static let markerVariable = "VMM_ISOLATED_MARKER"

    let testID: String
    let marker: String

    static var current: IsolatedChild? {
        guard let test = getenv(testVariable), let marker = getenv(markerVariable) else { return nil }
        return IsolatedChild(testID: String(cString: test), marker: String(cString: marker))
    }

    /// Tells the parent the body ran to its end (a filter that matched nothing also exits 0).
    func markFinished() {
        let fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd >= 0 {
            _ = write(fd, "finished", 8)
            close(fd)
        }
    }
}

/// Whether this process is a `DescriptorIsolation` child (the only place descriptor counts mean anything).
public var isDescriptorIsolated: Bool { IsolatedChild.current != nil }

/// The child's command line: this binary, Swift Testing, one test, one case at a time.
private func childArguments(filter: String) -> [String] {
    var arguments: [String]
    #if os(Linux)
    arguments = [currentExecutablePath() ?? CommandLine.arguments[0]]
    #else
    // Darwin runs the bundle through a helper (`--test-bundle-path B`): keep that part.
    arguments = [CommandLine.arguments[0]]
    if let index = CommandLine.arguments.firstIndex(of: "--test-bundle-path"), index + 1 < CommandLine.arguments.count {
        arguments += ["--test-bundle-path", CommandLine.arguments[index + 1]]
    }
    #endif
    return arguments + ["--testing-library", "swift-testing", "--no-parallel", "--filter", filter]
}

/// A regular expression matching exactly `text` at the start of a test ID.
private func literalPattern(_ text: String) -> String {
    var pattern = "^"
    for character in text {
        if "\\^$.|?*+()[]{}".contains(character) { pattern.append("\\") }
        pattern.append(character)
    }
    return pattern
}

private func runIsolated(_ id: String, sourceLocation: SourceLocation) async throws {
    let scratch = "/tmp/vmm-isolated-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let marker = scratch + ".done"
    let output = scratch + ".log"
    defer {
        unlink(marker)
        unlink(output)
    }
    let arguments = childArguments(filter: literalPattern(id))
    var environment = currentEnvironment().filter {
        !$0.hasPrefix(IsolatedChild.testVariable + "=") && !$0.hasPrefix(IsolatedChild.markerVariable + "=")
    }
    environment += ["\(IsolatedChild.testVariable)=\(id)", "\(IsolatedChild.markerVariable)=\(marker)"]

    let child: ChildProcess
    do {
        child = try ChildProcess.spawn(
            arguments[0], arguments: Array(arguments.dropFirst()), outputPath: output,
            environment: environment)
    } catch {
        Issue.record("cannot start the isolated run of \(id): \(error)", sourceLocation: sourceLocation)
        return
    }
    let status = await waitForChild(child, within: DescriptorIsolation.timeout)
    let finished = access(marker, F_OK) == 0
    if status != 0 || !finished {
        let why =
            status == nil
            ? "did not finish within \(DescriptorIsolation.timeout) (killed)"
            : status != 0 ? "exited with status \(status!)" : "exited 0 without running the test"
        Issue.record(
            "isolated run of \(id) \(why); its output:\n\(tail(of: output, bytes: 12_000))",
            sourceLocation: sourceLocation)
    }
}

/// Polls `child` until it exits or `limit` passes (then kills it); its exit status (128 +
/// signal if a signal ended it), or nil on timeout.
private func waitForChild(_ child: ChildProcess, within limit: Duration) async -> Int32? {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        do {
            if let status = try child.exitStatusIfExited() { return status.code }
        } catch {
            return -1
        }
        try? await Task.sleep(for: .milliseconds(5))
    }
    child.terminate(with: SIGKILL, grace: .zero)
    return nil
}

private func currentEnvironment() -> [String] {
    var result: [String] = []
    var cursor = environ
    while let entry = cursor.pointee {
        result.append(String(cString: entry))
        cursor += 1
    }
    return result
}

/// The last `bytes` of a file, as text.
private func tail(of path: String, bytes: Int) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "(no output)" }
    defer { close(fd) }
    let size = lseek(fd, 0, SEEK_END)
    _ = lseek(fd, max(0, size - off_t(bytes)), SEEK_SET)
    var buffer = [UInt8](repeating: 0, count: bytes)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : "(no output)"
}

#if os(Linux)
func currentExecutablePath() -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
#endif

/// Waits (bounded, 2 s) until the process's main thread is parked for good. Swift's async `main`
/// queues the main task on the main queue (libdispatch gives that queue an eventfd) and hands the
/// main thread to `dispatch_main`, whose thread-exit path disposes of that eventfd and then parks
/// the thread in `rt_sigsuspend` forever. Tests run on other threads and may start before that,
/// so under load the close could fall between a test's two counts. Linux only.
func awaitMainThreadParked() {
    #if os(Linux)
    #if arch(x86_64)
    let sigsuspendNumber: Int? = 130  // rt_sigsuspend (<asm/unistd_64.h>; the macro does not import)
    #elseif arch(arm64)
    let sigsuspendNumber: Int? = 133  // rt_sigsuspend (<asm-generic/unistd.h>)
    #else
    let sigsuspendNumber: Int? = nil
    #endif
    let path = "/proc/self/task/\(getpid())/syscall"
    guard let sigsuspend = sigsuspendNumber else { return }
    for _ in 0..<2000 {
        switch currentSyscall(path) {
        case .unreadable, .blocked(sigsuspend): return
        case .running, .blocked: usleep(1000)  // still on its way there (a busy machine: often "running")
        }
    }
    print("the main thread was not parked after 2 s: descriptor counts may see libdispatch's main-queue eventfd close")
    #endif
}

/// What `/proc/<pid>/task/<tid>/syscall` says of a thread.
private enum ThreadSyscall {
    /// Blocked in this system call (the file's first field).
    case blocked(Int)
    /// On a CPU or runnable ("running"): where it will block is not known yet.
    case running
    /// The file cannot be opened or parsed: nothing to wait for.
    case unreadable
}

private func currentSyscall(_ path: String) -> ThreadSyscall {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .unreadable }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return .unreadable }
    let field = String(
        decoding: buffer[0..<n].prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
    if field == "running" { return .running }
    return Int(field).map { .blocked($0) } ?? .unreadable
}
