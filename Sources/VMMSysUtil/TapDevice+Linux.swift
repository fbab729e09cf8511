#if os(Linux)
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Outside the extension, where TapDevice's own `open`/`read`/`write` do not hide libc's.
private func openTun() -> Int32 { open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC) }
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int { write(fd, buffer, count) }

// Linux tun/tap (Documentation/networking/tuntap.rst): one /dev/net/tun descriptor per queue,
// IFF_VNET_HDR with a 12-byte header (TUNSETVNETHDRSZ), IFF_MULTI_QUEUE when there are several.
extension TapDevice {
    static func openPlatform(name: String, queues: Int) throws(SystemCallError) -> [TapDevice] {
        var flags = Int32(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        if queues > 1 { flags |= Int32(IFF_MULTI_QUEUE) }
        var devices: [TapDevice] = []
        for _ in 0..<queues {
            let raw = try systemCall("open(/dev/net/tun)") { openTun() }
            let descriptor = FileDescriptor(adopting: raw)
            _ = try systemCall("ioctl(TUNSETIFF \(name))") { vmm_tap_set_interface(raw, name, flags) }
            _ = try systemCall("ioctl(TUNSETVNETHDRSZ)") { vmm_tap_set_vnet_header_size(raw, Int32(headerSize)) }
            devices.append(TapDevice(name: name, descriptor: descriptor, carriesOffloads: true, multiQueue: queues > 1))
        }
        return devices
    }

    func readPlatform(into packet: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int? {
        while true {
            let count = systemRead(descriptor.rawValue, packet.baseAddress, packet.count)
            if count >= 0 { return count }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock { return nil }
            throw SystemCallError("read(tap)", error)
        }
    }

    func writePlatform(_ packet: UnsafeRawBufferPointer) throws(SystemCallError) -> Bool {
        while true {
            if systemWrite(descriptor.rawValue, packet.baseAddress, packet.count) >= 0 { return true }
            let error = Errno.current
            if error == .interrupted { continue }
            // EIO: the interface is down (no one configured it yet); the frame is simply lost.
            if error == .wouldBlock || error == .noBufferSpace || error.rawValue == EIO { return false }
            throw SystemCallError("write(tap)", error)
        }
    }

    func setAttachedPlatform(_ attached: Bool) throws(SystemCallError) {
        guard multiQueue else { return }
        _ = try systemCall("ioctl(TUNSETQUEUE)") { vmm_tap_set_queue_attached(descriptor.rawValue, attached ? 1 : 0) }
    }

    func setOffloadsPlatform(checksum: Bool, tso4: Bool, tso6: Bool, ecn: Bool) throws(SystemCallError) {
        var offloads: UInt32 = 0
        if checksum {
            // TSO needs checksum offload (the kernel refuses TSO flags without TUN_F_CSUM).
            offloads |= UInt32(TUN_F_CSUM)
            if tso4 { offloads |= UInt32(TUN_F_TSO4) }
            if tso6 { offloads |= UInt32(TUN_F_TSO6) }
            if ecn && (tso4 || tso6) { offloads |= UInt32(TUN_F_TSO_ECN) }
        }
        _ = try systemCall("ioctl(TUNSETOFFLOAD)") { vmm_tap_set_offload(descriptor.rawValue, offloads) }
    }
}
#endif
