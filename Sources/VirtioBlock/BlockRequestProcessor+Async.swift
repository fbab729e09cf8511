import Virtio
import VMMSysUtil
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What `BlockRequestProcessor.start(_:)` did with a chain.
///
/// Thread-safety: a value type.
public enum BlockStart: Hashable, Sendable {
    /// Done already (invalid, GET_ID, bounced I/O, ranges performed synchronously): complete the chain now
    /// with this many bytes written.
    case completed(written: UInt32)
    /// In flight under `slot`: keep the chain until `reap` reports the slot.
    case submitted(slot: Int)
    /// Not started: it needs every request in flight finished first (a write that does not cover
    /// whole direct-I/O blocks is read-modified-written), or no slot is free. Reap until
    /// `inFlight` is 0, then start it again.
    case needsDrain
}

/// An in-flight request: where its status byte is and how to complete it.
struct BlockSlotState {
    var status: UnsafeMutablePointer<UInt8>?
    var written: UInt32 = 0
    var operation = AsyncFileOperation.read
    /// The iovecs still to transfer (in the slot's segments) and where, for short transfers.
    var first = 0
    var count = 0
    var offset: UInt64 = 0
    var remaining = 0
    /// A DISCARD / WRITE_ZEROES (`operation` is then `punchHole` for DISCARD, `zeroRange` for
    /// WRITE_ZEROES): its ranges still in the engine, and whether one failed.
    var pending = 0
    var failed = false
}

extension BlockRequestProcessor {
    /// How many requests may be in flight at once (0 without an asynchronous queue).
    public var slotCount: Int { slotState.count }

    /// Requests in flight (started, not yet reported by `reap`).
    public var inFlight: Int { slotState.count - freeSlots.count }

    /// Whether `start` has a free slot.
    public var canStart: Bool { !freeSlots.isEmpty }

    /// The descriptor that becomes readable when `reap` has something to report (nil without an
    /// asynchronous queue). Watch it in the worker's `Poller`.
    public var completionDescriptor: Int32? { io?.completionDescriptor }

    /// Starts one popped chain: reads, writes, flushes and the ranges of DISCARD / WRITE_ZEROES
    /// are submitted to the asynchronous queue and started at once (their own commit, one
    /// `io_uring_enter` per request); everything else is performed at once. A commit the kernel
    /// refuses for now leaves the submission queued: the caller's next `commit()` starts it.
    /// Allocation-free.
    ///
    /// Started at once rather than with the chains popped after it: a disk whose host serves
    /// its queue while the guest adds to it is kept busy by a steady stream, and a thread-pool
    /// engine starts each request on its own thread anyway (measured in the README's direct-I/O
    /// section: the four-queue depth-32 rows gained up to 12% over submitting in eights).
    ///
    /// - Throws: a `VirtqueueError` only if the guest rewrote the chain since it was popped.
    public func start(_ chain: Chain) throws(VirtqueueError) -> BlockStart {
        guard io != nil else { return .completed(written: try handle(chain)) }
        guard let slot = freeSlots.popLast() else { return .needsDrain }
        segments = slots[slot]
        let request: BlockRequest
        do {
            request = try BlockRequest.parse(chain, into: segments)
        } catch {
            freeSlots.append(slot)
            throw error
        }
        guard let status = request.status else {
            freeSlots.append(slot)
            return .completed(written: 0)
        }
        if inFlight > 1 && needsQuiescence(request) {
            freeSlots.append(slot)
            return .needsDrain
        }
        submittingSlot = slot
        submitted = false
        let result = execute(request)
        submittingSlot = nil
        if submitted {
            slotState[slot].status = status
            slotState[slot].written = chain.writableLength
            commit()
            return .submitted(slot: slot)
        }
        status.pointee = result.rawValue
        freeSlots.append(slot)
        return .completed(written: chain.writableLength)
    }

    /// Starts the submissions still queued: those of a `start` whose own commit the kernel
    /// refused for now, and short transfers resumed by a reap whose commit was refused.
    ///
    /// - Returns: false if the kernel refused them for now (they stay queued for the next commit).
    @discardableResult
    public func commit() -> Bool {
        guard let io else { return true }
        do { try io.commit() } catch { return false }
        return true
    }

    /// Reports finished requests without waiting: writes each one's status byte, then calls `body`
    /// with its slot and the byte count to complete its chain with. Short transfers are resumed
    /// (and reported when done). Allocation-free.
    ///
    /// - Returns: how many were reported.
    /// - Throws: what `body` throws (the remaining completions stay to be reaped).
    @discardableResult
    public func reap<E: Error>(_ body: (_ slot: Int, _ written: UInt32) throws(E) -> Void) throws(E) -> Int {
        var reported = 0
        while true {
            let (taken, count) = try reapOnce(maximum: completions.count, body)
            reported += count
            if taken < completions.count { break }
        }
        return reported
    }

