import VMMSysUtil
import Virtio

let vringMemorySize = 1 << 20

/// `VringLoopback.runIterations`: post, pop, walk, read 16 bytes, push, reap.
final class OursVring: BenchRunner {
    let memory: SharedMemory
    var loopback: VringLoopback

    init(_ layout: RingLayout, descriptorsPerChain: Int) throws {
        memory = try SharedMemory(size: vringMemorySize)
        let guest = try GuestMemory(regions: [GuestMemoryRegion(guestPhysicalAddress: 0, mapping: memory.mapping)])
        loopback = try VringLoopback(memory: guest, layout: layout, descriptorsPerChain: descriptorsPerChain)
    }

    func run(_ iterations: Int) throws { try loopback.runIterations(iterations) }
}

/// The raw twin over the same kind of memory (a shared mapping at guest-physical 0).
final class RawVring: BenchRunner {
    let memory: SharedMemory
    let ring: any BenchRunner

    init(_ layout: RingLayout, descriptorsPerChain: Int) throws {
        memory = try SharedMemory(size: vringMemorySize)
        let region = RawRegion(base: memory.mapping.base, size: UInt64(memory.mapping.size))
        switch layout {
        case .split: ring = RawSplitRing(region: region, descriptorsPerChain: descriptorsPerChain)
        case .packed: ring = RawPackedRing(region: region, descriptorsPerChain: descriptorsPerChain)
        }
    }

    func run(_ iterations: Int) throws { try ring.run(iterations) }
}

enum VringCases {
    static func all() -> [BenchCase] {
        RingLayout.allCases.flatMap { layout in
            [1, 3].map { descriptors in
                BenchCase(
                    group: "vring", name: "pop-walk-read16-push/\(descriptors)-desc", backend: layout.rawValue,
                    batch: 1024
                ) {
                    implementation, _ in
                    switch implementation {
                    case .ours: return try OursVring(layout, descriptorsPerChain: descriptors)
                    case .raw: return try RawVring(layout, descriptorsPerChain: descriptors)
                    }
                }
            }
        }
    }
}
