#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One operation of a `ThreadPoolFileQueue`, at a stable address from the queue's creation to its
/// end: the pool threads and the owner pass it between lists by pointer, so nothing allocates per
/// operation.
struct FileIOJob {
    var operation: AsyncFileOperation = .read
    var descriptor: Int32 = -1
    var vectors: UnsafePointer<iovec>?
    var count: Int32 = 0
    var offset: UInt64 = 0
    /// Bytes of a space operation (`punchHole`, `zeroRange`).
    var length: UInt64 = 0
    var tag: UInt64 = 0
    var result: Int32 = 0
    /// The queue that submitted it (unretained: a queue outlives its jobs, see its deinit).
    var queue: Unmanaged<ThreadPoolFileQueue>?
    /// The next job in whichever list holds this one (pool pending, queue done, queue free).
    var next: UnsafeMutablePointer<FileIOJob>?
}

/// The threads of the `threads` engine, shared by every queue of a daemon: each takes the oldest
/// pending job, runs its system call, and hands the job back to its queue. Threads are started on
/// demand, when jobs wait and no thread is idle, up to `maxThreads` (so a disk sees as many
/// requests in flight as the queues submit, up to that bound, as with QEMU's thread pool).
///
/// Thread-safety: `enqueue` from any thread; `shutdown` once, from the owner.
final class FileIOThreadPool: @unchecked Sendable {
    let maxThreads: Int
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var head: UnsafeMutablePointer<FileIOJob>?
    private var tail: UnsafeMutablePointer<FileIOJob>?
    private var pending = 0
    private var idle = 0
    private var stopping = false
    private var threads: [pthread_t] = []

    init(maxThreads: Int) {
        self.maxThreads = max(1, maxThreads)
        threads.reserveCapacity(self.maxThreads)
    }

    /// Starts one more thread (lock held). False if the system refused.
    private func startThread() -> Bool {
        let context = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Darwin)
        var thread: pthread_t?
        #else
        var thread = pthread_t()
        #endif
        let rc = pthread_create(
            &thread, nil,
            { raw in
                // Safe: `raw` is the retained pool passed below; released when the loop ends.
                #if canImport(Darwin)
                let pool = Unmanaged<FileIOThreadPool>.fromOpaque(raw).takeRetainedValue()
                #else
                let pool = Unmanaged<FileIOThreadPool>.fromOpaque(raw!).takeRetainedValue()
                #endif
                pool.run()
                return nil
            }, context)
        guard rc == 0 else {
            Unmanaged<FileIOThreadPool>.fromOpaque(context).release()
            return false
        }
        #if canImport(Darwin)
        if let thread { threads.append(thread) }
        #else
        threads.append(thread)
        #endif
        return true
    }

    /// Appends jobs `first...last` (linked through `next`) to the pending list.
    func enqueue(first: UnsafeMutablePointer<FileIOJob>, last: UnsafeMutablePointer<FileIOJob>, count: Int) {
        lock.lock()
        if let tail { tail.pointee.next = first } else { head = first }
        tail = last
        pending += count
        // Jobs beyond the idle threads get new threads (while the bound allows; if the system
        // refuses, the threads already running take them in turn).
        var missing = pending - idle
        while missing > 0, threads.count < maxThreads, !stopping, startThread() { missing -= 1 }
        if count > 1 { lock.broadcast() } else { lock.signal() }
        lock.unlock()
    }

    /// Lets the threads finish the pending jobs, then joins them. Idempotent.
    func shutdown() {
        lock.lock()
        stopping = true
        lock.broadcast()
        let joining = threads
        threads.removeAll()
        lock.unlock()
        for thread in joining { pthread_join(thread, nil) }
    }

    private func run() {
        while true {
            lock.lock()
            while head == nil && !stopping {
                idle += 1
                lock.wait()
                idle -= 1
            }
            guard let job = head else {
                lock.unlock()
                return
            }
            head = job.pointee.next
            if head == nil { tail = nil }
            pending -= 1
            lock.unlock()
            job.pointee.next = nil
            job.pointee.result = Self.perform(job.pointee)
            // No reference of our own: the queue outlives this call (its deinit waits, under the
            // lock `finished` holds, for every job to be handed back), and a reference released
            // here could be the last one, running the queue's deinit on a pool thread.
            job.pointee.queue?._withUnsafeGuaranteedRef { $0.finished(job) }
        }
    }

    /// Runs one job's system call: the byte count, or a negated errno.
    static func perform(_ job: FileIOJob) -> Int32 {
        if job.operation.isSpaceOperation {
            do {
                let done =
                    job.operation == .punchHole
                    ? try FileSpace.punchHole(job.descriptor, offset: job.offset, length: job.length)
                    : try FileSpace.zeroRange(job.descriptor, offset: job.offset, length: job.length)
                return done ? 0 : -EOPNOTSUPP
            } catch {
                return -error.errno.rawValue
            }
        }
        var done: Int
        repeat {
            switch job.operation {
            case .read:
                done = preadv(job.descriptor, job.vectors, job.count, off_t(job.offset))
            case .write, .durableWrite:
                done = pwritev(job.descriptor, job.vectors, job.count, off_t(job.offset))
            case .dataSync, .punchHole, .zeroRange:
                do { try FileSpace.dataSync(job.descriptor) } catch { return -error.errno.rawValue }
                done = 0
            }
        } while done < 0 && errno == EINTR
        if done < 0 { return -errno }
        if job.operation == .durableWrite {
            do { try FileSpace.dataSync(job.descriptor) } catch { return -error.errno.rawValue }
        }
        return Int32(clamping: done)
    }

}

