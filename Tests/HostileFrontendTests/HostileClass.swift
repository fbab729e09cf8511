#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// One class of bad input a back-end must survive (every field the vhost-user specification lets a
/// front-end choose, and the ring contents VIRTIO 1.2 §2.7-§2.8 let a driver write), sent
/// over a real socket. Each attack may first negotiate well-formed (so the bad message reaches
/// the state it targets), then sends the bad input; what the back-end does is checked by the
/// caller: it answers or closes, stays up, leaks nothing, and serves the next front-end.
enum HostileClass: String, CaseIterable, Sendable, CustomStringConvertible {
    // socket and message level
    case headerVersionBits, replyBitOnRequest, unknownRequest, oversizedSize, wrongFixedSize
    case truncatedPayloadThenClose, extraDescriptors, descriptorFlood
    // features and state machine
    case unofferedFeatures, unofferedProtocolFeatures, outOfOrderRingSetup
    // memory regions
    case tooManyRegions, regionDescriptorMismatch, regionAddressOverflow, overlappingRegions, regionPastEndOfFile
    // ring setup
    case ringIndexOutOfRange, ringSizeInvalid, ringAddressOutsideMemory, ringBaseTooLarge
    // ring contents (guest-controlled)
    case descriptorLoop, headOutOfRange, descriptorOutsideMemory, availableIndexJump
    // config, inflight, log; back-end channel
    case configOutOfRange, inflightOversized, inflightMappingTooSmall
    case logBeyondItsFile, logTooSmallForMemory, logUnmappable, ringLogWithoutLogAll, ringLogOutsideMemory
    case backendChannelNotASocket

    var description: String { rawValue }

    /// Sends the attack. The daemon may close the connection at any point of it (refusing is one
    /// of the two right answers), so a send or read that finds the peer gone ends the attack
    /// quietly; any other error is the test's own failure.
    func attack(_ wire: Wire, _ guest: Guest) throws {
        do {
            try send(wire, guest)
        } catch ScmSocketError.peerClosed {
            return
        }
    }

