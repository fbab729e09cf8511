extension Chain {
    /// Copies up to `buffer.count` bytes of the chain's readable part, starting `offset` bytes into
    /// it, into `buffer` (memcpy: any alignment, each guest byte read once). Crosses buffer boundaries.
    ///
    /// - Returns: the bytes copied (less than `buffer.count` if the readable part ends first).
    /// - Throws: a `VirtqueueError` if the guest rewrote the chain since it was popped.
    @inline(__always)
    public func readReadable(into buffer: UnsafeMutableRawBufferPointer, fromOffset offset: Int = 0) throws(VirtqueueError) -> Int {
        guard let destination = buffer.baseAddress, buffer.count > 0 else { return 0 }
        var skip = max(0, offset)
        var copied = 0
        var buffers = self.buffers()
        while copied < buffer.count, let piece = try buffers.next(), !piece.isWritable {
            if skip >= piece.bytes.count { skip -= piece.bytes.count; continue }
            let count = min(piece.bytes.count - skip, buffer.count - copied)
            // Safe: `piece` holds `skip + count` bytes; `destination` has `buffer.count - copied` left.
            (destination + copied).copyMemory(from: piece.bytes.baseAddress! + skip, byteCount: count)
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
    @inline(__always)
    public func writeWritable(_ bytes: UnsafeRawBufferPointer, atOffset offset: Int = 0) throws(VirtqueueError) -> Int {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return 0 }
        var skip = max(0, offset)
        var written = 0
        var buffers = self.buffers()
        while written < bytes.count, let piece = try buffers.next() {
            guard piece.isWritable else { continue }
            if skip >= piece.bytes.count { skip -= piece.bytes.count; continue }
            let count = min(piece.bytes.count - skip, bytes.count - written)
            // Safe: `piece` holds `skip + count` bytes; `source` has `bytes.count - written` left.
            (piece.bytes.baseAddress! + skip).copyMemory(from: source + written, byteCount: count)
            written += count
            skip = 0
        }
        return written
    }
}
