// The processes and files `vmm-bench blk` sets up: the backing image and the back-end daemons.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMFileIO
import VMMBenchCases
import VMMSysUtil

/// A vhost-user-blk back-end program under test.
enum BlkBackendKind: String, CaseIterable {
    /// This package's `vhost-user-blk`, built beside vmm-bench.
    case ours
    /// Debian's qemu-storage-daemon, with the options QEMU's vhost-user-blk export documentation
    /// uses (`--blockdev driver=file,... --export type=vhost-user-blk,...`).
    case qsd

    static let qsdPath = "/usr/bin/qemu-storage-daemon"
}

/// One configuration of a back-end: the program, its I/O engine and whether it bypasses the page
/// cache (`--direct`).
struct BlkBackend: Equatable {
    let kind: BlkBackendKind
    /// ours: `--aio` (nil: its default); qsd: `aio=` (nil: its default, threads).
    let aio: String?
    /// ours: `--cache none`; qsd: `cache.direct=on`.
    let direct: Bool
    /// ours: `--poll-us` (nil: none).
    var pollMicroseconds: String?
    /// qsd: the export runs in an iothread (`--object iothread`, export `iothread=`), whose event
    /// loop polls adaptively up to its `poll-max-ns` (QEMU's default 32 µs) before it sleeps; off,
    /// it runs in the main loop, which does not poll.
    var iothread: Bool

    init(kind: BlkBackendKind, aio: String?, direct: Bool, pollMicroseconds: String? = nil, iothread: Bool = false) {
        self.kind = kind
        self.aio = aio
        self.direct = direct
        self.pollMicroseconds = pollMicroseconds
        self.iothread = iothread
    }

    /// `ours`, `qsd`, or with an engine `ours-io_uring`, `qsd-native`, ...; `-poll<n>`, `-iothread`.
    var name: String {
        (aio.map { "\(kind.rawValue)-\($0)" } ?? kind.rawValue) + (pollMicroseconds.map { "-poll\($0)" } ?? "")
            + (iothread ? "-iothread" : "")
    }

    /// The daemon's command line serving `image` on `socket` with `queues` request queues.
    func command(image: String, socket: String, queues: Int) throws -> [String] {
        switch kind {
        case .ours:
            guard let path = siblingExecutable("vhost-user-blk") else {
                throw BenchSkipped(
                    "vhost-user-blk is not built beside vmm-bench "
                        + "(swift build -c release --product vhost-user-blk)")
            }
            return [path, "--socket-path", socket, "--blk-file", image, "--num-queues", String(queues)]
                + (direct ? ["--cache", "none"] : []) + (aio.map { ["--aio", $0] } ?? [])
                + (pollMicroseconds.map { ["--poll-us", $0] } ?? [])
        case .qsd:
            guard access(BlkBackendKind.qsdPath, X_OK) == 0 else {
                throw BenchSkipped("\(BlkBackendKind.qsdPath) is not installed")
            }
            return [BlkBackendKind.qsdPath] + (iothread ? ["--object", "iothread,id=iothread0"] : []) + [
                "--blockdev",
                "driver=file,node-name=file,filename=\(image),cache.direct=\(direct ? "on" : "off")"
                    + (aio.map { ",aio=\($0)" } ?? ""),
                "--export",
                "type=vhost-user-blk,id=exp0,node-name=file,addr.type=unix,addr.path=\(socket),"
                    + "writable=on,num-queues=\(queues)" + (iothread ? ",iothread=iothread0" : ""),
            ]
        }
    }
}

/// A back-end daemon process we started (stdout and stderr to `log`). Only its pid is ever
/// signalled.
///
/// Thread-safety: owned by the benchmark's thread.
final class BlkDaemon {
    let pid: pid_t
    private let process: ChildProcess
    private var reaped = false

