import Testing
import VMMTestSupport
import VhostUserProtocol
import VMMSysUtil

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens `count` real descriptors (/dev/null, close-on-exec) to hand to a decoder.
func openDescriptors(_ count: Int) -> [Int32] {
    (0..<count).map { _ in open("/dev/null", O_RDONLY | O_CLOEXEC) }
}

/// Builds payload bytes field by field in native byte order, independently of the codec.
struct Bytes {
    var bytes: [UInt8] = []

    func u8(_ value: UInt8) -> Bytes { appending(value) }
    func u16(_ value: UInt16) -> Bytes { appending(value) }
    func u32(_ value: UInt32) -> Bytes { appending(value) }
    func u64(_ value: UInt64) -> Bytes { appending(value) }
    func zeros(_ count: Int) -> Bytes {
        var copy = self
        copy.bytes += [UInt8](repeating: 0, count: count)
        return copy
    }
    func raw(_ more: [UInt8]) -> Bytes {
        var copy = self
        copy.bytes += more
        return copy
    }

    private func appending<T: FixedWidthInteger>(_ value: T) -> Bytes {
        var copy = self
        withUnsafeBytes(of: value) { copy.bytes += $0 }
        return copy
    }
}

/// A whole message: 12-byte header (size = payload count unless given) and payload.
func wire(_ request: UInt32, flags: UInt32 = 0x1, size: UInt32? = nil, _ payload: Bytes = Bytes()) -> [UInt8] {
    Bytes().u32(request).u32(flags).u32(size ?? UInt32(payload.bytes.count)).bytes + payload.bytes
}

/// Decodes a front-end request from `bytes` with `descriptors` fresh fds and returns its body and
/// how many fds it carried; the message (and its fds) is dropped before returning.
func decodeBody(_ bytes: [UInt8], descriptors: Int = 0) throws(ProtocolError) -> (FrontendMessage, Int, Bool) {
    let fds = openDescriptors(descriptors)
    let result: Result<(FrontendMessage, Int, Bool), ProtocolError> = bytes.withUnsafeBytes { raw in
        do throws(ProtocolError) {
            let message = try Message.decode(bytes: raw, descriptors: MessageDescriptors(adopting: fds))
            return .success((message.body, message.descriptors.count, message.needsReply))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

/// Expects decoding `bytes` with `descriptors` fresh fds to fail with `expected`, and every fd to
/// be closed afterwards.
func expectRefused(
    _ bytes: [UInt8], descriptors: Int = 0, _ expected: ProtocolError,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let before = openFileDescriptorCount()
    #expect(throws: expected, sourceLocation: sourceLocation) {
        _ = try decodeBody(bytes, descriptors: descriptors)
    }
    #expect(openFileDescriptorCount() == before, "descriptors leaked", sourceLocation: sourceLocation)
}

/// Encodes a front-end request with the codec.
func encoded(_ message: FrontendMessage, needsReply: Bool = false) throws(ProtocolError) -> [UInt8] {
    var buffer: [UInt8] = []
    try Message.encodeRequest(message, needsReply: needsReply, into: &buffer)
    return buffer
}

/// Splits a buffer into its parsed header and a copy of its payload.
func split(_ bytes: [UInt8]) throws(ProtocolError) -> (MessageHeader, [UInt8]) {
    let header = bytes.withUnsafeBytes { raw in Result { () throws(ProtocolError) in try MessageHeader(decoding: raw) }
    }
    return (try header.get(), Array(bytes.dropFirst(MessageHeader.byteCount)))
}

/// Runs `body` on a private copy of `bytes`; unlike `Array.withUnsafeBytes` it passes typed
/// errors and non-copyable results through.
func withBytes<R: ~Copyable>(
    _ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(ProtocolError) -> R
) throws(ProtocolError) -> R {
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
    defer { storage.deallocate() }
    storage.copyBytes(from: bytes)
    return try body(UnsafeRawBufferPointer(rebasing: storage[0..<bytes.count]))
}

/// Whether an optional owned fd is empty (closing it if not).
func isNone(_ descriptor: consuming FileDescriptor?) -> Bool {
    switch consume descriptor {
    case .none: true
    case .some: false
    }
}

/// The number of an optional owned fd, without taking it.
func number(of descriptor: borrowing FileDescriptor?) -> Int32? {
    switch descriptor {
    case .some(let fd): fd.rawValue
    case .none: nil
    }
}
