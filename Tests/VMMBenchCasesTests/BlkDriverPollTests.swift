import Testing
@testable import vmm_bench

/// `vmm-bench blk --driver-poll-us`: the front-end's polling window before it blocks, its option,
/// where the setting is recorded, and what it changes in the closed loop against our daemon.
@Suite("vmm-bench blk front-end polling window")
struct BlkDriverPollTests {
    @Test func optionDefaultsToNoWindowAndRefusesValuesOutOfRange() throws {
        #expect(try BlkCommand.parse([]).driverPollMicroseconds == 0)
        #expect(try BlkCommand.parse(["--driver-poll-us", "0"]).driverPollMicroseconds == 0)
        #expect(try BlkCommand.parse(["--driver-poll-us", "200"]).driverPollMicroseconds == 200)
        #expect(try BlkCommand.parse(["--driver-poll-us", "1000000"]).driverPollMicroseconds == 1_000_000)
        for bad in ["-1", "1000001", "ten"] {
            #expect(throws: (any Error).self, "--driver-poll-us \(bad)") {
                try BlkCommand.parse(["--driver-poll-us", bad])
            }
        }
    }

    @Test func tablesAndJSONRecordTheWindow() throws {
        var run = BlkBackendRun(backend: BlkBackend(kind: .ours, aio: "io_uring", direct: true))
        run.queueCount = 1
        var result = BlkLoadResult()
        result.requests = 10
        result.seconds = 1
        run.results["randread-4k/qd32/1q"] = result
        let direct = renderBlkDirectTable(
            [run], fio: [:], fioNote: nil, placement: "p", driverPollMicroseconds: 200, markdown: false)
        #expect(direct.contains("(--driver-poll-us): 200 µs"), "\(direct)")
        let cached = renderBlkTable([run], placement: "p", driverPollMicroseconds: 0, markdown: true)
        #expect(cached.contains("(--driver-poll-us): none"), "\(cached)")
        let json = try renderBlkJSON([run], placement: "p", driverPollMicroseconds: 50)
        #expect(json.contains(#""driver_poll_us":50"#), "\(json)")
    }

    /// One queue at depth 1 against our daemon (page cache, thread-pool engine, so every
    /// completion comes from another thread some time after the kick). Without a window the
    /// front-end finds nothing on its second look and blocks for the call; with a window longer
    /// than any request takes it never blocks and consumes no call, yet completes as many
    /// requests. Bounded: each drive lasts 0.25 s plus what is in flight, and a missing
    /// completion ends it after 10 s.
    @Test(arguments: [0, 1_000_000])
    func windowReplacesBlockingByPolling(microseconds: Int) throws {
        let scratch = try BlkScratch(cleanupOnSignal: false)
        defer { scratch.remove() }
        try scratch.createImage(size: 4 << 20)
        let socket = scratch.file("ours.sock")
        let backend = BlkBackend(kind: .ours, aio: "threads", direct: false)
        let daemon = try BlkDaemon(
            try backend.command(image: scratch.image, socket: socket, queues: 1), socket: socket,
            log: scratch.file("ours.log"), cpu: nil, restoreCPU: nil)
        defer { daemon.stop() }
        let session = try BlkSession(socket: socket, maxQueues: 1, idlePollMicroseconds: microseconds)
        defer { session.close() }
        let result = try session.driveBriefly(.read, depth: 1, queues: 0..<1, warmup: 50_000_000, duration: 200_000_000)
        #expect(result.requests > 0)
        #expect(result.completed > result.requests)
        if microseconds == 0 {
            #expect(result.waits > 0)
            #expect(result.calls > 0)
        } else {
            #expect(result.waits == 0)
            #expect(result.calls == 0)
        }
    }
}
