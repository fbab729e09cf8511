import Virtio

/// Takes frames out of a transmit chain: copies header and frame out of guest memory first (the
/// guest may rewrite its buffers at any time, and the header may span any number of descriptors),
/// then validates the copy.
///
/// Thread-safety: a value type used by one queue worker.
public struct TransmitReader: Sendable {
    /// The header size the driver uses (`netHeaderSize`).
    public let headerSize: Int
    /// The negotiated features (offloads the header may ask for).
    public let features: UInt64

    public init(features: UInt64) {
        self.features = features
        headerSize = netHeaderSize(features: features)
    }

    /// Copies `chain`'s packet into `packet` as a 12-byte header (a legacy 10-byte one is
    /// widened, `num_buffers` 0) followed by the Ethernet frame, and validates it.
    ///
    /// - Returns: the frame length (bytes after the 12-byte header), or the counter that says why
    ///   the chain carries no frame to forward (`counters` also records `txNonzeroBufferCount`).
    /// - Throws: a `VirtqueueError` if the guest rewrote the chain since it was popped.
    @inlinable
    public func read(_ chain: Chain, into packet: UnsafeMutableRawBufferPointer, counters: NetCounters)
        throws(VirtqueueError) -> TransmitResult
    {
        // VIRTIO 1.2 section 2.7.4.2 / 5.1.6.2: transmit buffers are device-readable only.
        guard chain.writableLength == 0 else { return .dropped(.txWritableBuffers) }
        let readable = Int(chain.readableLength)
        guard readable >= headerSize + 14 else { return .dropped(.txTooShort) }
        let frameLength = readable - headerSize
        guard frameLength <= packet.count - NetHeader.size else { return .dropped(.txTooLong) }
        let start = NetHeader.size - headerSize
        let copied = try chain.readReadable(
            into: UnsafeMutableRawBufferPointer(rebasing: packet[start..<start + readable]))
        guard copied == readable else { return .dropped(.txTooShort) }
        if start > 0 {
            // Legacy header: move its 10 bytes to the front and clear num_buffers.
            packet.baseAddress!.copyMemory(from: packet.baseAddress! + start, byteCount: headerSize)
            packet.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        }
        guard let header = NetHeader(UnsafeRawBufferPointer(packet)) else { return .dropped(.txTooShort) }
        if header.transmitProblem(features: features, packetLength: frameLength) != nil {
            return .dropped(.txBadHeader)
        }
        if header.bufferCount != 0 { counters.add(.txNonzeroBufferCount) }
        return .frame(length: frameLength)
    }
}

/// What `TransmitReader.read` found in a chain.
///
/// Thread-safety: a value type.
public enum TransmitResult: Hashable, Sendable {
    /// A valid packet: a 12-byte header and `length` frame bytes.
    case frame(length: Int)
    /// No frame; count this and complete the chain.
    case dropped(NetCounter)
}
