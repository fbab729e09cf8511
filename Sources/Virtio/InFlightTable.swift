/// Per-buffer-id bookkeeping a queue keeps in its own memory (never in guest memory): whether an id
/// is in flight, how many ring slots it occupies and how many bytes the device may write into it.
/// Allocated once at configure; the queue caches the raw pointers so pop/push touch no ARC.
final class InFlightTable {
    /// 0 = not in flight; otherwise the chain's descriptor (slot) count.
    let slots: UnsafeMutablePointer<UInt16>
    let writable: UnsafeMutablePointer<UInt32>
    let count: Int

    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: 0, count: count)
        writable = .allocate(capacity: count)
        writable.initialize(repeating: 0, count: count)
    }

    func reset() {
        slots.update(repeating: 0, count: count)
    }

    deinit {
        slots.deallocate()
        writable.deallocate()
    }
}
