#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// Idle descriptors registered beside the ready one: raw notifiers nobody signals.
final class IdleDescriptors {
    let notifiers: [RawNotifier]
    init(count: Int, kind: RawNotifierKind) throws {
        notifiers = try (0..<count).map { _ in try RawNotifier(kind) }
    }
    var readFDs: [Int32] { notifiers.map(\.readFD) }
}

/// One `Poller.wait` cycle: notify, wait (returns at once: the fd is ready), consume.
final class OursPollerCycle: BenchRunner {
    let notifier: EventNotifier
    let poller: Poller
    let idle: IdleDescriptors
    var events = PollEvents(capacity: 16)

    init(_ backend: PollerBackend, idleCount: Int) throws {
        let notifierBackend = try EventNotifierBackend.native.checkedAvailable()
        notifier = try EventNotifier(backend: notifierBackend, nonBlockingWait: true)
        poller = try Poller(backend: backend)
        idle = try IdleDescriptors(count: idleCount, kind: notifierBackend.rawKind)
        for (token, fd) in idle.readFDs.enumerated() {
            try poller.register(fd, interest: .readable, token: UInt64(token))
        }
        try poller.register(notifier.waitDescriptor, interest: .readable, token: UInt64(idleCount))
    }

    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            try notifier.notify()
            _ = try poller.wait(into: &events, timeout: nil)
            _ = try notifier.tryConsume()
        }
    }
}

/// Raw twin: `write`, `epoll_wait`/`poll` over the same idle fds, `read`.
final class RawPollerCycle: BenchRunner {
    let notifier: RawNotifier
    let set: RawPollSet
    let idle: IdleDescriptors

    init(_ kind: RawPollSet.Kind, idleCount: Int) throws {
        let notifierKind = try EventNotifierBackend.native.checkedAvailable().rawKind
        notifier = try RawNotifier(notifierKind)
        idle = try IdleDescriptors(count: idleCount, kind: notifierKind)
        set = try RawPollSet(kind, watching: notifier.readFD, idle: idle.readFDs)
    }

    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            try notifier.signal()
            try set.waitReadable()
            try notifier.consume()
        }
    }
}

enum PollerCases {
    static func all() -> [BenchCase] {
        var cases: [BenchCase] = []
        for backend in PollerBackend.allCases {
            for idle in [0, 64, 1024] {
                cases.append(
                    BenchCase(
                        group: "poller", name: "cycle/idle-\(idle)", backend: backend.rawValue,
                        unavailableReason: unavailable(backend)
                    ) {
                        implementation, _ in
                        guard backend.isAvailable else {
                            throw BenchSkipped("\(backend.rawValue) is not available here")
                        }
                        switch implementation {
                        case .ours: return try OursPollerCycle(backend, idleCount: idle)
                        case .raw:
                            guard let kind = RawPollSet.Kind(rawValue: backend.rawValue) else {
                                throw BenchSkipped("no raw twin for \(backend.rawValue)")
                            }
                            return try RawPollerCycle(kind, idleCount: idle)
                        }
                    })
            }
        }
        return cases
    }
}
