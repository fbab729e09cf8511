#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// One class of bad input a back-end must refuse (every field the vhost-user specification lets a
/// front-end choose, and the ring contents VIRTIO 1.2 §2.7-§2.8 let a driver write), sent over a
/// real socket. Each attack may first negotiate well-formed (so the bad message reaches the state
/// it targets), then sends the bad input and returns the back-end's `Answer` to it; the caller
/// checks it is a refusal, that the back-end stays up, leaks nothing, and serves the next front-end.
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

    /// How many variants of the bad input the class has; each is sent on a connection of its own
    /// (a back-end that refuses by closing would never see the second one on the same connection).
    var variants: Int {
        switch self {
        case .ringSizeInvalid: 4
        case .ringIndexOutOfRange: 3
        case .outOfOrderRingSetup, .regionPastEndOfFile, .ringAddressOutsideMemory, .configOutOfRange,
            .inflightMappingTooSmall,
            .logBeyondItsFile, .backendChannelNotASocket:
            2
        default: 1
        }
    }

    /// Whether the bad input is in the rings (guest memory) rather than in a message: the back-end
    /// must then mark the ring broken and signal its err fd, not necessarily close.
    var breaksARing: Bool {
        switch self {
        case .descriptorLoop, .headOutOfRange, .descriptorOutsideMemory, .availableIndexJump: true
        default: false
        }
    }

    /// Sends variant `variant` of the attack and returns what the back-end did about the bad input.
    /// Well-formed steps before it (negotiation, ring setup) must succeed: a back-end that refuses
    /// those is wrong too, and the attack would not reach its target. A send that finds the peer
    /// gone is a close (refusing is one of the right answers); any other error is the test's own.
    func attack(_ wire: Wire, _ guest: Guest, variant: Int = 0) throws -> Answer {
        do {
            return try send(wire, guest, variant)
        } catch ScmSocketError.peerClosed {
            return .closed
        }
    }

    private func send(_ wire: Wire, _ guest: Guest, _ variant: Int) throws -> Answer {
        switch self {
        case .headerVersionBits:
            try wire.sendRaw(request: 1, flags: 0x2)
            return wire.answer(query: true)
        case .replyBitOnRequest:
            try wire.sendRaw(request: 1, flags: 0x1 | 0x4)
            return wire.answer(query: true)
        case .unknownRequest:
            try wire.sendRaw(request: 999, flags: 1 | 8)
            return wire.answer(query: true)
        case .oversizedSize:
            // Header only: a back-end that trusted `size` would try to read or allocate 256 MiB.
            try wire.sendRaw(request: 5, flags: 1 | 8, size: 0x1000_0000)
            return wire.answer()
        case .wrongFixedSize:
            try wire.sendRaw(request: 8, flags: 1 | 8, payload: le(UInt32(0)))
            return wire.answer()
        case .truncatedPayloadThenClose:
            try wire.sendRaw(request: 5, flags: 1 | 8, size: 200, payload: [UInt8](repeating: 0, count: 10))
            _ = shutdown(wire.socket.descriptor, Int32(SHUT_WR))
            return wire.answer()
        case .extraDescriptors:
            // GET_FEATURES takes no fd: three come with it.
            try wire.sendRaw(
                request: 1, fds: [guest.kick.waitDescriptor, guest.call.notifyDescriptor, guest.memory.descriptor])
            return wire.answer(query: true)
        case .descriptorFlood:
            // More fds than any request carries (the kernel truncates past the receiver's space).
            try wire.sendRaw(request: 1, fds: [Int32](repeating: guest.kick.waitDescriptor, count: 12))
            return wire.answer(query: true)
        case .unofferedFeatures:
            try negotiate(wire)
            return try wire.refuse(.setFeatures(VirtioFeatures(rawValue: ~0)))
        case .unofferedProtocolFeatures:
            // Without REPLY_ACK there is no NACK to give: the back-end must close.
            try wire.send(.setProtocolFeatures(ProtocolFeatures(rawValue: ~0)))
            return wire.answer()
        case .outOfOrderRingSetup:
            // Resizing or rebasing a running ring (stop it with GET_VRING_BASE first).
            try start(wire, guest)
            return try wire.refuse(
                variant == 0 ? .setVringNum(VringState(index: 0, num: 4)) : .setVringBase(VringState(index: 0, num: 3)))
        case .tooManyRegions:
            try negotiate(wire)
            let regions = (0..<9).flatMap {
                regionBytes(gpa: UInt64($0) << 20, size: 1 << 20, uva: UInt64($0) << 20, offset: 0)
            }
            try wire.sendRaw(
                request: 5, flags: 1 | 8, payload: le(UInt32(9)) + le(UInt32(0)) + regions,
                fds: [guest.memory.descriptor])
            return wire.answer()
        case .regionDescriptorMismatch:
            try negotiate(wire)
            let regions =
                regionBytes(gpa: 0, size: 1 << 20, uva: Guest.userBase, offset: 0)
                + regionBytes(gpa: 1 << 20, size: 1 << 20, uva: Guest.userBase + (1 << 20), offset: 0)
            try wire.sendRaw(
                request: 5, flags: 1 | 8, payload: le(UInt32(2)) + le(UInt32(0)) + regions,
                fds: [guest.memory.descriptor])
            return wire.answer()
        case .regionAddressOverflow:
            try negotiate(wire)
            return try sendTable(
                wire, guest, [regionBytes(gpa: UInt64.max - 0xFFF, size: 0x2000, uva: Guest.userBase, offset: 0)])
        case .overlappingRegions:
            try negotiate(wire)
            let region = regionBytes(gpa: 0, size: 1 << 19, uva: Guest.userBase, offset: 0)
            return try sendTable(
                wire, guest,
                [region, regionBytes(gpa: 1 << 18, size: 1 << 19, uva: Guest.userBase + (1 << 20), offset: 0)])
        case .regionPastEndOfFile:
            try negotiate(wire)
            // The memfd is 1 MiB: 2 MiB, or an offset at its end, would SIGBUS on access.
            let region =
                variant == 0
                ? regionBytes(gpa: 0, size: 2 << 20, uva: Guest.userBase, offset: 0)
                : regionBytes(gpa: 0, size: 4096, uva: Guest.userBase, offset: 1 << 20)
            return try sendTable(wire, guest, [region])
        case .ringIndexOutOfRange:
            try negotiate(wire)
            switch variant {
            case 0: return try wire.refuse(.setVringNum(VringState(index: 255, num: 8)))
            case 1:
                try wire.send(.getVringBase(VringState(index: 255, num: 0)))
                return wire.answer(query: true)
            default:
                return try wire.refuse(
                    .setVringKick(VringFileIndex(index: 200, hasFile: true)), fds: [guest.kick.waitDescriptor])
            }
        case .ringSizeInvalid:
            try negotiate(wire)
            let num: UInt32 = [3, 0, 65536, 1 << 31][variant]
            return try wire.refuse(.setVringNum(VringState(index: 0, num: num)))
        case .ringAddressOutsideMemory:
            try negotiate(wire)
            try wire.acked(.setMemTable(MemoryTable(regions: [guest.region])), fds: [guest.memory.descriptor])
            try wire.acked(.setVringNum(VringState(index: 0, num: 8)))
            let table = variant == 0 ? Guest.userBase + UInt64(Guest.memorySize) - 64 : UInt64.max - 15
            let address = VringAddress(
                index: 0, descriptorTable: table, usedRing: Guest.userBase + 0x3000,
                availableRing: Guest.userBase + 0x2000)
            // Addresses may be checked when they arrive or when the ring starts (its kick fd).
            return try wire.refuseBy([
                (.setVringAddr(address), []),
                (.setVringKick(VringFileIndex(index: 0, hasFile: true)), [guest.kick.waitDescriptor]),
            ])
        case .ringBaseTooLarge:
            try negotiate(wire)
            try wire.acked(.setVringNum(VringState(index: 0, num: 8)))
            return try wire.refuse(.setVringBase(VringState(index: 0, num: 0x1_0000)))
        case .descriptorLoop:
            try start(wire, guest)
            writeDescriptor(guest, 0, address: Guest.bufferBase, length: 64, flags: 1 | 2, next: 0)
            return try breakRing(guest, head: 0)
        case .headOutOfRange:
            try start(wire, guest)
            return try breakRing(guest, head: 200)
        case .descriptorOutsideMemory:
            try start(wire, guest)
            writeDescriptor(guest, 0, address: UInt64.max - 0xFFF, length: 0x2000, flags: 2, next: 0)
            return try breakRing(guest, head: 0)
        case .availableIndexJump:
            try start(wire, guest)
            // avail->idx 100 ahead of what we consumed, with a ring of 8.
            guest.pointer(Guest.addresses.driverArea + 2).storeBytes(of: UInt16(100).littleEndian, as: UInt16.self)
            try guest.kick.notify()
            return guest.ringAnswer()
        case .configOutOfRange:
            try negotiate(wire)
            if variant == 0 {
                try wire.send(.getConfig(ConfigSpace(offset: 250, data: [UInt8](repeating: 0, count: 20))))
            } else {
                // A size field disagreeing with the payload.
                try wire.sendRaw(
                    request: 24,
                    payload: le(UInt32(0)) + le(UInt32(200)) + le(UInt32(0)) + [UInt8](repeating: 0, count: 8))
            }
            return wire.answer(query: true)
        case .inflightOversized:
            try negotiate(wire)
            try wire.send(
                .getInflightFD(InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 65535, queueSize: 65535)))
            return wire.answer(query: true)
        case .inflightMappingTooSmall:
            try negotiate(wire)
            let description =
                variant == 0
                ? InflightDescription(mmapSize: 64, mmapOffset: 0, queueCount: 1, queueSize: 1024)
                : InflightDescription(mmapSize: UInt64.max, mmapOffset: UInt64.max - 10, queueCount: 1, queueSize: 8)
            return try wire.refuse(.setInflightFD(description), fds: [guest.memory.descriptor])
        case .logBeyondItsFile:
            try negotiate(wire)
            // The memfd is 1 MiB: a log at its end would SIGBUS when a bit is set. SET_LOG_BASE is
            // always answered (u64 0 once the log is mapped): a refusal is a non-zero one or a close.
            let log =
                variant == 0
                ? LogDescription(size: 4096, offset: 1 << 20)
                : LogDescription(size: UInt64.max, offset: UInt64.max - 10)
            try wire.send(.setLogBase(log), fds: [guest.memory.descriptor])
            return wire.answer()
        case .logTooSmallForMemory:
            try negotiate(wire)
            try wire.acked(.setMemTable(MemoryTable(regions: [guest.region])), fds: [guest.memory.descriptor])
            // 1 MiB of memory needs 32 bytes of log.
            try wire.send(.setLogBase(LogDescription(size: 16, offset: 0)), fds: [guest.memory.descriptor])
            return wire.answer()
        case .logUnmappable:
            try negotiate(wire)
            try wire.send(.setLogBase(LogDescription(size: 32, offset: 0)), fds: [guest.kick.waitDescriptor])
            return wire.answer()
        case .ringLogWithoutLogAll:
            try negotiate(wire)
            var logged = guest.vringAddress()
            logged.flags = .log
            logged.logGuestAddress = Guest.addresses.deviceArea
            return try wire.refuse(.setVringAddr(logged))
        case .ringLogOutsideMemory:
            try negotiate(wire)
            try wire.acked(.setFeatures(VirtioFeatures([.version1, .protocolFeatures, .logAll])))
            try wire.acked(.setMemTable(MemoryTable(regions: [guest.region])), fds: [guest.memory.descriptor])
            try wire.acked(.setVringNum(VringState(index: 0, num: 8)))
            var logged = guest.vringAddress()
            logged.flags = .log
            logged.logGuestAddress = 1 << 40
            // Checked when the addresses arrive or when the ring starts (its kick fd).
            return try wire.refuseBy([
                (.setVringAddr(logged), []),
                (.setVringKick(VringFileIndex(index: 0, hasFile: true)), [guest.kick.waitDescriptor]),
            ])
        case .backendChannelNotASocket:
            try negotiate(wire)
            return try wire.refuse(
                .setBackendRequestFD, fds: [variant == 0 ? guest.memory.descriptor : guest.kick.waitDescriptor])
        }
    }

    /// Starts ring 0 well-formed; the attack cannot reach the ring otherwise.
    private func start(_ wire: Wire, _ guest: Guest) throws {
        guard try guest.start(wire) else { throw AttackSetupFailed(step: "ring setup refused") }
    }

    /// Publishes `head` and kicks: the back-end must signal the ring's err fd and complete nothing.
    private func breakRing(_ guest: Guest, head: UInt16) throws -> Answer {
        makeAvailable(guest, head: head)
        try guest.kick.notify()
        return guest.ringAnswer()
    }

    /// The opening a real front-end makes (features read, REPLY_ACK taken, owner set).
    private func negotiate(_ wire: Wire) throws {
        guard try wire.u64(.getFeatures) != nil else { throw AttackSetupFailed(step: "GET_FEATURES") }
        guard let offered = try wire.u64(.getProtocolFeatures) else {
            throw AttackSetupFailed(step: "GET_PROTOCOL_FEATURES")
        }
        // Everything a message below targets, when offered (so it passes the feature gate). The
        // attacks need REPLY_ACK: a NACK is how the back-end refuses without closing.
        guard offered & ProtocolFeatures.replyAck.rawValue != 0 else {
            throw AttackSetupFailed(step: "REPLY_ACK not offered")
        }
        let wanted: ProtocolFeatures = [.replyAck, .config, .inflightSharedMemory, .logSharedMemory, .backendRequest]
        try wire.send(.setProtocolFeatures(ProtocolFeatures(rawValue: offered & wanted.rawValue)))
        try wire.acked(.setOwner)
    }

    private func sendTable(_ wire: Wire, _ guest: Guest, _ regions: [[UInt8]]) throws -> Answer {
        try wire.sendRaw(
            request: 5, flags: 1 | 8, payload: le(UInt32(regions.count)) + le(UInt32(0)) + regions.flatMap { $0 },
            fds: [Int32](repeating: guest.memory.descriptor, count: regions.count))
        return wire.answer()
    }

    private func writeDescriptor(
        _ guest: Guest, _ index: Int, address: UInt64, length: UInt32, flags: UInt16, next: UInt16
    ) {
        let base = guest.pointer(Guest.addresses.descriptorTable + UInt64(index * 16))
        base.storeBytes(of: address.littleEndian, toByteOffset: 0, as: UInt64.self)
        base.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        base.storeBytes(of: next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    private func makeAvailable(_ guest: Guest, head: UInt16) {
        guest.pointer(Guest.addresses.driverArea + 4).storeBytes(of: head.littleEndian, as: UInt16.self)
        guest.pointer(Guest.addresses.driverArea + 2).storeBytes(of: UInt16(1).littleEndian, as: UInt16.self)
    }
}

/// A well-formed step before the bad input was not answered as a correct back-end answers it.
struct AttackSetupFailed: Error, CustomStringConvertible {
    let step: String
    var description: String { "well-formed setup failed at \(step)" }
}
