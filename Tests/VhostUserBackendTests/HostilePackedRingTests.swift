import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A hostile driver of a packed ring, written by hand into guest memory (no driver queue to keep
/// it honest), against a session serving `PatternDevice` (fills writable bytes with 0x3C).
final class PackedHostileRig {
    static let size = 8
    static let userBase: UInt64 = 0x7f00_0000_0000
    static let ring: UInt64 = 0x1000
    static let driverEvent: UInt64 = 0x2000
    static let deviceEvent: UInt64 = 0x2100
    static let avail: UInt16 = 1 << 7
    static let used: UInt16 = 1 << 15
    static let next: UInt16 = 1
    static let write: UInt16 = 2
    let memory: SharedMemory
    let kick: EventNotifier
    let call: EventNotifier
    let err: EventNotifier
    let session: VhostUserSession

    init(
        device: any VhostUserDevice = PatternDevice(pattern: 0x3C, packed: true),
        features: VirtioFeatures = [.version1, .ringPacked, .ringEventIndex],
        base: UInt32 = 0x8000_8000
    ) throws {
        memory = try SharedMemory(size: 1 << 20)
        kick = try EventNotifier()
        call = try EventNotifier()
        err = try EventNotifier()
        session = try VhostUserSession(
            device: device, options: VhostUserSessionOptions(completionTimeout: .milliseconds(50)))
        let region = MemoryRegion(guestPhysicalAddress: 0, size: 1 << 20, userAddress: Self.userBase, mmapOffset: 0)
        let requests: [(FrontendMessage, [Int32])] = [
            (.setOwner, []),
            (.setFeatures(features), []),
            (.setMemTable(MemoryTable(regions: [region])), [memory.descriptor]),
            (.setVringNum(VringState(index: 0, num: UInt32(Self.size))), []),
            (.setVringBase(VringState(index: 0, num: base)), []),
            (
                .setVringAddr(
                    VringAddress(
                        index: 0, descriptorTable: Self.userBase + Self.ring,
                        usedRing: Self.userBase + Self.deviceEvent,
                        availableRing: Self.userBase + Self.driverEvent)), []
            ),
            (.setVringErr(VringFileIndex(index: 0, hasFile: true)), [err.notifyDescriptor]),
            (.setVringCall(VringFileIndex(index: 0, hasFile: true)), [call.notifyDescriptor]),
            (.setVringKick(VringFileIndex(index: 0, hasFile: true)), [kick.waitDescriptor]),
        ]
        for (body, fds) in requests { _ = try session.handle(message(body, fds: fds)) }
    }

    deinit { session.close() }

    /// Writes ring slot `slot` (flags as given: no AVAIL/USED added).
    func descriptor(_ slot: Int, address: UInt64, length: UInt32, id: UInt16, flags: UInt16) {
        let d = memory.mapping.base + Int(Self.ring) + slot * 16
        d.storeBytes(of: address.littleEndian, as: UInt64.self)
        d.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: id.littleEndian, toByteOffset: 12, as: UInt16.self)
        d.storeBytes(of: flags.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    func flags(_ slot: Int) -> UInt16 {
        (memory.mapping.base + Int(Self.ring) + slot * 16).load(fromByteOffset: 14, as: UInt16.self)
    }

    func byte(at address: UInt64) -> UInt8 { memory.mapping.base.load(fromByteOffset: Int(address), as: UInt8.self) }

    /// Kicks; true if the ring broke (its err fd signalled) within a bound (1 s).
    func kickBreaks() throws -> Bool {
        try kick.notify()
        return waitForSignal(err, milliseconds: 1000)
    }

    /// Kicks; true once slot `slot` is marked used in this lap (bounded: 1 s).
    func kickServes(slot: Int) throws -> Bool {
        try kick.notify()
        for _ in 0..<1000 {
            if flags(slot) & (Self.avail | Self.used) == Self.avail | Self.used { return true }
            usleepMilliseconds(1)
        }
        return false
    }

    /// Kicks and gives the worker time to act on it (for checking that nothing happened).
    func kickAndSettle() throws {
        try kick.notify()
        usleepMilliseconds(30)
    }
}

@Suite("Hostile driver on a packed ring")
struct HostilePackedRingTests {
    typealias Rig = PackedHostileRig

    /// A slot whose AVAIL/USED bits do not say "available in this lap" is not consumed: nothing is
    /// written to its buffer and the ring keeps working for an honest descriptor afterwards.
    @Test(arguments: [
        ("used pattern of this lap", Rig.avail | Rig.used),
        ("available in the other lap", Rig.used),
        ("neither bit", UInt16(0)),
    ])
    func flagsThatLieAreNotConsumed(_ name: String, _ bits: UInt16) throws {
        let rig = try Rig()
        rig.descriptor(0, address: 0x10000, length: 64, id: 0, flags: bits | Rig.write)
        try rig.kickAndSettle()
        #expect(rig.byte(at: 0x10000) == 0, "\(name): the buffer was written")
        #expect(rig.flags(0) == bits | Rig.write, "\(name): the slot was marked used")
        // The honest version of the same slot is served.
        rig.descriptor(0, address: 0x10000, length: 64, id: 0, flags: Rig.avail | Rig.write)
        #expect(try rig.kickServes(slot: 0))
        #expect(rig.byte(at: 0x10000) == 0x3C)
    }

    /// A buffer id at or beyond the queue size, or one already in flight: the ring breaks (err fd),
    /// nothing is written.
    @Test func idsOutOfRangeOrReusedBreakTheRing() throws {
        let outOfRange = try Rig()
        outOfRange.descriptor(0, address: 0x10000, length: 64, id: UInt16(Rig.size), flags: Rig.avail | Rig.write)
        #expect(try outOfRange.kickBreaks())
        #expect(outOfRange.byte(at: 0x10000) == 0)

        // A second chain naming an id the device still holds (postponed).
        let holder = PostponingDevice(packed: true)
        let reused = try Rig(device: holder)
        reused.descriptor(0, address: 0x10000, length: 64, id: 3, flags: Rig.avail | Rig.write)
        reused.descriptor(1, address: 0x11000, length: 64, id: 3, flags: Rig.avail | Rig.write)
        #expect(try reused.kickBreaks())
        let held = holder.take(1)
        #expect(held.map { $0.chain.id } == [3])
        #expect(reused.byte(at: 0x11000) == 0)
    }

    /// Wrap counters in SET_VRING_BASE that put a position outside the ring are refused when the
    /// ring starts; a base whose wrap bits disagree with the ring contents just finds nothing.
    @Test func baseWithBadWrapCountersOrSlots() throws {
        #expect(throws: VhostUserError.self) { _ = try Rig(base: 0x8000_8000 | UInt32(Rig.size)) }
        #expect(throws: VhostUserError.self) { _ = try Rig(base: 0x8000_8000 | UInt32(Rig.size) << 16) }
        // Expecting wrap counter 0 while the driver writes lap 1 (AVAIL=1, USED=0): not available.
        let rig = try Rig(base: 0)
        rig.descriptor(0, address: 0x10000, length: 64, id: 0, flags: Rig.avail | Rig.write)
        try rig.kickAndSettle()
        #expect(rig.byte(at: 0x10000) == 0)
        #expect(
            try rig.session.handle(message(.getVringBase(VringState(index: 0, num: 0))))?.payload
                == .vringState(VringState(index: 0, num: 0)))
    }

    /// A long chain (more than the four descriptors pop keeps translated) rewritten by the guest
    /// while the device holds it: the device walks the copy of its ring descriptors taken at pop
    /// (the ring slots are the driver's to reuse once used, VIRTIO 1.2 §2.8), so the rewrite
    /// changes nothing and nothing outside guest memory is ever handed out.
    @Test func descriptorRewrittenMidChainIsIgnored() throws {
        let holder = PostponingDevice(packed: true)
        let rig = try Rig(device: holder)
        for slot in 0..<6 {
            let last = slot == 5
            rig.descriptor(
                slot, address: 0x10000 + UInt64(slot) * 0x100, length: 64, id: last ? 1 : 0,
                flags: Rig.avail | Rig.write | (last ? 0 : Rig.next))
        }
        try rig.kick.notify()
        let held = holder.take(1)
        try #require(held.count == 1)
        let chain = held[0].chain
        #expect(chain.writableLength == 6 * 64)
        // The session's own mapping of guest memory: every piece handed out must lie in it.
        let mapped = try #require(rig.session.memory?.regions.first?.mapping)
        // Slot 4 now points beyond guest memory, then at a longer buffer.
        for (address, length) in [(UInt64(1) << 40, UInt32(64)), (0x10400, UInt32(4096))] {
            rig.descriptor(4, address: address, length: length, id: 0, flags: Rig.avail | Rig.write | Rig.next)
            var buffers = chain.buffers()
            var pieces: [(offset: Int, count: Int)] = []
            while let buffer = try buffers.next() {
                let offset = try #require(buffer.bytes.baseAddress) - mapped.base
                pieces.append((offset, buffer.bytes.count))
            }
            #expect(pieces.map(\.offset) == (0..<6).map { 0x10000 + $0 * 0x100 })
            #expect(pieces.allSatisfy { $0.count == 64 })
        }
        // The device gives the chain back (nothing written): accepted, the driver sees it used.
        try held[0].complete(written: 0)
        #expect(try rig.kickServes(slot: 0))
    }
}
