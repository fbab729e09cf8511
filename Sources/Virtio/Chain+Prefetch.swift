import CVMMPlatform

extension Chain {
    /// Hints the CPU to start loading the first 128 bytes of the chain's first buffer, readable
    /// (`forWriting` false) or writable (true: a chain with no readable part), for a device that pops a burst of
    /// chains before touching any: the driver wrote those lines on its own core, and a miss per
    /// frame taken one at a time was the largest cost of the 64-byte transmit path. Issued for all
    /// chains of a burst first, the misses overlap.
    ///
    /// Only a hint: it reads and writes nothing and cannot fault (an unmapped address is ignored),
    /// and it only looks at buffers pop validated and kept (a chain that is re-walked gets none).
    @inlinable @inline(__always)
    public func prefetch(forWriting: Bool) {
        // Safe: cachedCount > 0 entries were written at pop. Readable buffers come first, so the
        // first entry is the one wanted unless writable is asked of a chain that also has readable
        // buffers (not a receive buffer; no hint then).
        guard cachedCount > 0 else { return }
        let piece = cache[0]
        guard piece.isWritable == forWriting, let pointer = piece.pointer else { return }
        // A small frame behind a header often straddles two lines: hint the first and the last
        // of up to 128 bytes (inside the buffer: length >= 1 was validated).
        let last = pointer + (min(Int(piece.length), 128) - 1)
        if forWriting {
            vmm_prefetch_write(pointer)
            vmm_prefetch_write(last)
        } else {
            vmm_prefetch_read(pointer)
            vmm_prefetch_read(last)
        }
    }
}
