import VhostUserProtocol
import Virtio
import VMMSysUtil

extension VhostUserFrontend {
    /// Connects to the back-end at `path` again (e.g. after it was restarted) and resumes; see
    /// `reconnect(socket:)`.
    ///
    /// - Throws: `.socket` if connecting fails; otherwise as `reconnect(socket:)`.
    public func reconnect(to path: String) throws(FrontendError) {
        let socket: ScmSocket
        do {
            socket = try ScmSocket.connect(path: path)
        } catch { throw .socket(error) }
        try reconnect(socket: socket)
    }

    /// Resumes the session on a new connection, the way QEMU does after a back-end restart:
    /// negotiates again with the features first asked for (the result must equal the old one,
    /// since the rings were laid out for it), shares the same guest memory, hands over the kept
    /// inflight buffer (`SET_INFLIGHT_FD`, when INFLIGHT_SHMFD is negotiated), sets every started
    /// queue up again with its notifiers, kicks it once, and sets DRIVER_OK again if it was set.
    /// While logging (`startLogging()`), the same log is handed over and LOG_ALL set before the
    /// rings, so no write of the new back-end escapes the log.
    ///
    /// Split rings resume at the used index in memory (what the old back-end completed; with an
    /// inflight buffer the new back-end also resubmits what it had in flight). Packed rings resume
    /// only when everything posted was reaped (`.packedRingBusy` otherwise).
    ///
    /// The old connection is dropped first; the queues keep their state and stay usable. A failed
    /// reconnect may simply be tried again.
    /// - Throws: `.featuresChanged`, `.packedRingBusy`; while logging, `.notNegotiated` or
    ///   `.featuresRejected` when the new back-end cannot log; or any error of the requests involved.
    public func reconnect(socket: ScmSocket) throws(FrontendError) {
        channel.poison()
        channel = FrontendChannel(socket: socket, timeout: channel.timeout)
        guard let expected = sessionFeatures, let wanted = wantedFeatures else { return }
        negotiated = nil
        let after = try negotiate(features: wanted.features, protocolFeatures: wanted.protocolFeatures)
        guard after.features == expected else {
            negotiated = nil
            channel.poison()
            throw .featuresChanged(before: expected, after: after.features)
        }
        if !memoryRegions.isEmpty {
            // The new back-end has no region yet: nothing to remove.
            memoryAddedBySlots = false
            try share(memoryRegions, negotiated: after)
        }
        if let inflight, after.protocolFeatures.contains(.inflightSharedMemory) {
            try setInflight(inflight)
        }
        if let dirtyLog {
            // Migrating: the new back-end logs from its first write on, as QEMU's vhost_dev_start
            // does for a device started while logging (the log, then LOG_ALL; the rings below carry
            // VHOST_VRING_F_LOG).
            // The errors of `startLogging()`; this connection is not left half set up.
            guard after.protocolFeatures.contains(.logSharedMemory) else {
                channel.poison()
                throw .notNegotiated(.logSharedMemory)
            }
            guard after.offeredFeatures.contains(.logAll) else {
                channel.poison()
                throw .featuresRejected(status: [])
            }
            try sendLogBase(dirtyLog)
            try sendAcknowledged(.setFeatures(after.features.union(.logAll)))
        }
        for index in queues.keys.sorted() {
            guard let queue = queues[index] else { continue }
            try configure(queue, base: try resumeBase(of: queue))
            try queue.kick()
        }
        if driverReady { try setDriverReady() }
    }

    /// Where the new back-end continues on `queue`.
    func resumeBase(of queue: FrontendQueue) throws(FrontendError) -> UInt32 {
        if case .packed(let packed) = queue.driver {
            guard packed.freeDescriptors == queue.size else { throw .packedRingBusy(index: queue.index) }
            // Nothing in flight: the next slot to fill and the next to complete coincide.
            let position = UInt32(packed.usedOffWrap)
            return position | position << 16
        }
        guard let memory = guestMemory else { throw .noGuestMemory }
        do {
            // used->idx, at offset 2 of the used ring.
            return UInt32(try memory.load(UInt16.self, guestPhysical: queue.addresses.deviceArea + 2))
        } catch { throw .guestMemory(error) }
    }
}