    /// Spawns `arguments` pinned to `cpu` (the child inherits this thread's affinity, which is
    /// restored to `restoreCPU` afterwards) and waits up to 10 s for `socket` to appear.
    init(_ arguments: [String], socket: String, log: String, cpu: Int32?, restoreCPU: Int32?) throws {
        let child = try Self.spawn(arguments, log: log, cpu: cpu, restoreCPU: restoreCPU)
        process = child
        pid = child.pid
        BlkCleanup.add(pid: pid)
        for _ in 0..<200 {
            var info = stat()
            if stat(socket, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK { return }
            if (try? child.exitStatusIfExited()) != nil {
                reaped = true
                BlkCleanup.remove(pid: pid)
                break
            }
            usleep(50_000)
        }
        stop()
        throw BenchSkipped("\(arguments[0]) did not create \(socket); see its log")
    }

    /// Spawns `arguments` with stdout and stderr to `log`, pinned to `cpu` (the child inherits
    /// this thread's affinity, which is restored to `restoreCPU`).
    static func spawn(_ arguments: [String], log: String, cpu: Int32?, restoreCPU: Int32?) throws -> ChildProcess {
        try pinCurrentThread(cpu)
        defer { try? pinCurrentThread(restoreCPU) }
        return try ChildProcess.spawn(arguments[0], arguments: Array(arguments.dropFirst()), outputPath: log)
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps the daemon. Idempotent.
    func stop() {
        guard !reaped else { return }
        reaped = true
        defer { BlkCleanup.remove(pid: pid) }
        process.terminate(with: SIGTERM, grace: .seconds(5))
    }

    deinit { stop() }

    /// CPU time (ns) all the daemon's threads have run so far (the sum of /proc/PID/task/*/schedstat,
    /// io_uring workers included), or nil where /proc is not available.
    func cpuNanoseconds() -> UInt64? {
        guard let directory = opendir("/proc/\(pid)/task") else { return nil }
        defer { closedir(directory) }
        var total: UInt64 = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.first?.isNumber == true, let text = readTextFile("/proc/\(pid)/task/\(name)/schedstat") else {
                continue
            }
            total += text.split(separator: " ").first.flatMap { UInt64($0) } ?? 0
        }
        return total
    }

    /// Peak resident memory (VmHWM) and the resident part of guest memory mappings (Rss of every
    /// mapping of the file with inode `guestInodes`, summed from /proc/PID/smaps), in KiB.
    /// Read while the guest memory is still mapped. Nil where /proc is not available.
    func memoryUsage(guestInodes: [UInt64]) -> (peakKiB: Int, guestKiB: Int)? {
        guard let status = readTextFile("/proc/\(pid)/status"),
            let smaps = readTextFile("/proc/\(pid)/smaps")
        else { return nil }
        var peak: Int?
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            peak = line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        }
        guard let peak else { return nil }
        var guest = 0
        var inGuestMapping = false
        for line in smaps.split(separator: "\n") {
            // A mapping's header line starts with its address range ("7f..-7f.. rw-s ...").
            let token = line.prefix { $0 != " " }
            if token.contains("-") && !token.hasSuffix(":") {
                // "start-end perms offset dev inode path": the 5th field is the inode.
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                inGuestMapping =
                    fields.count >= 5 && UInt64(fields[4]).map { $0 != 0 && guestInodes.contains($0) } == true
            } else if inGuestMapping, line.hasPrefix("Rss:") {
                guest += line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            }
        }
        return (peak, guest)
    }
}

/// A file's whole contents as text, or nil if it cannot be read.
func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// A temporary directory holding the image, the sockets and the daemons' logs; `remove()` deletes
/// what it created.
///
/// Thread-safety: owned by the benchmark's thread.
final class BlkScratch {
    let path: String
    var image: String { path + "/disk.img" }
    private var files: [String] = []

    /// A new directory in `parent`. With `cleanupOnSignal` (vmm-bench itself), SIGINT, SIGTERM
    /// or SIGHUP remove it and its files (`BlkCleanup`); tests leave the process's handlers alone.
    init(in parent: String = "/tmp", cleanupOnSignal: Bool = true) throws {
        var template = Array("\(parent)/vmm-bench-blk-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> UnsafeMutablePointer<CChar>? in
            buffer.baseAddress.flatMap { mkdtemp($0) }
        }
        guard let made else { throw SystemCallError("mkdtemp", Errno.current) }
        path = String(cString: made)
        if cleanupOnSignal { BlkCleanup.install(directory: path) }
    }

    /// A path in the directory, removed by `remove()`.
    func file(_ name: String) -> String {
        let full = path + "/" + name
        files.append(full)
        BlkCleanup.add(path: full)
        return full
    }

