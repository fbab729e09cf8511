import Testing
import VhostUserProtocol
import Virtio
import VMMSysUtil

/// The daemon starts chains the driver posted while requests were in flight as soon as those
/// complete, without waiting for a kick: the disk gets the next round's first requests while
/// the worker completes the rest of this one.
@Suite("vhost-user-blk completion pipeline", .serialized)
struct CompletionPipelineTests {
    /// The asynchronous configurations (the synchronous engine completes inside `process`).
    /// Only with the page cache bypassed: a read served from the page cache by the thread pool
    /// finishes within the microsecond the test takes to post the late chain, so on a machine
    /// with idle cores no attempt is conclusive (CI saw 0 of 200). The device's pipeline is the
    /// same whatever the file's cache mode, so these cases cover it for every engine.
    static let engines: [[String]] = AsyncFileEngineKind.allCases.filter(\.isUsable).map {
        ["--cache", "none", "--aio", $0.rawValue]
    }

    /// Reads in flight at once before the one posted without a kick.
    static let inFlight = 6
    static let readLength = 0x1_0000

    @Test("a chain posted without a kick while reads are in flight is started when they complete", arguments: engines)
    func postedWhileInFlight(engine: [String]) throws {
        let contents = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 / 512) }
        let image = try TemporaryFile(size: 1 << 20, contents: contents)
        let daemon = try Daemon(arguments: ["--blk-file", image.path] + engine)
        let guest = try DataPathTests.Guest(
            negotiatingWith: daemon.frontEnd, wanted: 1 << 32 | 1 << 30 | 1 << 29 | 1 << 28 | 1 << 9)
        let a = DataPathTests.addresses
        let availEvent = a.deviceArea + 4 + UInt64(DataPathTests.queueSize) * 8
        var posted: UInt16 = 0
        var reaped: UInt16 = 0

        /// Posts read `slot` (its header, data and status in their own area, one indirect table).
        func post(_ slot: Int) throws {
            let base = UInt64(0x4_0000) + UInt64(slot) * 0x1_8000
            let header = le32(0) + le32(0) + le(UInt64(slot) * 8)
            try header.withUnsafeBytes { try guest.guest.write(guestPhysical: base, bytes: $0) }
            try [UInt8(0xEE)].withUnsafeBytes { try guest.guest.write(guestPhysical: base + 16, bytes: $0) }
            _ = try guest.driver.post(
                [
                    DriverBuffer(address: base, length: 16, isWritable: false),
                    DriverBuffer(address: base + 0x8000, length: UInt32(Self.readLength), isWritable: true),
                    DriverBuffer(address: base + 16, length: 1, isWritable: true),
                ], indirectTable: base + 0x100)
            posted &+= 1
        }
        /// Reaps until `count` completions came in total (bounded); whether they all did.
        func reapUntil(_ count: UInt16) throws -> Bool {
            for _ in 0..<200 {
                while try guest.driver.reap() != nil { reaped &+= 1 }
                guard reaped != count else { return true }
                guest.driver.setUsedEvent(reaped)
                while try guest.driver.reap() != nil { reaped &+= 1 }
                guard reaped != count else { return true }
                guard waitForSignal(guest.call) else { return false }
            }
            return false
        }

        // An attempt is conclusive when the late chain was visible before the daemon published
        // any of the reads in flight: it then publishes them, looks at the ring again (a full
        // fence lies between), and must find it. Otherwise (the reads finished first) the late
        // chain is kicked, and the attempt repeated.
        var conclusive = 0
        for _ in 0..<200 where conclusive < 5 {
            let start = posted
            for slot in 0..<Self.inFlight { try post(slot) }
            guest.driver.setUsedEvent(reaped)
            try guest.kick.notify()
            // The daemon popped them once it asks for a kick after the last one.
            var popped = false
            var spins = 0
            while !popped && spins < 100_000_000 {
                popped = try guest.guest.load(UInt16.self, guestPhysical: availEvent) == posted
                spins += 1
            }
            try #require(popped, "the daemon did not take the reads")
            try post(Self.inFlight)
            // Full fence (its answer is not used: this driver never kicks for the late chain).
            _ = guest.driver.needsKick()
            let published = try guest.guest.load(UInt16.self, guestPhysical: a.deviceArea + 2)
            if published == start {
                conclusive += 1
                guard try reapUntil(posted) else {
                    Issue.record("the late chain was not started without a kick (\(engine))")
                    return
                }
            } else {
                try guest.kick.notify()
                try #require(try reapUntil(posted))
            }
        }
        #expect(conclusive > 0, "no attempt posted the late chain before the reads completed")
    }
}
