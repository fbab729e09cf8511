import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A minimal front-end over a socket: encodes requests with the codec, reads replies.
final class TestFrontend {
    let socket: ScmSocket
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)

    init(socket: ScmSocket) { self.socket = socket }
    deinit { buffer.deallocate() }

    func send(_ body: FrontendMessage, needsReply: Bool = false, fds: [Int32] = []) throws {
        var bytes: [UInt8] = []
        try Message.encodeRequest(body, needsReply: needsReply, into: &bytes)
        try socket.send(bytes, fds: fds)
    }

    /// Reads one reply; returns its header and payload bytes (fds are closed).
    func reply() throws -> (MessageHeader, [UInt8]) {
        let header = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<MessageHeader.byteCount])
        _ = try socket.receiveExactly(into: header, maxFDs: 8)
        let parsed = try MessageHeader(decoding: UnsafeRawBufferPointer(header))
        let size = Int(parsed.size)
        guard size <= 400 else { throw ProtocolError.truncatedHeader(byteCount: size) }
        let payload = UnsafeMutableRawBufferPointer(
            rebasing: buffer[MessageHeader.byteCount..<(MessageHeader.byteCount + size)])
        if size > 0 { _ = try socket.receiveExactly(into: payload, maxFDs: 8) }
        return (parsed, Array(payload))
    }

    /// Sends a request that has a `u64` reply (or NEED_REPLY) and decodes the answer.
    func u64(_ body: FrontendMessage, needsReply: Bool = false, fds: [Int32] = []) throws -> UInt64 {
        try send(body, needsReply: needsReply, fds: fds)
        let (header, payload) = try reply()
        return try payload.withUnsafeBytes { bytes in
            try Reply.u64(to: body.request, header: header, payload: bytes, descriptors: MessageDescriptors())
        }
    }
}

extension TestFrontend {
    /// Negotiates and starts `rig`'s ring with every request acked (REPLY_ACK), expecting 0s.
    func start(_ rig: GuestRig) throws {
        let offered = ProtocolFeatures(rawValue: try u64(.getProtocolFeatures))
        for (body, fds) in rig.startRequests(features: drivenFeatures, protocolFeatures: offered) {
            if case .setProtocolFeatures = body {
                try send(body, fds: fds)
            } else {
                #expect(try u64(body, needsReply: true, fds: fds) == 0, "\(body)")
            }
        }
    }
}

/// Where a server thread reports how its connection ended.
final class EndBox: @unchecked Sendable {
    private let lock = ConditionLock()
    private var stored: VhostUserServer.EndReason?
    func set(_ reason: VhostUserServer.EndReason) { lock.withLock { stored = reason } }
    var reason: VhostUserServer.EndReason? { lock.withLock { stored } }
}

@Suite("VhostUserServer end to end over a socket")
struct ServerTests {
    @Test(.isolatedDescriptors) func servesTwoFrontendsInTurnWithoutLeaking() throws {
        let baseline = openFileDescriptorCount()
        let device = PatternDevice(pattern: 0x5A)
        let server = VhostUserServer(device: device)
        for round in 0..<2 {
            let box = EndBox()
            let thread: TestThread
            do {
                let (frontendSide, backendSide) = try ScmSocket.pair()
                thread = startThread { box.set(server.serve(backendSide)) }
                let frontend = TestFrontend(socket: frontendSide)
                let rig = try GuestRig()
                let features = try frontend.u64(.getFeatures)
                #expect(features & VirtioFeatures.protocolFeatures.rawValue != 0)
                let offered = ProtocolFeatures(rawValue: try frontend.u64(.getProtocolFeatures))
                #expect(offered.contains(.replyAck))
                for (body, fds) in rig.startRequests(features: drivenFeatures, protocolFeatures: offered) {
                    if case .setProtocolFeatures = body {
                        try frontend.send(body, fds: fds)
                    } else {
                        // Every later request asks for an ack, and gets 0.
                        #expect(try frontend.u64(body, needsReply: true, fds: fds) == 0, "\(body)")
                    }
                }
                #expect(try frontend.u64(.getQueueNum) == 1)
                for slot in 0..<3 { try rig.postWritable(slot: slot, length: 32 + UInt32(round)) }
                try rig.kick.notify()
                var completed = 0
                while completed < 3, let used = try reapWaiting(rig) {
                    #expect(used.length == 32 + UInt32(round))
                    completed += 1
                }
                #expect(completed == 3)
                #expect(rig.bytes(slot: 2, count: 32) == [UInt8](repeating: 0x5A, count: 32))
                try frontend.send(.getVringBase(VringState(index: 0, num: 0)))
                let (header, payload) = try frontend.reply()
                let base = try payload.withUnsafeBytes {
                    try Reply.vringState(header: header, payload: $0, descriptors: MessageDescriptors())
                }
                #expect(base == VringState(index: 0, num: 3))
            }
            // frontendSide is gone: the server sees EOF and tears the session down.
            thread.join()
            guard case .disconnected = box.reason else {
                Issue.record("round \(round): \(String(describing: box.reason))")
                continue
            }
        }
        #expect(openFileDescriptorCount() == baseline)
    }

    @Test(.isolatedDescriptors) func refusalIsAckedThenTheConnectionCloses() throws {
        let baseline = openFileDescriptorCount()
        let server = VhostUserServer(device: PatternDevice())
        do {
            let (frontendSide, backendSide) = try ScmSocket.pair()
            let box = EndBox()
            let thread = startThread { box.set(server.serve(backendSide)) }
            let frontend = TestFrontend(socket: frontendSide)
            try frontend.send(.setProtocolFeatures([.replyAck]))
            // The server shuts the connection down itself: the reader sees EOF although both
            // socket objects are still alive here.
            // Queue size 3: refused with a non-zero ack, then EOF.
            #expect(try frontend.u64(.setVringNum(VringState(index: 0, num: 3)), needsReply: true) != 0)
            #expect(throws: ScmSocketError.self) { _ = try frontend.reply() }
            thread.join()
            guard case .refused(.invalidQueueSize) = box.reason else {
                Issue.record("\(String(describing: box.reason))")
                return
            }
        }
        do {
            // A malformed header (unknown request code) closes the connection too.
            let (frontendSide, backendSide) = try ScmSocket.pair()
            let box = EndBox()
            let thread = startThread { box.set(server.serve(backendSide)) }
            var bytes: [UInt8] = []
            MessageHeader(request: 99, flags: .version1, size: 0).encode(into: &bytes)
            try frontendSide.send(bytes)
            thread.join()
            guard case .refused(.protocolViolation) = box.reason else {
                Issue.record("\(String(describing: box.reason))")
                return
            }
        }
        #expect(openFileDescriptorCount() == baseline)
    }
}
