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

extension Chain {
    /// Hints the CPU to start loading the lines of a receive buffer a device is about to fill: the
    /// line of its first byte for reading (a header compared before it is stored, see
    /// `updateWritable`) unless the frame starts in it, and the lines of the `frame` bytes after
    /// the first `header` bytes for writing (exclusive: the driver's core read them last, and a
    /// store that waits for a line holds up every store behind it). For a device that pops a
    /// burst of receive chains before filling any.
    ///
    /// Only a hint, as `prefetch(forWriting:)`: it looks only at the first buffer pop validated
    /// and kept, if it is writable, and at lines holding bytes of it (at most `frame` ≤ 256 bytes'
    /// worth).
    @inlinable @inline(__always)
    public func prefetch(header: Int, frame: Int) {
        // Safe: cachedCount > 0 entries were written at pop.
        guard cachedCount > 0 else { return }
        let piece = cache[0]
        guard piece.isWritable, let pointer = piece.pointer else { return }
        // Validated at pop: length >= 1.
        let length = Int(piece.length)
        let start = min(max(0, header), length - 1)
        let end = min(length, start + min(max(1, frame), 256))
        // The frame's first and last lines, as pointers to bytes of the buffer in them.
        var line = pointer + start
        let last = pointer + (end - 1)
        let lastLine = UInt(bitPattern: last) >> 6
        if UInt(bitPattern: pointer) >> 6 != UInt(bitPattern: line) >> 6 { vmm_prefetch_read(pointer) }
        while UInt(bitPattern: line) >> 6 < lastLine {
            vmm_prefetch_write(line)
            // The next line's first byte (inside the buffer: that line is not past the last).
            line += 64 - Int(UInt(bitPattern: line) & 63)
        }
        vmm_prefetch_write(last)
    }
}
