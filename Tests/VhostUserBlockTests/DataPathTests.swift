import Testing
import VhostUserProtocol
import Virtio
import VMMSysUtil

/// A front-end in this process starts ring 0 of a `vhost-user-blk` process the way QEMU does and
/// drives virtio-blk requests through it over shared memory, kick and call notifiers.
@Suite("vhost-user-blk data path", .serialized)
struct DataPathTests {
    static let userBase: UInt64 = 0x7f00_0000_0000
    static let memorySize = 1 << 20
    static let queueSize = 8
    static let addresses = RingAddresses(descriptorTable: 0x1000, driverArea: 0x2000, deviceArea: 0x3000)
    static let header: UInt64 = 0x10000
    static let data: UInt64 = 0x20000
    static let status: UInt64 = 0x30000

    /// The driver side of one started ring.
    final class Guest {
        let memory: SharedMemory
        let guest: GuestMemory
        let driver: DriverSplitQueue
        let kick: EventNotifier
        let call: EventNotifier
        var reaped: UInt16 = 0

        init(frontEnd: FrontEnd, features: UInt64) throws {
            memory = try SharedMemory(size: DataPathTests.memorySize)
            guest = try GuestMemory(regions: [
                GuestMemoryRegion(
                    guestPhysicalAddress: 0, size: UInt64(DataPathTests.memorySize),
                    userAddress: DataPathTests.userBase,
                    mapping: memory.mapping)
            ])
            driver = try DriverSplitQueue(
                memory: guest, size: DataPathTests.queueSize, addresses: DataPathTests.addresses,
                features: [.ringEventIndex, .ringIndirectDescriptors])
            kick = try EventNotifier()
            call = try EventNotifier()
            let region = MemoryRegion(
                guestPhysicalAddress: 0, size: UInt64(DataPathTests.memorySize),
                userAddress: DataPathTests.userBase, mmapOffset: 0)
            let base = DataPathTests.userBase
            let a = DataPathTests.addresses
            try frontEnd.send(.setOwner)
            try frontEnd.send(.setFeatures(VirtioFeatures(rawValue: features)))
            try frontEnd.send(.setMemTable(MemoryTable(regions: [region])), fds: [memory.descriptor], needsReply: true)
            try frontEnd.send(.setVringNum(VringState(index: 0, num: UInt32(DataPathTests.queueSize))))
            try frontEnd.send(.setVringBase(VringState(index: 0, num: 0)))
            try frontEnd.send(
                .setVringAddr(
                    VringAddress(
                        index: 0, descriptorTable: base + a.descriptorTable,
                        usedRing: base + a.deviceArea, availableRing: base + a.driverArea)))
            try frontEnd.send(.setVringKick(VringFileIndex(index: 0, hasFile: true)), fds: [kick.waitDescriptor])
            try frontEnd.send(.setVringCall(VringFileIndex(index: 0, hasFile: true)), fds: [call.notifyDescriptor])
            try frontEnd.send(.setVringEnable(VringState(index: 0, num: 1)), needsReply: true)
        }

        /// Negotiates as QEMU does (the device features offered masked by `wanted`; the protocol
        /// features MQ, REPLY_ACK and CONFIG when offered) and starts ring 0.
        convenience init(negotiatingWith frontEnd: FrontEnd, wanted: UInt64) throws {
            let offered = try frontEnd.requestU64(1)
            let protocolOffered = try frontEnd.requestU64(15)
            try frontEnd.send(.setProtocolFeatures(ProtocolFeatures(rawValue: protocolOffered & (1 << 9 | 1 << 3 | 1))))
            try self.init(frontEnd: frontEnd, features: offered & wanted)
        }

