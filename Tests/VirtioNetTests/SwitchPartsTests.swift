#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VirtioNet
import VMMTestSupport

@Suite struct SwitchPartsTests {
    @Test func learnsLooksUpAndForgets() {
        let table = MacLearningTable(capacity: 64)
        #expect(table.learn(source: macA, port: 0, lookup: macB) == nil)
        #expect(table.learn(source: macB, port: 1, lookup: macA) == 0)
        #expect(table.learn(source: macA, port: 2, lookup: macB) == 1)
        #expect(table.port(of: macA) == 2)
        // Group addresses are never learned and always flooded.
        #expect(table.learn(source: .broadcast, port: 3, lookup: .broadcast) == nil)
        #expect(table.port(of: .broadcast) == nil)
        table.forget(port: 1)
        #expect(table.port(of: macB) == nil && table.port(of: macA) == 2)
    }

    @Test func stopsLearningWhenFull() {
        let table = MacLearningTable(capacity: 16)
        for i in 0..<100 {
            _ = table.learn(source: MacAddress(rawValue: 0x02 | UInt64(i) << 8), port: i % 4, lookup: .broadcast)
        }
        #expect(table.learnedCount == 12)
        #expect(table.port(of: MacAddress(rawValue: 0x02 | 5 << 8)) == 1)
        #expect(table.port(of: MacAddress(rawValue: 0x02 | 99 << 8)) == nil)
    }

    @Test func frameQueueIsBoundedAndOrdered() {
        let queue = FrameQueue(capacity: 3, slotSize: 16)
        for value in 1...3 {
            #expect([UInt8](repeating: UInt8(value), count: value).withUnsafeBytes { queue.push($0) })
        }
        #expect(![UInt8(4)].withUnsafeBytes { queue.push($0) })
        #expect(queue.count == 3)
        #expect(queue.front().map(Array.init) == [1])
        queue.removeFront()
        #expect([UInt8](repeating: 0, count: 17).withUnsafeBytes { !queue.push($0) })
        #expect([UInt8(5)].withUnsafeBytes { queue.push($0) })
        var seen: [[UInt8]] = []
        while let frame = queue.front() {
            seen.append(Array(frame))
            queue.removeFront()
        }
        #expect(seen == [[2, 2], [3, 3, 3], [5]])
        queue.removeFront()
        #expect(queue.count == 0)
    }

    @Test func frameQueueAcrossThreads() throws {
        let queue = FrameQueue(capacity: 8, slotSize: 8)
        let perProducer = 5_000
        let producers = (0..<2).map { producer in
            startThread {
                var value = 0
                while value < perProducer {
                    let bytes = [UInt8(producer)] + withUnsafeBytes(of: UInt32(value)) { Array($0) }
                    if bytes.withUnsafeBytes({ queue.push($0) }) { value += 1 } else { sched_yield() }
                }
            }
        }
        var next = [0, 0]
        var received = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while received < 2 * perProducer, ContinuousClock.now < deadline {
            guard let frame = queue.front() else {
                // Full or empty queues under a loaded machine: let the other side run.
                sched_yield()
                continue
            }
            let producer = Int(frame[0])
            let value = Int(frame.loadUnaligned(fromByteOffset: 1, as: UInt32.self))
            #expect(value == next[producer])
            next[producer] = value + 1
            queue.removeFront()
            received += 1
        }
        // Joined only once everything arrived: a lost frame fails the test instead of hanging it.
        #expect(next == [perProducer, perProducer])
        if received == 2 * perProducer { for producer in producers { producer.join() } }
    }
}
