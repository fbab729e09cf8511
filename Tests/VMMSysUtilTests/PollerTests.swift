import Testing
@testable import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Events of the last wait folded per token (kqueue reports read and write readiness separately).
private func merged(_ events: borrowing PollEvents) -> [UInt64: PollEvent] {
    var byToken: [UInt64: PollEvent] = [:]
    for index in 0..<events.count {
        let event = events[index]
        if var seen = byToken[event.token] {
            seen.isReadable = seen.isReadable || event.isReadable
            seen.isWritable = seen.isWritable || event.isWritable
            seen.isHangup = seen.isHangup || event.isHangup
            byToken[event.token] = seen
        } else {
            byToken[event.token] = event
        }
    }
    return byToken
}

/// A generous bound for waits that should succeed promptly; only a hang guard.
private let bound: Duration = .seconds(10)

@Suite struct PollerTests {
    static let backends = PollerBackend.availableBackends

    @Test(.isolatedDescriptors, arguments: backends)
    func readableIsReportedWhileItLasts(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            #expect(poller.backend == backend)
            let notifier = try EventNotifier()
            try poller.register(notifier.waitDescriptor, interest: .readable, token: 7)
            var events = PollEvents(capacity: 8)
            #expect(try poller.wait(into: &events, timeout: .zero) == 0)

            try notifier.notify()
            #expect(try poller.wait(into: &events, timeout: bound) == 1)
            #expect(events.count == 1)
            let first = events[0]
            #expect(first == PollEvent(token: 7, isReadable: true, isWritable: false, isHangup: false))

            // Level-triggered: still unconsumed, so reported again.
            #expect(try poller.wait(into: &events, timeout: bound) == 1)
            let again = events[0]
            #expect(again.token == 7 && again.isReadable)

            try notifier.wait()
            #expect(try poller.wait(into: &events, timeout: .zero) == 0)
            try poller.deregister(notifier.waitDescriptor)
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backends)
    func interestCanBeModified(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            var pair = rawSocketPair()
            try #require(pair[0] >= 0)
            defer {
                _ = close(pair[0])
                _ = close(pair[1])
            }
            var events = PollEvents(capacity: 8)

            // Nothing to read yet: a readable interest reports nothing.
            try poller.register(pair[0], interest: .readable, token: 1)
            #expect(try poller.wait(into: &events, timeout: .zero) == 0)

            // A socket with buffer room is writable.
            try poller.modify(pair[0], interest: .writable, token: 2)
            #expect(try poller.wait(into: &events, timeout: bound) >= 1)
            #expect(merged(events) == [2: PollEvent(token: 2, isReadable: false, isWritable: true, isHangup: false)])

            // Data arrives: both flags, under the token of the last modify.
            var byte: UInt8 = 1
            #expect(write(pair[1], &byte, 1) == 1)
            try poller.modify(pair[0], interest: [.readable, .writable], token: 3)
            #expect(try poller.wait(into: &events, timeout: bound) >= 1)
            #expect(merged(events) == [3: PollEvent(token: 3, isReadable: true, isWritable: true, isHangup: false)])

            // Dropping writable interest drops writable reports.
            try poller.modify(pair[0], interest: .readable, token: 4)
            #expect(try poller.wait(into: &events, timeout: bound) == 1)
            #expect(merged(events) == [4: PollEvent(token: 4, isReadable: true, isWritable: false, isHangup: false)])

            // The peer hangs up.
            _ = close(pair[1])
            pair[1] = -1
            #expect(try poller.wait(into: &events, timeout: bound) >= 1)
            let closed = try #require(merged(events)[4])
            #expect(closed.isReadable || closed.isHangup)
            try poller.deregister(pair[0])
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backends)
    func deregisteredDescriptorsAreNotReported(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            let notifier = try EventNotifier()
            try notifier.notify()
            try poller.register(notifier.waitDescriptor, interest: .readable, token: 1)
            #expect(throws: SystemCallError.self) {
                try poller.register(notifier.waitDescriptor, interest: .readable, token: 2)
            }
            var events = PollEvents(capacity: 8)
            #expect(try poller.wait(into: &events, timeout: bound) == 1)
            try poller.deregister(notifier.waitDescriptor)
            #expect(try poller.wait(into: &events, timeout: .zero) == 0)
            #expect(throws: SystemCallError("Poller.deregister", .noSuchFile)) {
                try poller.deregister(notifier.waitDescriptor)
            }
            #expect(throws: SystemCallError("Poller.modify", .noSuchFile)) {
                try poller.modify(notifier.waitDescriptor, interest: .readable, token: 3)
            }
            // Re-registered with a new token: only the new token is ever reported.
            try poller.register(notifier.waitDescriptor, interest: .readable, token: 4)
            #expect(try poller.wait(into: &events, timeout: bound) == 1)
            #expect(events[0].token == 4)
            try poller.deregister(notifier.waitDescriptor)

            // A closed descriptor cannot be registered.
            let ends = rawPipe()
            _ = close(ends.read)
            _ = close(ends.write)
            #expect(throws: SystemCallError.self) { try poller.register(ends.read, interest: .readable, token: 5) }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backends)
    func wakeEndsAWaitOnAnotherThread(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            let done = try EventNotifier()
            let thread = startThread {
                var events = PollEvents(capacity: 4)
                do {
                    let count = try poller.wait(into: &events, timeout: nil)
                    if count != 0 { Issue.record("a wake returned \(count) events") }
                    try done.notify()
                } catch {
                    Issue.record(error)
                }
            }
            try poller.wake()
            let finished = becomesReadable(done.waitDescriptor)
            try #require(finished, "the other thread did not finish within the bound")
            thread.join()
            try done.wait()

            // A wake before a wait ends that wait at once; wakes coalesce and are never events.
            try poller.wake()
            try poller.wake()
            var events = PollEvents(capacity: 4)
            #expect(try poller.wait(into: &events, timeout: bound) == 0)
            #expect(try poller.wait(into: &events, timeout: .milliseconds(1)) == 0)
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backends)
    func oneReadyAmongAThousand(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            let quiet = rawPipe()
            try #require(quiet.read >= 0 && quiet.write >= 0)
            let ready = try EventNotifier()
            var duplicates: [Int32] = []
            defer {
                for fd in duplicates { _ = close(fd) }
                _ = close(quiet.read)
                _ = close(quiet.write)
            }
            for index in 0..<999 {
                let fd = dup(quiet.read)
                try #require(fd >= 0)
                duplicates.append(fd)
                try poller.register(fd, interest: .readable, token: UInt64(index))
            }
            try poller.register(ready.waitDescriptor, interest: .readable, token: 5000)
            try ready.notify()
            var events = PollEvents(capacity: 64)
            #expect(try poller.wait(into: &events, timeout: bound) == 1)
            #expect(events[0] == PollEvent(token: 5000, isReadable: true, isWritable: false, isHangup: false))
            for fd in duplicates { try poller.deregister(fd) }
            try poller.deregister(ready.waitDescriptor)
        }
        #expect(openFileDescriptorCount() == before)
    }

    /// Another thread waits while this one deregisters a descriptor and re-registers it with a new
    /// token, then makes it ready: the waiter sees only the new token.
    @Test(.isolatedDescriptors, arguments: backends)
    func registrationChangesDuringAWait(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            let watched = try EventNotifier()
            let other = try EventNotifier()
            let done = try EventNotifier()
            let seen = TokenLog()
            try poller.register(watched.waitDescriptor, interest: .readable, token: 1)
            try poller.register(other.waitDescriptor, interest: .readable, token: 10)
            let thread = startThread {
                var events = PollEvents(capacity: 8)
                do {
                    // Bounded: at most 100 returns (wakes, rebuilds) before giving up.
                    for _ in 0..<100 {
                        _ = try poller.wait(into: &events, timeout: bound)
                        for index in 0..<events.count { seen.append(events[index].token) }
                        if seen.contains(2) { break }
                    }
                    try done.notify()
                } catch {
                    Issue.record(error)
                }
            }
            try poller.deregister(other.waitDescriptor)
            try other.notify()
            try poller.deregister(watched.waitDescriptor)
            try poller.register(watched.waitDescriptor, interest: .readable, token: 2)
            try watched.notify()
            let finished = becomesReadable(done.waitDescriptor)
            try #require(finished, "the other thread did not finish within the bound")
            thread.join()
            try done.wait()
            let tokens = seen.tokens
            #expect(tokens.contains(2))
            #expect(!tokens.contains(1))
            #expect(!tokens.contains(10))
            try poller.deregister(watched.waitDescriptor)
        }
        #expect(openFileDescriptorCount() == before)
    }

    /// On the poll backend a registration change interrupts poll(2) internally; the wait must go on
    /// until something is ready rather than return empty.
    @Test(.isolatedDescriptors, arguments: backends)
    func registrationChangeDoesNotEndAWait(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            let ready = try EventNotifier()
            let quiet = try EventNotifier()
            let started = try EventNotifier()
            let done = try EventNotifier()
            let seen = TokenLog()
            try poller.register(ready.waitDescriptor, interest: .readable, token: 1)
            let thread = startThread {
                var events = PollEvents(capacity: 8)
                do {
                    try started.notify()
                    let count = try poller.wait(into: &events, timeout: bound)
                    for index in 0..<count { seen.append(events[index].token) }
                    try done.notify()
                } catch {
                    Issue.record(error)
                }
            }
            // Most likely the waiter is inside wait by now (nothing depends on it but coverage).
            #expect(becomesReadable(started.waitDescriptor))
            try poller.register(quiet.waitDescriptor, interest: .readable, token: 2)
            try poller.deregister(quiet.waitDescriptor)
            try ready.notify()
            let finished = becomesReadable(done.waitDescriptor)
            #expect(finished)
            if finished { thread.join() }
            #expect(seen.tokens == [1])
            try poller.deregister(ready.waitDescriptor)
        }
        #expect(openFileDescriptorCount() == before)
    }

    /// Registrations churn on this thread while another waits: every report carries a token that
    /// was registered, and once everything is deregistered nothing more is reported.
    @Test(.isolatedDescriptors, arguments: backends)
    func registrationChurnDuringWaits(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            let notifiers = try (0..<4).map { _ in try EventNotifier() }
            for notifier in notifiers { try notifier.notify() }  // always readable
            let stop = try EventNotifier()
            let done = try EventNotifier()
            let seen = TokenLog()
            let thread = startThread {
                var events = PollEvents(capacity: 8)
                do {
                    // Bounded: at most 100,000 returns; ends when told to stop.
                    for _ in 0..<100_000 {
                        if try stop.tryConsume() { break }
                        _ = try poller.wait(into: &events, timeout: bound)
                        for index in 0..<events.count { seen.append(events[index].token) }
                    }
                    try done.notify()
                } catch {
                    Issue.record(error)
                }
            }
            var registered: Set<UInt64> = []
            for round in 0..<500 {
                let slot = round % notifiers.count
                let token = UInt64(round)
                try poller.register(notifiers[slot].waitDescriptor, interest: .readable, token: token)
                registered.insert(token)
                if round >= 2 {
                    let old = (round - 2) % notifiers.count
                    try poller.deregister(notifiers[old].waitDescriptor)
                }
            }
            for round in 498..<500 { try poller.deregister(notifiers[round % notifiers.count].waitDescriptor) }
            try stop.notify()
            try poller.wake()
            let finished = becomesReadable(done.waitDescriptor)
            #expect(finished)
            if finished { thread.join() }
            let tokens = seen.tokens
            #expect(tokens.allSatisfy { registered.contains($0) })
            var events = PollEvents(capacity: 8)
            #expect(try poller.wait(into: &events, timeout: .zero) == 0)
        }
        #expect(openFileDescriptorCount() == before)
    }

    /// More ready descriptors than the buffer holds: successive waits report every one of them.
    @Test(.isolatedDescriptors, arguments: backends)
    func aSmallBufferReportsEveryReadyDescriptorInTurn(backend: PollerBackend) throws {
        let before = openFileDescriptorCount()
        do {
            let poller = try Poller(backend: backend)
            let notifiers = try (0..<3).map { _ in try EventNotifier() }
            for (index, notifier) in notifiers.enumerated() {
                try poller.register(notifier.waitDescriptor, interest: .readable, token: UInt64(index))
                try notifier.notify()
            }
            var events = PollEvents(capacity: 2)
            var seen: Set<UInt64> = []
            for _ in 0..<3 {
                #expect(try poller.wait(into: &events, timeout: bound) == 2)
                for index in 0..<events.count { seen.insert(events[index].token) }
            }
            #expect(seen == [0, 1, 2])
            for notifier in notifiers { try poller.deregister(notifier.waitDescriptor) }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backends)
    func pollerDescriptorsAreCloseOnExec(backend: PollerBackend) throws {
        let existing = openDescriptors()
        let poller = try Poller(backend: backend)
        let created = openDescriptors().subtracting(existing)
        #expect(!created.isEmpty)
        for fd in created { #expect(isCloseOnExec(fd), "fd \(fd) of \(poller.backend)") }
    }

    @Test func defaultBackend() throws {
        let expected = try Poller.defaultBackend
        #expect(expected == (try PollerBackend.fromEnvironment()))
        #expect(try Poller().backend == expected)
    }

    @Test func backendNamesAreParsed() throws {
        #expect(try PollerBackend.named("poll", source: "VMM_POLLER") == .poll)
        #expect(throws: BackendSelectionError.self) { try PollerBackend.named("select", source: "VMM_POLLER") }
        for backend in PollerBackend.allCases where !backend.isAvailable {
            let refusal = PrimitiveCreationError.backend(
                PollerBackend.selectionError(source: "initialiser", requested: backend.rawValue))
            #expect(throws: refusal) { try Poller(backend: backend) }
        }
        #expect(PollerBackend.native.isAvailable)
        #if os(Linux) && !VMM_LIBKQUEUE
        #expect(Set(PollerBackend.availableBackends) == [.epoll, .poll])
        #endif
    }

    /// The filter every backend applies to kernel reports before `wait` returns.
    @Test func staleReportsAreDropped() throws {
        var state = RegistrationTable.State()
        let first = try state.prepareAdd(5, interest: .readable, token: 1)
        state.store(5, first)
        #expect(
            state.resolve(5, generation: first.generation, readable: true, writable: true, hangup: false)
                == PollEvent(token: 1, isReadable: true, isWritable: false, isHangup: false))
        _ = try state.remove(5)
        #expect(state.resolve(5, generation: first.generation, readable: true, writable: false, hangup: false) == nil)
        let second = try state.prepareAdd(5, interest: .readable, token: 2)
        state.store(5, second)
        #expect(second.generation != first.generation && second.generation != wakeGeneration)
        #expect(state.resolve(5, generation: first.generation, readable: true, writable: false, hangup: false) == nil)
        #expect(
            state.resolve(5, generation: second.generation, readable: true, writable: false, hangup: false)?.token == 2)
        #expect(state.resolve(5, generation: second.generation, readable: false, writable: true, hangup: false) == nil)
        #expect(throws: SystemCallError("Poller.register", .fileExists)) {
            try state.prepareAdd(5, interest: .readable, token: 3)
        }
        #expect(throws: SystemCallError("Poller.register", .badFileDescriptor)) {
            try state.prepareAdd(-1, interest: .readable, token: 3)
        }
    }

    @Test func timeoutsRoundUp() {
        #expect(pollMilliseconds(nil) == -1)
        #expect(pollMilliseconds(.zero) == 0)
        #expect(pollMilliseconds(.seconds(-3)) == 0)
        #expect(pollMilliseconds(.nanoseconds(1)) == 1)
        #expect(pollMilliseconds(.milliseconds(1500)) == 1500)
        #expect(pollMilliseconds(.microseconds(1500)) == 2)
        #expect(pollMilliseconds(.seconds(Int64.max)) == Int32.max)
        #expect(pollMilliseconds(.seconds(3_000_000)) == Int32.max)
        let short = pollTimespec(.nanoseconds(1))
        #expect(short.tv_sec == 0 && short.tv_nsec == 1)
        let mixed = pollTimespec(.milliseconds(2500))
        #expect(mixed.tv_sec == 2 && mixed.tv_nsec == 500_000_000)
        let negative = pollTimespec(.seconds(-1))
        #expect(negative.tv_sec == 0 && negative.tv_nsec == 0)
    }

    @Test func eventBufferCapacityIsClamped() {
        let empty = PollEvents(capacity: 0)
        #expect(empty.capacity == 1 && empty.count == 0)
    }
}

/// Tokens seen by a waiter thread, read by the test thread.
private final class TokenLog: @unchecked Sendable {
    private let mutex = ConditionLock()
    private var seen: [UInt64] = []
    func append(_ token: UInt64) {
        mutex.lock()
        seen.append(token)
        mutex.unlock()
    }
    func contains(_ token: UInt64) -> Bool {
        mutex.lock()
        defer { mutex.unlock() }
        return seen.contains(token)
    }
    var tokens: [UInt64] {
        mutex.lock()
        defer { mutex.unlock() }
        return seen
    }
}
