#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
import VhostUserFrontend
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// Records the channel the session hands over.
final class ChannelDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.block
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 64
    let configSize = 8
    let slot = BackendChannelSlot()
    private let lock = ConditionLock()
    private var changes = 0
    var channelChanges: Int { lock.withLock { changes } }

    func process(_ queue: inout VhostUserQueue) throws {}
    func backendChannelChanged(_ channel: BackendChannel?) {
        slot.set(channel)
        lock.withLock { changes += 1 }
    }
}

/// The back-end channel: SET_BACKEND_REQ_FD, config-change messages with and without REPLY_ACK,
/// a front-end that answers no, late or never, and fds that are not sockets.
@Suite("VhostUserSession: back-end channel (BACKEND_REQ)")
struct BackendChannelTests {
    /// A session with `protocolFeatures` acked and a channel opened; our end is returned.
    func open(_ session: VhostUserSession, protocolFeatures: ProtocolFeatures) throws -> FrontendBackendChannel {
        _ = try session.handle(message(.setProtocolFeatures(protocolFeatures)))
        let (ours, theirs) = try ScmSocket.pair()
        _ = try session.handle(message(.setBackendRequestFD, fds: [theirs.descriptor]))
        return FrontendBackendChannel(socket: ours)
    }

    /// Answers the next request on `channel` with `value` from another thread (after `delay`).
    func answer(_ channel: FrontendBackendChannel, with value: UInt64, after delay: Duration = .zero) -> TestThread {
        startThread {
            guard let request = try? channel.receive(timeout: .seconds(10)) else { return }
            let code = request.request
            if delay > .zero {
                usleep(UInt32(delay.components.seconds * 1_000_000 + delay.components.attoseconds / 1_000_000_000_000))
            }
            try? channel.reply(to: code, value)
        }
    }

    @Test(.isolatedDescriptors) func configChangeIsAcknowledgedRefusedOrTimedOut() throws {
        let before = openFileDescriptorCount()
        do {
            let device = ChannelDevice()
            var options = VhostUserSessionOptions()
            options.backendReplyTimeout = .milliseconds(300)
            let session = try VhostUserSession(device: device, options: options)
            defer { session.close() }
            let channel = try open(session, protocolFeatures: [.replyAck, .backendRequest, .config])
            #expect(device.channelChanges == 1)
            let backend = try #require(device.slot.current)
            #expect(backend.acknowledged)

            var thread = answer(channel, with: 0)
            #expect(try device.slot.sendConfigChange())
            thread.join()

            thread = answer(channel, with: 1)
            #expect(throws: VhostUserError.self) { try backend.sendConfigChange() }
            thread.join()
            #expect(backend.isOpen, "a refusal keeps the channel")

            // Never answered: the wait ends at the timeout and the channel closes for good.
            let start = ContinuousClock.now
            do {
                try backend.sendConfigChange()
                Issue.record("an unanswered request succeeded")
            } catch {
                guard case .backendChannelTimeout(.configChange) = error else {
                    Issue.record("\(error)")
                    return
                }
            }
            #expect(ContinuousClock.now - start < .seconds(5))
            #expect(!backend.isOpen)
            thread = answer(channel, with: 0)  // too late: the channel is closed
            #expect(throws: VhostUserError.self) { try backend.sendConfigChange() }
            thread.join()
            // The session is still usable; a new channel replaces the closed one.
            let second = try open(session, protocolFeatures: [.replyAck, .backendRequest, .config])
            thread = answer(second, with: 0)
            #expect(try device.slot.sendConfigChange())
            thread.join()
            #expect(device.channelChanges == 2)
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func withoutReplyAckNothingIsAwaited() throws {
        let device = ChannelDevice()
        let session = try VhostUserSession(device: device)
        let channel = try open(session, protocolFeatures: [.backendRequest, .config])
        try device.slot.sendConfigChange()
        guard let request = try channel.receive(timeout: .seconds(5)) else {
            Issue.record("nothing sent")
            return
        }
        let code = request.request
        let needsReply = request.needsReply
        #expect(code == .configChange && !needsReply)
        // The session's end closes the channel and tells the device.
        session.close()
        #expect(device.slot.current == nil)
        #expect(device.channelChanges == 2)
        #expect(throws: FrontendError.self) { _ = try channel.receive(timeout: .seconds(5)) }
    }

    @Test(.isolatedDescriptors) func channelFdsThatAreNotStreamSocketsAreRefused() throws {
        let before = openFileDescriptorCount()
        do {
            let session = try VhostUserSession(device: ChannelDevice())
            defer { session.close() }
            _ = try session.handle(message(.setProtocolFeatures([.replyAck, .backendRequest])))
            let notifier = try EventNotifier()
            let memory = try SharedMemory(size: 4096)
            var pair: [Int32] = [-1, -1]
            #if canImport(Glibc)
            let datagram = Int32(SOCK_DGRAM.rawValue)
            #else
            let datagram = SOCK_DGRAM
            #endif
            #expect(socketpair(AF_UNIX, datagram, 0, &pair) == 0)
            defer {
                close(pair[0])
                close(pair[1])
            }
            for fd in [notifier.waitDescriptor, memory.descriptor, pair[0]] {
                do {
                    _ = try session.handle(message(.setBackendRequestFD, fds: [fd]))
                    Issue.record("fd \(fd) accepted as the back-end channel")
                } catch let error as VhostUserError {
                    guard case .invalidBackendChannel = error else {
                        Issue.record("\(error)")
                        continue
                    }
                }
            }
            #expect(session.backendChannel == nil)
        }
        #expect(openFileDescriptorCount() == before)
    }
}
