// Fuzz target for the back-end session state machine (VhostUserBackend.VhostUserSession) and, through
// its queue worker, the ring code under a hostile driver.
//
// Input: u16 length L, then L bytes copied into a 64 KiB guest memory (rings and buffers), then a
// stream of vhost-user requests (12-byte header + payload). Each request gets the fds its type
// needs: an eventfd for SET_VRING_KICK/CALL/ERR, the guest memory's fd for everything else. The
// session answers or refuses each one (a refusal ends the input, as it ends a connection). A
// started ring is kicked after every request, and served by the worker thread. Checks, aborting on
// failure: nothing traps, and once the session is closed the process' fd count is back where it was.

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

/// Fills writable buffers with a pattern, like an entropy device.
final class FillDevice: VhostUserDevice {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 2
    let maxQueueSize = 64
    let configSize = 16

    func process(_ queue: inout VhostUserQueue) throws {
        var budget = 64
        while budget > 0, let chain = try queue.pop() {
            budget -= 1
            var written: UInt32 = 0
            var buffers = chain.buffers()
            while let buffer = try buffers.next() {
                guard buffer.isWritable else { continue }
                buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5)
                written &+= UInt32(buffer.bytes.count)
            }
            try queue.complete(chain, written: written)
        }
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
    let session = try VhostUserSession(device: FillDevice(), logger: silent)
    defer { session.close() }
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
                case .setVringKick, .setVringCall, .setVringErr: fds.append(fcntl(kick.waitDescriptor, F_DUPFD_CLOEXEC, 0))
                default: fds.append(fcntl(memory.descriptor, F_DUPFD_CLOEXEC, 0))
                }
            }
            message = try Message.decode(bytes: bytes, descriptors: MessageDescriptors(adopting: fds))
        }
        _ = try session.handle(message)
        try kick.notify()
    }
}

private func openDescriptorCount() -> Int {
    var count = 0
    for fd in 0..<1024 where fcntl(Int32(fd), F_GETFD) != -1 { count += 1 }
    return count
}
