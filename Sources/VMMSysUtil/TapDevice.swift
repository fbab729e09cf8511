#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One queue of a TAP interface: a descriptor that reads and writes whole Ethernet frames of a
/// host network interface, each behind a 12-byte virtio-net header (`struct virtio_net_hdr_v1`
/// layout) whatever the system: where the kernel speaks that header (Linux IFF_VNET_HDR) frames
/// pass through with their offload fields; elsewhere (BSD tap(4)) the header is zeroed on read
/// and dropped on write, and `carriesOffloads` is false.
///
/// Each system's opening lives in its own file: `TapDevice+Linux.swift` (/dev/net/tun,
/// IFF_MULTI_QUEUE for several queues), `TapDevice+BSD.swift` (FreeBSD/OpenBSD /dev/tapN, one
/// queue). macOS has no TAP device in the box: a port there would sit on vmnet.framework
/// (`vmnet_read`/`vmnet_write` of whole frames, no offloads); opening one throws `.notSupported`.
///
/// Thread-safety: `read` and `write` may be called from different threads (one reader and one
/// writer per queue); `setAttached` and `setOffloads` by one thread at a time; the descriptor is
/// closed when the device is released.
public final class TapDevice: @unchecked Sendable {
    /// Bytes of the header in front of every frame in `read` and `write` buffers.
    public static let headerSize = 12
    /// The interface name the kernel chose or confirmed.
    public let name: String
    /// Whether the header's checksum/segmentation fields reach the kernel and back (Linux).
    public let carriesOffloads: Bool
    let descriptor: FileDescriptor
    /// One of several queues of the interface (Linux IFF_MULTI_QUEUE).
    let multiQueue: Bool
    /// Queues start attached (the kernel's default). Changed only by `setAttached`, whose callers
    /// are ordered (a queue worker, or the control thread while the workers are parked).
    private var isAttached = true

    init(name: String, descriptor: consuming FileDescriptor, carriesOffloads: Bool, multiQueue: Bool = false) {
        self.name = name
        self.descriptor = descriptor
        self.carriesOffloads = carriesOffloads
        self.multiQueue = multiQueue
    }

    /// The descriptor, for a poller (readable: a frame is waiting). Owned by the device.
    public var pollDescriptor: Int32 { descriptor.rawValue }

    /// Opens `queues` queues of the TAP interface `name` (created if it does not exist, when the
    /// process may), non-blocking and close-on-exec.
    ///
    /// - Throws: `SystemCallError` from open/ioctl (`EPERM` without CAP_NET_ADMIN for a new
    ///   interface; `.notSupported` where the system has no TAP device, or several queues on
    ///   BSD).
    public static func open(name: String, queues: Int) throws(SystemCallError) -> [TapDevice] {
        try openPlatform(name: name, queues: max(1, queues))
    }

    /// Reads one frame into `packet` (header first).
    ///
    /// - Returns: the bytes (header + frame), or nil when no frame is waiting.
    /// - Throws: `SystemCallError` from read(2) (other than EAGAIN/EINTR).
    public func read(into packet: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int? {
        try readPlatform(into: packet)
    }

    /// Writes one packet (header + frame).
    ///
    /// - Returns: false when the interface cannot take it now (EAGAIN, ENOBUFS, interface down):
    ///   the caller drops and counts the frame.
    /// - Throws: `SystemCallError` for any other write(2) error.
    public func write(_ packet: UnsafeRawBufferPointer) throws(SystemCallError) -> Bool {
        try writePlatform(packet)
    }

    /// Attaches or detaches this queue (Linux IFF_MULTI_QUEUE): the kernel spreads the host's
    /// frames over the attached queues only, so a queue whose guest ring is not in use must be
    /// detached or the frames steered to it are lost. No-op with one queue or where queues do not exist.
    ///
    /// - Throws: `SystemCallError` from the ioctl.
    public func setAttached(_ attached: Bool) throws(SystemCallError) {
        guard attached != isAttached else { return }
        try setAttachedPlatform(attached)
        isAttached = attached
    }

    /// Lets the kernel hand over frames with these offloads pending (what the guest accepts:
    /// `checksum` needs GUEST_CSUM, `tso4`/`tso6`/`ecn` the GUEST_TSO* features). No-op where
    /// offloads are not carried.
    ///
    /// - Throws: `SystemCallError` from the ioctl.
    public func setOffloads(checksum: Bool, tso4: Bool, tso6: Bool, ecn: Bool) throws(SystemCallError) {
        try setOffloadsPlatform(checksum: checksum, tso4: tso4, tso6: tso6, ecn: ecn)
    }
}
