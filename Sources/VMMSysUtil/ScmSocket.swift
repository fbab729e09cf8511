#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform

/// A connected AF_UNIX stream socket that carries bytes and file descriptors (SCM_RIGHTS).
///
/// - Every descriptor it creates or receives is close-on-exec (MSG_CMSG_CLOEXEC where it exists,
///   otherwise `fcntl` right after `recvmsg`).
/// - Sending to a closed peer is `ScmSocketError.peerClosed`, never SIGPIPE.
/// - Received descriptors are validated: truncated control data, a foreign control message, or more
///   descriptors than the caller allows close every descriptor of the message and throw.
/// - `send` and `receive` allocate nothing: control messages are built in buffers preallocated
///   per socket.
/// - The socket is blocking; a receive timeout set with SO_RCVTIMEO surfaces as `.system` with
///   `Errno.wouldBlock`.
///
/// Thread-safety: one thread may send while another receives (each direction has its own control
/// buffer). Two concurrent senders, or two concurrent receivers, are not supported (their bytes
/// would interleave anyway). The socket is closed when the last reference goes.
public final class ScmSocket: @unchecked Sendable {
    private let socket: FileDescriptor
    private let sendControl: UnsafeMutableRawPointer
    private let receiveControl: UnsafeMutableRawPointer

    /// Control space for `ReceivedFileDescriptors.capacity` descriptors, rounded as CMSG_SPACE does.
    private static let controlSpace = vmm_cmsg_space(ReceivedFileDescriptors.capacity * MemoryLayout<Int32>.size)
    /// MSG_CMSG_CLOEXEC, or 0 where received descriptors need `fcntl` instead.
    private static let receiveFlags = vmm_msg_cmsg_cloexec()
    private static let sendFlags = vmm_msg_nosignal()

    /// The descriptor number, e.g. to poll for readability. Valid while this object is alive.
    public var descriptor: Int32 { socket.rawValue }

    /// Takes ownership of a connected AF_UNIX stream socket (e.g. one inherited as `--fd N`).
    ///
    /// Makes it close-on-exec and, on Darwin, sets SO_NOSIGPIPE. Neither can fail on an open
    /// socket; if `adopting` is not one, every later call fails with a `.system` error instead.
    public convenience init(adopting socket: consuming FileDescriptor) {
        _ = try? setDescriptorFlag(socket.rawValue, FD_CLOEXEC)
        _ = try? suppressSigPipe(socket.rawValue)
        self.init(configured: socket)
    }

