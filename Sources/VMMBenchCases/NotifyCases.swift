#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// The package's end of a ping-pong: `EventNotifier.notify`, and `EventNotifier.wait` or
/// `Poller.wait` + `tryConsume`.
///
/// Thread-safety: used by one thread at a time; unchecked `Sendable` so a peer thread can own it.
final class OursPingPongEnd: PingPongEnd, @unchecked Sendable {
    private let waitOn: EventNotifier
    private let signalThrough: EventNotifier
    private let poller: Poller?
    private var events = PollEvents(capacity: 4)

    init(waitOn: EventNotifier, signalThrough: EventNotifier, waiter: PingPongWaiter) throws {
        self.waitOn = waitOn
        self.signalThrough = signalThrough
        if let backend = PollerBackend(rawValue: waiter.rawValue) {
            let poller = try Poller(backend: backend)
            try poller.register(waitOn.waitDescriptor, interest: .readable, token: 1)
            self.poller = poller
        } else {
            poller = nil
        }
    }

    @inline(__always)
    func signal() throws { try signalThrough.notify() }

    @inline(__always)
    func awaitSignal() throws {
        guard let poller else { return try waitOn.wait() }
        repeat {
            _ = try poller.wait(into: &events, timeout: nil)
        } while try !waitOn.tryConsume()
    }
}

/// `EventNotifier.notify()` with nobody waiting (the cost a producer pays per kick).
final class OursNotifyOnly: BenchRunner {
    let notifier: EventNotifier
    init(_ backend: EventNotifierBackend) throws { notifier = try EventNotifier(backend: backend) }
    func run(_ iterations: Int) throws {
        for _ in 0..<iterations { try notifier.notify() }
    }
}

/// Raw twin: `write(fd, &one, 8)` on an eventfd or (non-blocking) pipe.
final class RawNotifyOnly: BenchRunner {
    let notifier: RawNotifier
    init(_ kind: RawNotifierKind) throws { notifier = try RawNotifier(kind, nonBlockingWrite: kind == .pipe) }
    func run(_ iterations: Int) throws {
        for _ in 0..<iterations { try notifier.signal() }
    }
}

extension EventNotifierBackend {
    /// The fd kind the raw twin uses for this backend.
    var rawKind: RawNotifierKind { self == .eventfd ? .eventfd : .pipe }

    func checkedAvailable() throws -> EventNotifierBackend {
        guard isAvailable else { throw BenchSkipped("\(rawValue) is not available here") }
        return self
    }
}

/// "X is not available here" for an unavailable backend, nil for an available one.
func unavailable<Backend: SelectableBackend>(_ backend: Backend) -> String? where Backend.RawValue == String {
    backend.isAvailable ? nil : "\(backend.rawValue) is not available here"
}

enum NotifyCases {
    static func all() -> [BenchCase] {
        var cases: [BenchCase] = []
        for backend in EventNotifierBackend.allCases {
            let waiters: [PingPongWaiter] =
                [.wait]
                + PollerBackend.allCases.compactMap {
                    PingPongWaiter(rawValue: $0.rawValue)
                }
            for waiter in waiters {
                let reason = unavailable(backend) ?? PollerBackend(rawValue: waiter.rawValue).flatMap(unavailable)
                cases.append(
                    BenchCase(
                        group: "notify", name: "pingpong-threads/\(waiter.rawValue)", backend: backend.rawValue,
                        usesPlacement: true, unavailableReason: reason
                    ) { implementation, context in
                        try threadPingPong(implementation, backend.checkedAvailable(), waiter, context)
                    })
                cases.append(
                    BenchCase(
                        group: "notify", name: "pingpong-processes/\(waiter.rawValue)", backend: backend.rawValue,
                        usesPlacement: true, unavailableReason: reason
                    ) { implementation, context in
                        try processPingPong(implementation, backend.checkedAvailable(), waiter, context)
                    })
            }
            cases.append(
                BenchCase(
                    group: "notify", name: "notify-no-waiter", backend: backend.rawValue, batch: 16,
                    unavailableReason: unavailable(backend)
                ) {
                    implementation, _ in
                    let backend = try backend.checkedAvailable()
                    switch implementation {
                    case .ours: return try OursNotifyOnly(backend)
                    case .raw: return try RawNotifyOnly(backend.rawKind)
                    }
                })
        }
        return cases
    }

    static func checkWaiter(_ waiter: PingPongWaiter) throws {
        if let backend = PollerBackend(rawValue: waiter.rawValue), !backend.isAvailable {
            throw BenchSkipped("\(backend.rawValue) is not available here")
        }
    }

