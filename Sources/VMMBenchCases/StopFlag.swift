import CVMMPlatform

/// A flag shared between the measuring thread and a peer, read with acquire and set with release.
///
/// Thread-safety: `set()` and `isSet` may be called from any thread.
final class StopFlag: @unchecked Sendable {
    // Why it is safe: allocated once, freed in deinit, accessed only through C atomics.
    private let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    init() { word.initialize(to: 0) }
    deinit { word.deallocate() }
    var isSet: Bool { vmm_load_acquire_u32(word) != 0 }
    func set() { vmm_store_release_u32(word, 1) }
}
