import Virtio
import VMMSysUtil

/// A shared mapping of `size` bytes from the default `SharedMemory` backend (so the CI backend
/// matrix covers it); the fd closes when the `SharedMemory` goes, the mapping stays.
func makeMapping(size: Int) throws -> MemoryMapping {
    try SharedMemory(size: size).mapping
}

/// Guest memory made of regions `(guest-physical address, size)`, each in its own mapping.
func makeMemory(_ regions: [(UInt64, Int)]) throws -> GuestMemory {
    try GuestMemory(
        regions: regions.map { gpa, size in
            GuestMemoryRegion(
                guestPhysicalAddress: gpa, size: UInt64(size), userAddress: 0x7f00_0000_0000 + gpa,
                mapping: try makeMapping(size: size))
        })
}

/// One 1 MiB region at 0x10000 with the standard ring placement below.
let memoryBase: UInt64 = 0x10000
let dataBase: UInt64 = memoryBase + 0x10000
func standardMemory() throws -> GuestMemory { try makeMemory([(memoryBase, 1 << 20)]) }
func standardAddresses() -> RingAddresses {
    RingAddresses(descriptorTable: memoryBase, driverArea: memoryBase + 0x4000, deviceArea: memoryBase + 0x8000)
}

/// The guest-physical address a device-side pointer corresponds to.
func guestAddress(of pointer: UnsafeMutableRawPointer, in memory: GuestMemory) -> UInt64? {
    for region in memory.regions {
        let offset = pointer - region.mapping.base
        if offset >= 0, UInt64(offset) < region.size { return region.guestPhysicalAddress + UInt64(offset) }
    }
    return nil
}

/// A chain's buffer pieces as (guest address, length, writable); one per descriptor per region.
func describe(_ chain: Chain, in memory: GuestMemory) throws -> [DriverBuffer] {
    var result: [DriverBuffer] = []
    var buffers = chain.buffers()
    while let piece = try buffers.next() {
        guard let base = piece.bytes.baseAddress, let address = guestAddress(of: base, in: memory) else {
            throw GuestMemoryError.outsideMemory(address: 0, length: UInt64(piece.bytes.count))
        }
        result.append(DriverBuffer(address: address, length: UInt32(piece.bytes.count), isWritable: piece.isWritable))
    }
    return result
}

/// Writes a raw 16-byte split descriptor (flags @12, next @14) at guest-physical `address`.
func writeDescriptor(_ memory: GuestMemory, at address: UInt64, addr: UInt64, len: UInt32, flags: UInt16, next: UInt16)
    throws
{
    try memory.store(addr, guestPhysical: address)
    try memory.store(len, guestPhysical: address + 8)
    try memory.store(flags, guestPhysical: address + 12)
    try memory.store(next, guestPhysical: address + 14)
}

/// Writes a raw 16-byte packed descriptor (id @12, flags @14) at guest-physical `address`.
func writePackedDescriptor(
    _ memory: GuestMemory, at address: UInt64, addr: UInt64, len: UInt32, flags: UInt16, id: UInt16
) throws {
    try memory.store(addr, guestPhysical: address)
    try memory.store(len, guestPhysical: address + 8)
    try memory.store(id, guestPhysical: address + 12)
    try memory.store(flags, guestPhysical: address + 14)
}

/// `count` bytes of guest memory at `address`.
func readGuest(_ memory: GuestMemory, _ address: UInt64, _ count: Int) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    try bytes.withUnsafeMutableBytes { try memory.read(guestPhysical: address, into: $0) }
    return bytes
}
