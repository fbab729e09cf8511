#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension ScmSocket {
    /// Bounds how long one `send` may block on a peer that does not read (SO_SNDTIMEO): when
    /// nothing can be written for `timeout`, the send throws `.system` with `Errno.wouldBlock`
    /// (bytes of the message may have been written: drop the connection then). `nil` blocks
    /// without limit (the default).
    ///
    /// - Throws: `.system` from `setsockopt`.
    /// Thread-safety: any thread; affects sends that start afterwards.
    public func setSendTimeout(_ timeout: Duration?) throws(ScmSocketError) {
        try setTimeout(SO_SNDTIMEO, timeout, name: "setsockopt(SO_SNDTIMEO)")
    }

    /// Bounds how long one `receive` may block (SO_RCVTIMEO): after `timeout` with nothing to read
    /// it throws `.system` with `Errno.wouldBlock`. `nil` blocks without limit (the default).
    ///
    /// - Throws: `.system` from `setsockopt`.
    /// Thread-safety: any thread; affects receives that start afterwards.
    public func setReceiveTimeout(_ timeout: Duration?) throws(ScmSocketError) {
        try setTimeout(SO_RCVTIMEO, timeout, name: "setsockopt(SO_RCVTIMEO)")
    }

    private func setTimeout(_ option: Int32, _ timeout: Duration?, name: String) throws(ScmSocketError) {
        var value = timeval()
        if let timeout {
            // Rounded up to whole microseconds; a zero timeval would mean "no limit", so at least 1 µs.
            let (seconds, attoseconds) = max(timeout, .zero).components
            var microseconds = (attoseconds + 999_999_999_999) / 1_000_000_000_000
            var wholeSeconds = seconds
            if microseconds >= 1_000_000 {
                wholeSeconds += 1
                microseconds -= 1_000_000
            }
            if wholeSeconds == 0 && microseconds == 0 { microseconds = 1 }
            value.tv_sec = .init(wholeSeconds)
            value.tv_usec = .init(microseconds)
        }
        let fd = descriptor
        do {
            _ = try systemCall(name) {
                setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
            }
        } catch { throw .system(error) }
    }
}
