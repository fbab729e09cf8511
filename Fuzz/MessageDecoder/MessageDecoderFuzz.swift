// Fuzz target for the vhost-user message codec (VhostUserProtocol).
//
// Input: byte 0 chooses the decoder (high nibble, mod 4) and how many /dev/null fds arrive with
// the message (low nibble, mod 10: 0-9, so counts above the 8-fd maximum are tried too); the rest
// is header + payload. Checks, aborting on failure:
// - decoding never traps, whatever the bytes;
// - every fd handed to the decoder is closed once the decoded value is gone (none leaked), and
//   the process' fd count did not grow;
// - a decoded request carries exactly the fds its type defines, and re-encoding it yields a
//   message that decodes to the same request.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VhostUserProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let control = data[0]
    let bytes = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let before = openDescriptorCount()
    let fds = openNullDescriptors(Int(control & 0x0F) % 10)
    switch (control >> 4) % 4 {
    case 0: fuzzFrontendRequest(bytes, fds)
    case 1: fuzzBackendRequest(bytes, fds)
    case 2: fuzzReply(bytes, fds)
    default: fuzzHeader(bytes, fds)
    }
    // Nothing else runs in this process between open and here, so an fd number still open is ours.
    for fd in fds where fcntl(fd, F_GETFD) != -1 {
        abort()
    }
    if openDescriptorCount() > before { abort() }
    return 0
}

private func fuzzFrontendRequest(_ bytes: UnsafeRawBufferPointer, _ fds: [Int32]) {
    let body: FrontendMessage
    let needsReply: Bool
    do {
        let message = try Message.decode(bytes: bytes, descriptors: MessageDescriptors(adopting: fds))
        if message.descriptors.count != message.body.descriptorCount { abort() }
        body = message.body
        needsReply = message.needsReply
    } catch {
        _ = error.description
        return
    }
    var encoded: [UInt8] = []
    do {
        try Message.encodeRequest(body, needsReply: needsReply, into: &encoded)
    } catch {
        abort()  // a request we accepted must be one we can send
    }
    let again = openNullDescriptors(body.descriptorCount)
    encoded.withUnsafeBytes { raw in
        do {
            let message = try Message.decode(bytes: raw, descriptors: MessageDescriptors(adopting: again))
            if message.body != body || message.needsReply != needsReply { abort() }
        } catch {
            abort()
        }
    }
}

private func fuzzBackendRequest(_ bytes: UnsafeRawBufferPointer, _ fds: [Int32]) {
    let body: BackendMessage
    do {
        let message = try BackendChannelMessage.decode(bytes: bytes, descriptors: MessageDescriptors(adopting: fds))
        if message.descriptors.count != message.body.descriptorCount { abort() }
        body = message.body
    } catch {
        _ = error.description
        return
    }
    var encoded: [UInt8] = []
    do {
        try Message.encodeRequest(body, into: &encoded)
    } catch {
        abort()
    }
    let again = openNullDescriptors(body.descriptorCount)
    encoded.withUnsafeBytes { raw in
        do {
            let message = try BackendChannelMessage.decode(bytes: raw, descriptors: MessageDescriptors(adopting: again))
            if message.body != body { abort() }
        } catch {
            abort()
        }
    }
}

/// Runs the reply decoder that fits the header's request code (a front-end awaiting that reply).
private func fuzzReply(_ bytes: UnsafeRawBufferPointer, _ fds: [Int32]) {
    let descriptors = MessageDescriptors(adopting: fds)
    guard let header = try? MessageHeader(decoding: bytes) else { return }
    let payload = UnsafeRawBufferPointer(rebasing: bytes[MessageHeader.byteCount...])
    do {
        switch FrontendRequest(rawValue: header.request) {
        case .getVringBase:
            _ = try Reply.vringState(header: header, payload: payload, descriptors: descriptors)
        case .getConfig:
            // The request size is not in the input; derive it so both matching and mismatching
            // sizes are reached.
            _ = try Reply.config(
                requestedSize: max(0, payload.count - 12), header: header, payload: payload, descriptors: descriptors)
        case .setDeviceStateFD:
            var reply = try Reply.deviceState(header: header, payload: payload, descriptors: descriptors)
            _ = reply.takeDescriptor()
        case .getInflightFD:
            var reply = try Reply.inflight(header: header, payload: payload, descriptors: descriptors)
            _ = reply.takeDescriptor()
        case .some(let request):
            _ = try Reply.u64(to: request, header: header, payload: payload, descriptors: descriptors)
        case .none:
            _ = try Reply.u64(
                to: BackendRequest(rawValue: header.request) ?? .configChange, header: header, payload: payload,
                descriptors: descriptors)
        }
    } catch {
        _ = error.description
    }
}

/// Validates the header for every direction; the fds are adopted and dropped.
private func fuzzHeader(_ bytes: UnsafeRawBufferPointer, _ fds: [Int32]) {
    _ = MessageDescriptors(adopting: fds)
    guard let header = try? MessageHeader(decoding: bytes) else { return }
    for direction in [MessageDirection.frontendRequest, .backendReply, .backendRequest, .frontendReply] {
        do {
            let request = try header.validate(direction)
            if request.code != header.request { abort() }
            if Int(header.size) > MessageHeader.maximumPayloadSize { abort() }
        } catch {
            _ = error.description
        }
    }
}

private func openNullDescriptors(_ count: Int) -> [Int32] {
    (0..<count).map { _ in
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if fd < 0 { abort() }
        return fd
    }
}

/// Open descriptors of this process (excluding the one reading the directory).
private func openDescriptorCount() -> Int {
    #if os(Linux)
    let path = "/proc/self/fd"
    #else
    let path = "/dev/fd"
    #endif
    guard let directory = opendir(path) else { abort() }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count
}
