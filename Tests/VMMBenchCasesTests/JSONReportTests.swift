import Testing
@testable import vmm_bench

/// `vmm-bench --json` and `vmm-bench blk --json`: the schema, nulls, rounding and escaping.
@Suite("vmm-bench JSON output")
struct JSONReportTests {
    @Test func casesKeepTheirSchemaWithNullsForMissingValues() throws {
        let report = JSONReport(
            placement: "both on CPU 0",
            cases: [
                JSONCase(
                    group: "notify", name: "notify-no-waiter", backend: "eventfd", median: 180.649, p99: 239.25,
                    rawMedian: nil, rawP99: .nan, ratio: 1.22849, placement: "-", samples: 12)
            ],
            skipped: [JSONSkipped(group: "poller", name: "wait", backend: "kqueue", reason: "not \"here\"\n\u{1}/")])
        #expect(
            try report.text()
                == #"{"cases":[{"backend":"eventfd","group":"notify","median":180.6,"name":"notify-no-waiter","#
                + #""p99":239.3,"placement":"-","ratio":1.228,"raw_median":null,"raw_p99":null,"samples":12,"unit":"ns"}],"#
                + #""placement":"both on CPU 0","skipped":[{"backend":"kqueue","group":"poller","name":"wait","#
                + #""reason":"not \"here\"\n\u0001/"}]}"#)
    }

    @Test func blockCasesAddTheirFields() throws {
        let block = JSONCase.Block(
            iops: 123456.78, rawIOPS: nil, kicksPerRequest: 0.123456, callsPerRequest: 1,
            peakKiB: 2048, guestKiB: nil, driverPollMicroseconds: 200)
        let row = JSONCase(
            group: "blk", name: "randread-4k/qd1/1q", backend: "ours", median: 10, p99: 20,
            rawMedian: nil, rawP99: nil, ratio: nil, placement: "p", samples: 3, block: block)
        let text = try JSONReport(placement: "p", cases: [row], skipped: []).text()
        for field in [
            #""iops":123456.8"#, #""raw_iops":null"#, #""kicks_per_request":0.1235"#, #""calls_per_request":1"#,
            #""peak_rss_kib":2048"#, #""guest_rss_kib":null"#, #""ratio":null"#, #""skipped":[]"#,
            #""driver_poll_us":200"#,
        ] {
            #expect(text.contains(field), "\(field) in \(text)")
        }
    }
}
