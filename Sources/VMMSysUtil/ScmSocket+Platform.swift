#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform

// The platform differences of Unix stream sockets, in one place: atomic close-on-exec at creation
// and accept (everything but Darwin), SIGPIPE suppression per socket (Darwin), sun_len (BSDs).

#if os(Linux) && canImport(Glibc)
// Glibc imports the socket types as an enum.
private let hasAtomicCloseOnExec = true
private let streamType = Int32(SOCK_STREAM.rawValue)
private let closeOnExecType = Int32(SOCK_CLOEXEC.rawValue)
#elseif os(Linux) || os(FreeBSD) || os(OpenBSD) || os(NetBSD)
private let hasAtomicCloseOnExec = true
private let streamType = SOCK_STREAM
private let closeOnExecType = SOCK_CLOEXEC
#else
// Darwin: no SOCK_CLOEXEC; fcntl right after creation (see configureSocket).
private let hasAtomicCloseOnExec = false
private let streamType = SOCK_STREAM
private let closeOnExecType: Int32 = 0
#endif

/// Makes a descriptor we just created close-on-exec (where that could not be done atomically) and,
/// on Darwin, immune to SIGPIPE (it has no MSG_NOSIGNAL).
func configureSocket(_ fd: Int32) throws(SystemCallError) {
    if !hasAtomicCloseOnExec { try setDescriptorFlag(fd, FD_CLOEXEC) }
    try suppressSigPipe(fd)
}

/// SO_NOSIGPIPE where the platform has it; elsewhere MSG_NOSIGNAL on each send does the job.
func suppressSigPipe(_ fd: Int32) throws(SystemCallError) {
    #if canImport(Darwin)
    var on: Int32 = 1
    _ = try systemCall("setsockopt(SO_NOSIGPIPE)") {
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, socklen_t(MemoryLayout<Int32>.size))
    }
    #endif
}

/// A new AF_UNIX stream socket, close-on-exec.
func makeStreamSocket() throws(SystemCallError) -> FileDescriptor {
    let fd = try systemCall("socket") { socket(AF_UNIX, streamType | closeOnExecType, 0) }
    let created = FileDescriptor(adopting: fd)
    try configureSocket(created.rawValue)
    return created
}

/// A connected pair of AF_UNIX stream sockets, both close-on-exec. The caller owns both numbers
/// (closed here if configuring them fails).
func makeStreamSocketPair() throws(SystemCallError) -> (Int32, Int32) {
    var pair: (Int32, Int32) = (-1, -1)
    _ = try withUnsafeMutableBytes(of: &pair) { raw throws(SystemCallError) in
        // Safe: a tuple of two Int32 is laid out as int[2].
        let fds = raw.baseAddress!.assumingMemoryBound(to: Int32.self)
        return try systemCall("socketpair") { socketpair(AF_UNIX, streamType | closeOnExecType, 0, fds) }
    }
    let first = FileDescriptor(adopting: pair.0)
    let second = FileDescriptor(adopting: pair.1)
    try configureSocket(first.rawValue)
    try configureSocket(second.rawValue)
    return (first.release(), second.release())
}

/// Accepts one connection, close-on-exec (accept4 where it exists), retrying connections that were
/// aborted before we got to them.
func acceptConnection(_ listener: Int32) throws(SystemCallError) -> FileDescriptor {
    while true {
        #if os(Linux)
        let fd = vmm_accept4_cloexec(listener)
        #elseif os(FreeBSD) || os(OpenBSD) || os(NetBSD)
        let fd = accept4(listener, nil, nil, closeOnExecType)
        #else
        let fd = accept(listener, nil, nil)
        #endif
        if fd == -1 {
            let error = Errno.current
            if error == .interrupted || error.rawValue == ECONNABORTED { continue }
            throw SystemCallError("accept", error)
        }
        let connection = FileDescriptor(adopting: fd)
        try configureSocket(connection.rawValue)
        return connection
    }
}

/// Sets `sun_len` on the systems whose sockaddr has it.
func setSocketAddressLength(_ address: inout sockaddr_un) {
    #if canImport(Darwin) || os(FreeBSD) || os(OpenBSD) || os(NetBSD)
    address.sun_len = UInt8(MemoryLayout<sockaddr_un>.size)
    #endif
}