    /// Wraps a socket that is already close-on-exec and SIGPIPE-proof.
    init(configured socket: consuming FileDescriptor) {
        self.socket = socket
        // One allocation per socket for both directions' control buffers; aligned for cmsghdr.
        let buffer = UnsafeMutableRawPointer.allocate(
            byteCount: 2 * Self.controlSpace, alignment: MemoryLayout<cmsghdr>.alignment)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 2 * Self.controlSpace)
        self.sendControl = buffer
        self.receiveControl = buffer + Self.controlSpace
    }

    deinit {
        sendControl.deallocate()
    }

    /// A connected pair (socketpair), both close-on-exec.
    ///
    /// - Throws: `ScmSocketError.system`.
    public static func pair() throws(ScmSocketError) -> (ScmSocket, ScmSocket) {
        let fds: (Int32, Int32)
        do {
            fds = try makeStreamSocketPair()
        } catch { throw .system(error) }
        return (
            ScmSocket(configured: FileDescriptor(adopting: fds.0)),
            ScmSocket(configured: FileDescriptor(adopting: fds.1))
        )
    }

    /// Connects to a listening socket at `path`.
    ///
    /// - Throws: `.pathTooLong` / `.invalidPath` (nothing is truncated), `.system` (e.g. ENOENT,
    ///   ECONNREFUSED, EACCES from `connect`).
    public static func connect(path: String) throws(ScmSocketError) -> ScmSocket {
        let address = try UnixSocketAddress(path: path)
        let socket: FileDescriptor
        do {
            socket = try makeStreamSocket()
        } catch { throw .system(error) }
        do {
            try connectSocket(socket.rawValue, to: address)
        } catch { throw .system(error) }
        return ScmSocket(configured: socket)
    }

    /// Sends every byte of `bytes`, with `fds` attached to the first byte.
    ///
    /// Partial sends are continued until everything is written (the descriptors travel only with
    /// the first chunk); EINTR is retried. The descriptors are only borrowed: the caller still
    /// owns (and closes) its copies. Allocates nothing.
    ///
    /// - Throws: `.peerClosed` (EPIPE, ECONNRESET), `.tooManyDescriptors` (more than
    ///   `ReceivedFileDescriptors.capacity`), `.descriptorsWithoutBytes`, `.system`.
    public func send(_ bytes: UnsafeRawBufferPointer, fds: UnsafeBufferPointer<Int32>) throws(ScmSocketError) {
        guard fds.count <= ReceivedFileDescriptors.capacity else {
            throw .tooManyDescriptors(count: fds.count, limit: ReceivedFileDescriptors.capacity)
        }
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            if fds.isEmpty { return }
            throw .descriptorsWithoutBytes
        }
        let fd = socket.rawValue
        var sent = 0
        while sent < bytes.count {
            let attachDescriptors = sent == 0 && !fds.isEmpty
            let controlLength = attachDescriptors ? vmm_cmsg_space(fds.count * MemoryLayout<Int32>.size) : 0
            if attachDescriptors { writeRightsMessage(fds, length: controlLength) }
            var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: base + sent), iov_len: bytes.count - sent)
            let count: Int
            do {
                count = try systemCall("sendmsg") {
                    withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr()
                        message.msg_iov = vectorPointer
                        message.msg_iovlen = 1
                        if attachDescriptors {
                            message.msg_control = sendControl
                            message.msg_controllen = .init(controlLength)
                        }
                        return sendmsg(fd, &message, Self.sendFlags)
                    }
                }
            } catch {
                if error.errno == .brokenPipe || error.errno == .connectionReset { throw .peerClosed }
                throw .system(error)
            }
            // A stream sendmsg of a non-empty buffer returns at least 1 byte or fails; 0 would mean
            // no progress, so stop rather than spin.
            guard count > 0 else { throw .peerClosed }
            sent += count
        }
    }

    /// Sends `bytes` with `fds` attached (convenience over the buffer-pointer form; the arrays are
    /// not copied).
    ///
    /// - Throws: as `send(_:fds:)` with buffer pointers.
    public func send(_ bytes: [UInt8], fds: [Int32] = []) throws(ScmSocketError) {
        var failure: ScmSocketError?
        bytes.withUnsafeBytes { raw in
            fds.withUnsafeBufferPointer { descriptors in
                do throws(ScmSocketError) { try send(raw, fds: descriptors) } catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// Reads once (one `recvmsg`): up to `buffer.count` bytes and the descriptors sent with them.
    ///
    /// End of stream is always `.peerClosed`, never a zero count, so `byteCount` is at least 1.
    /// Every descriptor received is close-on-exec and owned by the result. If the message carries
    /// more than `maxFDs` descriptors (at most `ReceivedFileDescriptors.capacity` are ever
    /// accepted), the control data was truncated, or a control message is not SCM_RIGHTS, every
    /// descriptor that arrived is closed and the call throws; the bytes read are lost, so the
    /// stream should then be dropped. Allocates nothing unless it throws.
    ///
    /// - Throws: `.peerClosed`, `.tooManyDescriptors`, `.controlDataTruncated`,
    ///   `.unexpectedControlMessage`, `.system` (EINVAL for an empty buffer; `Errno.wouldBlock` on
    ///   an SO_RCVTIMEO timeout or a non-blocking socket with nothing to read).
    public func receive(into buffer: UnsafeMutableRawBufferPointer, maxFDs: Int) throws(ScmSocketError)
        -> ReceivedMessage
    {
        var fds = ReceivedFileDescriptors()
        let count = try receiveOnce(into: buffer, limit: maxFDs, appendingTo: &fds)
        return ReceivedMessage(byteCount: count, fds: fds)
    }

    /// Reads until `buffer` is full, collecting the descriptors of every chunk (at most `maxFDs` in
    /// all). An empty buffer reads nothing.
    ///
    /// - Throws: `.peerClosed` if the stream ends before the buffer is full; otherwise as
    ///   `receive(into:maxFDs:)`. On any error every descriptor collected so far is closed.
    public func receiveExactly(into buffer: UnsafeMutableRawBufferPointer, maxFDs: Int) throws(ScmSocketError)
        -> ReceivedFileDescriptors
    {
        var fds = ReceivedFileDescriptors()
        var filled = 0
        while filled < buffer.count {
            // Safe: filled < buffer.count, so the slice is a non-empty part of the caller's buffer.
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])
            filled += try receiveOnce(into: rest, limit: maxFDs, appendingTo: &fds)
        }
        return fds
    }

    /// The credentials of the process at the other end (as of when it connected).
    ///
    /// - Throws: `.system` from `getpeereid`.
    public func peerCredentials() throws(ScmSocketError) -> PeerCredentials {
        do {
            return try PeerCredentials(socket: socket.rawValue)
        } catch { throw .system(error) }
    }

    // MARK: - Internals

    /// Fills the send control buffer with one SOL_SOCKET/SCM_RIGHTS message carrying `fds`.
    private func writeRightsMessage(_ fds: UnsafeBufferPointer<Int32>, length: Int) {
        sendControl.initializeMemory(as: UInt8.self, repeating: 0, count: length)
        // Safe: CMSG_FIRSTHDR of a control buffer of `length` >= CMSG_SPACE(4) bytes is its start,
        // and the payload (fds.count * 4 <= capacity * 4 bytes) fits in the preallocated space.
        let header = sendControl.assumingMemoryBound(to: cmsghdr.self)
        header.pointee.cmsg_level = SOL_SOCKET
        header.pointee.cmsg_type = Int32(SCM_RIGHTS)
        header.pointee.cmsg_len = .init(vmm_cmsg_len(fds.count * MemoryLayout<Int32>.size))
        if let source = fds.baseAddress {
            UnsafeMutableRawPointer(vmm_cmsg_data(header))
                .copyMemory(from: source, byteCount: fds.count * MemoryLayout<Int32>.size)
        }
    }

    /// One `recvmsg`: bytes into `buffer`, descriptors appended to `fds` (at most `limit` in `fds`
    /// in all). Returns the byte count (> 0).
    func receiveOnce(
        into buffer: UnsafeMutableRawBufferPointer, limit: Int, appendingTo fds: inout ReceivedFileDescriptors
    ) throws(ScmSocketError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            throw .system(SystemCallError("recvmsg", .invalidArgument))
        }
        let fd = socket.rawValue
        let control = receiveControl
        let space = Self.controlSpace
        var vector = iovec(iov_base: base, iov_len: buffer.count)
        var message = msghdr()
        let count: Int
        do {
            count = try systemCall("recvmsg") {
                withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = control
                    message.msg_controllen = .init(space)
                    return recvmsg(fd, &message, Self.receiveFlags)
                }
            }
        } catch {
            if error.errno == .connectionReset { throw .peerClosed }
            throw .system(error)
        }
        // msg_iov now dangles (it pointed at `vector` inside the closure); only the control fields
        // and flags are read below.
        message.msg_iov = nil
        message.msg_iovlen = 0
        try collectDescriptors(&message, limit: limit, into: &fds)
        if count == 0 { throw .peerClosed }
        return count
    }

    /// Takes ownership of every descriptor in the control data, then validates: on any problem all
    /// of `fds` is closed and the error thrown.
    private func collectDescriptors(
        _ message: inout msghdr, limit: Int, into fds: inout ReceivedFileDescriptors
    ) throws(ScmSocketError) {
        let before = fds.count
        var overflow = 0
        var foreign: (level: Int32, type: Int32)?
        // The kernel reports how much control data it wrote; never trust more than our buffer
        // (macOS has been seen reporting a cmsg_len past the buffer when it truncates).
        let controlEnd = UnsafeRawPointer(receiveControl) + min(Int(message.msg_controllen), Self.controlSpace)
        var next = message.msg_controllen > 0 ? vmm_cmsg_firsthdr(&message) : nil
        while let header = next {
            if header.pointee.cmsg_level == SOL_SOCKET && header.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                let data = UnsafeRawPointer(vmm_cmsg_data(header))
                let available = max(0, controlEnd - data)
                let payload = min(vmm_cmsg_payload_length(header), available)
                for index in 0..<(payload / MemoryLayout<Int32>.size) {
                    // Safe: index * 4 + 4 <= payload <= bytes left in our control buffer.
                    let received = data.loadUnaligned(fromByteOffset: index * MemoryLayout<Int32>.size, as: Int32.self)
                    if !fds.append(received) {
                        _ = systemClose(received)
                        overflow += 1
                    }
                }
            } else {
                foreign = (header.pointee.cmsg_level, header.pointee.cmsg_type)
            }
            next = vmm_cmsg_nxthdr(&message, header)
        }

        // Without MSG_CMSG_CLOEXEC the descriptors arrive inheritable: fix that before anything else.
        if Self.receiveFlags == 0 {
            for index in before..<fds.count {
                guard let received = fds.descriptor(at: index) else { continue }
                do {
                    try setDescriptorFlag(received, FD_CLOEXEC)
                } catch {
                    fds.closeAll()
                    throw .system(error)
                }
            }
        }
        if message.msg_flags & Int32(MSG_CTRUNC) != 0 {
            fds.closeAll()
            throw .controlDataTruncated
        }
        if let foreign {
            fds.closeAll()
            throw .unexpectedControlMessage(level: foreign.level, type: foreign.type)
        }
        let allowed = min(max(0, limit), ReceivedFileDescriptors.capacity)
        if fds.count + overflow > allowed {
            let total = fds.count + overflow
            fds.closeAll()
            throw .tooManyDescriptors(count: total, limit: allowed)
        }
    }
}

/// `connect(2)` on a Unix socket; an interrupted connect did not connect on these sockets, so it is
/// retried (EISCONN from a retry means the first attempt completed after all).
func connectSocket(_ fd: Int32, to address: UnixSocketAddress) throws(SystemCallError) {
    while true {
        let result = address.withSocketAddress { pointer, length in connect(fd, pointer, length) }
        if result == 0 { return }
        let error = Errno.current
        if error == .interrupted { continue }
        if error.rawValue == EISCONN { return }
        throw SystemCallError("connect", error)
    }
}
