#if !os(Linux)
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif

// FreeBSD and OpenBSD tap(4): /dev/tapN (N from NAME "tapN") carries bare Ethernet frames, one
// queue, no virtio-net header, hence no offloads: the header is zeroed on read, skipped on write.
// macOS has no tap(4): a macOS port would use vmnet.framework instead; opening throws there.
extension TapDevice {
    static func openPlatform(name: String, queues: Int) throws(SystemCallError) -> [TapDevice] {
        #if os(macOS)
        throw SystemCallError("open(tap \(name)): no TAP device on macOS (use vmnet.framework)", .notSupported)
        #else
        guard queues == 1 else { throw SystemCallError("open(/dev/\(name)): one queue only", .notSupported) }
        let raw = try systemCall("open(/dev/\(name))") { open("/dev/\(name)", O_RDWR | O_NONBLOCK | O_CLOEXEC) }
        return [TapDevice(name: name, descriptor: FileDescriptor(adopting: raw), carriesOffloads: false)]
        #endif
    }

    func readPlatform(into packet: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int? {
        guard packet.count > Self.headerSize, let base = packet.baseAddress else { return nil }
        while true {
            let count = read(descriptor.rawValue, base + Self.headerSize, packet.count - Self.headerSize)
            if count >= 0 {
                base.initializeMemory(as: UInt8.self, repeating: 0, count: Self.headerSize)
                return count + Self.headerSize
            }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock { return nil }
            throw SystemCallError("read(tap)", error)
        }
    }

    func writePlatform(_ packet: UnsafeRawBufferPointer) throws(SystemCallError) -> Bool {
        guard packet.count > Self.headerSize, let base = packet.baseAddress else { return false }
        while true {
            if write(descriptor.rawValue, base + Self.headerSize, packet.count - Self.headerSize) >= 0 { return true }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock || error == .noBufferSpace || error.rawValue == EIO { return false }
            throw SystemCallError("write(tap)", error)
        }
    }

    func setAttachedPlatform(_ attached: Bool) throws(SystemCallError) {}

    func setOffloadsPlatform(checksum: Bool, tso4: Bool, tso6: Bool, ecn: Bool) throws(SystemCallError) {}
}
#endif
