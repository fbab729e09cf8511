extension Chain {
    /// Puts `bytes` (8…16 of them: a virtio-net receive header) at the start of the chain's
    /// writable part, storing nothing when the guest buffer already holds them; otherwise as
    /// `writeWritable(bytes)`.
    ///
    /// For short data that rarely changes from one use of a buffer to the next (a receive header
    /// is zero but for `num_buffers`, and drivers recycle their buffers): a store takes the line
    /// from the driver's core, which read the header there last, and the driver's next read takes
    /// it back; a load that finds the same bytes leaves the line shared by both. The driver reads
    /// the same bytes either way (a driver writing them meanwhile races with the device whatever
    /// it does).
    ///
    /// - Returns: the bytes the chain now holds from `bytes` (less than `bytes.count` if the
    ///   writable part ends first): count them as written (dirty logging, used length).
    /// - Throws: a `VirtqueueError` if the guest rewrote the chain since it was popped.
    @inlinable @inline(__always)
    public func updateWritable(_ bytes: UnsafeRawBufferPointer) throws(VirtqueueError) -> Int {
        let count = bytes.count
        if cachedCount > 0, count >= 8, count <= 16, let source = bytes.baseAddress {
            // Safe: cachedCount > 0 entries were written at pop; the buffer holds `length` bytes.
            let piece = cache[0]
            if piece.isWritable, Int(piece.length) >= count, let destination = piece.pointer {
                // Two overlapping 8-byte words cover 8…16 bytes.
                let head = source.loadUnaligned(as: UInt64.self)
                let tail = source.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
                if UnsafeRawPointer(destination).loadUnaligned(as: UInt64.self) != head
                    || UnsafeRawPointer(destination).loadUnaligned(fromByteOffset: count - 8, as: UInt64.self) != tail
                {
                    destination.storeBytes(of: head, as: UInt64.self)
                    destination.storeBytes(of: tail, toByteOffset: count - 8, as: UInt64.self)
                }
                return count
            }
        }
        return try writeWritable(bytes)
    }
}
