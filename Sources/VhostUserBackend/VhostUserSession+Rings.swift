import VhostUserProtocol
import VMMSysUtil
import Virtio

extension VhostUserSession {
    /// The ring `index` names, if the device has it.
    func ring(_ index: UInt32, _ request: FrontendRequest) throws(VhostUserError) -> Vring {
        guard index < UInt32(rings.count) else {
            throw .queueIndexOutOfRange(request, index: index, queueCount: rings.count)
        }
        return rings[Int(index)]
    }

    func setVringNum(_ state: VringState) throws(VhostUserError) {
        let ring = try ring(state.index, .setVringNum)
        let maximum = min(device.maxQueueSize, 32768)
        let size = state.num
        guard size >= 1, size <= UInt32(max(maximum, 0)), size & (size - 1) == 0 else {
            throw .invalidQueueSize(index: ring.index, size: size, maximum: maximum)
        }
        try quiesced { () throws(VhostUserError) in
            guard !ring.isStarted else { throw .ringStarted(.setVringNum, index: ring.index) }
            ring.size = Int(size)
        }
    }

    func setVringBase(_ state: VringState) throws(VhostUserError) {
        let ring = try ring(state.index, .setVringBase)
        // Split rings: bits 0-15 are the next avail index; the rest must be zero. Packed rings
        // (vhost-user's encoding): bits 0-14 next avail slot, 15 its wrap counter, 16-30 next used
        // slot, 31 its wrap counter; the slots are checked against the size when the ring starts.
        let packed = (ackedFeatures ?? 0) & VirtioFeatures.ringPacked.rawValue != 0
        guard packed || state.num <= 0xFFFF else { throw .invalidRingBase(index: ring.index, base: state.num) }
        try quiesced { () throws(VhostUserError) in
            guard !ring.isStarted else { throw .ringStarted(.setVringBase, index: ring.index) }
            ring.base = state.num
        }
    }

    func setVringAddress(_ address: VringAddress) throws(VhostUserError) {
        let ring = try ring(address.index, .setVringAddr)
        if address.flags.contains(.log) {
            guard (ackedFeatures ?? 0) & VirtioFeatures.logAll.rawValue != 0 else {
                throw .ringLoggingNotNegotiated(index: ring.index)
            }
            if ring.size > 0 { try checkUsedLogRange(ring, address: address, log: isLogging ? dirtyLog : nil) }
        }
        // Only a change of where the ring lies re-creates the queue; a log flag change keeps it.
        let keepsQueue = ring.isStarted && (ring.address.map { $0.placesTheRingAs(address) } ?? false)
        let changing: QueueChange? = ring.isStarted && !keepsQueue ? .rebuilding : nil
        try quiesced(draining: [ring], changing: changing) { () throws(VhostUserError) in
            let previous = ring.address
            ring.address = address
            do throws(VhostUserError) {
                if keepsQueue {
                    // Only logging changed (QEMU toggles VHOST_VRING_F_LOG when a migration
                    // starts or ends): the queue keeps running as it is, so chains in flight
                    // (including any a device still holds) stay valid; only its log changes.
                    ring.queue?.log = queueLog(for: ring)
                } else if ring.isStarted, let memory {
                    try ring.queue = rebuild(ring, memory: memory)
                    ring.queue?.log = queueLog(for: ring)
                } else {
                    try start(ring)
                }
            } catch {
                ring.address = previous
                throw error
            }
        }
    }

    /// Stops the ring and returns where the driver's next request is (`GET_VRING_BASE`).
    func getVringBase(_ state: VringState) throws(VhostUserError) -> VringState {
        let ring = try ring(state.index, .getVringBase)
        return quiesced(draining: [ring], changing: .stopping) {
            removeSources(ring)
            if var queue = ring.queue.take() {
                ring.base = queue.ring.nextAvailIndex
            }
            ring.started = false
            ring.kick = nil
            ring.kickSet = false
            ring.broken = false
            return VringState(index: state.index, num: ring.base)
        }
    }

