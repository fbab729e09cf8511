import ArgumentParser
import VhostUserDaemon

/// vhost-user-rng: serves random bytes to one front-end at a time (QEMU's back-end program
/// conventions).
@main
struct EntropyDaemon: VhostUserDaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-rng",
        abstract: "A virtio-rng vhost-user back-end: fills the guest's buffers with random bytes.",
        version: vhostUserPackageVersion)

    @OptionGroup var daemon: VhostUserDaemonOptions

    func makeDevice() -> EntropyDevice { EntropyDevice() }
}
