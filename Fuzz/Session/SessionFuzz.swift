// Fuzz target for the back-end session state machine (VhostUserBackend.VhostUserSession) and, through
// its queue worker, the ring code under a hostile driver.
//
// Input: u16 length L, then L bytes copied into a 64 KiB guest memory (rings and buffers), then a
// stream of vhost-user requests (12-byte header + payload). Each request gets the fds its type
// needs: an eventfd for SET_VRING_KICK/CALL/ERR/SET_LOG_FD, one end of a socket pair for
// SET_BACKEND_REQ_FD (the other end never answers: the device's config-change requests time out
// after 1 ms), the guest memory's fd for everything else (memory regions, the dirty log). The
// session answers or refuses each one (a refusal ends the input, as it ends a connection). A
// started ring is kicked after every request, and served by the worker thread. The device offers
// packed rings (the input's SET_FEATURES picks the layout), keeps some chains on its worker until
// the ring changes (queueChanging) and postpones every other chain; this
// thread completes the postponed ones after each request, as a device's I/O thread would (some
// after the ring stopped or its memory changed: refused). Checks, aborting on failure: nothing
// traps, and once the session is closed the process' fd count is back where it was.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import VMMSysUtil
import Virtio
import VhostUserProtocol
import VhostUserBackend

/// Fills writable buffers with a pattern, like an entropy device; every other chain is postponed
/// and completed later by the fuzzing thread. Sends a config change on the back-end channel (if
/// one is open) once per `process` call.
final class FillDevice: VhostUserDevice, @unchecked Sendable {
    let channel = BackendChannelSlot()
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = [.version1, .ringPacked]
    let queueCount = 2
    let maxQueueSize = 64
    let configSize = 16
    private let lock = FuzzLock()
    private var held: [DeferredChain] = []
    private var postpone = false
    /// Per ring: a chain kept on the worker across callbacks (worker only), filled and completed
    /// when the next one of its ring arrives or when the ring is about to change.
    private var kept: [Chain?] = [nil, nil]

    func backendChannelChanged(_ channel: BackendChannel?) { self.channel.set(channel) }

    func process(_ queue: inout VhostUserQueue) throws {
        _ = try? channel.sendConfigChange()
        var budget = 64
        while budget > 0, let chain = try queue.pop() {
            budget -= 1
            postpone.toggle()
            if kept[queue.index] == nil, budget % 3 == 0 {
                kept[queue.index] = chain
                continue
            }
            if let first = kept[queue.index] {
                kept[queue.index] = nil
                try queue.complete(first, written: try fill(first))
            }
            let written = try fill(chain)
            if postpone {
                let token = queue.postpone(chain)
                lock.withLock { held.append(token) }
            } else {
                try queue.complete(chain, written: written)
            }
        }
    }

    /// A (re)started ring: a chain kept from before is stale (a broken ring is not asked to give
    /// it back), forget it.
    func queueStarted(_ queue: inout VhostUserQueue) throws { kept[queue.index] = nil }

    /// The kept chain is written and completed before the ring stops or its memory changes
    /// (after that it could point into an unmapped region).
    func queueChanging(_ queue: inout VhostUserQueue, to change: QueueChange) throws {
        guard let chain = kept[queue.index] else { return }
        kept[queue.index] = nil
        try queue.complete(chain, written: try fill(chain))
    }

    /// Completes what was postponed (from the calling thread); refusals are expected.
    func completeHeld() {
        let tokens = lock.withLock { () -> [DeferredChain] in
            defer { held.removeAll() }
            return held
        }
        for token in tokens { _ = try? token.complete(written: token.chain.writableLength) }
    }

    private func fill(_ chain: Chain) throws -> UInt32 {
        var written: UInt32 = 0
        var buffers = chain.buffers()
        while let buffer = try buffers.next() {
            guard buffer.isWritable else { continue }
            buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5)
            written &+= UInt32(buffer.bytes.count)
        }
        return written
    }
}

/// A pthread mutex (the fuzz target has no Foundation).
final class FuzzLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(mutex, nil) }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

private let memorySize = 65536
private let silent = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 2 else { return 0 }
    let before = openDescriptorCount()
    do {
        try run(UnsafeRawBufferPointer(start: data, count: size))
    } catch {
        _ = "\(error)"
    }
    if openDescriptorCount() != before { abort() }
    return 0
}

private func run(_ input: UnsafeRawBufferPointer) throws {
    let length = min(Int(input.loadUnaligned(as: UInt16.self)), input.count - 2, memorySize)
    let memory = try SharedMemory(size: memorySize)
    memory.mapping.bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[2..<(2 + length)]))
    let kick = try EventNotifier()
    let device = FillDevice()
    // A short wait for postponed chains: stops and memory changes then refuse the rest quickly;
    // a short wait for back-end channel answers that never come.
    var options = VhostUserSessionOptions(completionTimeout: .milliseconds(1))
    options.backendReplyTimeout = .milliseconds(1)
    let session = try VhostUserSession(device: device, options: options, logger: silent)
    // The front-end's ends of back-end channels: held (never read) until the input ends.
    var channelEnds: [ScmSocket] = []
    defer { channelEnds.removeAll() }
    defer {
        device.completeHeld()
        session.close()
        device.completeHeld()
    }
    var offset = 2 + length
    while input.count - offset >= MessageHeader.byteCount {
        let header = try MessageHeader(decoding: UnsafeRawBufferPointer(rebasing: input[offset...]))
        let end = offset + MessageHeader.byteCount + Int(header.size)
        guard end <= input.count else { return }
        let bytes = UnsafeRawBufferPointer(rebasing: input[offset..<end])
        offset = end
        let message: Message
        do {
            message = try Message.decode(bytes: bytes, descriptors: MessageDescriptors())
        } catch ProtocolError.missingDescriptors(_, let expected, _) {
            var fds: [Int32] = []
            for _ in 0..<expected {
                switch FrontendRequest(rawValue: header.request) {
                case .setVringKick, .setVringCall, .setVringErr, .setLogFD:
                    fds.append(fcntl(kick.waitDescriptor, F_DUPFD_CLOEXEC, 0))
                case .setBackendRequestFD:
                    let (ours, theirs) = try ScmSocket.pair()
                    channelEnds.append(ours)
                    fds.append(fcntl(theirs.descriptor, F_DUPFD_CLOEXEC, 0))
                default: fds.append(fcntl(memory.descriptor, F_DUPFD_CLOEXEC, 0))
                }
            }
            message = try Message.decode(bytes: bytes, descriptors: MessageDescriptors(adopting: fds))
        }
        _ = try session.handle(message)
        try kick.notify()
        device.completeHeld()
    }
}

private func openDescriptorCount() -> Int {
    var count = 0
    for fd in 0..<1024 where fcntl(Int32(fd), F_GETFD) != -1 { count += 1 }
    return count
}