    private func send(_ wire: Wire, _ guest: Guest) throws {
        switch self {
        case .headerVersionBits:
            try wire.sendRaw(request: 1, flags: 0x2)
        case .replyBitOnRequest:
            try wire.sendRaw(request: 1, flags: 0x1 | 0x4)
        case .unknownRequest:
            try wire.sendRaw(request: 999)
        case .oversizedSize:
            // Header only: a back-end that trusted `size` would try to read or allocate 256 MiB.
            try wire.sendRaw(request: 5, size: 0x1000_0000)
        case .wrongFixedSize:
            try wire.sendRaw(request: 8, payload: le(UInt32(0)))
        case .truncatedPayloadThenClose:
            try wire.sendRaw(request: 5, size: 200, payload: [UInt8](repeating: 0, count: 10))
            _ = shutdown(wire.socket.descriptor, Int32(SHUT_WR))
        case .extraDescriptors:
            // GET_FEATURES takes no fd: three come with it.
            try wire.sendRaw(request: 1, fds: [guest.kick.waitDescriptor, guest.call.notifyDescriptor, guest.memory.descriptor])
        case .descriptorFlood:
            // More fds than any request carries (the kernel truncates past the receiver's space).
            try wire.sendRaw(request: 1, fds: [Int32](repeating: guest.kick.waitDescriptor, count: 12))
        case .unofferedFeatures:
            try negotiate(wire)
            try wire.send(.setFeatures(VirtioFeatures(rawValue: ~0)), needsReply: true)
        case .unofferedProtocolFeatures:
            try wire.send(.setProtocolFeatures(ProtocolFeatures(rawValue: ~0)))
            try wire.send(.setOwner, needsReply: true)
        case .outOfOrderRingSetup:
            try negotiate(wire)
            try wire.send(.setVringAddr(guest.vringAddress()), needsReply: true)
            try wire.send(.setVringKick(VringFileIndex(index: 0, hasFile: true)), needsReply: true, fds: [guest.kick.waitDescriptor])
            try wire.send(.setVringEnable(VringState(index: 0, num: 1)), needsReply: true)
        case .tooManyRegions:
            try negotiate(wire)
            let regions = (0..<9).flatMap { regionBytes(gpa: UInt64($0) << 20, size: 1 << 20, uva: UInt64($0) << 20, offset: 0) }
            try wire.sendRaw(request: 5, flags: 1 | 8, payload: le(UInt32(9)) + le(UInt32(0)) + regions,
                             fds: [guest.memory.descriptor])
        case .regionDescriptorMismatch:
            try negotiate(wire)
            let regions = regionBytes(gpa: 0, size: 1 << 20, uva: Guest.userBase, offset: 0)
                + regionBytes(gpa: 1 << 20, size: 1 << 20, uva: Guest.userBase + (1 << 20), offset: 0)
            try wire.sendRaw(request: 5, flags: 1 | 8, payload: le(UInt32(2)) + le(UInt32(0)) + regions,
                             fds: [guest.memory.descriptor])
        case .regionAddressOverflow:
            try negotiate(wire)
            try sendTable(wire, guest, [regionBytes(gpa: UInt64.max - 0xFFF, size: 0x2000, uva: Guest.userBase, offset: 0)])
        case .overlappingRegions:
            try negotiate(wire)
            let region = regionBytes(gpa: 0, size: 1 << 19, uva: Guest.userBase, offset: 0)
            try sendTable(wire, guest, [region, regionBytes(gpa: 1 << 18, size: 1 << 19, uva: Guest.userBase + (1 << 20), offset: 0)])
        case .regionPastEndOfFile:
            try negotiate(wire)
            // The memfd is 1 MiB: 2 MiB, or an offset at its end, would SIGBUS on access.
            try sendTable(wire, guest, [regionBytes(gpa: 0, size: 2 << 20, uva: Guest.userBase, offset: 0)])
            try sendTable(wire, guest, [regionBytes(gpa: 0, size: 4096, uva: Guest.userBase, offset: 1 << 20)])
        case .ringIndexOutOfRange:
            try negotiate(wire)
            try wire.send(.setVringNum(VringState(index: 255, num: 8)), needsReply: true)
            try wire.send(.getVringBase(VringState(index: 255, num: 0)))
            try wire.send(.setVringKick(VringFileIndex(index: 200, hasFile: true)), needsReply: true, fds: [guest.kick.waitDescriptor])
        case .ringSizeInvalid:
            try negotiate(wire)
            for num: UInt32 in [3, 0, 65536, 1 << 31] {
                try wire.send(.setVringNum(VringState(index: 0, num: num)), needsReply: true)
            }
        case .ringAddressOutsideMemory:
            try negotiate(wire)
            try wire.send(.setMemTable(MemoryTable(regions: [guest.region])), needsReply: true, fds: [guest.memory.descriptor])
            try wire.send(.setVringNum(VringState(index: 0, num: 8)), needsReply: true)
            let outside = VringAddress(index: 0, descriptorTable: Guest.userBase + UInt64(Guest.memorySize) - 64,
                                       usedRing: Guest.userBase + 0x3000, availableRing: Guest.userBase + 0x2000)
            try wire.send(.setVringAddr(outside), needsReply: true)
            let wrapping = VringAddress(index: 0, descriptorTable: UInt64.max - 15,
                                        usedRing: Guest.userBase + 0x3000, availableRing: Guest.userBase + 0x2000)
            try wire.send(.setVringAddr(wrapping), needsReply: true)
        case .ringBaseTooLarge:
            try negotiate(wire)
            try wire.send(.setVringNum(VringState(index: 0, num: 8)), needsReply: true)
            try wire.send(.setVringBase(VringState(index: 0, num: 0x1_0000)), needsReply: true)
        case .descriptorLoop:
            guard try guest.start(wire) else { return }
            writeDescriptor(guest, 0, address: Guest.bufferBase, length: 64, flags: 1 | 2, next: 0)
            makeAvailable(guest, head: 0)
        case .headOutOfRange:
            guard try guest.start(wire) else { return }
            makeAvailable(guest, head: 200)
        case .descriptorOutsideMemory:
            guard try guest.start(wire) else { return }
            writeDescriptor(guest, 0, address: UInt64.max - 0xFFF, length: 0x2000, flags: 2, next: 0)
            makeAvailable(guest, head: 0)
        case .availableIndexJump:
            guard try guest.start(wire) else { return }
            // avail->idx 100 ahead of what we consumed, with a ring of 8.
            guest.pointer(0x2002).storeBytes(of: UInt16(100).littleEndian, as: UInt16.self)
            try guest.kick.notify()
        case .configOutOfRange:
            try negotiate(wire)
            try wire.send(.getConfig(ConfigSpace(offset: 250, data: [UInt8](repeating: 0, count: 20))))
            // size field disagreeing with the payload.
            try wire.sendRaw(request: 24, payload: le(UInt32(0)) + le(UInt32(200)) + le(UInt32(0)) + [UInt8](repeating: 0, count: 8))
        case .inflightOversized:
            try negotiate(wire)
            try wire.send(.getInflightFD(InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 65535, queueSize: 65535)))
        case .inflightMappingTooSmall:
            try negotiate(wire)
            try wire.send(.setInflightFD(InflightDescription(mmapSize: 64, mmapOffset: 0, queueCount: 1, queueSize: 1024)),
                          needsReply: true, fds: [guest.memory.descriptor])
            try wire.send(.setInflightFD(InflightDescription(mmapSize: UInt64.max, mmapOffset: UInt64.max - 10, queueCount: 1,
                                                             queueSize: 8)), needsReply: true, fds: [guest.memory.descriptor])
        case .logBeyondItsFile:
            try negotiate(wire)
            // The memfd is 1 MiB: a log at its end would SIGBUS when a bit is set.
            try wire.send(.setLogBase(LogDescription(size: 4096, offset: 1 << 20)), fds: [guest.memory.descriptor])
            try wire.send(.setLogBase(LogDescription(size: UInt64.max, offset: UInt64.max - 10)), fds: [guest.memory.descriptor])
        case .logTooSmallForMemory:
            try negotiate(wire)
            try wire.send(.setMemTable(MemoryTable(regions: [guest.region])), needsReply: true, fds: [guest.memory.descriptor])
            // 1 MiB of memory needs 32 bytes of log.
            try wire.send(.setLogBase(LogDescription(size: 16, offset: 0)), fds: [guest.memory.descriptor])
        case .logUnmappable:
            try negotiate(wire)
            try wire.send(.setLogBase(LogDescription(size: 32, offset: 0)), fds: [guest.kick.waitDescriptor])
        case .ringLogWithoutLogAll:
            try negotiate(wire)
            var logged = guest.vringAddress()
            logged.flags = .log
            logged.logGuestAddress = Guest.addresses.deviceArea
            try wire.send(.setVringAddr(logged), needsReply: true)
        case .ringLogOutsideMemory:
            try negotiate(wire)
            try wire.send(.setFeatures(VirtioFeatures([.version1, .protocolFeatures, .logAll])), needsReply: true)
            try wire.send(.setMemTable(MemoryTable(regions: [guest.region])), needsReply: true, fds: [guest.memory.descriptor])
            try wire.send(.setVringNum(VringState(index: 0, num: 8)), needsReply: true)
            var logged = guest.vringAddress()
            logged.flags = .log
            logged.logGuestAddress = 1 << 40
            try wire.send(.setVringAddr(logged), needsReply: true)
        case .backendChannelNotASocket:
            try negotiate(wire)
            try wire.send(.setBackendRequestFD, needsReply: true, fds: [guest.memory.descriptor])
            try wire.send(.setBackendRequestFD, needsReply: true, fds: [guest.kick.waitDescriptor])
        }
    }

    /// The opening a real front-end makes (features read, REPLY_ACK taken, owner set).
    private func negotiate(_ wire: Wire) throws {
        _ = try wire.u64(.getFeatures)
        let offered = try wire.u64(.getProtocolFeatures) ?? 0
        // Everything a message below targets, when offered (so it passes the feature gate).
        let wanted: ProtocolFeatures = [.replyAck, .config, .inflightSharedMemory, .logSharedMemory, .backendRequest]
        try wire.send(.setProtocolFeatures(ProtocolFeatures(rawValue: offered & wanted.rawValue)))
        try wire.send(.setOwner)
    }

    private func sendTable(_ wire: Wire, _ guest: Guest, _ regions: [[UInt8]]) throws {
        try wire.sendRaw(request: 5, flags: 1 | 8, payload: le(UInt32(regions.count)) + le(UInt32(0)) + regions.flatMap { $0 },
                         fds: [Int32](repeating: guest.memory.descriptor, count: regions.count))
    }

    private func writeDescriptor(_ guest: Guest, _ index: Int, address: UInt64, length: UInt32, flags: UInt16, next: UInt16) {
        let base = guest.pointer(Guest.addresses.descriptorTable + UInt64(index * 16))
        base.storeBytes(of: address.littleEndian, toByteOffset: 0, as: UInt64.self)
        base.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        base.storeBytes(of: next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    private func makeAvailable(_ guest: Guest, head: UInt16) {
        guest.pointer(Guest.addresses.driverArea + 4).storeBytes(of: head.littleEndian, as: UInt16.self)
        guest.pointer(Guest.addresses.driverArea + 2).storeBytes(of: UInt16(1).littleEndian, as: UInt16.self)
        try? guest.kick.notify()
    }
}
