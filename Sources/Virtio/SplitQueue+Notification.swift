import CVMMPlatform

extension SplitQueue {
    @inlinable @inline(__always)
    func writeAvailEvent() {
        // avail_event sits after the used ring: used + 4 + 8 × size, 2-aligned (used is 4-aligned).
        vmm_store_relaxed_u16(used + 4 + size &* 8, lastAvail.littleEndian)
    }

    public mutating func needsNotification() -> Bool {
        // Full fence: the used index store must be visible before reading the driver's wishes.
        vmm_fence_seq_cst()
        // NOTIFY_ON_EMPTY: the driver wants to hear when we run dry, suppression or not.
        if notifyOnEmpty && inFlightCount == 0
            && UInt16(littleEndian: vmm_load_acquire_u16(avail + 2)) == lastAvail
        {
            return true
        }
        guard eventIndex else {
            return UInt16(littleEndian: vmm_load_relaxed_u16(avail)) & SplitRingFlag.noInterrupt == 0
        }
        let old = signalledUsed
        let new = usedIndex
        let valid = signalledValid
        signalledUsed = new
        signalledValid = true
        guard valid else { return true }
        let usedEvent = UInt16(littleEndian: vmm_load_relaxed_u16(avail + 4 + size &* 2))
        return vringNeedEvent(eventIndex: usedEvent, new: new, old: old)
    }

    public mutating func enableNotifications() -> Bool {
        notificationsEnabled = true
        if eventIndex {
            writeAvailEvent()
        } else {
            vmm_store_relaxed_u16(used, UInt16(0).littleEndian)
        }
        // Full fence: the driver must see the request before we re-check, or a kick could be lost.
        vmm_fence_seq_cst()
        return UInt16(littleEndian: vmm_load_acquire_u16(avail + 2)) != lastAvail
    }

    /// Whether the driver has made a chain available that `pop()` has not taken (acquire load of
    /// the available index; no side effect).
    public var hasAvailable: Bool {
        UInt16(littleEndian: vmm_load_acquire_u16(avail + 2)) != lastAvail
    }

    public mutating func disableNotifications() {
        notificationsEnabled = false
        // With EVENT_IDX, kicks stop by no longer advancing avail_event; used->flags stays 0.
        if !eventIndex {
            vmm_store_relaxed_u16(used, SplitRingFlag.noNotify.littleEndian)
        }
    }
}
