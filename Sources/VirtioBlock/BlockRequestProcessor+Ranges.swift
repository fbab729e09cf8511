import VMMSysUtil
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One checked range of a DISCARD / WRITE_ZEROES in the engine, copied out of guest memory once
/// (the guest may rewrite its buffer while the request is in flight).
struct BlockSpaceRange {
    var offset: UInt64 = 0
    var length: UInt64 = 0
    var unmap = false
}

extension BlockRequestProcessor {
    /// Starts the ranges of a DISCARD / WRITE_ZEROES (`count` segments, length already checked)
    /// for slot `slot` as space operations in the engine (`fallocate` punch-hole / zero-range; on
    /// io_uring IORING_OP_FALLOCATE), one per non-empty range, all tagged with the slot and the
    /// range's index. Every range is read and checked before anything starts, so a bad request
    /// changes nothing.
    ///
    /// - Returns: the status if the request was answered here (`.ok` with nothing to do, IOERR or
    ///   UNSUPP for a bad range, IOERR if the engine refused the first range), or nil to perform
    ///   it synchronously instead: the engine cannot take that many operations now, its space
    ///   operations proved unsupported, the driver wants write-through (a flush must follow), or
    ///   a range that is not whole direct-I/O blocks may be zeroed by read-modify-write (which
    ///   must not overlap other requests, see `needsQuiescence`).
    func submitRanges(_ request: BlockRequest, slot: Int, count: Int, discard: Bool) -> BlockStatus? {
        guard let io, file.usesSpaceCalls, !spaceOperationsUnsupported, !writeThrough, count <= rangeLimit,
            bounce == nil || file.directOffsetAlignment <= BlockProtocol.sectorSize,
            // Room for these and one operation for every free slot (each may start a request).
            operationsInFlight + count + freeSlots.count <= io.capacity
        else { return nil }
        let ranges = spaceRanges + slot * rangeLimit
        for i in 0..<count {
            let (range, unmap, status) = checkedRange(request, index: i, discard: discard)
            guard status == .ok, let range else { return status == .ok ? .ioError : status }
            ranges[i] = BlockSpaceRange(offset: range.offset, length: range.length, unmap: unmap)
        }
        slotState[slot].operation = discard ? .punchHole : .zeroRange
        slotState[slot].pending = 0
        slotState[slot].failed = false
        for i in 0..<count where ranges[i].length > 0 {
            let operation: AsyncFileOperation =
                discard || (ranges[i].unmap && configuration.writeZeroesMayUnmap) ? .punchHole : .zeroRange
            do {
                try io.submit(
                    operation, descriptor: file.rawDescriptor, offset: ranges[i].offset, length: ranges[i].length,
                    tag: UInt64(slot) | UInt64(i) << 32)
            } catch {
                // Ranges already started finish first; the request then reports IOERR.
                guard slotState[slot].pending > 0 else { return .ioError }
                slotState[slot].failed = true
                break
            }
            slotState[slot].pending += 1
            operationsInFlight += 1
        }
        guard slotState[slot].pending > 0 else { return .ok }
        submitted = true
        return .ok
    }

    /// Accounts one finished range of slot `slot`'s DISCARD / WRITE_ZEROES. A range the engine
    /// could not do (the OS, file system or kernel lacks the operation) is performed
    /// synchronously here, and later requests go the synchronous way.
    ///
    /// - Returns: whether it was the request's last range.
    func finishRange(slot: Int, index: Int, result: Int32) -> Bool {
        if result < 0 {
            switch -result {
            case EOPNOTSUPP, ENOSYS, ENODEV, EINVAL:
                // EINVAL: a kernel without IORING_OP_FALLOCATE. The synchronous path reports
                // a real EINVAL itself.
                spaceOperationsUnsupported = true
                let range = spaceRanges[slot * rangeLimit + min(max(index, 0), rangeLimit - 1)]
                do {
                    try performRange(
                        (range.offset, range.length), discard: slotState[slot].operation == .punchHole,
                        unmap: range.unmap)
                } catch {
                    slotState[slot].failed = true
                }
            default:
                slotState[slot].failed = true
            }
        }
        slotState[slot].pending -= 1
        return slotState[slot].pending <= 0
    }
}
