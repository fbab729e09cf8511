import VhostUserFrontend
import Virtio
import VirtioBlock

/// One virtio-blk request slot in guest memory, for a program that drives a virtio-blk back-end
/// through `VhostUserFrontend` (tests, benchmarks, the soak tool): the 16-byte request header,
/// `dataLength` bytes of data, and the status byte, at fixed guest-physical addresses (header at
/// `address`, data at `address + 512`, status right after the data). Request types, status values
/// and sizes are VirtioBlock's (`BlockRequestType`, `BlockStatus`, `BlockProtocol`).
///
/// `post` writes the header, presets the status to 0xFF (so a request the device never completed
/// is visible) and posts the chain VIRTIO 1.2 §5.2.6 "Device Operation" describes: header
/// device-readable; data device-writable for reads and GET_ID, device-readable otherwise (write,
/// and the segments of discard and write-zeroes); no data for flush; status device-writable.
/// It allocates nothing.
///
/// Thread-safety: a value type; the memory it describes is driven by one queue's thread.
public struct VirtioBlockRequest: Hashable, Sendable {
    /// What `post` presets the status byte to: the device has not written a status.
    public static let pending = BlockStatus(rawValue: 0xFF)
    /// Bytes from the header to the data (the 16-byte header padded to a sector).
    static let dataOffset = UInt64(BlockProtocol.sectorSize)

    public let headerAddress: UInt64
    public let dataAddress: UInt64
    public let dataLength: UInt32
    public let statusAddress: UInt64

    /// Lays a request out at guest-physical `address`; see `footprint(dataLength:)` for its size.
    public init(at address: UInt64, dataLength: UInt32) {
        // Wrapping: a slot that does not fit fails in `post` (outside memory), not here.
        headerAddress = address
        dataAddress = address &+ Self.dataOffset
        self.dataLength = dataLength
        statusAddress = address &+ Self.dataOffset &+ UInt64(dataLength)
    }

    /// Bytes of guest memory a request with `dataLength` bytes of data occupies.
    public static func footprint(dataLength: UInt32) -> UInt64 {
        dataOffset + UInt64(dataLength) + 1
    }

    /// Writes the header for `kind` at `sector`, presets the status and posts the chain on
    /// `queue` (without kicking). Discard and write-zeroes take their segments from the data area,
    /// which the caller fills first.
    ///
    /// - Returns: the id `reap` reports for it.
    /// - Throws: `.guestMemory` if the slot is not inside `memory`, `.driverQueue` when the queue
    ///   is full.
    @discardableResult
    public func post(_ kind: BlockRequestType, sector: UInt64, on queue: FrontendQueue, memory: GuestMemory)
        throws(FrontendError) -> UInt16
    {
        do {
            try memory.store(kind.rawValue, guestPhysical: headerAddress)
            try memory.store(UInt32(0), guestPhysical: headerAddress + 4)
            try memory.store(sector, guestPhysical: headerAddress + 8)
            try memory.store(Self.pending.rawValue, guestPhysical: statusAddress)
        } catch { throw .guestMemory(error) }
        let header = DriverBuffer(address: headerAddress, length: 16, isWritable: false)
        let status = DriverBuffer(address: statusAddress, length: 1, isWritable: true)
        var chain: (DriverBuffer, DriverBuffer, DriverBuffer)
        let count: Int
        switch kind {
        case .flush:
            chain = (header, status, status)
            count = 2
        case .read, .getID:
            chain = (header, DriverBuffer(address: dataAddress, length: dataLength, isWritable: true), status)
            count = 3
        default:
            chain = (header, DriverBuffer(address: dataAddress, length: dataLength, isWritable: false), status)
            count = 3
        }
        return try withUnsafeMutablePointer(to: &chain) { (tuple) throws(FrontendError) -> UInt16 in
            // Safe: a homogeneous tuple lays its three DriverBuffers out at stride offsets, like an
            // array of three; `count` <= 3 and the tuple outlives the call.
            try tuple.withMemoryRebound(to: DriverBuffer.self, capacity: 3) { (first) throws(FrontendError) -> UInt16 in
                try queue.post(UnsafeBufferPointer(start: first, count: count))
            }
        }
    }

    /// The status byte the device wrote (`pending` if it has not).
    ///
    /// - Throws: `.guestMemory` if the slot is not inside `memory`.
    public func status(in memory: GuestMemory) throws(FrontendError) -> BlockStatus {
        do {
            return BlockStatus(rawValue: try memory.load(UInt8.self, guestPhysical: statusAddress))
        } catch { throw .guestMemory(error) }
    }
}
