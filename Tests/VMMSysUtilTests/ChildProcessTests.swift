#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport

/// `ChildProcess.spawn` with /bin/sh as the child: descriptor mapping, output redirection, process
/// groups, refusals, and termination.
@Suite struct ChildProcessTests {
    static let shell = "/bin/sh"

    @Test func mappedDescriptorsReachTheChildAtTheirNumbers() throws {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        defer { _ = close(ends[0]) }
        // The write end goes to the child as fd 5 (and also as fd 3: one source, two numbers).
        let child = try ChildProcess.spawn(
            Self.shell, arguments: ["-c", "echo five >&5; echo three >&3"],
            descriptors: [(ends[1], 5), (ends[1], 3)])
        _ = close(ends[1])
        #expect(try child.waitForExit() == .exited(0))
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(ends[0], &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self) == "five\nthree\n")
    }

    @Test func outputGoesToTheFileAndInputIsEmpty() throws {
        let path = "/tmp/vmm-child-output-\(getpid())"
        defer { unlink(path) }
        let child = try ChildProcess.spawn(
            Self.shell, arguments: ["-c", "cat; echo out; echo err >&2"], outputPath: path)
        #expect(try child.waitForExit() == .exited(0))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { _ = close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self) == "out\nerr\n")
    }

    @Test func aNewProcessGroupIsLedByTheChild() throws {
        let child = try ChildProcess.spawn(Self.shell, arguments: ["-c", "sleep 30"], newProcessGroup: true)
        #expect(getpgid(child.pid) == child.pid)
        #expect(child.terminate(group: true) == .signalled(SIGTERM))
    }

    @Test func terminateEscalatesToSIGKILL() throws {
        // The shell ignores SIGTERM, so only the SIGKILL after the grace period ends it.
        let child = try ChildProcess.spawn(Self.shell, arguments: ["-c", "trap '' TERM; while :; do sleep 1; done"])
        usleep(100_000)
        #expect(child.terminate(grace: .milliseconds(200)) == .signalled(SIGKILL))
    }

    @Test(.isolatedDescriptors) func badMappingsAreRefusedBeforeSpawning() throws {
        let before = openFileDescriptorCount()
        #expect(throws: SystemCallError("posix_spawn", .invalidArgument)) {
            try ChildProcess.spawn(Self.shell, descriptors: [(0, 3), (1, 3)])
        }
        #expect(throws: SystemCallError("posix_spawn", .invalidArgument)) {
            try ChildProcess.spawn(Self.shell, descriptors: [(0, -1)])
        }
        #expect(throws: SystemCallError("fcntl(F_DUPFD_CLOEXEC)", .badFileDescriptor)) {
            try ChildProcess.spawn(Self.shell, descriptors: [(0, 3), (9999, 4)])
        }
        #expect(openFileDescriptorCount() == before, "staged copies leaked")
    }
}
