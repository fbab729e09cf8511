#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil

/// What a VMM author does first: hand an `EventNotifier` and a `SharedMemory` to a child process
/// over an `ScmSocket`, with the public spawn helper and the owned receive, and nothing else.
@Suite struct DescriptorsToAChildTests {
    @Test(arguments: EventNotifierBackend.availableBackends)
    func sharedMemoryAndNotifierReachAChild(backend: EventNotifierBackend) throws {
        let peer = try #require(siblingExecutable("consumer-peer"), "consumer-peer is built beside the tests")
        let memory = try SharedMemory(size: 4096)
        memory.mapping.bytes.storeBytes(of: UInt64(41), toByteOffset: 0, as: UInt64.self)
        let doorbell = try EventNotifier(backend: backend)
        let (ours, theirs) = try ScmSocket.pair()
        // Both ends are close-on-exec: the child gets exactly `theirs`, as its fd 3.
        let child = try ChildProcess.spawn(peer, descriptors: [(theirs.descriptor, 3)])
        _ = consume theirs
        do {
            var size = UInt64(memory.size).littleEndian
            try ours.send(
                withUnsafeBytes(of: &size) { Array($0) }, fds: [memory.descriptor, doorbell.notifyDescriptor])
            #expect(try doorbell.wait(timeout: .seconds(10)), "the child never rang")
            #expect(memory.mapping.bytes.load(fromByteOffset: 8, as: UInt64.self) == 42)
            let reply = try ours.receive(maxBytes: 16, maxFDs: 0)
            #expect(reply.bytes == Array("done".utf8))
            let noDescriptors = reply.fds.isEmpty
            #expect(noDescriptors)
        } catch {
            child.terminate(with: SIGKILL)
            throw error
        }
        #expect(try child.waitForExit() == .exited(0))
    }

    @Test func descriptorsComeWithTheBytesAndAreOwned() throws {
        let (left, right) = try ScmSocket.pair()
        let notifier = try EventNotifier()
        try left.send([1, 2, 3], fds: [notifier.waitDescriptor])
        var message = try right.receive(maxBytes: 8, maxFDs: 1)
        #expect(message.bytes == [1, 2, 3])
        guard let fd = message.fds.take(at: 0) else {
            Issue.record("the descriptor did not arrive")
            return
        }
        let closeOnExec = try fd.isCloseOnExec()
        #expect(closeOnExec)
        // A received copy of the notifier's descriptor sees its notifications.
        let received = try EventNotifier(waitingOn: fd)
        try notifier.notify()
        #expect(try received.isNotified())
        #expect(try received.wait(timeout: .seconds(5)))
        #expect(try !received.wait(timeout: .milliseconds(10)))
    }

    @Test func aChildThatFailsReportsItsExitStatus() throws {
        let peer = try #require(siblingExecutable("consumer-peer"))
        let (ours, theirs) = try ScmSocket.pair()
        let child = try ChildProcess.spawn(peer, descriptors: [(theirs.descriptor, 3)])
        _ = consume theirs
        // Closing our end before sending makes the child's receive fail (exit code 10).
        _ = consume ours
        #expect(try child.waitForExit() == .exited(10))
    }

    @Test func spawnRefusesMissingPrograms() throws {
        #expect(throws: SystemCallError("posix_spawn", .noSuchFile)) {
            try ChildProcess.spawn("/nonexistent/program")
        }
    }
}