    /// Creates the image, `size` bytes of zeroes written out (not sparse, so writes do not
    /// allocate blocks during the measurement), and reads it once so it sits in the page cache
    /// (`cached`), or makes it durable and drops it from the page cache. The uncached image is
    /// written with direct I/O where the OS has it: on this machine's virtio disk, an image written
    /// through the page cache (the kernel's write-back) took 4 KiB direct random writes at about
    /// half the rate of one written with direct I/O (85-100k against 185-195k IOPS for fio, two
    /// images of each, interleaved; same guest request path, one bio per write, 32 per
    /// interrupt), whichever program then wrote to it.
    func createImage(size: Int, cached: Bool = true) throws {
        let name = file("disk.img")
        let flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC
        let direct = cached ? 0 : vmm_open_direct_flag()
        // A file system without direct I/O refuses the flag (EINVAL): written through the cache then.
        var fd = direct == 0 ? -1 : open(name, flags | direct, 0o600)
        if fd < 0 { fd = try systemCall("open") { open(name, flags, 0o600) } }
        defer { close(fd) }
        let chunk = 1 << 20
        let zeroes = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0, count: chunk)
        var offset = 0
        while offset < size {
            let n = try systemCall("pwrite") { pwrite(fd, zeroes, min(chunk, size - offset), off_t(offset)) }
            offset += n
        }
        guard cached else {
            _ = try systemCall("fsync") { fsync(fd) }
            #if os(Linux)
            _ = posix_fadvise(fd, 0, off_t(size), POSIX_FADV_DONTNEED)
            #endif
            return
        }
        offset = 0
        while offset < size {
            let n = try systemCall("pread") { pread(fd, zeroes, chunk, off_t(offset)) }
            guard n > 0 else { break }
            offset += n
        }
    }

    /// Deletes every file handed out and the directory.
    func remove() {
        for name in files { unlink(name) }
        files.removeAll()
        rmdir(path)
    }
}

/// What SIGINT, SIGTERM or SIGHUP must undo before vmm-bench dies: stop the daemons and remove the
/// temp dir with its 1 GiB image. The handler only reads fixed C arrays filled in beforehand, and
/// only calls `kill`, `unlink`, `rmdir` and `_exit` (all async-signal-safe).
///
/// Thread-safety: registration from the benchmark's thread only.
enum BlkCleanup {
    private static let pidCapacity = 8
    private static let pathCapacity = 16
    nonisolated(unsafe) private static var pids: UnsafeMutablePointer<pid_t>?
    nonisolated(unsafe) private static var paths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    nonisolated(unsafe) private static var directory: UnsafeMutablePointer<CChar>?

    /// Allocates the tables for `directory` (once per process; a later directory replaces the
    /// earlier one's entries, whose scratch was removed) and installs the handler.
    static func install(directory path: String) {
        if pids == nil {
            let pidTable = UnsafeMutablePointer<pid_t>.allocate(capacity: pidCapacity)
            pidTable.initialize(repeating: 0, count: pidCapacity)
            let pathTable = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: pathCapacity)
            pathTable.initialize(repeating: nil, count: pathCapacity)
            pids = pidTable
            paths = pathTable
        }
        // Each entry is unhooked before it is freed: the handler never reads freed memory.
        if let paths {
            for i in 0..<pathCapacity {
                let earlier = paths[i]
                paths[i] = nil
                free(earlier)
            }
        }
        let earlier = directory
        directory = strdup(path)
        free(earlier)
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig) { sig in
                if let pids = BlkCleanup.pids {
                    for i in 0..<BlkCleanup.pidCapacity where pids[i] > 0 { kill(pids[i], SIGTERM) }
                }
                if let paths = BlkCleanup.paths {
                    for i in 0..<BlkCleanup.pathCapacity { if let path = paths[i] { unlink(path) } }
                }
                if let directory = BlkCleanup.directory { rmdir(directory) }
                _exit(128 + sig)
            }
        }
    }

    /// A daemon to stop (SIGTERM) if we are killed.
    static func add(pid: pid_t) {
        guard let pids else { return }
        for i in 0..<pidCapacity where pids[i] == 0 {
            pids[i] = pid
            return
        }
    }

    /// The daemon was stopped and reaped: its pid may be reused, never signal it.
    static func remove(pid: pid_t) {
        guard let pids else { return }
        for i in 0..<pidCapacity where pids[i] == pid { pids[i] = 0 }
    }

    /// A file to remove if we are killed.
    static func add(path: String) {
        guard let paths else { return }
        for i in 0..<pathCapacity where paths[i] == nil {
            paths[i] = strdup(path)
            return
        }
    }
}
