import Virtio
import VMMSysUtil
import CVMMPlatform

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
    func needsQuiescence(_ request: BlockRequest) -> Bool {
        guard bounce != nil, request.isHeaderComplete, request.type == .write else { return false }
        let block = UInt64(file.directOffsetAlignment - 1)
        let offset = request.sector &* UInt64(BlockProtocol.sectorSize)
        return offset & block != 0 || UInt64(request.readableDataLength) & block != 0
    }

    /// Performs a transfer of `length` bytes at `offset` between the segments and the file through
    /// the aligned bounce buffer, synchronously, a chunk at a time: the covering whole blocks are
    /// read (for reads, and for writes that cover a block partly), the guest's bytes copied in or
    /// out, and written back for writes.
    func transferBounced(_ bounce: BlockBounceBuffer, write: Bool, first: Int, count: Int, offset: UInt64,
                         length: Int) -> BlockStatus {
        let block = UInt64(file.directOffsetAlignment)
        let start = offset / block * block
        // No overflow: offset + length lies within the capacity, which is whole blocks.
        let end = (offset + UInt64(length) + block - 1) / block * block
        var position = start
        var vector = iovec(iov_base: bounce.base, iov_len: 0)
        while position < end {
            let chunkEnd = min(end, position + UInt64(bounce.size))
            let chunk = Int(chunkEnd - position)
            let dataStart = max(offset, position)
            let dataEnd = min(offset + UInt64(length), chunkEnd)
            let inChunk = Int(dataStart - position)
            let dataLength = Int(dataEnd - dataStart)
            let guestOffset = Int(dataStart - offset)
            do {
                if !write || dataStart > position || dataEnd < chunkEnd {
                    vector = iovec(iov_base: bounce.base, iov_len: chunk)
                    guard try file.transfer(write: false, &vector, count: 1, offset: position) else { return .ioError }
                }
                if write {
                    copySegments(first: first, count: count, skip: guestOffset, length: dataLength,
                                 buffer: bounce.base + inChunk, intoSegments: false)
                    vector = iovec(iov_base: bounce.base, iov_len: chunk)
                    guard try file.transfer(write: true, &vector, count: 1, offset: position) else { return .ioError }
                } else {
                    copySegments(first: first, count: count, skip: guestOffset, length: dataLength,
                                 buffer: bounce.base + inChunk, intoSegments: true)
                }
            } catch {
                return .ioError
            }
            position = chunkEnd
        }
        if write && writeThrough {
            do { try file.flush() } catch { return .ioError }
        }
        return .ok
    }

    /// Copies `length` bytes between `buffer` and the segments `first..<first+count`, starting
    /// `skip` bytes into them (into the segments if `intoSegments`, else out of them).
    private func copySegments(first: Int, count: Int, skip: Int, length: Int, buffer: UnsafeMutableRawPointer,
                              intoSegments: Bool) {
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
