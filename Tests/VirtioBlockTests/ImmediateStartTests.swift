import Testing
import Virtio
@testable import VirtioBlock
import VMMSysUtil

/// `BlockRequestProcessor.start(_:)` starts an asynchronous request at once: it reaches the
/// engine (the kernel, or a pool thread) without waiting for a `commit()` after the next chains
/// are popped, so the disk works on it while the device pops the rest.
@Suite("immediate start")
struct ImmediateStartTests {
    @Test("a started read completes without a commit", arguments: BoundedReapTests.kinds)
    func startedReadCompletes(kind: AsyncFileEngineKind) throws {
        let image = try TestImage(sectors: 64)
        let file = try BlockBackingFile(path: image.path)
        let io = try AsyncFileEngine(kind: kind, threadCount: 2).makeQueue(capacity: 8)
        let rig = try BlockRig(layout: .split, file: file, queueSize: 8, io: io)
        let base = BlockRig.dataStart
        try header(0, sector: 3).withUnsafeBytes { try rig.memory.write(guestPhysical: base, bytes: $0) }
        _ = try rig.driver.post([
            DriverBuffer(address: base, length: 16, isWritable: false),
            DriverBuffer(address: base + 0x200, length: 512, isWritable: true),
            DriverBuffer(address: base + 0x400, length: 1, isWritable: true),
        ])
        let chain = try #require(try rig.device.pop())
        guard case .submitted(let slot) = try rig.processor.start(chain) else {
            Issue.record("the read did not go to the engine")
            return
        }
        // No commit: the read must finish on its own (bounded: 5 s).
        var reported: [Int] = []
        for _ in 0..<500 where reported.isEmpty {
            _ = rig.processor.waitForCompletions(milliseconds: 10)
            rig.processor.reap { slot, _ in reported.append(slot) }
        }
        #expect(reported == [slot])
        if reported.isEmpty {
            // Not started: start it now so that the queue can be released (it waits for its
            // operations in flight).
            #expect(rig.processor.commit())
            for _ in 0..<500 where reported.isEmpty {
                _ = rig.processor.waitForCompletions(milliseconds: 10)
                rig.processor.reap { slot, _ in reported.append(slot) }
            }
        }
        let status = try rig.memory.load(UInt8.self, guestPhysical: base + 0x400)
        #expect(status == BlockStatus.ok.rawValue)
        #expect(rig.processor.inFlight == 0)
    }
}
