#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing

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

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        let id = "\(test.id)"
        if let child = IsolatedChild.current {
            // A child runs only the test it was started for; anything else its filter matched runs in
            // its own child from the parent.
            guard child.testID == id else { return }
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

    let outputFD = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard outputFD >= 0 else {
        Issue.record("cannot create \(output): errno \(errno)", sourceLocation: sourceLocation)
        return
    }
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = withSpawnSetup(defaultSignals: [SIGTERM, SIGINT, SIGPIPE]) { actions, attributes in
        posix_spawn_file_actions_adddup2(&actions, outputFD, 1)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 2)
        return posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
    }
    close(outputFD)
    guard rc == 0 else {
        Issue.record("cannot start the isolated run of \(id): posix_spawn \(rc)", sourceLocation: sourceLocation)
        return
    }
    let status = await waitForChild(pid, within: DescriptorIsolation.timeout)
    let finished = access(marker, F_OK) == 0
    if status != 0 || !finished {
        let why = status == nil ? "did not finish within \(DescriptorIsolation.timeout) (killed)"
            : status != 0 ? "exited with status \(status!)" : "exited 0 without running the test"
        Issue.record("isolated run of \(id) \(why); its output:\n\(tail(of: output, bytes: 12_000))",
                     sourceLocation: sourceLocation)
    }
}

/// Polls `pid` until it exits or `limit` passes (then kills it); the exit status, 128 + signal
/// if it was killed by one, or nil on timeout.
private func waitForChild(_ pid: pid_t, within limit: Duration) async -> Int32? {
    let deadline = ContinuousClock.now + limit
    var status: Int32 = 0
    while true {
        let done = waitpid(pid, &status, WNOHANG)
        if done == pid { return exitCode(fromWaitStatus: status) }
        if done == -1 && errno != EINTR { return -1 }
        if ContinuousClock.now > deadline {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            return nil
        }
        try? await Task.sleep(for: .milliseconds(5))
    }
}

/// The exit code of a `waitpid` status, or 128 + the signal that killed the process.
func exitCode(fromWaitStatus status: Int32) -> Int32 {
    if status & 0x7f == 0 { return (status >> 8) & 0xff }
    return 128 + (status & 0x7f)
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
