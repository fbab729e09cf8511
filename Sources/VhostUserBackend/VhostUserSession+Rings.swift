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
        // Split rings: bits 0-15 are the next avail index; the rest must be zero.
        guard state.num <= 0xFFFF else { throw .invalidRingBase(index: ring.index, base: state.num) }
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
        try quiesced { () throws(VhostUserError) in
            let previous = ring.address
            ring.address = address
            do throws(VhostUserError) {
                if ring.isStarted, let memory {
                    ring.queue = try rebuild(ring, memory: memory)
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
        return withWorkersParked {
            if let queue = ring.queue {
                ring.base = queue.ring.nextAvailIndex
            }
            ring.queue = nil
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
        withWorkersParked {
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
        withWorkersParked { ring.err = notifier }
    }

    func setVringEnable(_ state: VringState) throws(VhostUserError) {
        let ring = try ring(state.index, .setVringEnable)
        guard state.num <= 1 else { throw .invalidEnable(index: ring.index, value: state.num) }
        withWorkersParked { ring.enabled = state.num == 1 }
    }

    /// Starts `ring` if it is stopped and fully configured: size, addresses, kick, memory.
    /// Workers must be parked.
    func start(_ ring: Vring) throws(VhostUserError) {
        guard !ring.isStarted, ring.kickSet, ring.size > 0, let address = ring.address, let memory else { return }
        let features = ackedFeatures ?? 0
        if address.flags.contains(.log) {
            try checkUsedLogRange(ring, address: address, log: isLogging ? dirtyLog : nil)
        }
        var split: SplitQueue
        do {
            split = try SplitQueue(memory: memory, size: ring.size, addresses: ringAddresses(address),
                                   features: VirtioFeatures(rawValue: features))
        } catch {
            throw .ringSetup(index: ring.index, error)
        }
        var tracker = inflight?.queue(ring.index)
        var resubmit: [UInt16] = []
        var base = ring.base
        if var tracked = tracker {
            let used = split.publishedUsedIndex
            let recovered = try tracked.recover(queueIndex: ring.index, queueSize: ring.size, deviceUsedIndex: used)
            if recovered.wasInitialized {
                // The previous back-end's position: every popped request was either completed
                // (counted in used->idx) or is resubmitted now (libvhost-user does the same).
                resubmit = recovered.heads
                base = UInt32(used &+ UInt16(truncatingIfNeeded: resubmit.count))
            }
            tracker = tracked
        }
        do {
            try split.setNextAvailIndex(base)
        } catch {
            throw .ringSetup(index: ring.index, error)
        }
        if !resubmit.isEmpty {
            logger.notice("ring \(ring.index): resubmitting \(resubmit.count) request(s) left in flight")
        }
        ring.queue = VhostUserQueue(index: ring.index, negotiatedFeatures: features, ring: split,
                                    inflight: tracker, resubmit: resubmit)
        ring.queue?.log = queueLog(for: ring)
        ring.started = true
        ring.broken = false
    }

    /// A started ring's queue re-created over `memory` (new table or new addresses), same position.
    func rebuild(_ ring: Vring, memory: GuestMemory) throws(VhostUserError) -> VhostUserQueue? {
        guard let old = ring.queue, let address = ring.address else { return ring.queue }
        var split: SplitQueue
        do {
            split = try SplitQueue(memory: memory, size: ring.size, addresses: ringAddresses(address),
                                   features: old.ring.features)
            try split.setNextAvailIndex(old.ring.nextAvailIndex)
        } catch {
            throw .memoryInUse(index: ring.index, error)
        }
        return VhostUserQueue(index: ring.index, negotiatedFeatures: old.negotiatedFeatures, ring: split,
                              inflight: old.inflight, resubmit: old.pendingResubmissions)
    }

    func ringAddresses(_ address: VringAddress) -> RingAddresses {
        RingAddresses(descriptorTable: address.descriptorTable, driverArea: address.availableRing,
                      deviceArea: address.usedRing, space: .frontendUser)
    }
}

/// The `SystemCallError` inside an error thrown by `EventNotifier`'s adopting initializers.
func systemError(_ error: any Error) -> SystemCallError {
    (error as? SystemCallError) ?? SystemCallError("fstat", .invalidArgument)
}
