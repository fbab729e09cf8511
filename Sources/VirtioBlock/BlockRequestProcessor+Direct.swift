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

/// An aligned staging buffer for direct I/O (`cache: .none`) that the guest's own buffers cannot
/// take: misaligned addresses or lengths, or offsets that are not whole direct-I/O blocks.
///
/// Thread-safety: owned by one processor.
final class BlockBounceBuffer {
    /// 1 MiB (the default `size_max`): large requests go through it in chunks, memory stays bounded.
    static let defaultSize = 1 << 20
    let base: UnsafeMutableRawPointer
    let size: Int
    let alignment: Int

    init(alignment: Int) {
        self.alignment = max(alignment, 4096)
        size = max(Self.defaultSize, self.alignment)
        base = .allocate(byteCount: size, alignment: self.alignment)
    }

    deinit { base.deallocate() }
}

extension BlockRequestProcessor {
    /// Whether a transfer must go through the bounce buffer: a guest buffer whose address is not
    /// a multiple of the file's memory alignment or whose length is not a multiple of its offset
    /// alignment, or an offset or length that is not (O_DIRECT refuses all of these with EINVAL).
    func needsBounce(first: Int, count: Int, offset: UInt64, length: UInt32) -> Bool {
        let memory = UInt(file.directMemoryAlignment - 1)
        let block = file.directOffsetAlignment - 1
        guard offset & UInt64(block) == 0, Int(length) & block == 0 else { return true }
        for i in first..<(first + count) {
            let entry = segments.iovecs[i]
            if UInt(bitPattern: entry.iov_base) & memory != 0 || entry.iov_len & block != 0 { return true }
        }
        return false
    }

    /// Whether `request` is a write that must not overlap other requests in flight: one that is not
    /// whole direct-I/O blocks is read-modified-written, which would undo a concurrent write to
    /// the rest of a block it shares.
    /// DISCARD and WRITE_ZEROES may fall back to writing zeroes, which is the same when the
    /// blocks are larger than a sector.
    func needsQuiescence(_ request: BlockRequest) -> Bool {
        guard bounce != nil, request.isHeaderComplete else { return false }
        if request.type == .discard || request.type == .writeZeroes {
            return file.directOffsetAlignment > BlockProtocol.sectorSize
        }
        guard request.type == .write else { return false }
        let block = UInt64(file.directOffsetAlignment - 1)
        let offset = request.sector &* UInt64(BlockProtocol.sectorSize)
        return offset & block != 0 || UInt64(request.readableDataLength) & block != 0
    }

    /// Performs a transfer of `length` bytes at `offset` between the segments and the file through
    /// the aligned bounce buffer, synchronously (see `bounced`).
    func transferBounced(
        _ bounce: BlockBounceBuffer, write: Bool, first: Int, count: Int, offset: UInt64,
        length: Int
    ) -> BlockStatus {
        do {
            try bounced(bounce, write: write, offset: offset, length: length) { buffer, guestOffset, bytes in
                copySegments(
                    first: first, count: count, skip: guestOffset, length: bytes, buffer: buffer,
                    intoSegments: !write)
            }
            if write && writeThrough { try file.flush() }
        } catch {
            return .ioError
        }
        return .ok
    }

    /// Writes zeroes over `length` bytes at `offset` through the bounce buffer (a range that is
    /// not whole direct-I/O blocks: the blocks it shares are read, partly zeroed, written back).
    func zeroBounced(_ bounce: BlockBounceBuffer, offset: UInt64, length: UInt64) throws(SystemCallError) {
        try bounced(bounce, write: true, offset: offset, length: Int(length)) { buffer, _, bytes in
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        }
    }

    /// Moves `length` bytes at `offset` through the bounce buffer a chunk at a time: the covering
    /// whole blocks are read (for reads, and for writes that cover a block partly), `exchange`
    /// is called with the chunk's part of the range (its address in the buffer, its offset in the
    /// range, its length) to fill or drain it, and for writes the chunk is written back.
    ///
    /// - Throws: `SystemCallError` from the file, or `EIO` for a transfer cut short by its end.
    private func bounced(
        _ bounce: BlockBounceBuffer, write: Bool, offset: UInt64, length: Int,
        _ exchange: (UnsafeMutableRawPointer, Int, Int) -> Void
    ) throws(SystemCallError) {
        let block = UInt64(file.directOffsetAlignment)
        let start = offset / block * block
        // No overflow: offset + length lies within the capacity, which is whole blocks.
        let end = (offset + UInt64(length) + block - 1) / block * block
        var position = start
        while position < end {
            let chunkEnd = min(end, position + UInt64(bounce.size))
            let dataStart = max(offset, position)
            let dataEnd = min(offset + UInt64(length), chunkEnd)
            var vector = iovec(iov_base: bounce.base, iov_len: Int(chunkEnd - position))
            if !write || dataStart > position || dataEnd < chunkEnd {
                guard try file.transfer(write: false, &vector, count: 1, offset: position) else {
                    throw SystemCallError("preadv", Errno(rawValue: EIO))
                }
                vector = iovec(iov_base: bounce.base, iov_len: Int(chunkEnd - position))
            }
            exchange(bounce.base + Int(dataStart - position), Int(dataStart - offset), Int(dataEnd - dataStart))
            if write {
                guard try file.transfer(write: true, &vector, count: 1, offset: position) else {
                    throw SystemCallError("pwritev", Errno(rawValue: EIO))
                }
            }
            position = chunkEnd
        }
    }

    /// Copies `length` bytes between `buffer` and the segments `first..<first+count`, starting
    /// `skip` bytes into them (into the segments if `intoSegments`, else out of them).
    private func copySegments(
        first: Int, count: Int, skip: Int, length: Int, buffer: UnsafeMutableRawPointer,
        intoSegments: Bool
    ) {
        var skip = skip
        var copied = 0
        for i in first..<(first + count) where copied < length {
            let entry = segments.iovecs[i]
            guard let base = entry.iov_base else { continue }
            if skip >= entry.iov_len {
                skip -= entry.iov_len
                continue
            }
            let take = min(entry.iov_len - skip, length - copied)
            // Safe: the segment holds `skip + take` bytes and the buffer `copied + take`
            // (`length` fits the chunk the caller placed `buffer` in).
            if intoSegments {
                (base + skip).copyMemory(from: buffer + copied, byteCount: take)
            } else {
                (buffer + copied).copyMemory(from: base + skip, byteCount: take)
            }
            copied += take
            skip = 0
        }
    }
}
