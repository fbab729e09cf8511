import VhostUserProtocol
import VMMSysUtil

/// The shared buffer in which a back-end records in-flight requests (INFLIGHT_SHMFD), as
/// `GET_INFLIGHT_FD` returned it. The front-end keeps it across back-end restarts and hands it to
/// the next back-end with `SET_INFLIGHT_FD`, so requests in flight at a crash can be resubmitted.
///
/// Thread-safety: immutable; the mapped bytes belong to the back-end's protocol.
public final class InflightRegion: @unchecked Sendable {
    /// Size, offset, queue count and queue size, as the back-end described them.
    public let description: InflightDescription
    /// The buffer, mapped here (`[mmapOffset, mmapOffset + mmapSize)` of the fd).
    public let mapping: MemoryMapping
    let file: FileDescriptor

    init(description: InflightDescription, file: consuming FileDescriptor, mapping: MemoryMapping) {
        self.description = description
        self.file = file
        self.mapping = mapping
    }

    /// The fd (close-on-exec, owned by this object).
    public var descriptor: Int32 { file.rawValue }
}

extension VhostUserFrontend {
    /// Asks the back-end for an inflight buffer for `queueCount` queues of `queueSize` with
    /// `GET_INFLIGHT_FD`, maps it and keeps it in `inflight`. Send it back with `setInflight` before
    /// starting the queues (QEMU sends both, in that order).
    ///
    /// - Throws: `.notNegotiated(.inflightSharedMemory)`; `.invalidInflightBuffer` when the reply
    ///   describes no buffer; `.protocolViolation` for a malformed reply (e.g. a missing fd);
    ///   `.mapping` when the fd cannot back the described range.
    @discardableResult
    public func getInflight(queueCount: Int, queueSize: Int) throws(FrontendError) -> InflightRegion {
        try require(.inflightSharedMemory)
        let request = InflightDescription(
            mmapSize: 0, mmapOffset: 0, queueCount: UInt16(clamping: queueCount),
            queueSize: UInt16(clamping: queueSize))
        try channel.send(.getInflightFD(request))
        var reply = try channel.receiveReply(to: .getInflightFD) { (header, payload, fds) throws(ProtocolError) in
            try Reply.inflight(header: header, payload: payload, descriptors: fds)
        }
        let description = reply.description
        guard description.mmapSize > 0, let file = reply.takeDescriptor() else {
            throw .invalidInflightBuffer(description)
        }
        let mapping: MemoryMapping
        do {
            mapping = try SharedMemory.map(received: file, size: description.mmapSize, offset: description.mmapOffset)
        } catch { throw .mapping(error) }
        let buffer = InflightRegion(description: description, file: file, mapping: mapping)
        inflight = buffer
        return buffer
    }

    /// Hands `buffer` (from this or an earlier connection's `getInflight`) to the back-end with
    /// `SET_INFLIGHT_FD` and keeps it in `inflight`.
    ///
    /// - Throws: `.notNegotiated(.inflightSharedMemory)`, or a transport/ack error.
    public func setInflight(_ buffer: InflightRegion) throws(FrontendError) {
        try require(.inflightSharedMemory)
        try sendAcknowledged(.setInflightFD(buffer.description), fds: [buffer.descriptor])
        inflight = buffer
    }
}
