/// The version `--version` prints in every program of this package.
public let vhostUserPackageVersion = "0.1.0"
