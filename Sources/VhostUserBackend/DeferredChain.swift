import Virtio

/// A chain the device keeps past the callback that popped it, to complete later from any
/// thread: what `VhostUserQueue.postpone(_:)` returns.
///
/// The token is two words and a reference; making one allocates nothing (the ring's completion
/// channel was sized when the ring started). `chain` stays valid, and its buffers mapped, until
/// the completion is accepted or refused.
///
/// Completion goes through the ring's completion channel: the worker thread drains it, writes the
/// used entries through the same path as immediate completions, publishes them in one batch and
/// signals the driver when it wants to hear (EVENT_IDX honoured).
///
/// Thread-safety: `Sendable`; `complete(written:)` may be called from any thread, once.
public struct DeferredChain: Sendable {
    /// The chain, for its buffers (read the request, write the reply) on whichever thread.
    public let chain: Chain
    /// The ring the chain came from.
    public var ringIndex: Int { channel.ringIndex }
    let channel: CompletionChannel
    let sequence: UInt64

    /// Completes the chain with `written` bytes in its writable part. Returns at once; the worker
    /// publishes the used entry.
    ///
    /// - Throws: `CompletionError.ringStopped` if the ring stopped, was reset, its memory table
    ///   changed while the chain was held past the session's `completionTimeout`, or the
    ///   front-end went away (nothing is written to guest memory);
    ///   `.notOutstanding` if this chain was completed already;
    ///   `.writtenExceedsWritable` if `written` is more than the chain's writable bytes.
    public func complete(written: UInt32) throws(CompletionError) {
        guard written <= chain.writableLength else {
            throw .writtenExceedsWritable(
                ring: channel.ringIndex, id: chain.id, written: written, writable: chain.writableLength)
        }
        try channel.complete(id: chain.id, sequence: sequence, written: written)
    }
}

/// Why a deferred completion was refused. Guest memory was not touched.
///
/// Thread-safety: a value type.
public enum CompletionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The ring stopped (`GET_VRING_BASE`, `RESET_DEVICE`, disconnect) or its memory table
    /// changed before the completion: the chain is the front-end's again (resubmitted from the
    /// inflight region when it set one).
    case ringStopped(ring: Int, id: UInt16)
    /// The chain was completed already.
    case notOutstanding(ring: Int, id: UInt16)
    /// More bytes written than the chain's writable part holds (a device bug).
    case writtenExceedsWritable(ring: Int, id: UInt16, written: UInt32, writable: UInt32)

    public var description: String {
        switch self {
        case .ringStopped(let ring, let id):
            "ring \(ring) chain \(id): the ring stopped or was reconfigured; completion refused"
        case .notOutstanding(let ring, let id): "ring \(ring) chain \(id): completed already"
        case .writtenExceedsWritable(let ring, let id, let written, let writable):
            "ring \(ring) chain \(id): \(written) bytes written, \(writable) writable"
        }
    }
}
