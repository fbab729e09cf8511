import Testing
import Virtio
@testable import VirtioBlock
import VMMSysUtil

/// `BlockRequestProcessor.reap(maximum:_:)`: a device publishing completions in chunks takes at
/// most a chunk per call, and every request is still reported exactly once.
@Suite("bounded reap")
struct BoundedReapTests {
    static let kinds: [AsyncFileEngineKind] = AsyncFileEngineKind.allCases.filter(\.isUsable)

    @Test("reap(maximum:) takes at most that many finished operations per call, each reported once", arguments: kinds)
    func boundedReap(kind: AsyncFileEngineKind) throws {
        let image = try TestImage(sectors: 64)
        let file = try BlockBackingFile(path: image.path)
        let io = try AsyncFileEngine(kind: kind, threadCount: 2).makeQueue(capacity: 32)
        let rig = try BlockRig(layout: .split, file: file, queueSize: 16, io: io)
        let count = 5
        for i in 0..<count {
            let base = BlockRig.dataStart + UInt64(i) * 0x1000
            try header(0, sector: UInt64(i)).withUnsafeBytes { try rig.memory.write(guestPhysical: base, bytes: $0) }
            _ = try rig.driver.post([
                DriverBuffer(address: base, length: 16, isWritable: false),
                DriverBuffer(address: base + 0x200, length: 512, isWritable: true),
                DriverBuffer(address: base + 0x400, length: 1, isWritable: true),
            ])
        }
        var started = Set<Int>()
        while let chain = try rig.device.pop() {
            guard case .submitted(let slot) = try rig.processor.start(chain) else {
                Issue.record("a read did not go to the engine")
                return
            }
            started.insert(slot)
        }
        #expect(started.count == count)
        #expect(rig.processor.commit())
        var reported: [Int] = []
        for _ in 0..<1000 where reported.count < count {
            _ = rig.processor.waitForCompletions(milliseconds: 10)
            let taken = rig.processor.reap(maximum: 2) { slot, written in
                #expect(written == 513)
                reported.append(slot)
            }
            #expect(taken <= 2)
        }
        #expect(reported.count == count)
        #expect(Set(reported) == started)
        #expect(rig.processor.reap(maximum: 2) { _, _ in Issue.record("reported twice") } == 0)
        #expect(rig.processor.inFlight == 0)
    }
}
