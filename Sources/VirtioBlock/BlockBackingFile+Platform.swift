import VMMSysUtil

// Space management that not every platform or file system has: where a call does not exist the
// method reports `false` and the caller writes zeroes instead.
extension BlockBackingFile {
    /// Deallocates `[offset, offset + length)`; reads then return zeroes. False if unsupported here
    /// (platform or file system).
    ///
    /// - Throws: `SystemCallError` for failures other than "not supported".
    func punchHole(offset: UInt64, length: UInt64) throws(SystemCallError) -> Bool {
        guard usesSpaceCalls else { return false }
        return try FileSpace.punchHole(descriptor.rawValue, offset: offset, length: length)
    }

    /// Zeroes `[offset, offset + length)` without writing data (space stays allocated). False if
    /// unsupported here.
    ///
    /// - Throws: `SystemCallError` for failures other than "not supported".
    func zeroRange(offset: UInt64, length: UInt64) throws(SystemCallError) -> Bool {
        guard usesSpaceCalls else { return false }
        return try FileSpace.zeroRange(descriptor.rawValue, offset: offset, length: length)
    }
}
