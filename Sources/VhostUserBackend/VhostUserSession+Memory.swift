import VhostUserProtocol
import VMMSysUtil
import Virtio

extension VhostUserSession {
    /// `SET_MEM_TABLE`: maps every region (each from its own fd at its `mmap_offset`) and replaces
    /// guest memory wholesale.
    func setMemoryTable(_ table: [MemoryRegion], descriptors: borrowing MessageDescriptors) throws(VhostUserError) {
        guard table.count <= options.maxMemorySlots else {
            throw .tooManyMemoryRegions(count: table.count, limit: options.maxMemorySlots)
        }
        var regions: [GuestMemoryRegion] = []
        for (index, region) in table.enumerated() {
            // Message.decode guarantees one fd per region; the message owns (and later closes) it,
            // the mapping keeps the memory.
            guard let fd = descriptors.rawValue(at: index) else {
                throw .protocolViolation(
                    .missingDescriptors(request: .frontend(.setMemTable), expected: table.count, received: index))
            }
            regions.append(try map(region, fd: fd))
        }
        try replaceMemory(regions)
    }

    /// `ADD_MEM_REG`: maps one more region.
    func addMemoryRegion(_ region: MemoryRegion, fd: consuming FileDescriptor) throws(VhostUserError) {
        let current = memory?.regions ?? []
        guard current.count < options.maxMemorySlots else {
            throw .tooManyMemoryRegions(count: current.count + 1, limit: options.maxMemorySlots)
        }
        let mapped = try map(region, fd: fd.rawValue)
        try replaceMemory(current + [mapped])
    }

    /// `REM_MEM_REG`: unmaps the region with this guest address, front-end address and size.
    func removeMemoryRegion(_ region: MemoryRegion) throws(VhostUserError) {
        let current = memory?.regions ?? []
        guard
            let position = current.firstIndex(where: {
                $0.guestPhysicalAddress == region.guestPhysicalAddress && $0.userAddress == region.userAddress
                    && $0.size == region.size
            })
        else {
            throw .memoryRegionNotFound(guestPhysicalAddress: region.guestPhysicalAddress, size: region.size)
        }
        var remaining = current
        remaining.remove(at: position)
        try replaceMemory(remaining)
    }

    private func map(_ region: MemoryRegion, fd: Int32) throws(VhostUserError) -> GuestMemoryRegion {
        let mapping: MemoryMapping
        do {
            // What SharedMemory.map(received:) does, for an fd the message still owns: fstat-checked,
            // overflow-checked, never executable.
            mapping = try MemoryMapping(fd: fd, size: region.size, offset: region.mmapOffset)
        } catch {
            throw .memoryMapping(error)
        }
        return GuestMemoryRegion(
            guestPhysicalAddress: region.guestPhysicalAddress, size: region.size,
            userAddress: region.userAddress, mmapOffset: region.mmapOffset, mapping: mapping)
    }

    /// Validates the new table, re-creates every started ring over it, and only then swaps, with
    /// the workers parked: they see the old memory or the new, never a mix. The old mappings go
    /// when the last ring stops referring to them.
    private func replaceMemory(_ regions: [GuestMemoryRegion]) throws(VhostUserError) {
        let newMemory: GuestMemory
        do {
            newMemory = try GuestMemory(regions: regions)
        } catch {
            throw .memoryTable(error)
        }
        try checkLogCovers(newMemory)
        try quiesced(draining: rings.filter(\.isStarted), changing: .rebuilding) { () throws(VhostUserError) in
            // Validate every ring over the new memory before changing any.
            for ring in rings where ring.isStarted {
                guard let address = ring.address else { continue }
                do throws(VirtqueueError) {
                    _ = try makeRing(
                        ring, memory: newMemory, address: address,
                        features: VirtioFeatures(rawValue: ackedFeatures ?? 0))
                } catch {
                    throw .memoryInUse(index: ring.index, error)
                }
            }
            for ring in rings where ring.isStarted {
                ring.queue = try rebuild(ring, memory: newMemory)
            }
            memory = newMemory
            refreshLogging()
            // Rings configured before any memory arrived can start now.
            for ring in rings { try start(ring) }
        }
    }

    /// `GET_INFLIGHT_FD`: creates a zeroed buffer for the front-end to keep.
    func getInflight(_ description: InflightDescription) throws(VhostUserError) -> (InflightDescription, Int32?) {
        try checkInflightGeometry(description)
        let buffer: InflightBuffer
        do {
            buffer = try InflightBuffer(queueCount: Int(description.queueCount), queueSize: Int(description.queueSize))
        } catch {
            throw .inflightMemory(error)
        }
        quiesced { inflight = buffer }
        let size = UInt64(buffer.stride * buffer.queueCount)
        let answer = InflightDescription(
            mmapSize: size, mmapOffset: 0, queueCount: description.queueCount,
            queueSize: description.queueSize)
        return (answer, buffer.created?.descriptor)
    }

    /// `SET_INFLIGHT_FD`: maps the front-end's buffer (ours from an earlier `GET_INFLIGHT_FD`,
    /// possibly of a previous back-end process). Rings started from now on use it.
    func setInflight(_ description: InflightDescription, fd: consuming FileDescriptor) throws(VhostUserError) {
        try checkInflightGeometry(description)
        let queueCount = Int(description.queueCount)
        let queueSize = Int(description.queueSize)
        let required = UInt64(InflightBuffer.stride(queueSize: queueSize) * queueCount)
        guard description.mmapSize >= required else {
            throw .invalidInflight(description, reason: "mmap_size below the \(required) bytes this geometry needs")
        }
        let mapping: MemoryMapping
        do {
            mapping = try SharedMemory.map(received: fd, size: required, offset: description.mmapOffset)
        } catch {
            throw .memoryMapping(error)
        }
        let buffer = InflightBuffer(mapping: mapping, queueCount: queueCount, queueSize: queueSize)
        quiesced { inflight = buffer }
    }

    private func checkInflightGeometry(_ description: InflightDescription) throws(VhostUserError) {
        guard description.queueCount >= 1, Int(description.queueCount) <= rings.count else {
            throw .invalidInflight(description, reason: "queue count must be 1...\(rings.count)")
        }
        let maximum = min(device.maxQueueSize, 32768)
        guard description.queueSize >= 1, Int(description.queueSize) <= maximum else {
            throw .invalidInflight(description, reason: "queue size must be 1...\(maximum)")
        }
    }
}