        /// Posts header / data / status buffers, kicks, waits (bounded) for the completion.
        /// Returns (used length, status byte).
        func request(
            type: UInt32, sector: UInt64, readable: [UInt8] = [], writable: Int = 0,
            kick: Bool = true
        ) throws -> (UInt32, UInt8) {
            let header =
                withUnsafeBytes(of: type.littleEndian) { Array($0) } + [0, 0, 0, 0]
                + withUnsafeBytes(of: sector.littleEndian) { Array($0) }
            try (header + readable).withUnsafeBytes { try guest.write(guestPhysical: DataPathTests.header, bytes: $0) }
            try [UInt8(0xEE)].withUnsafeBytes { try guest.write(guestPhysical: DataPathTests.status, bytes: $0) }
            var buffers = [
                DriverBuffer(address: DataPathTests.header, length: UInt32(16 + readable.count), isWritable: false)
            ]
            if writable > 0 {
                buffers.append(DriverBuffer(address: DataPathTests.data, length: UInt32(writable), isWritable: true))
            }
            buffers.append(DriverBuffer(address: DataPathTests.status, length: 1, isWritable: true))
            let id = try driver.post(buffers)
            driver.setUsedEvent(reaped)
            if kick { try self.kick.notify() }
            for _ in 0..<10 {
                if let used = try driver.reap() {
                    reaped &+= 1
                    #expect(used.id == id)
                    return (used.length, try guest.load(UInt8.self, guestPhysical: DataPathTests.status))
                }
                _ = waitForSignal(call)
            }
            throw Failure(description: "no completion")
        }

