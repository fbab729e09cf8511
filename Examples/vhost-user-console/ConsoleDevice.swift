#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VhostUserBackend
import VhostUserDaemon
import VMMSysUtil
import Virtio

/// A virtio-console (device ID 3, one port, no multiport) whose host side is a Unix socket: what
/// the guest writes on its transmit queue goes to the connected host client, and what the client
/// sends arrives in the guest's receive queue. The example of a device driven by its own fds.
///
/// Threading: the receive queue's worker watches the host listener and, once a client connected,
/// the client socket (`VhostUserQueue.watch`): readiness arrives in `handle(_:on:)` on that
/// worker, which pops receive buffers and fills them, so no lock guards ring state. With no
/// receive buffer posted it stops watching the client until the guest posts some (the next kick
/// calls `process` for the receive queue). The transmit queue's worker writes to the client. The
/// client socket itself is shared by both workers and the control thread (`reset`), hence the lock
/// around the reference (not around any I/O).
///
/// Output is written with a blocking send: a host client that stops reading holds guest output,
/// as a serial line would. Only one client at a time; a second one is disconnected at once.
final class ConsoleDevice: VhostUserDaemonDevice, @unchecked Sendable {
    static let virtioDeviceType = VirtioDeviceType.console
    let deviceFeatures: VirtioFeatures = [.version1, .ringPacked]
    let queueCount = 2
    let maxQueueSize = 1024
    let configSize = 0

    static let receiveQueue = 0
    static let transmitQueue = 1
    private static let listenerToken: UInt64 = 1
    private static let clientToken: UInt64 = 2

    private let listener: ScmListener
    private let lock = ConditionLock()
    private var client: ScmSocket?
    /// The receive worker stopped watching the client for want of buffers (receive worker only).
    private var waitingForBuffers = false

    /// Listens for the host client on `hostSocket`.
    ///
    /// - Throws: `ScmSocketError` if the socket cannot be created.
    init(hostSocket: String) throws {
        listener = try ScmListener(path: hostSocket, mode: 0o600, backlog: 1)
    }

    private var currentClient: ScmSocket? { lock.withLock { client } }

    func queueStarted(_ queue: inout VhostUserQueue) throws {
        guard queue.index == Self.receiveQueue else { return }
        try queue.watch(listener.descriptor, token: Self.listenerToken)
        if let client = currentClient { try queue.watch(client.descriptor, token: Self.clientToken) }
        waitingForBuffers = false
    }

    func handle(_ event: PollEvent, on queue: inout VhostUserQueue) throws {
        switch event.token {
        case Self.listenerToken: try accept(&queue)
        case Self.clientToken: try receive(&queue)
        default: queue.unwatch(token: event.token)
        }
    }

    func process(_ queue: inout VhostUserQueue) throws {
        if queue.index == Self.receiveQueue {
            // New receive buffers: watch the client again if we stopped for want of them.
            if waitingForBuffers, let client = currentClient {
                waitingForBuffers = false
                try queue.watch(client.descriptor, token: Self.clientToken)
            }
            return
        }
        while let chain = try queue.pop() {
            var buffers = chain.buffers()
            while let buffer = try buffers.next(), !buffer.isWritable {
                // A client that went away loses the output, as an unplugged terminal.
                try? currentClient?.send(
                    UnsafeRawBufferPointer(buffer.bytes), fds: UnsafeBufferPointer(start: nil, count: 0))
            }
            try queue.complete(chain, written: 0)
        }
    }

    func reset() {
        // The framework removed the watches already; the client goes with the session.
        lock.withLock { client = nil }
        waitingForBuffers = false
    }

    private func accept(_ queue: inout VhostUserQueue) throws {
        guard let connection = try? listener.accept() else { return }
        let accepted: Bool = lock.withLock {
            guard client == nil else { return false }
            client = connection
            return true
        }
        // A second client is closed when `connection` goes.
        guard accepted else { return }
        try queue.watch(connection.descriptor, token: Self.clientToken)
    }

    /// One read from the client into the next receive buffer.
    private func receive(_ queue: inout VhostUserQueue) throws {
        guard let client = currentClient else {
            queue.unwatch(token: Self.clientToken)
            return
        }
        guard let chain = try queue.pop() else {
            // No buffer: stop watching (level-triggered readiness would spin) until the guest
            // posts some.
            queue.unwatch(token: Self.clientToken)
            waitingForBuffers = true
            return
        }
        var written = 0
        var buffers = chain.buffers()
        while let buffer = try buffers.next() {
            guard buffer.isWritable else { continue }
            do {
                written = try client.receive(into: buffer.bytes, maxFDs: 0).byteCount
            } catch {
                // Closed (or failed): forget the client; the chain goes back empty.
                queue.unwatch(token: Self.clientToken)
                lock.withLock { self.client = nil }
            }
            break
        }
        try queue.complete(chain, written: UInt32(written))
    }
}
