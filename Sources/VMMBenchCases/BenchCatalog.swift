/// Every benchmark case, in the order vmm-bench prints them.
///
/// Thread-safety: stateless.
public enum BenchCatalog {
    /// Group names accepted on the vmm-bench command line.
    public static let groups = ["notify", "poller", "scm", "shm", "vring", "netpath"]

    /// All cases (including those whose backend is unavailable here: their factories throw `BenchSkipped`).
    public static func all() -> [BenchCase] {
        NotifyCases.all() + PollerCases.all() + ScmCases.all() + ShmCases.all() + VringCases.all() + NetCases.all()
    }
}