        func bytes(_ count: Int) throws -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: count)
            try bytes.withUnsafeMutableBytes { try guest.read(guestPhysical: DataPathTests.data, into: $0) }
            return bytes
        }
    }

    /// The I/O configurations every data-path test runs in: page cache and the default engine,
    /// then the page cache bypassed with each engine (io_uring only where this machine has it).
    static let engines: [[String]] = [
        [], ["--cache", "none", "--aio", "threads"], ["--cache=none", "--aio=io_uring"], ["--aio", "threads"],
        ["--cache", "none", "--poll-us", "200"],
    ]
    .filter { !$0.contains { $0.contains("io_uring") } || AsyncFileEngineKind.preferred == .ioUring }

    @Test(
        "IN, OUT, FLUSH, GET_ID, WRITE_ZEROES and an unknown type through the daemon (paced: --iops-limit)",
        arguments: [false, true], [false, true])
    func requests(readOnly: Bool, paced: Bool) throws {
        for engine in Self.engines { try requests(readOnly: readOnly, paced: paced, engine: engine) }
    }

    func requests(readOnly: Bool, paced: Bool, engine: [String]) throws {
        var random = SystemRandomNumberGenerator()
        let initial = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let image = try TemporaryFile(size: 1 << 20, contents: initial)
        let daemon = try Daemon(
            arguments: ["--blk-file", image.path] + (readOnly ? ["--read-only"] : [])
                + (paced ? ["--iops-limit", "1000"] : []) + engine)
        let frontEnd = daemon.frontEnd
        let wanted: UInt64 = 1 << 32 | 1 << 30 | 1 << 29 | 1 << 28 | 1 << 9 | 1 << 13 | 1 << 14 | 1 << 5
        let guest = try Guest(negotiatingWith: frontEnd, wanted: wanted)

        // IN: 4 KiB at sector 4.
        let (readLength, readStatus) = try guest.request(type: 0, sector: 4, writable: 4096)
        #expect(readStatus == 0 && readLength == 4097)
        #expect(try guest.bytes(4096) == Array(initial[2048..<(2048 + 4096)]))
        // OUT: 1 KiB at sector 10.
        let payload = (0..<1024).map { _ in UInt8.random(in: 0...255, using: &random) }
        let (writeLength, writeStatus) = try guest.request(type: 1, sector: 10, readable: payload)
        #expect(writeLength == 1)
        var expected = initial
        if readOnly {
            #expect(writeStatus == 1)
        } else {
            #expect(writeStatus == 0)
            expected.replaceSubrange(5120..<6144, with: payload)
        }
        #expect(try guest.request(type: 4, sector: 0).1 == 0)
        let (idLength, idStatus) = try guest.request(type: 8, sector: 0, writable: 20)
        let id = try guest.bytes(20)
        #expect(idStatus == 0 && idLength == 21 && !id.contains(0))
        // WRITE_ZEROES: sectors 100..<108 with unmap.
        let segment =
            withUnsafeBytes(of: UInt64(100).littleEndian) { Array($0) }
            + withUnsafeBytes(of: UInt32(8).littleEndian) { Array($0) }
            + withUnsafeBytes(of: UInt32(1).littleEndian) { Array($0) }
        let zeroStatus = try guest.request(type: 13, sector: 0, readable: segment).1
        if readOnly {
            #expect(zeroStatus == 1)
        } else {
            #expect(zeroStatus == 0)
            expected.replaceSubrange(51200..<55296, with: [UInt8](repeating: 0, count: 4096))
        }
        #expect(try guest.request(type: 77, sector: 0, writable: 512).1 == 2)
        // Out of range: the last sector plus one.
        #expect(try guest.request(type: 0, sector: 2047, writable: 1024).1 == 1)
        #expect(try image.contents() == expected)
    }

    @Test("a full ring of reads and writes in flight at once completes, each with its own data", arguments: engines)
    func fullRing(engine: [String]) throws {
        var random = SystemRandomNumberGenerator()
        let initial = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let image = try TemporaryFile(size: 1 << 20, contents: initial)
        let daemon = try Daemon(arguments: ["--blk-file", image.path] + engine)
        let frontEnd = daemon.frontEnd
        let guest = try Guest(negotiatingWith: frontEnd, wanted: 1 << 32 | 1 << 30 | 1 << 29 | 1 << 28 | 1 << 9)
        // Request i: a 4 KiB read (even i) or write (odd i) at sector 8 * (3 * i + 1), its header,
        // data and status in their own buffers (an indirect table each, so all fit in the ring).
        var expected = initial
        var ids: [UInt16: Int] = [:]
        let count = DataPathTests.queueSize
        for i in 0..<count {
            let sector = UInt64(8 * (3 * i + 1))
            let base = DataPathTests.data + UInt64(i) * 0x2000
            let isWrite = i % 2 == 1
            let header = le32(isWrite ? 1 : 0) + le32(0) + le(sector)
            try header.withUnsafeBytes { try guest.guest.write(guestPhysical: base, bytes: $0) }
            if isWrite {
                let payload = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &random) }
                try payload.withUnsafeBytes { try guest.guest.write(guestPhysical: base + 0x1000, bytes: $0) }
                expected.replaceSubrange(Int(sector) * 512..<(Int(sector) * 512 + 4096), with: payload)
            }
            try [UInt8(0xEE)].withUnsafeBytes { try guest.guest.write(guestPhysical: base + 16, bytes: $0) }
            let id = try guest.driver.post(
                [
                    DriverBuffer(address: base, length: 16, isWritable: false),
                    DriverBuffer(address: base + 0x1000, length: 4096, isWritable: !isWrite),
                    DriverBuffer(address: base + 16, length: 1, isWritable: true),
                ], indirectTable: base + 0x100)
            ids[id] = i
        }
        guest.driver.setUsedEvent(0)
        try guest.kick.notify()
        var done = 0
        for _ in 0..<200 where done < count {
            while let used = try guest.driver.reap() {
                guard let i = ids.removeValue(forKey: used.id) else {
                    Issue.record("unexpected or repeated used id \(used.id)")
                    continue
                }
                done += 1
                guest.driver.setUsedEvent(UInt16(done))
                let base = DataPathTests.data + UInt64(i) * 0x2000
                #expect(try guest.guest.load(UInt8.self, guestPhysical: base + 16) == 0, "request \(i)")
                if i % 2 == 0 {
                    #expect(used.length == 4097)
                    var bytes = [UInt8](repeating: 0, count: 4096)
                    try bytes.withUnsafeMutableBytes { try guest.guest.read(guestPhysical: base + 0x1000, into: $0) }
                    let sector = 8 * (3 * i + 1)
                    #expect(bytes == Array(initial[(sector * 512)..<(sector * 512 + 4096)]), "request \(i)")
                }
            }
            if done < count { _ = waitForSignal(guest.call) }
        }
        #expect(done == count)
        #expect(try image.contents() == expected)
    }

    @Test(
        "with a polling window the daemon finds requests posted without a kick", arguments: [[], ["--cache", "none"]])
    func pollingWindow(engine: [String]) throws {
        let image = try TemporaryFile(size: 1 << 20)
        // The longest window: every request below is posted well within it.
        let daemon = try Daemon(arguments: ["--blk-file", image.path, "--poll-us", "1000000"] + engine)
        let frontEnd = daemon.frontEnd
        let guest = try Guest(negotiatingWith: frontEnd, wanted: 1 << 32 | 1 << 30 | 1 << 29 | 1 << 9)
        #expect(try guest.request(type: 0, sector: 0, writable: 512).1 == 0)
        // Without kicks, only a worker still polling sees these.
        for sector in [8, 16, 24] as [UInt64] {
            #expect(try guest.request(type: 0, sector: sector, writable: 512, kick: false).1 == 0)
        }
    }
}
