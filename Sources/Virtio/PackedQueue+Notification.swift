import CVMMPlatform

extension PackedQueue {
    /// Writes the device event-suppression area: `flags`, and with DESC the slot we expect next.
    @inlinable @inline(__always)
    func writeDeviceEvent(_ flags: UInt16) {
        if flags == PackedEventFlag.desc {
            let offWrap = nextAvail | (availWrap ? 0x8000 : 0)
            vmm_store_relaxed_u16(deviceEvent, offWrap.littleEndian)
        }
        vmm_store_release_u16(deviceEvent + 2, flags.littleEndian)
    }

    public mutating func needsNotification() -> Bool {
        // Full fence: used flags must be visible before reading the driver's event suppression.
        vmm_fence_seq_cst()
        // NOTIFY_ON_EMPTY: the driver wants to hear when we run dry, suppression or not.
        if notifyOnEmpty && inFlightCount == 0 && !isAvailable(nextAvailFlags()) { return true }
        let flags = UInt16(littleEndian: vmm_load_acquire_u16(driverEvent + 2)) & 3
        guard eventIndex else { return flags != PackedEventFlag.disable }
        let old = signalledUsed
        let new = nextUsed
        let valid = signalledValid
        signalledUsed = new
        signalledValid = true
        if flags == PackedEventFlag.disable { return false }
        // ENABLE, or the reserved value 3 (erring on the side of a spurious interrupt).
        if flags != PackedEventFlag.desc { return true }
        guard valid else { return true }
        let offWrap = UInt16(littleEndian: vmm_load_relaxed_u16(driverEvent))
        var offset = offWrap & 0x7fff
        var previous = old
        let q = UInt16(truncatingIfNeeded: size)
        // Unfold the ring positions onto one 16-bit line (DPDK's vhost_need_event for packed).
        if new <= previous { previous &-= q }
        if (offWrap & 0x8000 != 0) != usedWrap { offset &-= q }
        return vringNeedEvent(eventIndex: offset, new: new, old: previous)
    }

    public mutating func enableNotifications() -> Bool {
        notificationsEnabled = true
        writeDeviceEvent(eventIndex ? PackedEventFlag.desc : PackedEventFlag.enable)
        // Full fence: the driver must see the request before we re-check the ring.
        vmm_fence_seq_cst()
        return isAvailable(nextAvailFlags())
    }

    /// The flags of the next slot to pop (acquire: the rest of the descriptor is read after).
    @inline(__always)
    func nextAvailFlags() -> UInt16 {
        // Safe: nextAvail < size; the ring holds 16 × size bytes.
        UInt16(littleEndian: vmm_load_acquire_u16(ring + Int(nextAvail) &* 16 + 14))
    }

    /// Whether the driver has made a chain available that `pop()` has not taken (acquire load of
    /// the next slot's flags; no side effect).
    public var hasAvailable: Bool { isAvailable(nextAvailFlags()) }

    public mutating func disableNotifications() {
        notificationsEnabled = false
        writeDeviceEvent(PackedEventFlag.disable)
    }

}
