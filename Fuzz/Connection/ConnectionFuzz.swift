// Fuzz target for the back-end's connection reading (VhostUserBackend.VhostUserServer.serve with its
// ConnectionReader): a hostile byte stream over a real socket pair, cut anywhere, with or without
// descriptors, ending in end of stream or in a stall that the peer timeout (1 ms) must end.
//
// Input: one flag byte, then the stream. Flag bit 0: stall (keep our end open; the server must
// give up on a partial message by itself, or be stopped while idle) instead of end of stream;
// bit 1: attach an eventfd to the first chunk; bits 2-7: where the stream is cut into two sends
// (a 64th of its length each). Checks, aborting on failure: nothing traps, serve returns, and the
// process' fd count is back where it was once both ends are closed.

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
    let queueCount = 1
    let maxQueueSize = 64
    let configSize = 16

    func process(_ queue: inout VhostUserQueue) throws {
        while let chain = try queue.pop() { try queue.complete(chain, written: 0) }
    }
}

private let silent = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let before = openDescriptorCount()
    do {
        try run(data.pointee, UnsafeRawBufferPointer(start: data + 1, count: size - 1))
    } catch {
        _ = "\(error)"
    }
    if openDescriptorCount() != before { abort() }
    return 0
}

private func run(_ flags: UInt8, _ stream: UnsafeRawBufferPointer) throws {
    let server = VhostUserServer(device: FillDevice(), peerTimeout: .milliseconds(1), logger: silent)
    let (frontend, backend) = try ScmSocket.pair()
    // Replies nobody reads must not block the sends below: the server sheds them (send timeout).
    try frontend.setSendTimeout(.milliseconds(1))
    let cut = min(stream.count, stream.count * Int(flags >> 2) / 64)
    let notifier = try EventNotifier()
    let fds: [Int32] = flags & 2 != 0 ? [notifier.notifyDescriptor] : []
    let first = Array(stream[..<cut]), second = Array(stream[cut...])
    // Everything is written before serving (a fuzz input fits in the socket buffer); a failed
    // send (buffer full) just shortens the stream.
    if first.isEmpty && !fds.isEmpty {
        try? frontend.send(second, fds: fds)
    } else {
        try? frontend.send(first, fds: fds)
        try? frontend.send(second)
    }
    if flags & 1 == 0 {
        _ = shutdown(frontend.descriptor, Int32(SHUT_WR))
        _ = server.serve(backend)
        return
    }
    // A stall: a partial message ends by the peer timeout; a stream that ends between messages
    // leaves the server idle, which only stop() ends.
    let stopper = try JoinableThread {
        usleep(2_000)
        server.stop()
    }
    _ = server.serve(backend)
    stopper.join()
}

private func openDescriptorCount() -> Int {
    var count = 0
    for fd in 0..<1024 where fcntl(Int32(fd), F_GETFD) != -1 { count += 1 }
    return count
}
