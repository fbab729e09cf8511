import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserFrontend
import Virtio

/// The front-end's queues against a device built from Virtio's device-side queues, in another
/// thread, through the same fds and shared memory a real back-end uses: split and packed rings,
/// with and without EVENT_IDX, at several queue depths. A lost notification shows up as a
/// `waitForUsed` that returns nil after its bound.
@Suite struct FrontendDataPathTests {
    static let variants: [VirtioFeatures] = [
        [.version1], [.version1, .ringEventIndex], [.version1, .ringPacked], [.version1, .ringPacked, .ringEventIndex],
    ]

    @Test(.isolatedDescriptors, arguments: variants)
    func chainsRoundTripThroughTheDevice(features: VirtioFeatures) throws {
        let before = openFileDescriptorCount()
        do {
            let device = try LoopbackDevice()
            var configured = WellBehaved()
            configured.features = VirtioFeatures([.version1, .protocolFeatures, .ringEventIndex, .ringPacked]).rawValue
            let backend = configured
            let (frontend, fake) = try connectedToFake { message in device.handle(&message) ?? backend.reply(&message) }
            let negotiated = try frontend.negotiate(features: features)
            #expect(negotiated.features == features.union(.protocolFeatures))
            let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
            let queue = try frontend.startQueue(index: 0, size: 16, ringAddress: 0)
            #expect(queue.isPacked == features.contains(.ringPacked))

            var total = 0
            for depth in [1, 5, 8] {
                for round in 0..<40 {
                    var expected: [UInt16: (output: UInt64, bytes: [UInt8])] = [:]
                    for slot in 0..<depth {
                        let input = UInt64(0x1_0000 + slot * 256)
                        let bytes = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 3 &+ slot &+ round &* 7) }
                        try bytes.withUnsafeBytes { try memory.write(guestPhysical: input, bytes: $0) }
                        try [UInt8](repeating: 0, count: 64).withUnsafeBytes {
                            try memory.write(guestPhysical: input + 128, bytes: $0)
                        }
                        let id = try queue.post([
                            DriverBuffer(address: input, length: 64, isWritable: false),
                            DriverBuffer(address: input + 128, length: 64, isWritable: true),
                        ])
                        expected[id] = (input + 128, bytes.map { $0 ^ 0xFF })
                    }
                    try queue.kickIfNeeded()
                    while !expected.isEmpty {
                        let completion = try queue.waitForUsed(timeout: .seconds(5))
                        let used = try #require(completion, "no completion within the bound (lost notification?)")
                        let removed = expected.removeValue(forKey: used.id)
                        let chain = try #require(removed, "completion of an id not in flight")
                        #expect(used.length == 64)
                        var answer = [UInt8](repeating: 0, count: 64)
                        try answer.withUnsafeMutableBytes { try memory.read(guestPhysical: chain.output, into: $0) }
                        #expect(answer == chain.bytes)
                        total += 1
                    }
                }
            }
            let base = try frontend.stopQueue(queue)
            if features.contains(.ringPacked) {
                // Everything completed: the available and used positions coincide.
                #expect(base & 0xFFFF == base >> 16)
            } else {
                #expect(base == UInt32(total))
            }
            try frontend.disconnect()
            _ = consume frontend
            fake.join()
            #expect(fake.failure == nil, "fake: \(fake.failure ?? "")")
            #expect(device.failure == nil, "device: \(device.failure ?? "")")
        }
        #expect(openFileDescriptorCount() == before, "descriptors leaked")
    }
}