/// An `AsyncFileQueue` served by a `FileIOThreadPool`: `capacity` preallocated jobs; finished jobs
/// come back on a locked list and wake `completionDescriptor` (an `EventNotifier`).
///
/// Thread-safety: as `AsyncFileQueue` (one owner thread; pool threads only call `finished`).
final class ThreadPoolFileQueue: AsyncFileQueue, @unchecked Sendable {
    let capacity: Int
    private let owner: FileIOPoolOwner
    private var pool: FileIOThreadPool { owner.pool }
    private let notifier: EventNotifier
    private let jobs: UnsafeMutablePointer<FileIOJob>
    /// Free jobs (owner thread only).
    private var free: UnsafeMutablePointer<FileIOJob>?
    /// Jobs submitted since the last commit, oldest first (owner thread only).
    private var batchHead: UnsafeMutablePointer<FileIOJob>?
    private var batchTail: UnsafeMutablePointer<FileIOJob>?
    private var batchCount = 0
    private var inFlight = 0
    private let doneLock = ConditionLock()
    /// Finished jobs, newest first (guarded by `doneLock`).
    private var done: UnsafeMutablePointer<FileIOJob>?

    var completionDescriptor: Int32 { notifier.waitDescriptor }

    init(pool: FileIOPoolOwner, capacity: Int) throws(AsyncFileEngineError) {
        owner = pool
        self.capacity = max(1, capacity)
        do {
            notifier = try EventNotifier(backend: nil, nonBlockingWait: true)
        } catch {
            throw .notifier(error)
        }
        jobs = .allocate(capacity: self.capacity)
        jobs.initialize(repeating: FileIOJob(), count: self.capacity)
        for i in 0..<self.capacity {
            jobs[i].queue = Unmanaged.passUnretained(self)
            jobs[i].next = i + 1 < self.capacity ? jobs + (i + 1) : nil
        }
        free = jobs
    }

    deinit {
        // Jobs still pending in the pool point at this queue: wait until every one came back.
        while inFlight > 0 {
            doneLock.lock()
            var job = done
            done = nil
            doneLock.unlock()
            while let current = job {
                job = current.pointee.next
                inFlight -= 1
            }
            if inFlight > 0 { usleep(100) }
        }
        jobs.deinitialize(count: capacity)
        jobs.deallocate()
    }

    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, vectors: UnsafePointer<iovec>?, count: Int,
        offset: UInt64, tag: UInt64
    ) throws(SystemCallError) {
        guard !operation.isSpaceOperation else { throw SystemCallError("submit", Errno(rawValue: EINVAL)) }
        try queue(
            operation, descriptor: descriptor, vectors: vectors, count: count, offset: offset, length: 0, tag: tag)
    }

    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, offset: UInt64, length: UInt64, tag: UInt64
    ) throws(SystemCallError) {
        guard operation.isSpaceOperation else { throw SystemCallError("submit", Errno(rawValue: EINVAL)) }
        try queue(operation, descriptor: descriptor, vectors: nil, count: 0, offset: offset, length: length, tag: tag)
    }

    /// Takes a free job for the operation and appends it to the batch the next commit starts.
    private func queue(
        _ operation: AsyncFileOperation, descriptor: Int32, vectors: UnsafePointer<iovec>?, count: Int,
        offset: UInt64, length: UInt64, tag: UInt64
    ) throws(SystemCallError) {
        guard let job = free else { throw SystemCallError("submit", Errno(rawValue: EBUSY)) }
        free = job.pointee.next
        job.pointee.operation = operation
        job.pointee.descriptor = descriptor
        job.pointee.vectors = vectors
        job.pointee.count = Int32(clamping: count)
        job.pointee.offset = offset
        job.pointee.length = length
        job.pointee.tag = tag
        job.pointee.next = nil
        if let batchTail { batchTail.pointee.next = job } else { batchHead = job }
        batchTail = job
        batchCount += 1
        inFlight += 1
    }

    func commit() throws(SystemCallError) {
        guard let first = batchHead, let last = batchTail else { return }
        pool.enqueue(first: first, last: last, count: batchCount)
        batchHead = nil
        batchTail = nil
        batchCount = 0
    }

    /// Called by a pool thread when `job` has run.
    func finished(_ job: UnsafeMutablePointer<FileIOJob>) {
        doneLock.lock()
        job.pointee.next = done
        done = job
        // One wake-up per batch: the owner resets the notifier before it takes the list. Under the
        // lock, so the queue is not touched once the owner can see the job.
        if job.pointee.next == nil { try? notifier.notify() }
        doneLock.unlock()
    }

    func reap(into buffer: UnsafeMutableBufferPointer<AsyncFileCompletion>) -> Int {
        _ = try? notifier.tryConsume()
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        doneLock.lock()
        // Take at most buffer.count jobs off the list; the rest stay for the next call.
        var taken: UnsafeMutablePointer<FileIOJob>? = done
        var last = done
        var count = 1
        while count < buffer.count, let next = last?.pointee.next {
            last = next
            count += 1
        }
        if let last {
            done = last.pointee.next
            last.pointee.next = nil
        }
        let more = done != nil
        doneLock.unlock()
        // A remainder left on the list must keep the descriptor readable.
        if more { try? notifier.notify() }
        var stored = 0
        while let job = taken {
            taken = job.pointee.next
            base[stored] = AsyncFileCompletion(tag: job.pointee.tag, result: job.pointee.result)
            stored += 1
            job.pointee.next = free
            free = job
        }
        inFlight -= stored
        return stored
    }
}
