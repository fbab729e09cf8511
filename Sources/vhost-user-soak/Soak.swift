#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import VhostUserFrontend
import Virtio
import VirtioBlock
import VirtioBlockDriver

// vhost-user-soak: the front-end half of scripts/soak, against a vhost-user-blk daemon (the
// subcommands are in SoakCommand.swift).
//
// Every acknowledged write (status OK seen in the used ring) is printed as "ack SECTOR STAMP" on
// stdout, flushed at once, so a SIGKILL loses no acknowledgement. Each sector's 512 bytes are a
// function of (sector, stamp). Exit 0 on success, 1 with a message on stderr otherwise.

let sectorSize = 512
let cycleSectors: UInt64 = 2048
let writerSectors: UInt64 = 256

func fail(_ message: String) -> Never {
    var line = "vhost-user-soak: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

func pattern(sector: UInt64, stamp: UInt64) -> [UInt8] {
    var bytes = (0..<sectorSize).map { UInt8(truncatingIfNeeded: Int(sector &* 131) &+ $0 &* 7 &+ Int(stamp &* 29)) }
    withUnsafeBytes(of: sector.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
    withUnsafeBytes(of: stamp.littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
    return bytes
}

func acknowledge(_ sector: UInt64, _ stamp: UInt64) {
    let line = "ack \(sector) \(stamp)\n"
    var copy = line
    copy.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}

/// A connected, started front-end: 1 MiB of memory, one queue of 64, 32 request slots.
struct Session {
    let frontend: VhostUserFrontend
    let memory: GuestMemory
    let queue: FrontendQueue
    let slots: [VirtioBlockRequest]

    init(_ path: String) throws {
        frontend = try VhostUserFrontend(connectingTo: path, timeout: .seconds(10))
        _ = try frontend.negotiate(features: [.version1, .ringEventIndex, .ringIndirectDescriptors])
        let shared = try SharedMemory(size: 1 << 20)
        memory = try frontend.setMemory([FrontendMemoryRegion(shared)])
        queue = try frontend.startQueue(index: 0, size: 64, ringAddress: 0)
        slots = (0..<32).map { VirtioBlockRequest(at: 0x1_0000 + UInt64($0) * 4096, dataLength: UInt32(sectorSize)) }
    }

    /// Posts a write of `sector` in `slot`.
    func write(slot: Int, sector: UInt64, stamp: UInt64) throws -> UInt16 {
        let bytes = pattern(sector: sector, stamp: stamp)
        try bytes.withUnsafeBytes { try memory.write(guestPhysical: slots[slot].dataAddress, bytes: $0) }
        return try slots[slot].post(.write, sector: sector, on: queue, memory: memory)
    }

    /// The next completion's id, checked OK.
    func complete(_ byID: [UInt16: Int]) throws -> Int {
        guard let used = try queue.waitForUsed(timeout: .seconds(10)) else { fail("no completion within 10 s") }
        guard let slot = byID[used.id] else { fail("completion of unknown id \(used.id)") }
        let status = try slots[slot].status(in: memory)
        guard status == BlockStatus.ok else { fail("request status \(status)") }
        return slot
    }
}

func cycles(_ path: String, first: UInt64, count: UInt64) throws {
    for cycle in first..<(first + count) {
        let session = try Session(path)
        var ids: [UInt16: Int] = [:]
        var sectors: [Int: UInt64] = [:]
        for slot in 0..<8 {
            let sector = (cycle * 8 + UInt64(slot)) % cycleSectors
            ids[try session.write(slot: slot, sector: sector, stamp: cycle)] = slot
            sectors[slot] = sector
        }
        try session.queue.kickIfNeeded()
        for _ in 0..<8 {
            let slot = try session.complete(ids)
            acknowledge(sectors[slot] ?? 0, cycle)
        }
        // Read one back through the daemon.
        let readID = try session.slots[8].post(
            .read, sector: sectors[0] ?? 0, on: session.queue, memory: session.memory)
        try session.queue.kickIfNeeded()
        _ = try session.complete([readID: 8])
        var back = [UInt8](repeating: 0, count: sectorSize)
        try back.withUnsafeMutableBytes {
            try session.memory.read(guestPhysical: session.slots[8].dataAddress, into: $0)
        }
        guard back == pattern(sector: sectors[0] ?? 0, stamp: cycle) else { fail("cycle \(cycle): read back differs") }
        try session.frontend.disconnect()
    }
}

func writer(_ path: String, round: UInt64) throws {
    let session = try Session(path)
    let base = cycleSectors + round * writerSectors
    var next: UInt64 = 0
    var ids: [UInt16: Int] = [:]
    var sectors = [UInt64](repeating: 0, count: 32)
    for slot in 0..<16 where next < writerSectors {
        ids[try session.write(slot: slot, sector: base + next, stamp: round + 1_000_000)] = slot
        sectors[slot] = base + next
        next += 1
    }
    try session.queue.kickIfNeeded()
    while !ids.isEmpty {
        let slot = try session.complete(ids)
        ids = ids.filter { $0.value != slot }
        acknowledge(sectors[slot], round + 1_000_000)
        if next < writerSectors {
            ids[try session.write(slot: slot, sector: base + next, stamp: round + 1_000_000)] = slot
            sectors[slot] = base + next
            next += 1
            try session.queue.kickIfNeeded()
        }
    }
    // Area full: wait to be killed (the script always kills writers).
    while true { sleep(1) }
}

func verify(image: String, log: String) -> Int32 {
    guard let file = fopen(log, "r") else { fail("cannot open \(log)") }
    defer { fclose(file) }
    var last: [UInt64: UInt64] = [:]
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    while getline(&line, &capacity, file) > 0 {
        guard let line else { break }
        let fields = String(cString: line).split(separator: " ")
        guard fields.count == 3, fields[0] == "ack", let sector = UInt64(fields[1]),
            let stamp = UInt64(fields[2].trimmingSuffix())
        else { continue }
        last[sector] = stamp
    }
    free(line)
    let fd = open(image, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("cannot open \(image)") }
    defer { close(fd) }
    var bad = 0
    var buffer = [UInt8](repeating: 0, count: sectorSize)
    for (sector, stamp) in last {
        let n = buffer.withUnsafeMutableBytes {
            pread(fd, $0.baseAddress, sectorSize, off_t(sector) * off_t(sectorSize))
        }
        if n != sectorSize || buffer != pattern(sector: sector, stamp: stamp) { bad += 1 }
    }
    print("verify: \(last.count) acknowledged sectors checked, \(bad) wrong")
    return bad == 0 ? 0 : 1
}

extension Substring {
    func trimmingSuffix() -> Substring {
        var s = self
        while let c = s.last, c == "\n" || c == "\r" { s = s.dropLast() }
        return s
    }
}