    func setVringKick(_ file: VringFileIndex, fd: consuming FileDescriptor?) throws(VhostUserError) {
        let ring = try ring(UInt32(file.index), .setVringKick)
        var notifier: EventNotifier?
        if let fd = fd.take() {
            do {
                notifier = try EventNotifier(waitingOn: fd)
            } catch {
                throw .invalidNotifier(.setVringKick, index: ring.index, systemError(error))
            }
        }
        try quiesced { () throws(VhostUserError) in
            ring.kick = notifier
            ring.kickSet = true
            try start(ring)
        }
    }

    func setVringCall(_ file: VringFileIndex, fd: consuming FileDescriptor?) throws(VhostUserError) {
        let ring = try ring(UInt32(file.index), .setVringCall)
        var notifier: EventNotifier?
        if let fd = fd.take() {
            do {
                notifier = try EventNotifier(notifyingThrough: fd)
            } catch {
                throw .invalidNotifier(.setVringCall, index: ring.index, systemError(error))
            }
        }
        quiesced {
            ring.call = notifier
            // A used-buffer interrupt may have gone to the previous fd (QEMU swaps them when
            // masking): signal once so the driver looks (as libvhost-user does).
            if ring.isStarted { try? notifier?.notify() }
        }
    }

    func setVringErr(_ file: VringFileIndex, fd: consuming FileDescriptor?) throws(VhostUserError) {
        let ring = try ring(UInt32(file.index), .setVringErr)
        var notifier: EventNotifier?
        if let fd = fd.take() {
            do {
                notifier = try EventNotifier(notifyingThrough: fd)
            } catch {
                throw .invalidNotifier(.setVringErr, index: ring.index, systemError(error))
            }
        }
        quiesced { ring.err = notifier }
    }

    func setVringEnable(_ state: VringState) throws(VhostUserError) {
        let ring = try ring(state.index, .setVringEnable)
        guard state.num <= 1 else { throw .invalidEnable(index: ring.index, value: state.num) }
        quiesced { ring.enabled = state.num == 1 }
    }

    /// Starts `ring` if it is stopped and fully configured: size, addresses, kick, memory.
    /// Workers must be parked.
    func start(_ ring: Vring) throws(VhostUserError) {
        guard !ring.isStarted, ring.kickSet, ring.size > 0, let address = ring.address, let memory else { return }
        let features = ackedFeatures ?? 0
        if address.flags.contains(.log) {
            try checkUsedLogRange(ring, address: address, log: isLogging ? dirtyLog : nil)
        }
        var layout: DeviceRing
        do {
            layout = try makeRing(ring, memory: memory, address: address, features: VirtioFeatures(rawValue: features))
        } catch {
            throw .ringSetup(index: ring.index, error)
        }
        var recovered = try recoverInflight(ring, layout: &layout)
        let positioned: DeviceRing
        do {
            positioned = try layout.positioned(at: recovered.base)
        } catch {
            throw .ringSetup(index: ring.index, error)
        }
        let count = recovered.resubmit.count + recovered.packedResubmit.count
        if count > 0 {
            logger.notice("ring \(ring.index): resubmitting \(count) request(s) left in flight")
        }
        let tracker = recovered.tracker.take() ?? .none
        ring.queue = VhostUserQueue(
            index: ring.index, negotiatedFeatures: features, ring: positioned,
            inflight: tracker, resubmit: recovered.resubmit,
            packedResubmit: recovered.packedResubmit, wakeup: workerOfRing[ring.index].wakeup)
        ring.queue?.log = queueLog(for: ring)
        ring.started = true
        ring.startCount &+= 1
        ring.broken = false
    }

    /// What the inflight region says about a ring that starts.
    struct InflightRecovery: ~Copyable {
        var tracker: InflightTracker?
        var base: UInt32
        var resubmit: [UInt16] = []
        var packedResubmit: [InflightPackedQueue.Resubmission] = []
    }

