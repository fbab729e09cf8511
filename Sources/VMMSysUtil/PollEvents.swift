/// A caller-owned buffer that `Poller.wait` fills; allocate it once and reuse it for every wait.
/// A random-access collection of the last wait's reports:
///
/// ```swift
/// var events = PollEvents(capacity: 16)
/// try poller.wait(into: &events, timeout: .seconds(1))
/// for event in events where event.isReadable { ... }
/// ```
///
/// It owns two fixed allocations (the reports, and scratch space the kernel writes raw
/// epoll/kqueue events into before they are filtered); iterating allocates nothing.
///
/// Thread-safety: one owner at a time; transferable between threads. A wait refills it, so do not
/// iterate it while a `wait` into it runs, and never give one buffer to two concurrent waits.
public final class PollEvents: RandomAccessCollection, @unchecked Sendable {
    /// The most events one `wait` reports.
    public let capacity: Int
    /// Events the last `wait` reported; valid indices are `0..<count`.
    public internal(set) var count: Int = 0

    let storage: UnsafeMutablePointer<PollEvent>
    /// `capacity` raw kernel events (the largest layout any backend built here uses).
    let kernelEvents: UnsafeMutableRawPointer

    /// Allocates room for `capacity` events (at least 1, at most `Int32.max`).
    public init(capacity: Int) {
        let clamped = Swift.min(Swift.max(capacity, 1), Int(Int32.max))
        self.capacity = clamped
        storage = .allocate(capacity: clamped)
        let stride = Swift.max(epollKernelEventStride, kqueueKernelEventStride, 1)
        kernelEvents = .allocate(byteCount: clamped * stride, alignment: 16)
    }

    deinit {
        storage.deallocate()
        kernelEvents.deallocate()
    }

    /// 0.
    public var startIndex: Int { 0 }
    /// `count`.
    public var endIndex: Int { count }

    /// The `index`th event of the last `wait`. Traps if `index` is not in `0..<count` (a caller bug).
    public subscript(index: Int) -> PollEvent {
        precondition(index >= 0 && index < count, "PollEvents index out of range")
        return storage[index]
    }

    /// Appends a report during a wait; the caller guarantees `count < capacity`.
    func append(_ event: PollEvent) {
        (storage + count).initialize(to: event)
        count += 1
    }
}
