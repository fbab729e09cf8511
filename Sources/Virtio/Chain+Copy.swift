extension Chain {
    /// Copies up to `buffer.count` bytes of the chain's readable part, starting `offset` bytes into
    /// it, into `buffer` (memcpy: any alignment, each guest byte read once). Crosses buffer boundaries.
    ///
    /// - Returns: the bytes copied (less than `buffer.count` if the readable part ends first).
    /// - Throws: a `VirtqueueError` if the guest rewrote the chain since it was popped.
    @inlinable @inline(__always)
    public func readReadable(into buffer: UnsafeMutableRawBufferPointer, fromOffset offset: Int = 0)
        throws(VirtqueueError) -> Int
    {
        guard let destination = buffer.baseAddress, buffer.count > 0 else { return 0 }
        var skip = max(0, offset)
        var copied = 0
        if cachedCount >= 0 {
            // Short chain: the buffers validated at pop, no guest re-read.
            for i in 0..<Int(cachedCount) {
                let piece = cache[i]
                guard copied < buffer.count, !piece.isWritable, let source = piece.pointer else { break }
                let length = Int(piece.length)
                if skip >= length {
                    skip -= length
                    continue
                }
                let count = min(length - skip, buffer.count - copied)
                // Safe: `source` holds `skip + count` bytes; `destination` has `buffer.count - copied` left.
                copyGuestBytes(to: destination + copied, from: source + skip, count: count)
                copied += count
                skip = 0
            }
            return copied
        }
        return try Chain.readWalked(start, cache, readableLength, writableLength, into: buffer, fromOffset: offset)
    }

    /// `readReadable` for chains that are re-walked (long, or spanning regions).
    /// Takes the chain's parts as scalars so the fast path never has to materialise the chain.
    @usableFromInline @inline(never)
    static func readWalked(
        _ start: WalkStart, _ cache: UnsafeMutablePointer<CachedBuffer>, _ readable: UInt32, _ writable: UInt32,
        into buffer: UnsafeMutableRawBufferPointer, fromOffset offset: Int
    ) throws(VirtqueueError) -> Int {
        guard let destination = buffer.baseAddress, buffer.count > 0 else { return 0 }
        var skip = max(0, offset)
        var copied = 0
        var buffers = ChainIterator(start: start, cache: cache, readableLimit: readable, writableLimit: writable)
        while copied < buffer.count, let piece = try buffers.next(), !piece.isWritable {
            guard let source = piece.bytes.baseAddress, skip < piece.bytes.count else {
                skip -= piece.bytes.count
                continue
            }
            let count = min(piece.bytes.count - skip, buffer.count - copied)
            // Safe: `piece` holds `skip + count` bytes; `destination` has `buffer.count - copied` left.
            copyGuestBytes(to: destination + copied, from: source + skip, count: count)
            copied += count
            skip = 0
        }
        return copied
    }

    /// Copies `bytes` into the chain's writable part, starting `offset` bytes into it. Crosses buffer
    /// boundaries; stops at the end of the writable part.
    ///
    /// - Returns: the bytes written (less than `bytes.count` if the writable part ends first).
    /// - Throws: a `VirtqueueError` if the guest rewrote the chain since it was popped.
    @inlinable @inline(__always)
    public func writeWritable(_ bytes: UnsafeRawBufferPointer, atOffset offset: Int = 0) throws(VirtqueueError) -> Int {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return 0 }
        var skip = max(0, offset)
        var written = 0
        if cachedCount >= 0 {
            for i in 0..<Int(cachedCount) {
                let piece = cache[i]
                guard written < bytes.count, let destination = piece.pointer else { break }
                guard piece.isWritable else { continue }
                let length = Int(piece.length)
                if skip >= length {
                    skip -= length
                    continue
                }
                let count = min(length - skip, bytes.count - written)
                // Safe: `destination` holds `skip + count` bytes; `source` has `bytes.count - written` left.
                copyGuestBytes(to: destination + skip, from: source + written, count: count)
                written += count
                skip = 0
            }
            return written
        }
        return try Chain.writeWalked(start, cache, readableLength, writableLength, bytes, atOffset: offset)
    }

    /// `writeWritable` for chains that are re-walked (long, or spanning regions).
    @usableFromInline @inline(never)
    static func writeWalked(
        _ start: WalkStart, _ cache: UnsafeMutablePointer<CachedBuffer>, _ readable: UInt32, _ writable: UInt32,
        _ bytes: UnsafeRawBufferPointer, atOffset offset: Int
    ) throws(VirtqueueError) -> Int {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return 0 }
        var skip = max(0, offset)
        var written = 0
        var buffers = ChainIterator(start: start, cache: cache, readableLimit: readable, writableLimit: writable)
        while written < bytes.count, let piece = try buffers.next() {
            guard piece.isWritable else { continue }
            guard let destination = piece.bytes.baseAddress, skip < piece.bytes.count else {
                skip -= piece.bytes.count
                continue
            }
            let count = min(piece.bytes.count - skip, bytes.count - written)
            // Safe: `piece` holds `skip + count` bytes; `source` has `bytes.count - written` left.
            copyGuestBytes(to: destination + skip, from: source + written, count: count)
            written += count
            skip = 0
        }
        return written
    }
}
