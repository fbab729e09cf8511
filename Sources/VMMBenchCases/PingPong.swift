#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// One side of a notify-to-wake ping-pong: tell the other side, then wait to be told.
///
/// Thread-safety: each end is used by one thread (a peer's end is handed to its thread at start,
/// hence `Sendable`).
protocol PingPongEnd: AnyObject, Sendable {
    /// Wakes the other side.
    func signal() throws
    /// Blocks until the other side has signalled, consuming the signal.
    func awaitSignal() throws
}

/// How the waiting side blocks: in the notifier's own wait, or in a readiness poller.
enum PingPongWaiter: String, Sendable, CaseIterable {
    case wait
    case epoll
    case kqueue
    case poll
}

/// Ping-pong between the measuring thread and a peer thread; one iteration is one round trip.
final class ThreadPingPong<End: PingPongEnd>: BenchRunner {
    private let main: End
    private let peer: End
    private let stop = StopFlag()
    private var thread: JoinableThread?

    /// Starts the echo thread on `context.peerCPU` and pins the caller to `context.mainCPU`.
    init(main: End, peer: End, context: BenchContext) throws {
        self.main = main
        self.peer = peer
        try pinCurrentThread(context.mainCPU)
        let stop = self.stop
        thread = try JoinableThread(pinnedTo: context.peerCPU) {
            // The echo loop ends when the flag is set or a call fails; either way the thread exits.
            do {
                while true {
                    try peer.awaitSignal()
                    if stop.isSet { return }
                    try peer.signal()
                }
            } catch {
                return
            }
        }
    }

    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            try main.signal()
            try main.awaitSignal()
        }
    }

    func tearDown() {
        guard let thread else { return }
        stop.set()
        _ = try? main.signal()
        thread.join()
        self.thread = nil
    }

    deinit { tearDown() }
}

/// Ping-pong between the measuring thread and a child process echoing on its fds 3 and 4.
final class ProcessPingPong<End: PingPongEnd>: BenchRunner {
    private let main: End
    private var child: ChildProcess?

    /// `main` is this process's end; the child's end is built by `runChildRole` from the fds.
    init(main: End, child: ChildProcess, context: BenchContext) throws {
        self.main = main
        self.child = child
        try pinCurrentThread(context.mainCPU)
    }

    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            try main.signal()
            try main.awaitSignal()
        }
    }

    func tearDown() {
        child?.terminate(with: SIGKILL)
        child = nil
    }

    deinit { tearDown() }
}

/// The raw twin's end: blocking `read`/`write` of 8 bytes, or `epoll_wait`/`poll` then `read`.
///
/// Thread-safety: used by one thread at a time; unchecked `Sendable` so a peer thread can own it.
final class RawPingPongEnd: PingPongEnd, @unchecked Sendable {
    private let waitOn: RawNotifier
    private let signalThrough: RawNotifier
    private let waiter: RawPollSet?

    init(waitOn: RawNotifier, signalThrough: RawNotifier, waiter: PingPongWaiter) throws {
        self.waitOn = waitOn
        self.signalThrough = signalThrough
        switch waiter {
        case .wait: self.waiter = nil
        case .epoll: self.waiter = try RawPollSet(.epoll, watching: waitOn.readFD)
        case .kqueue: self.waiter = try RawPollSet(.kqueue, watching: waitOn.readFD)
        case .poll: self.waiter = try RawPollSet(.poll, watching: waitOn.readFD)
        }
    }

    @inline(__always)
    func signal() throws { try signalThrough.signal() }

    @inline(__always)
    func awaitSignal() throws {
        if let waiter { try waiter.waitReadable() }
        try waitOn.consume()
    }
}