    static func threadPingPong(
        _ implementation: BenchImplementation, _ backend: EventNotifierBackend, _ waiter: PingPongWaiter,
        _ context: BenchContext
    ) throws -> any BenchRunner {
        try checkWaiter(waiter)
        switch implementation {
        case .ours:
            // A waiter in a Poller consumes after readiness: a non-blocking read side makes that
            // one read, as the raw twin's.
            let toPeer = try EventNotifier(backend: backend, nonBlockingWait: waiter != .wait)
            let fromPeer = try EventNotifier(backend: backend, nonBlockingWait: waiter != .wait)
            return try ThreadPingPong(
                main: OursPingPongEnd(waitOn: fromPeer, signalThrough: toPeer, waiter: waiter),
                peer: OursPingPongEnd(waitOn: toPeer, signalThrough: fromPeer, waiter: waiter),
                context: context)
        case .raw:
            let toPeer = try RawNotifier(backend.rawKind)
            let fromPeer = try RawNotifier(backend.rawKind)
            return try ThreadPingPong(
                main: RawPingPongEnd(waitOn: fromPeer, signalThrough: toPeer, waiter: waiter),
                peer: RawPingPongEnd(waitOn: toPeer, signalThrough: fromPeer, waiter: waiter),
                context: context)
        }
    }

    static func processPingPong(
        _ implementation: BenchImplementation, _ backend: EventNotifierBackend, _ waiter: PingPongWaiter,
        _ context: BenchContext
    ) throws -> any BenchRunner {
        try checkWaiter(waiter)
        guard let executable = context.childExecutable else {
            throw BenchSkipped("no child executable (vmm-bench) beside this binary")
        }
        let arguments = [
            implementation.rawValue, backend.rawValue, waiter.rawValue, context.peerCPU.map { "\($0)" } ?? "-",
        ]
        switch implementation {
        case .ours:
            // A waiter in a Poller consumes after readiness: a non-blocking read side makes that
            // one read, as the raw twin's.
            let toPeer = try EventNotifier(backend: backend, nonBlockingWait: waiter != .wait)
            let fromPeer = try EventNotifier(backend: backend, nonBlockingWait: waiter != .wait)
            let child = try ChildRole.spawnEcho(
                executable, arguments, waitOn: toPeer.waitDescriptor,
                signalThrough: fromPeer.notifyDescriptor)
            return try ProcessPingPong(
                main: OursPingPongEnd(waitOn: fromPeer, signalThrough: toPeer, waiter: waiter),
                child: child, context: context)
        case .raw:
            let toPeer = try RawNotifier(backend.rawKind)
            let fromPeer = try RawNotifier(backend.rawKind)
            let child = try ChildRole.spawnEcho(
                executable, arguments, waitOn: toPeer.readFD,
                signalThrough: fromPeer.writeFD)
            return try ProcessPingPong(
                main: RawPingPongEnd(waitOn: fromPeer, signalThrough: toPeer, waiter: waiter),
                child: child, context: context)
        }
    }
}

/// Hidden `--child` roles of vmm-bench.
public enum ChildRole {
    static let notifyEcho = "notify-echo"

    /// Spawns `executable --child notify-echo ARGUMENTS...` with our `waitOn` as its fd 3 and
    /// `signalThrough` as its fd 4.
    ///
    /// - Throws: `SystemCallError` from `ChildProcess.spawn`.
    static func spawnEcho(_ executable: String, _ arguments: [String], waitOn: Int32, signalThrough: Int32)
        throws(SystemCallError) -> ChildProcess
    {
        try ChildProcess.spawn(
            executable, arguments: ["--child", notifyEcho] + arguments,
            descriptors: [(waitOn, 3), (signalThrough, 4)])
    }

    /// Runs `role` with `arguments` in a spawned child; returns the exit status.
    ///
    /// `notify-echo IMPL BACKEND WAITER CPU`: waits on fd 3, signals fd 4, forever (killed by the
    /// parent; `alarm` ends it if the parent dies without killing it).
    public static func run(_ role: String, _ arguments: [String]) -> Int32 {
        alarm(600)
        guard role == notifyEcho, arguments.count == 4,
            let implementation = BenchImplementation(rawValue: arguments[0]),
            let backend = EventNotifierBackend(rawValue: arguments[1]),
            let waiter = PingPongWaiter(rawValue: arguments[2])
        else { return 64 }
        do {
            try pinCurrentThread(Int32(arguments[3]))
            let end: any PingPongEnd
            switch implementation {
            case .ours:
                let waitOn = try EventNotifier(waitingOn: FileDescriptor(adopting: 3))
                let signalThrough = try EventNotifier(notifyingThrough: FileDescriptor(adopting: 4))
                end = try OursPingPongEnd(waitOn: waitOn, signalThrough: signalThrough, waiter: waiter)
            case .raw:
                _ = backend
                end = try RawPingPongEnd(
                    waitOn: RawNotifier(readFD: 3, writeFD: 3),
                    signalThrough: RawNotifier(readFD: 4, writeFD: 4), waiter: waiter)
            }
            while true {
                try end.awaitSignal()
                try end.signal()
            }
        } catch {
            return 1
        }
    }
}