    /// `reap(_:)` for at most `maximum` finished operations (at least 1): a device that publishes
    /// completions in small chunks, so the driver reposts the first ones while it completes the
    /// rest. Call it again while it returns `maximum`: what it leaves is not sure to keep
    /// `completionDescriptor` readable (what finishes after a call that took fewer does).
    ///
    /// - Returns: how many operations it took (a DISCARD / WRITE_ZEROES takes one per range and is
    ///   reported with its last; a resumed short transfer is reported later): 0 when none had
    ///   finished.
    /// - Throws: what `body` throws (the remaining completions stay to be reaped).
    public func reap<E: Error>(
        maximum: Int, _ body: (_ slot: Int, _ written: UInt32) throws(E) -> Void
    ) throws(E) -> Int {
        try reapOnce(maximum: max(1, min(maximum, completions.count)), body).taken
    }

    /// One engine reap of at most `maximum` operations (1...completions.count): how many it took
    /// and how many requests it reported.
    private func reapOnce<E: Error>(
        maximum: Int, _ body: (_ slot: Int, _ written: UInt32) throws(E) -> Void
    ) throws(E) -> (taken: Int, reported: Int) {
        guard let io else { return (0, 0) }
        var reported = 0
        // Safe: `maximum` is within the buffer (callers clamp it).
        let count = io.reap(into: UnsafeMutableBufferPointer(rebasing: completions[0..<maximum]))
        var resumed = false
        for i in 0..<count {
            // The slot in the low half, the range of a DISCARD / WRITE_ZEROES in the high.
            let tag = completions[i].tag
            let slot = Int(truncatingIfNeeded: tag & 0xFFFF_FFFF)
            operationsInFlight -= 1
            guard slot < slotState.count else { continue }
            let result = Int(completions[i].result)
            let state = slotState[slot]
            var status = BlockStatus.ok
            if state.operation.isSpaceOperation {
                guard finishRange(slot: slot, index: Int(tag >> 32), result: completions[i].result) else {
                    continue
                }
                if slotState[slot].failed { status = .ioError }
            } else if result < 0 {
                status = .ioError
            } else if state.operation != .dataSync && result < state.remaining {
                if result > 0 && resume(slot: slot, after: result) {
                    resumed = true
                    continue
                }
                status = .ioError
            }
            state.status?.pointee = status.rawValue
            slotState[slot].status = nil
            freeSlots.append(slot)
            reported += 1
            do {
                try body(slot, state.written)
            } catch {
                if resumed { commit() }
                throw error
            }
        }
        if resumed { commit() }
        return (count, reported)
    }

    /// Waits up to `milliseconds` (0: just checks) for `completionDescriptor` to become readable.
    ///
    /// - Returns: whether it is.
    public func waitForCompletions(milliseconds: Int32) -> Bool {
        guard let fd = io?.completionDescriptor else { return false }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, milliseconds) > 0
    }

    /// Submits `operation` for slot `slot` over `segments.iovecs[first..<first+count]`.
    func submit(
        slot: Int, _ operation: AsyncFileOperation, first: Int, count: Int, offset: UInt64,
        length: Int
    ) -> BlockStatus {
        guard let io else { return .ioError }
        slotState[slot].operation = operation
        slotState[slot].first = first
        slotState[slot].count = count
        slotState[slot].offset = offset
        slotState[slot].remaining = length
        do {
            try io.submit(
                operation, descriptor: file.rawDescriptor, vectors: UnsafePointer(slots[slot].iovecs + first),
                count: count, offset: offset, tag: UInt64(slot))
        } catch {
            return .ioError
        }
        operationsInFlight += 1
        submitted = true
        return .ok
    }

    /// After a short transfer of `done` bytes: advances the slot's iovecs and submits the rest.
    private func resume(slot: Int, after done: Int) -> Bool {
        guard let io else { return false }
        var state = slotState[slot]
        let vectors = slots[slot].iovecs
        var left = done
        while left > 0, state.count > 0 {
            let length = vectors[state.first].iov_len
            if left >= length {
                left -= length
                state.first += 1
                state.count -= 1
            } else {
                // Safe: advancing within the entry's own `iov_len` bytes.
                vectors[state.first].iov_base = vectors[state.first].iov_base.map { $0 + left }
                vectors[state.first].iov_len = length - left
                left = 0
            }
        }
        state.offset += UInt64(done)
        state.remaining -= done
        slotState[slot] = state
        guard state.count > 0 else { return false }
        do {
            try io.submit(
                state.operation, descriptor: file.rawDescriptor, vectors: UnsafePointer(vectors + state.first),
                count: state.count, offset: state.offset, tag: UInt64(slot))
        } catch {
            return false
        }
        operationsInFlight += 1
        return true
    }
}
