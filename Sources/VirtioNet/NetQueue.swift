import Virtio

/// What the net packet paths need from a started queue: pop available chains, complete them.
/// The back-end framework's queue conforms (in the daemon), as does any test driver queue; the
/// paths are generic over it so the per-packet calls are direct once specialised.
public protocol NetQueue: ~Copyable {
    /// The next available chain, validated, or nil.
    mutating func pop() throws(VirtqueueError) -> Chain?
    /// Pops up to `chains.count` chains into `chains`; returns how many. Throws only when none was
    /// popped (an error after the first chain ends the burst; the next call throws).
    mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int
    /// Completes a popped chain with `written` bytes in its writable part.
    mutating func complete(_ chain: Chain, written: UInt32) throws(VirtqueueError)
}

extension NetQueue where Self: ~Copyable {
    /// `pop(into:)` by repeated `pop()`, for queues whose `pop()` keeps throwing once it threw (a
    /// broken ring does).
    public mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        try popEach(into: chains) { () throws(VirtqueueError) in try pop() }.count
    }
}

/// The virtio-net header size for the negotiated `features`: 12 bytes with VERSION_1 or
/// MRG_RXBUF, 10 for a legacy driver without MRG_RXBUF (VIRTIO 1.2 section 5.1.6.1).
@inlinable
public func netHeaderSize(features: UInt64) -> Int {
    features & (NetFeature.version1 | NetFeature.mergeableRxBuffers) != 0 ? 12 : 10
}
