import Testing
@testable import VMMBenchCases
import VMMSysUtil
import Virtio

@Suite struct VringLoopbackTests {
    @Test(arguments: RingLayout.allCases, [1, 3])
    func completesEveryRoundTrip(layout: RingLayout, descriptors: Int) throws {
        let shared = try SharedMemory(size: vringMemorySize)
        let memory = try GuestMemory(regions: [GuestMemoryRegion(guestPhysicalAddress: 0, mapping: shared.mapping)])
        var bench = try VringLoopback(memory: memory, layout: layout, descriptorsPerChain: descriptors)
        try bench.runIterations(1000)  // four laps of a 256-entry ring
        // Per chain: the buffers' bytes (64 per readable, 1 writable) plus 16 bytes read.
        let perChain: UInt64 = descriptors == 1 ? 80 : 145
        let expected: UInt64 = 1000 * perChain
        #expect(bench.checksum == expected)
        #expect(throws: VirtqueueError.invalidQueueSize(256)) {
            _ = try VringLoopback(memory: memory, layout: layout, descriptorsPerChain: 0)
        }
    }
}