    /// Reads the ring's inflight record, if the front-end set a region: where the previous
    /// back-end left the ring and the chains it left in flight.
    private func recoverInflight(_ ring: Vring, layout: inout DeviceRing) throws(VhostUserError) -> InflightRecovery {
        guard let buffer = inflight, let tracker = buffer.tracker(ring.index, packed: layout.isPacked) else {
            return InflightRecovery(tracker: nil, base: ring.base)
        }
        switch consume tracker {
        case .none:
            return InflightRecovery(tracker: nil, base: ring.base)
        case .split(var record):
            let used = layout.read({ $0.publishedUsedIndex }, { _ in 0 })
            let recovered = try record.recover(queueIndex: ring.index, queueSize: ring.size, deviceUsedIndex: used)
            guard recovered.wasInitialized else { return InflightRecovery(tracker: .split(record), base: ring.base) }
            // The previous back-end's position: every popped request was either completed
            // (counted in used->idx) or is resubmitted now (libvhost-user does the same).
            return InflightRecovery(
                tracker: .split(record), base: UInt32(used &+ UInt16(truncatingIfNeeded: recovered.heads.count)),
                resubmit: recovered.heads)
        case .packed(var record):
            // The front-end cannot know a packed ring's position after a crash (it keeps the base
            // of the last GET_VRING_BASE); the record does.
            let recovery = try record.recover(queueIndex: ring.index, queueSize: ring.size) { slot, wrap in
                layout.read({ _ in false }, { $0.isAvailable(slot: slot, wrapCounter: wrap) })
            }
            guard let recovery else { return InflightRecovery(tracker: .packed(record), base: ring.base) }
            return InflightRecovery(tracker: .packed(record), base: recovery.base, packedResubmit: recovery.resubmit)
        }
    }

    /// The ring of the negotiated layout over `memory`.
    func makeRing(
        _ ring: Vring, memory: GuestMemory, address: VringAddress,
        features: VirtioFeatures
    ) throws(VirtqueueError) -> DeviceRing {
        let addresses = ringAddresses(address)
        if features.contains(.ringPacked) {
            return .packed(try PackedQueue(memory: memory, size: ring.size, addresses: addresses, features: features))
        }
        return .split(try SplitQueue(memory: memory, size: ring.size, addresses: addresses, features: features))
    }

    /// A started ring's queue re-created over `memory` (new table or new addresses), same position.
    /// Split rings resubmit chains whose postponed completion was refused by the quiesce (their
    /// descriptors are still the driver's); packed rings cannot (used entries may have overwritten
    /// them), the driver sees those chains as lost.
    func rebuild(_ ring: Vring, memory: GuestMemory) throws(VhostUserError) -> VhostUserQueue? {
        guard let address = ring.address, let base = ring.queue?.ring.nextAvailIndex,
            let features = ring.queue?.ring.features
        else { return nil }
        let layout: DeviceRing
        do {
            layout = try makeRing(ring, memory: memory, address: address, features: features).positioned(at: base)
        } catch {
            throw .memoryInUse(index: ring.index, error)
        }
        guard let old = ring.queue.take() else { return nil }
        let resubmit = old.pendingResubmissions + (layout.isPacked ? [] : old.abandoned)
        let packedResubmit = old.pendingPackedResubmissions
        return VhostUserQueue(
            index: ring.index, negotiatedFeatures: old.negotiatedFeatures, ring: layout,
            inflight: old.inflight, resubmit: resubmit, packedResubmit: packedResubmit,
            wakeup: workerOfRing[ring.index].wakeup)
    }

    func ringAddresses(_ address: VringAddress) -> RingAddresses {
        RingAddresses(
            descriptorTable: address.descriptorTable, driverArea: address.availableRing,
            deviceArea: address.usedRing, space: .frontendUser)
    }
}

/// The `SystemCallError` inside an error thrown by `EventNotifier`'s adopting initializers.
func systemError(_ error: any Error) -> SystemCallError {
    (error as? SystemCallError) ?? SystemCallError("fstat", .invalidArgument)
}

extension VringAddress {
    /// Whether `other` lays out the same ring (same descriptor, available and used addresses):
    /// what differs, if anything, is the log flag and the log address.
    func placesTheRingAs(_ other: VringAddress) -> Bool {
        index == other.index && descriptorTable == other.descriptorTable && usedRing == other.usedRing
            && availableRing == other.availableRing
    }
}
