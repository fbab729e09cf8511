#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import VhostUserDaemon

@main
struct SoakCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-soak",
        abstract: "The front-end half of scripts/soak, against a vhost-user-blk daemon.",
        discussion: """
            Every acknowledged write (status OK seen in the used ring) is printed as "ack SECTOR STAMP" \
            on stdout, flushed at once, so a SIGKILL loses no acknowledgement. Exit 0 on success, 1 with \
            a message on stderr otherwise.
            """,
        version: vhostUserPackageVersion,
        subcommands: [Cycles.self, Writer.self, Verify.self])

    struct Cycles: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Full sessions, each writing 8 sectors and reading one back.",
            discussion: """
                COUNT sessions (connect, negotiate, memory, queue, 8 sector writes, one read back, \
                disconnect), numbered FIRST...; cycle c writes sectors (c*8 ... c*8+7) mod 2048 (the \
                cycle area, sectors 0..<2048).
                """)
        @Argument(help: "The daemon's socket.") var socket: String
        @Argument(help: "Number of the first cycle.") var first: UInt64
        @Argument(help: "Cycles to run.") var count: UInt64

        func run() throws { try cycles(socket, first: first, count: count) }
    }

    struct Writer: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One session writing its own area until killed.",
            discussion: """
                Writes sectors 2048 + ROUND*256 ..< +256, each once, 16 in flight, then waits to be \
                killed (the script SIGKILLs writers).
                """)
        @Argument(help: "The daemon's socket.") var socket: String
        @Argument(help: "The writer's round (its area).") var round: UInt64

        func run() throws { try writer(socket, round: round) }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Checks that every acknowledged write (the last per sector) is in the image.")
        @Argument(help: "The disk image.") var image: String
        @Argument(help: "The acknowledgements (stdout of cycles and writers).") var acknowledgements: String

        func run() throws {
            let status = verify(image: image, log: acknowledgements)
            if status != 0 { throw ExitCode(status) }
        }
    }
}
