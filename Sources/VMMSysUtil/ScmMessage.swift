/// Bytes read from an `ScmSocket` with the descriptors that came with them, owned by the caller:
/// what `receive(maxBytes:maxFDs:)` and `receiveExactly(byteCount:maxFDs:)` return, the
/// counterpart of `send(_:fds:)` with arrays.
///
/// ```swift
/// var message = try socket.receive(maxBytes: 64, maxFDs: 2)
/// guard let fd = message.fds.take(at: 0) else { ... }
/// let notifier = try EventNotifier(waitingOn: fd)
/// ```
///
/// Every descriptor not taken from `fds` is closed when the message goes away.
/// Thread-safety: a non-copyable value with one owner.
public struct ScmMessage: ~Copyable, Sendable {
    /// The bytes read (at least 1).
    public var bytes: [UInt8]
    /// The descriptors that arrived with them (close-on-exec, closed unless taken).
    public var fds: ReceivedFileDescriptors

    /// Pairs bytes with descriptors (e.g. to build a message in a test).
    public init(bytes: [UInt8], fds: consuming ReceivedFileDescriptors) {
        self.bytes = bytes
        self.fds = fds
    }
}

extension ScmSocket {
    /// Reads once (one `recvmsg`): up to `maxBytes` bytes and the descriptors sent with them, as
    /// an owned message. Allocates the byte array; `receive(into:maxFDs:)` reads into a buffer of
    /// yours without allocating.
    ///
    /// - Throws: as `receive(into:maxFDs:)` (`.system` with `.invalidArgument` if `maxBytes` < 1).
    public func receive(maxBytes: Int, maxFDs: Int) throws(ScmSocketError) -> ScmMessage {
        var fds = ReceivedFileDescriptors()
        let bytes = try readBytes(count: max(0, maxBytes), exactly: false, maxFDs: maxFDs, into: &fds)
        return ScmMessage(bytes: bytes, fds: fds)
    }

    /// Reads exactly `byteCount` bytes (as many `recvmsg` calls as it takes) and every descriptor
    /// that came with them (at most `maxFDs` in all), as an owned message.
    ///
    /// - Throws: as `receiveExactly(into:maxFDs:)`; `.system` with `.invalidArgument` if
    ///   `byteCount` < 1.
    public func receiveExactly(byteCount: Int, maxFDs: Int) throws(ScmSocketError) -> ScmMessage {
        var fds = ReceivedFileDescriptors()
        let bytes = try readBytes(count: max(0, byteCount), exactly: true, maxFDs: maxFDs, into: &fds)
        return ScmMessage(bytes: bytes, fds: fds)
    }

    /// Fills a new array of `count` bytes (or its first part, unless `exactly`), collecting
    /// descriptors into `fds` (closed by its owner on error).
    private func readBytes(
        count: Int, exactly: Bool, maxFDs: Int, into fds: inout ReceivedFileDescriptors
    ) throws(ScmSocketError) -> [UInt8] {
        guard count > 0 else { throw .system(SystemCallError("recvmsg", .invalidArgument)) }
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        var failure: ScmSocketError?
        bytes.withUnsafeMutableBytes { buffer in
            repeat {
                // Safe: filled < buffer.count, so the slice is a non-empty part of the array.
                let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])
                do throws(ScmSocketError) {
                    filled += try receiveOnce(into: rest, limit: maxFDs, appendingTo: &fds)
                } catch {
                    failure = error
                    return
                }
            } while exactly && filled < buffer.count
        }
        if let failure {
            fds.closeAll()
            throw failure
        }
        bytes.removeLast(count - filled)
        return bytes
    }
}
