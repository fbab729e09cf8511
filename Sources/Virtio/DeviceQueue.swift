/// The device side of a virtqueue, either layout.
///
/// Typical worker loop: `disableNotifications()`, drain with `pop()` / `push(_:written:)`, then
/// `enableNotifications()`; if it returns true, drain again; finally signal the driver once if
/// `needsNotification()` says so.
///
/// Thread-safety: a queue is a value owned by one worker thread at a time.
public protocol DeviceQueue: ~Copyable {
    /// The queue size (number of descriptors).
    var size: Int { get }
    /// The first error that broke the queue, or nil while it is usable.
    var brokenReason: VirtqueueError? { get }
    /// The next available chain, or nil if the driver has made none available.
    ///
    /// - Throws: a `VirtqueueError` if the driver's ring or chain is invalid; the queue is then
    ///   broken and every later `pop()` throws the same error.
    mutating func pop() throws(VirtqueueError) -> Chain?
    /// Pops up to `chains.count` chains into `chains` (initialising its first elements); returns
    /// how many. A burst: the chains are written where the caller keeps them, so a device that
    /// pops several before using any pays no copy of each through a return value.
    ///
    /// - Throws: only when no chain was popped, as `pop()`. An invalid chain after the first ends
    ///   the burst early (the chains before it are returned, in flight); the queue is then broken
    ///   and the next call throws.
    mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int
    /// Completes `chain` with `written` bytes written into its writable part, and publishes it.
    ///
    /// - Throws: `.notInFlight` or `.writtenExceedsWritable` (device bugs); nothing is published.
    mutating func push(_ chain: Chain, written: UInt32) throws(VirtqueueError)
    /// Writes a used entry without publishing it; `publishUsed()` publishes all staged entries at once.
    ///
    /// - Throws: as `push`.
    mutating func stage(_ chain: Chain, written: UInt32) throws(VirtqueueError)
    /// Makes every staged used entry visible to the driver (one release store).
    mutating func publishUsed()
    /// Whether the driver wants a used-buffer notification for what was published since the last
    /// call (EVENT_IDX / NO_INTERRUPT). Issues the full fence the spec requires first.
    mutating func needsNotification() -> Bool
    /// Asks the driver for available-buffer notifications again, then (after a full fence) reports
    /// whether buffers became available meanwhile, which the caller must then drain.
    mutating func enableNotifications() -> Bool
    /// Tells the driver that no available-buffer notifications are needed (the device is polling).
    mutating func disableNotifications()
    /// The vhost-user vring base (`GET_VRING_BASE` reply): see `setNextAvailIndex(_:)`.
    var nextAvailIndex: UInt32 { get }
    /// Sets the position from a vhost-user vring base (`SET_VRING_BASE`) and forgets in-flight buffers.
    ///
    /// - Throws: `.invalidRingBase` if the value cannot be valid for this queue.
    mutating func setNextAvailIndex(_ value: UInt32) throws(VirtqueueError)
}

extension DeviceQueue where Self: ~Copyable {
    /// `pop(into:)` by repeated `pop()` (a broken queue keeps throwing, so an error after the
    /// first chain is thrown by the next call).
    public mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        try popEach(into: chains) { () throws(VirtqueueError) in try pop() }.count
    }

    /// Whether the queue is broken (a `pop()` threw).
    public var isBroken: Bool { brokenReason != nil }
}

/// Fills `chains` from `next` until it returns nil or `chains` is full: a burst pop made of single
/// pops, for queues without a native `pop(into:)`.
///
/// - Returns: how many chains were initialised, and the error `next` threw after the first one
///   (nil if it threw none).
/// - Throws: the error `next` threw before any chain.
@inlinable
public func popEach(
    into chains: UnsafeMutableBufferPointer<Chain>, _ next: () throws(VirtqueueError) -> Chain?
) throws(VirtqueueError) -> (count: Int, laterError: VirtqueueError?) {
    var count = 0
    do {
        while count < chains.count, let chain = try next() {
            // Safe: count < chains.count.
            (chains.baseAddress! + count).initialize(to: chain)
            count += 1
        }
    } catch {
        if count == 0 { throw error }
        return (count, error)
    }
    return (count, nil)
}
