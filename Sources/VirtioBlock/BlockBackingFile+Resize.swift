import CVMMPlatform
import VMMSysUtil
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension BlockBackingFile {
    /// Measures the file again (`lseek(SEEK_END)`) and, if it grew by whole sectors, publishes the
    /// larger capacity: requests up to the new end are served from then on. A file that shrank
    /// keeps the old capacity (a disk does not shrink under a running guest; requests beyond the
    /// new end fail as a short transfer would).
    ///
    /// - Returns: the capacity before and after, in sectors.
    /// - Throws: `SystemCallError` from `lseek`.
    ///
    /// Thread-safety: one caller at a time (the daemon's signal thread); concurrent with I/O.
    @discardableResult
    public func refreshCapacity() throws(SystemCallError) -> (old: UInt64, new: UInt64) {
        let end = try systemCall("lseek") { lseek(descriptor.rawValue, 0, SEEK_END) }
        let old = capacity
        let measured = UInt64(max(0, end)) / UInt64(BlockProtocol.sectorSize)
        guard measured > old else { return (old, old) }
        vmm_store_release_u64(capacityWord, measured)
        return (old, measured)
    }
}
