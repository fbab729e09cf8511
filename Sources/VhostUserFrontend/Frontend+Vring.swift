import VhostUserProtocol
import Virtio
import VMMSysUtil

extension VhostUserFrontend {
    /// The `SET_VRING_BASE` value of a packed ring that starts fresh: slot 0 on both sides, both
    /// wrap counters 1 (the packed encoding of `SET_VRING_BASE` in the vhost-user specification).
    static let packedStartBase: UInt32 = 0x8000_8000

    /// Sets up ring `index` in guest memory at guest-physical `ringAddress` (64-byte aligned,
    /// `FrontendQueue.ringBytes(size:packed:)` bytes, zeroed by this call) and starts it, in QEMU's
    /// order: `SET_VRING_NUM`, `SET_VRING_BASE`, `SET_VRING_ADDR` (our user addresses; the log
    /// address is the used ring's guest-physical address), `SET_VRING_CALL`, `SET_VRING_ERR`,
    /// `SET_VRING_KICK` (each with a new notifier's fd) and, when PROTOCOL_FEATURES was acked,
    /// `SET_VRING_ENABLE` 1. The layout is packed iff RING_PACKED was negotiated.
    ///
    /// - Parameters:
    ///   - index: the ring's index (below the back-end's queue count).
    ///   - size: the ring's size in descriptors (a power of two).
    ///   - ringAddress: where the ring lives, in guest-physical addresses.
    ///   - startIndex: split rings: the available/used index to start at (e.g. the base a
    ///     previous `stopQueue` returned). Packed rings always start at slot 0.
    /// - Throws: `.negotiationState`, `.noGuestMemory`, `.queueIndexOutOfRange` (beyond
    ///   `GET_QUEUE_NUM`, or above 255), `.queueAlreadyStarted`, `.driverQueue` (size not 1-32768,
    ///   or not a power of two for split rings; placement outside memory or misaligned), notifier
    ///   errors, or a transport/ack error.
    public func startQueue(index: Int, size: Int, ringAddress: UInt64, startIndex: UInt16 = 0)
        throws(FrontendError) -> FrontendQueue
    {
        let negotiated = try requireNegotiated()
        guard let memory = guestMemory else { throw .noGuestMemory }
        let limit = min(negotiated.queueCount ?? 256, 256)
        guard index >= 0, index < limit else { throw .queueIndexOutOfRange(index: index, queueCount: limit) }
        guard queues[index] == nil else { throw .queueAlreadyStarted(index) }
        let packed = negotiated.features.contains(.ringPacked)
        // Virtio's limits (split: a power of two); checked here so nothing is sent for a bad size.
        guard size >= 1, size <= 32768, packed || size & (size - 1) == 0 else {
            throw .driverQueue(.configuration(.invalidQueueSize(size)))
        }
        guard ringAddress & 63 == 0 else {
            throw .driverQueue(.configuration(.misalignedRing(.descriptorTable, address: ringAddress)))
        }
        let addresses = FrontendQueue.layout(at: ringAddress, size: size, packed: packed)
        let queue = try FrontendQueue(
            index: index, size: size, addresses: addresses, memory: memory,
            features: negotiated.features, startIndex: packed ? 0 : startIndex)
        try configure(queue, base: packed ? Self.packedStartBase : UInt32(startIndex))
        queues[index] = queue
        return queue
    }

    /// Sends the ring's size, base, addresses and notifiers, then enables it.
    func configure(_ queue: FrontendQueue, base: UInt32) throws(FrontendError) {
        let ring = UInt32(queue.index)
        let slot = UInt8(truncatingIfNeeded: queue.index)
        let address = try vringAddress(of: queue)
        try sendAcknowledged(.setVringNum(VringState(index: ring, num: UInt32(queue.size))))
        try sendAcknowledged(.setVringBase(VringState(index: ring, num: base)))
        try sendAcknowledged(.setVringAddr(address))
        try sendAcknowledged(
            .setVringCall(VringFileIndex(index: slot, hasFile: true)),
            fds: [queue.callNotifier.notifyDescriptor])
        try sendAcknowledged(
            .setVringErr(VringFileIndex(index: slot, hasFile: true)),
            fds: [queue.errorNotifier.notifyDescriptor])
        try sendAcknowledged(
            .setVringKick(VringFileIndex(index: slot, hasFile: true)),
            fds: [queue.kickNotifier.waitDescriptor])
        if try requireNegotiated().features.contains(.protocolFeatures) {
            try sendAcknowledged(.setVringEnable(VringState(index: ring, num: 1)))
        }
        queue.isStarted = true
    }

    /// Stops `queue`: `SET_VRING_ENABLE` 0 (when PROTOCOL_FEATURES was acked), then
    /// `GET_VRING_BASE`, after which the back-end no longer touches the ring. The queue is
    /// forgotten (its index may be started again) but stays usable for reaping what completed.
    ///
    /// - Returns: the back-end's resume point (split: next available index in bits 0-15; packed:
    ///   the `SET_VRING_BASE` encoding of the vhost-user specification).
    /// - Throws: `.vringStateMismatch` if the reply names another ring, or a transport/ack error.
    @discardableResult
    public func stopQueue(_ queue: FrontendQueue) throws(FrontendError) -> UInt32 {
        let negotiated = try requireNegotiated()
        let ring = UInt32(queue.index)
        if queues[queue.index] === queue { queues[queue.index] = nil }
        queue.isStarted = false
        if negotiated.features.contains(.protocolFeatures) {
            try sendAcknowledged(.setVringEnable(VringState(index: ring, num: 0)))
        }
        try channel.send(.getVringBase(VringState(index: ring, num: 0)))
        let state = try channel.receiveReply(to: .getVringBase) { (header, payload, fds) throws(ProtocolError) in
            try Reply.vringState(header: header, payload: payload, descriptors: fds)
        }
        guard state.index == ring else {
            channel.poison()
            throw .vringStateMismatch(expectedIndex: ring, receivedIndex: state.index)
        }
        return state.num
    }
}
