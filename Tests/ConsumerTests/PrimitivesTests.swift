import Testing
import VMMSysUtil
import Virtio

/// The sys-util primitives as a VMM author meets them without a `Poller` loop of their own:
/// bounded waits, readiness checks, iterating poll reports, one error type per initialiser,
/// backend names, threads and locks.
@Suite struct PrimitivesTests {
    @Test(arguments: EventNotifierBackend.availableBackends)
    func waitWithATimeout(backend: EventNotifierBackend) throws {
        let notifier = try EventNotifier(backend: backend)
        #expect(try !notifier.isNotified())
        #expect(try !notifier.wait(timeout: .milliseconds(20)))
        try notifier.notify()
        try notifier.notify()
        // Checking readiness does not consume: it stays notified until a wait or tryConsume.
        #expect(try notifier.isNotified())
        #expect(try notifier.isNotified())
        #expect(try notifier.wait(timeout: .seconds(5)))
        #expect(try !notifier.isNotified())
        #expect(try !notifier.tryConsume())
    }

    @Test func aNotificationFromAnotherThreadEndsATimedWait() throws {
        let notifier = try EventNotifier()
        let thread = try JoinableThread { try? notifier.notify() }
        #expect(try notifier.wait(timeout: .seconds(10)))
        thread.join()
    }

    @Test(arguments: PollerBackend.availableBackends)
    func pollReportsAreASequence(backend: PollerBackend) throws {
        let poller = try Poller(backend: backend)
        let notifiers = try (0..<3).map { _ in try EventNotifier() }
        for (token, notifier) in notifiers.enumerated() {
            try poller.register(notifier.waitDescriptor, interest: .readable, token: UInt64(token))
        }
        try notifiers[0].notify()
        try notifiers[2].notify()
        var events = PollEvents(capacity: 8)
        try poller.wait(into: &events, timeout: .seconds(5))
        #expect(Set(events.filter(\.isReadable).map(\.token)) == [0, 2])
        var visited = 0
        for event in events where event.isReadable { visited += event.token == 1 ? 100 : 1 }
        #expect(visited == 2)
        for notifier in notifiers { try poller.deregister(notifier.waitDescriptor) }
    }

    @Test func creationErrorsHaveOneTypePerInitialiser() {
        for backend in PollerBackend.allCases where !backend.isAvailable {
            do {
                _ = try Poller(backend: backend)
                Issue.record("\(backend) is not available, yet a poller was made")
            } catch {
                // `error` is a PrimitiveCreationError: no cast needed.
                guard case .backend(let refusal) = error else {
                    Issue.record("expected .backend, got \(error)")
                    continue
                }
                #expect(refusal.isKnown)
                #expect(refusal.description.contains("this system lacks"))
            }
        }
    }

    @Test func anUnknownBackendNameIsNotAMissingBackend() {
        #expect(throws: BackendSelectionError.self) { try PollerBackend.named("bogus", source: "VMM_POLLER") }
        do {
            _ = try PollerBackend.named("bogus", source: "VMM_POLLER")
        } catch {
            #expect(!error.isKnown)
            #expect(error.known == ["epoll", "kqueue", "poll"])
            #expect(error.description.contains("unknown backend name"))
            #expect(error.description.contains("known: epoll, kqueue, poll"))
            #expect(!error.description.contains("lacks"))
        }
    }

    @Test func aLockGuardsStateSharedWithAThread() throws {
        let lock = ConditionLock()
        let counter = Counter()
        let threads = try (0..<4).map { _ in
            try JoinableThread { for _ in 0..<1000 { lock.withLock { counter.value += 1 } } }
        }
        for thread in threads { thread.join() }
        #expect(lock.withLock { counter.value } == 4000)
        #expect(Processors.usableCount >= 1 && Processors.onlineCount >= 1)
    }

    @Test func deviceStatusIsAnOptionSet() {
        let status: VirtioDeviceStatus = [.acknowledge, .driver, .featuresOK]
        #expect(status.rawValue == 0x0B)
        #expect(status.contains(.featuresOK) && !status.contains(.driverOK))
        #expect(status.description == "ACKNOWLEDGE|DRIVER|FEATURES_OK")
        #expect(VirtioDeviceStatus(rawValue: 0x10).description == "0x10")
    }
}

/// A counter only touched under a `ConditionLock`.
private final class Counter: @unchecked Sendable {
    var value = 0
}
