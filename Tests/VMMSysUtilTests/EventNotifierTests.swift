import Testing
import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite struct EventNotifierTests {
    static let backends = EventNotifierBackend.availableBackends

    @Test(.isolatedDescriptors, arguments: backends)
    func notifyThenWait(backend: EventNotifierBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let notifier = try EventNotifier(backend: backend)
            #expect(notifier.backend == backend)
            #expect(try !notifier.tryConsume())
            try notifier.notify()
            try #require(becomesReadable(notifier.waitDescriptor))
            try notifier.wait()
            #expect(try !notifier.tryConsume())
            #expect(!becomesReadable(notifier.waitDescriptor, within: 0))
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors) func defaultBackendWorks() throws {
        let before = openFileDescriptorCount()
        do {
            let expected = try EventNotifier.defaultBackend
            #expect(expected == (try EventNotifierBackend.fromEnvironment()))
            let notifier = try EventNotifier()
            #expect(notifier.backend == expected)
            try notifier.notify()
            try notifier.notify()
            #expect(try notifier.tryConsume())
            #expect(try !notifier.tryConsume())
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backends)
    func notificationsCoalesce(backend: EventNotifierBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let notifier = try EventNotifier(backend: backend)
            for _ in 0..<1000 { try notifier.notify() }
            try notifier.wait()
            #expect(try !notifier.tryConsume())
            for _ in 0..<1000 { try notifier.notify() }
            #expect(try notifier.tryConsume())
            #expect(try !notifier.tryConsume())
        }
        #expect(openFileDescriptorCount() == before)
    }

    /// 20,000 notifications are 160,000 bytes: more than a default pipe holds (64 KiB), so for the
    /// pipe backends the later notifies find the pipe full and must still succeed.
    @Test(.isolatedDescriptors, arguments: backends)
    func notifyOnAFullPipeSucceeds(backend: EventNotifierBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let notifier = try EventNotifier(backend: backend)
            for _ in 0..<20_000 { try notifier.notify() }
            try notifier.wait()
            #expect(try !notifier.tryConsume())
            try notifier.notify()
            #expect(try notifier.tryConsume())
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backends)
    func waitBlocksUntilAnotherThreadNotifies(backend: EventNotifierBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let notifier = try EventNotifier(backend: backend)
            let done = try EventNotifier(backend: backend)
            let thread = startThread {
                do {
                    try notifier.wait()
                    try done.notify()
                } catch {
                    Issue.record(error)
                }
            }
            try notifier.notify()
            let finished = becomesReadable(done.waitDescriptor)
            try #require(finished, "the other thread did not finish within the bound")
            thread.join()
            try done.wait()
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(arguments: backends)
    func descriptorsAreCloseOnExec(backend: EventNotifierBackend) throws {
        let notifier = try EventNotifier(backend: backend)
        #expect(isCloseOnExec(notifier.waitDescriptor))
        #expect(isCloseOnExec(notifier.notifyDescriptor))
        if backend == .eventfd {
            #expect(notifier.waitDescriptor == notifier.notifyDescriptor)
        } else {
            #expect(notifier.waitDescriptor != notifier.notifyDescriptor)
        }
    }

    /// A kick is built from the end we wait on, a call from the end we notify through; each has only
    /// that role, and the received descriptors become close-on-exec.
    @Test(.isolatedDescriptors, arguments: backends)
    func receivedDescriptorsHaveOneRole(backend: EventNotifierBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let peer = try EventNotifier(backend: backend)
            // Received descriptors arrive without FD_CLOEXEC in this test (dup does not copy it).
            let kick = try EventNotifier(waitingOn: FileDescriptor(adopting: dup(peer.waitDescriptor)))
            let call = try EventNotifier(notifyingThrough: FileDescriptor(adopting: dup(peer.notifyDescriptor)))
            #expect(kick.backend == nil && call.backend == nil)
            #expect(isCloseOnExec(kick.waitDescriptor) && isCloseOnExec(call.notifyDescriptor))
            #expect(kick.notifyDescriptor == -1 && call.waitDescriptor == -1)

            try peer.notify()
            try kick.wait()
            #expect(try !kick.tryConsume())
            try call.notify()
            try call.notify()
            #expect(try peer.tryConsume())
            #expect(try !peer.tryConsume())
            try call.notify()
            #expect(try kick.tryConsume())

            #expect(throws: SystemCallError("write", .badFileDescriptor)) { try kick.notify() }
            #expect(throws: SystemCallError("read", .badFileDescriptor)) { try call.wait() }
            #expect(throws: SystemCallError("read", .badFileDescriptor)) { try call.tryConsume() }
        }
        #expect(openFileDescriptorCount() == before)
    }

    /// A pipe end in the wrong role, or a descriptor that is no notifier, is refused and closed.
    @Test(.isolatedDescriptors) func receivedDescriptorsOfTheWrongKindAreRefusedAndClosed() throws {
        let before = openFileDescriptorCount()
        let ends = rawPipe()
        try #require(ends.read >= 0 && ends.write >= 0)
        #expect(throws: SystemCallError.self) { try EventNotifier(waitingOn: FileDescriptor(adopting: ends.write)) }
        #expect(throws: SystemCallError.self) {
            try EventNotifier(notifyingThrough: FileDescriptor(adopting: ends.read))
        }
        let devNull = open("/dev/null", O_RDWR)
        try #require(devNull >= 0)
        #expect(throws: SystemCallError.self) { try EventNotifier(waitingOn: FileDescriptor(adopting: devNull)) }
        #expect(openFileDescriptorCount() == before)
    }

    /// A peer's non-blocking descriptor keeps its O_NONBLOCK flag, and waiting on it still blocks
    /// until a notification arrives (read, EAGAIN, poll, read).
    @Test(.isolatedDescriptors) func waitOnAReceivedNonBlockingDescriptor() throws {
        let before = openFileDescriptorCount()
        do {
            let ends = rawPipe()
            try #require(ends.read >= 0 && ends.write >= 0)
            let flags = fcntl(ends.read, F_GETFL)
            _ = fcntl(ends.read, F_SETFL, flags | O_NONBLOCK)
            let kick = try EventNotifier(waitingOn: FileDescriptor(adopting: ends.read))
            let peer = try EventNotifier(notifyingThrough: FileDescriptor(adopting: ends.write))
            let done = try EventNotifier(backend: .pipe)
            let thread = startThread {
                do {
                    try kick.wait()
                    try done.notify()
                } catch {
                    Issue.record(error)
                }
            }
            try peer.notify()
            let finished = becomesReadable(done.waitDescriptor)
            #expect(finished)
            if finished { thread.join() }
            #expect(fcntl(kick.waitDescriptor, F_GETFL) & O_NONBLOCK != 0)
            #expect(try !kick.tryConsume())
        }
        #expect(openFileDescriptorCount() == before)
    }

    /// Waiting on a pipe whose writers are all gone reports a broken pipe instead of spinning.
    @Test func waitAfterThePeerClosedThrows() throws {
        let ends = rawPipe()
        try #require(ends.read >= 0 && ends.write >= 0)
        let kick = try EventNotifier(waitingOn: FileDescriptor(adopting: ends.read))
        _ = close(ends.write)
        #expect(throws: SystemCallError("read", .brokenPipe)) { try kick.wait() }
    }

    @Test func backendNamesAreParsed() throws {
        #expect(try EventNotifierBackend.named("pipe", source: "VMM_EVENT_NOTIFIER") == .pipe)
        #expect(throws: BackendSelectionError.self) {
            try EventNotifierBackend.named("bogus", source: "VMM_EVENT_NOTIFIER")
        }
        #expect(throws: BackendSelectionError.self) {
            try EventNotifierBackend.named("", source: "VMM_EVENT_NOTIFIER")
        }
        for backend in EventNotifierBackend.allCases {
            if backend.isAvailable {
                #expect(try EventNotifierBackend.named(backend.rawValue) == backend)
            } else {
                #expect(throws: BackendSelectionError.self) { try EventNotifierBackend.named(backend.rawValue) }
                #expect(throws: PrimitiveCreationError.self) { try EventNotifier(backend: backend) }
            }
        }
        #expect(EventNotifierBackend.native.isAvailable)
        #expect(EventNotifierBackend.pipe.isAvailable)
        #if os(Linux)
        #expect(EventNotifierBackend.native == .eventfd)
        #expect(Set(EventNotifierBackend.availableBackends) == [.eventfd, .pipe2, .pipe])
        #endif
    }

    /// The child waits on fd 3 (kick) and notifies fd 4 (call) for `rounds` rounds of ping-pong.
    @Test(.isolatedDescriptors, arguments: backends)
    func pingPongWithAnotherProcess(backend: EventNotifierBackend) throws {
        let before = openFileDescriptorCount()
        let rounds = 200
        do {
            let kick = try EventNotifier(backend: backend)
            let call = try EventNotifier(backend: backend)
            let child = try PeerProcess.spawn(
                arguments: ["notifier", "pingpong", String(rounds)],
                mapping: [(kick.waitDescriptor, 3), (call.notifyDescriptor, 4)])
            var completed = 0
            for _ in 0..<rounds {
                try kick.notify()
                guard becomesReadable(call.waitDescriptor) else { break }
                try call.wait()
                completed += 1
            }
            if completed != rounds { kill(child.pid, SIGKILL) }
            #expect(completed == rounds)
            #expect(child.waitForExit() == 0)
        }
        #expect(openFileDescriptorCount() == before)
    }
}
