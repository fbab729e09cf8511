#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import VMMTestSupport

/// A vhost-user back-end process serving a Unix socket, started under `timeout` (so it cannot
/// outlive a crashed test run) in its own process group. Only that group is ever signalled.
struct SocketDaemon {
    static let timeoutPath = "/usr/bin/timeout"

    enum Failure: Error, CustomStringConvertible {
        case spawn(SystemCallError)
        case noSocket(String)
        var description: String {
            switch self {
            case .spawn(let error): "spawn failed: \(error)"
            case .noSocket(let log): "the back-end did not create its socket; log: \(log)"
            }
        }
    }

    let pid: pid_t

    /// Runs `arguments` (the first is the executable's path) for at most 120 s, output to `log`;
    /// waits (at most 10 s) until it accepts on `socket`.
    static func start(_ arguments: [String], socket: String, log: String) throws -> SocketDaemon {
        try start(arguments, sockets: [socket], log: log)
    }

    /// As `start(_:socket:log:)`, waiting until it accepts on every one of `sockets` (a daemon
    /// with several listeners may bind them in any order).
    static func start(_ arguments: [String], sockets: [String], log: String) throws -> SocketDaemon {
        // Its own process group, so `stop` reaches `timeout` and the daemon together (and nothing
        // else).
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(
                timeoutPath, arguments: ["--kill-after=5", "120"] + arguments,
                outputPath: log, newProcessGroup: true)
        } catch { throw Failure.spawn(error) }
        let daemon = SocketDaemon(pid: child.pid)
        var waiting = sockets[...]
        for _ in 0..<200 {
            // Ready once it accepts: the socket file appears before listen(2). The probe
            // connection closes at once; the daemon serves the next front-end.
            while let socket = waiting.first, (try? ScmSocket.connect(path: socket)) != nil { waiting.removeFirst() }
            if waiting.isEmpty { return daemon }
            if (try? child.exitStatusIfExited()) != nil { break }
            usleep(50_000)
        }
        daemon.stop()
        throw Failure.noSocket(readFile(log))
    }

    /// SIGTERM to the process group of our `timeout` and daemon, then reaps `timeout`; SIGKILL to
    /// the group after 5 s.
    func stop() {
        ChildProcess(pid: pid).terminate(with: SIGTERM, grace: .seconds(5), group: true)
    }

    /// SIGKILL to the process group (the daemon dies at once, as in a crash), then reaps `timeout`.
    func crash() {
        ChildProcess(pid: pid).terminate(with: SIGKILL, grace: .seconds(5), group: true)
    }
}

/// Debian's qemu-storage-daemon (QEMU 7.2) serving an image as a vhost-user-blk export, with the
/// options of QEMU's storage-daemon documentation (`--blockdev driver=file` and
/// `--export type=vhost-user-blk`).
enum StorageDaemon {
    static let path = "/usr/bin/qemu-storage-daemon"
    static var isInstalled: Bool { access(path, X_OK) == 0 && access(SocketDaemon.timeoutPath, X_OK) == 0 }

    /// Serves `image` (writable) on `socket`, logging to `log`.
    static func start(socket: String, image: String, log: String) throws -> SocketDaemon {
        try SocketDaemon.start(
            [
                path,
                "--blockdev", "driver=file,node-name=file,filename=\(image),cache.direct=off",
                "--export",
                "type=vhost-user-blk,id=exp0,node-name=file,addr.type=unix,addr.path=\(socket),writable=on,num-queues=1",
            ], socket: socket, log: log)
    }
}

/// A file's contents as text (for failure messages).
func readFile(_ path: String) -> String {
    String(decoding: readBytes(path, offset: 0, count: 4096), as: UTF8.self)
}

/// Up to `count` bytes of a file from `offset` (fewer at its end; none if it cannot be opened).
func readBytes(_ path: String, offset: Int, count: Int) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: count)
    let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
    return Array(bytes.prefix(max(0, n)))
}

/// A temporary directory (mkdtemp) removed with everything in it by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/vhost-frontend-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> UnsafeMutablePointer<CChar>? in
            guard let base = buffer.baseAddress else { return nil }
            return mkdtemp(base)
        }
        guard let made else {
            throw SocketDaemon.Failure.spawn(SystemCallError("mkdtemp", Errno.current))
        }
        path = String(cString: made)
    }

    /// Writes `bytes` to a new file `name` in the directory and returns its path.
    func createFile(_ name: String, _ bytes: [UInt8]) -> String {
        let file = path + "/" + name
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd >= 0 {
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        return file
    }

    /// Removes the files this test created and the directory.
    func remove(_ names: [String]) {
        for name in names { unlink(path + "/" + name) }
        rmdir(path)
    }
}
