import VMMSysUtil
import Virtio

/// What one started ring logs while the front-end migrates the guest (vhost-user "Migration":
/// `VHOST_F_LOG_ALL` acked and a log installed with `SET_LOG_BASE`).
///
/// The framework calls it where guest memory is written, so a device cannot forget a page: at
/// completion, for the bytes the device declares written into the chain's writable buffers; at
/// publication, for the used-ring entries, `flags` and `idx`; after a serve, for the
/// notification-suppression fields. Ring writes are logged only when the ring asked for it with
/// `VHOST_VRING_F_LOG`: split rings at `log_guest_addr` (the guest-physical address of the used
/// ring). The specification does not say how packed rings log their used descriptors; here each
/// publication marks the whole descriptor ring (16 × size bytes, one or two pages: used slots
/// follow the driver's order, so a superset is the simple safe answer), and `log_guest_addr`
/// names the device event-suppression area.
///
/// Thread-safety: immutable; `DirtyLog` marks atomically, so any thread completing a chain may log.
struct QueueLog: @unchecked Sendable {
    let log: DirtyLog
    /// Split ring: `log_guest_addr` when the ring set `VHOST_VRING_F_LOG`, else nil.
    let usedRing: UInt64?
    /// Packed ring with `VHOST_VRING_F_LOG`: the descriptor ring's guest-physical address and the
    /// device event-suppression area's (`log_guest_addr`); nil otherwise.
    let packedRing: (descriptors: UInt64, deviceEvent: UInt64)?
    let queueSize: Int
    /// `SET_LOG_FD`: signalled after each publication that logged something.
    let notifier: EventNotifier?

    /// Bytes at `log_guest_addr` a ring writes: the split used ring (flags, idx, `queueSize`
    /// entries of 8 bytes, avail_event) or the packed device event-suppression area (4).
    static func loggedLength(queueSize: Int, packed: Bool) -> UInt64 { packed ? 4 : 6 + 8 * UInt64(queueSize) }

    /// Logs the first `written` bytes of `chain`'s writable part (clamped to what it has).
    @inline(__always)
    func completed(_ chain: Chain, written: UInt32) {
        log.markWritten(chain, written: min(written, chain.writableLength))
    }

    /// Logs `count` used entries written from free-running used index `first`, and the header.
    func published(from first: UInt16, count: Int) {
        if let usedRing {
            // flags and idx (used ring offset 0).
            log.mark(guestPhysical: usedRing, length: 4)
            let entries = min(count, queueSize)
            let start = Int(first) & (queueSize - 1)
            let head = min(entries, queueSize - start)
            log.mark(guestPhysical: usedRing + 4 + 8 * UInt64(start), length: 8 * UInt64(head))
            // The rest wrapped around to the ring's start.
            log.mark(guestPhysical: usedRing + 4, length: 8 * UInt64(entries - head))
        } else if let packedRing {
            log.mark(guestPhysical: packedRing.descriptors, length: 16 * UInt64(queueSize))
        }
        // A reader that went away is the front-end's problem; the bits are in the log anyway.
        try? notifier?.notify()
    }

    /// Logs `used->flags` and `avail_event` (split), or the device event-suppression area
    /// (packed): what notification suppression writes.
    func notificationFieldsWritten() {
        if let packedRing { log.mark(guestPhysical: packedRing.deviceEvent, length: 4) }
        guard let usedRing else { return }
        log.mark(guestPhysical: usedRing, length: 2)
        log.mark(guestPhysical: usedRing + 4 + 8 * UInt64(queueSize), length: 2)
    }
}
