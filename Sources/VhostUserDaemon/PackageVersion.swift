/// The version `--version` prints in every program of this package (there is no release process
/// yet that would stamp it; change it with the package's version).
///
/// Thread-safety: a constant.
public let vhostUserPackageVersion = "0.1.0"
