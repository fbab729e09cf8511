import VhostUserProtocol
import Virtio
import VMMSysUtil

/// The dirty log a front-end shares with its back-end while it migrates the guest: shared memory
/// (its fd went to the back-end with `SET_LOG_BASE`) read through `DirtyLog`.
///
/// Thread-safety: immutable; `log` reads and clears atomically, concurrently with the back-end.
public final class FrontendDirtyLog: @unchecked Sendable {
    /// The bitmap: `log.takeDirtyPages()` reads and clears it.
    public let log: DirtyLog
    /// The shared memory behind it (owns the fd).
    public let memory: SharedMemory
    /// The size given to the back-end in `SET_LOG_BASE` (again after a reconnect).
    let size: UInt64

    init(memory: SharedMemory, size: UInt64) {
        self.memory = memory
        self.size = size
        log = DirtyLog(mapping: memory.mapping)
    }
}

extension VhostUserFrontend {
    /// Starts dirty logging as QEMU does when a migration begins: creates a zeroed log covering
    /// guest memory (rounded up to 8-byte words), `SET_LOG_BASE` with its fd (the back-end answers
    /// once it mapped it), `SET_FEATURES` with `VHOST_F_LOG_ALL` added, and `SET_VRING_ADDR` with
    /// `VHOST_VRING_F_LOG` for every started queue. Queues started later log too.
    ///
    /// - Throws: `.notNegotiated(.logSharedMemory)`; `.featuresRejected` when the back-end does not
    ///   offer LOG_ALL (status 0); `.noGuestMemory`; `.system` when the log cannot be created; a
    ///   transport or ack error.
    @discardableResult
    public func startLogging() throws(FrontendError) -> FrontendDirtyLog {
        let negotiated = try requireNegotiated()
        try require(.logSharedMemory)
        guard negotiated.offeredFeatures.contains(.logAll) else { throw .featuresRejected(status: []) }
        guard let guestMemory else { throw .noGuestMemory }
        let size = (DirtyLog.requiredSize(for: guestMemory) + 7) & ~7
        let memory: SharedMemory
        do {
            memory = try SharedMemory(size: Int(size))
        } catch {
            throw .system(SystemCallError("create dirty log (\(error))", .outOfMemory))
        }
        let log = FrontendDirtyLog(memory: memory, size: size)
        try sendLogBase(log)
        try setLogging(log)
        return log
    }

    /// Stops dirty logging: `SET_FEATURES` without LOG_ALL, then `SET_VRING_ADDR` without the log
    /// flag for every started queue (QEMU's order). The log stays readable.
    ///
    /// - Throws: a transport or ack error.
    public func stopLogging() throws(FrontendError) {
        try setLogging(nil)
    }

    /// `SET_LOG_BASE` with `log`'s fd; returns once the back-end answered that it mapped it.
    func sendLogBase(_ log: FrontendDirtyLog) throws(FrontendError) {
        try channel.send(.setLogBase(LogDescription(size: log.size, offset: 0)), fds: [log.memory.descriptor])
        // The reply says the log is mapped; its value means nothing (QEMU ignores it, libvhost-user
        // echoes mmap_size), so only its form is checked.
        _ = try channel.receiveReply(to: .setLogBase) { (header, payload, fds) throws(ProtocolError) in
            try Reply.u64(to: .setLogBase, header: header, payload: payload, descriptors: fds)
        }
    }

    private func setLogging(_ log: FrontendDirtyLog?) throws(FrontendError) {
        var features = try requireNegotiated().features
        if log != nil { features.insert(.logAll) }
        dirtyLog = log
        try sendAcknowledged(.setFeatures(features))
        for index in queues.keys.sorted() {
            guard let queue = queues[index] else { continue }
            try sendAcknowledged(.setVringAddr(try vringAddress(of: queue)))
        }
    }

    /// The `SET_VRING_ADDR` payload of `queue`: our user addresses, the used ring's guest-physical
    /// address as log address, and `VHOST_VRING_F_LOG` while logging.
    func vringAddress(of queue: FrontendQueue) throws(FrontendError) -> VringAddress {
        let q = UInt64(queue.size)
        let parts = queue.addresses
        let driverBytes: UInt64 = queue.isPacked ? 4 : 6 + 2 * q
        let deviceBytes: UInt64 = queue.isPacked ? 4 : 6 + 8 * q
        return VringAddress(
            index: UInt32(queue.index), flags: dirtyLog == nil ? [] : .log,
            descriptorTable: try userAddress(ofGuestPhysical: parts.descriptorTable, length: 16 * q),
            usedRing: try userAddress(ofGuestPhysical: parts.deviceArea, length: deviceBytes),
            availableRing: try userAddress(ofGuestPhysical: parts.driverArea, length: driverBytes),
            logGuestAddress: parts.deviceArea)
    }
}
