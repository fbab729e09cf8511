import VhostUserProtocol
import VMMSysUtil
import Virtio

/// The largest dirty log accepted: 64 GiB of bitmap covers 2 PiB of guest-physical space.
let maximumLogSize: UInt64 = 1 << 36

extension VhostUserSession {
    /// Whether writes are being logged: `VHOST_F_LOG_ALL` acked and a log installed.
    public var isLogging: Bool {
        (ackedFeatures ?? 0) & VirtioFeatures.logAll.rawValue != 0 && dirtyLog != nil
    }

    /// `SET_LOG_BASE` (with `LOG_SHMFD`): maps the log from its fd at `mmap_offset`, after checking
    /// it covers guest memory and every ring's used-ring log range, and installs it.
    func setLogBase(_ description: LogDescription, fd: consuming FileDescriptor) throws(VhostUserError) {
        let required = memory.map(DirtyLog.requiredSize(for:)) ?? 0
        guard description.size >= max(1, required), description.size <= maximumLogSize else {
            throw .invalidLog(size: description.size, offset: description.offset, required: required)
        }
        let mapping: MemoryMapping
        do {
            // fstat-checked (a range beyond the fd's end is refused, never mapped to fault later).
            mapping = try MemoryMapping(fd: fd.rawValue, size: description.size, offset: description.offset)
        } catch {
            throw .logMapping(error)
        }
        let log = DirtyLog(mapping: mapping)
        for ring in rings {
            guard let address = ring.address, address.flags.contains(.log), ring.size > 0 else { continue }
            try checkUsedLogRange(ring, address: address, log: log)
        }
        quiesced {
            dirtyLog = log
            refreshLogging()
        }
    }

    /// `SET_LOG_FD`: the fd to signal after logging.
    func setLogFD(_ fd: consuming FileDescriptor) throws(VhostUserError) {
        let notifier: EventNotifier
        do {
            notifier = try EventNotifier(notifyingThrough: fd)
        } catch {
            throw .invalidLogNotifier(systemError(error))
        }
        quiesced {
            logNotifier = notifier
            refreshLogging()
        }
    }

    /// Gives every started ring its logging state. Workers must be parked.
    func refreshLogging() {
        for ring in rings { ring.queue?.log = queueLog(for: ring) }
    }

    /// What `ring` logs now, or nil when nothing is logged.
    func queueLog(for ring: Vring) -> QueueLog? {
        guard isLogging, let dirtyLog, let address = ring.address else { return nil }
        let logsRing = address.flags.contains(.log)
        var usedRing: UInt64?
        var packedRing: (descriptors: UInt64, deviceEvent: UInt64)?
        if isPacked {
            // The ring started, so its descriptor ring translated (it is guest memory).
            if logsRing, let descriptors = memory?.guestPhysicalAddress(userAddress: address.descriptorTable) {
                packedRing = (descriptors, address.logGuestAddress)
            }
        } else if logsRing {
            usedRing = address.logGuestAddress
        }
        return QueueLog(
            log: dirtyLog, usedRing: usedRing, packedRing: packedRing, queueSize: ring.size,
            notifier: logNotifier)
    }

    /// Whether the rings are packed (`VIRTIO_F_RING_PACKED` acked).
    var isPacked: Bool { (ackedFeatures ?? 0) & VirtioFeatures.ringPacked.rawValue != 0 }

    /// Refuses a used-ring log range (`log_guest_addr` with `VHOST_VRING_F_LOG`) that is not guest
    /// memory, or that `log` (when given) does not cover.
    func checkUsedLogRange(_ ring: Vring, address: VringAddress, log: DirtyLog?) throws(VhostUserError) {
        let length = QueueLog.loggedLength(queueSize: ring.size, packed: isPacked)
        let start = address.logGuestAddress
        if let memory, !memory.contains(guestPhysical: start, length: length) {
            throw .invalidRingLogAddress(
                index: ring.index, address: start, length: length, reason: "is not guest memory")
        }
        if let log, !log.covers(guestPhysical: start, length: length) {
            throw .invalidRingLogAddress(
                index: ring.index, address: start, length: length,
                reason: "is beyond the \(log.byteCount)-byte dirty log")
        }
    }

    /// Refuses a memory table the active log does not cover (QEMU grows the log before it grows
    /// memory, so only a broken front-end meets this).
    func checkLogCovers(_ memory: GuestMemory) throws(VhostUserError) {
        guard isLogging, let dirtyLog else { return }
        let required = DirtyLog.requiredSize(for: memory)
        guard UInt64(dirtyLog.byteCount) >= required else {
            throw .invalidLog(size: UInt64(dirtyLog.byteCount), offset: 0, required: required)
        }
    }

    /// `SET_BACKEND_REQ_FD`: opens the back-end channel (REPLY_ACK on it when negotiated) and
    /// hands it to the device, replacing any earlier one.
    func setBackendChannel(_ fd: consuming FileDescriptor) throws(VhostUserError) {
        let channel = try BackendChannel(
            socket: ScmSocket(adopting: fd), acknowledged: replyAckNegotiated,
            replyTimeout: max(options.backendReplyTimeout, .milliseconds(1)))
        backendChannel?.close()
        backendChannel = channel
        device.backendChannelChanged(channel)
    }
}
