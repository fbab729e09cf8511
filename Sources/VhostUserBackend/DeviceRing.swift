import Virtio

/// A started ring of either layout, owned by its queue worker.
///
/// The layout is fixed when the ring starts (`VIRTIO_F_RING_PACKED` acked or not), so each
/// operation is one predictable branch, then the layout's own inlined code: no dynamic dispatch
/// on the per-chain path. Non-copyable, so a ring has one owner and its in-flight bookkeeping one
/// writer. The layout is held in place (an optional per layout, exactly one set) rather than as an
/// enum payload: an enum's payload can only be changed by moving it out and back in, which copies
/// the whole queue (and retains and releases its references) on every pop and completion, the
/// largest cost of the poll-mode profile before; an optional's is mutated where it lies. Reads go
/// through the same in-place access (`read` is mutating): a borrowing `switch` over a non-copyable
/// optional copies the whole ring to the stack first (a memcpy of some 200 bytes per pop), and
/// the ring's size and layout, fixed at start, are stored beside it.
///
/// Thread-safety: not shared; moved between the control thread and the worker only under the
/// worker's park handshake.
struct DeviceRing: ~Copyable {
    private var splitRing: SplitQueue?
    private var packedRing: PackedQueue?
    /// The ring size (`SET_VRING_NUM`).
    let size: Int
    /// Whether the layout is packed.
    let isPacked: Bool
    /// Set by `disableNotifications()`, cleared by `enableNotifications()`.
    private var notificationsOff = false

    /// A split ring.
    static func split(_ ring: consuming SplitQueue) -> DeviceRing {
        let size = ring.size
        return DeviceRing(splitRing: ring, packedRing: nil, size: size, isPacked: false)
    }
    /// A packed ring.
    static func packed(_ ring: consuming PackedQueue) -> DeviceRing {
        let size = ring.size
        return DeviceRing(splitRing: nil, packedRing: ring, size: size, isPacked: true)
    }

    /// Runs `split` or `packed` on the ring in place.
    @inline(__always)
    mutating func apply<R, E: Error>(
        _ split: (inout SplitQueue) throws(E) -> R,
        _ packed: (inout PackedQueue) throws(E) -> R
    ) throws(E) -> R {
        // Exactly one is set (the initialisers are the only writers of the optionals themselves).
        if !isPacked { return try split(&splitRing!) }
        return try packed(&packedRing!)
    }

    /// Reads a property of either layout, in place (see the type's comment: why mutating).
    @inline(__always)
    mutating func read<R>(_ split: (borrowing SplitQueue) -> R, _ packed: (borrowing PackedQueue) -> R) -> R {
        apply({ split($0) }, { packed($0) })
    }

    @inline(__always)
    mutating func pop() throws(VirtqueueError) -> Chain? {
        try apply(
            { (ring) throws(VirtqueueError) in try ring.pop() }, { (ring) throws(VirtqueueError) in try ring.pop() })
    }

    @inline(__always)
    mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        try apply(
            { (ring) throws(VirtqueueError) in try ring.pop(into: chains) },
            { (ring) throws(VirtqueueError) in try ring.pop(into: chains) })
    }

    @inline(__always)
    mutating func stage(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        try apply(
            { (ring) throws(VirtqueueError) in try ring.stage(chain, written: written) },
            { (ring) throws(VirtqueueError) in try ring.stage(chain, written: written) })
    }

    @inline(__always)
    mutating func publishUsed() {
        apply({ $0.publishUsed() }, { $0.publishUsed() })
    }

    mutating func needsNotification() -> Bool {
        apply({ $0.needsNotification() }, { $0.needsNotification() })
    }

    mutating func enableNotifications() -> Bool {
        notificationsOff = false
        return apply({ $0.enableNotifications() }, { $0.enableNotifications() })
    }

    /// Asks the driver not to notify. Only the device writes the suppression field, so once it is
    /// written nothing needs writing again: a poll-mode worker calls this every turn, and each
    /// store would take the cache line the driver polls the used index on.
    mutating func disableNotifications() {
        guard !notificationsOff else { return }
        notificationsOff = true
        apply({ $0.disableNotifications() }, { $0.disableNotifications() })
    }

    /// The ring moved to a vhost-user ring base (`SET_VRING_BASE`, split or packed encoding).
    ///
    /// - Throws: `VirtqueueError.invalidRingBase` if the base cannot be valid for this ring.
    consuming func positioned(at base: UInt32) throws(VirtqueueError) -> DeviceRing {
        var ring = self
        try ring.apply(
            { (ring) throws(VirtqueueError) in try ring.setNextAvailIndex(base) },
            { (ring) throws(VirtqueueError) in try ring.setNextAvailIndex(base) })
        return ring
    }

    /// The vhost-user ring base (`GET_VRING_BASE`): split or packed encoding.
    var nextAvailIndex: UInt32 { mutating get { read({ $0.nextAvailIndex }, { $0.nextAvailIndex }) } }
    var features: VirtioFeatures { mutating get { read({ $0.features }, { $0.features }) } }
    var memory: GuestMemory { mutating get { read({ $0.memory }, { $0.memory }) } }
    /// Guest memory and the queue's chain storage: what a held chain points into.
    var chainReferences: [AnyObject] {
        mutating get { read({ [$0.memory, $0.chainStorage] }, { [$0.memory, $0.chainStorage] }) }
    }
    /// Whether a chain is available that `pop()` has not taken.
    var hasAvailable: Bool { mutating get { read({ $0.hasAvailable }, { $0.hasAvailable }) } }
}
