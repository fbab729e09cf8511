/// Registrations indexed directly by descriptor number.
///
/// Descriptor numbers are small and dense, so an array beats a hash table on the wait path (one
/// bounds check instead of hashing per reported event), and iterating in descriptor order makes
/// the poll backend's pollfd array the same from run to run. Grows to the highest registered
/// descriptor; never shrinks (a descriptor number is usually reused).
struct RegistrationSlots {
    private var slots: [Registration?] = []
    /// The number of registered descriptors.
    private(set) var count = 0

    subscript(fd: Int32) -> Registration? {
        get {
            let index = Int(fd)
            return index >= 0 && index < slots.count ? slots[index] : nil
        }
        set {
            let index = Int(fd)
            guard index >= 0 else { return }
            if index >= slots.count {
                guard newValue != nil else { return }
                slots.append(contentsOf: repeatElement(nil, count: index + 1 - slots.count))
            }
            if slots[index] == nil, newValue != nil { count += 1 }
            if slots[index] != nil, newValue == nil { count -= 1 }
            slots[index] = newValue
        }
    }

    /// Removes and returns the registration of `fd`, if any.
    mutating func removeValue(forKey fd: Int32) -> Registration? {
        let old = self[fd]
        self[fd] = nil
        return old
    }

    /// Calls `body` for every registration, in descriptor order.
    func forEach(_ body: (Int32, Registration) throws -> Void) rethrows {
        for index in slots.indices {
            if let registration = slots[index] { try body(Int32(index), registration) }
        }
    }
}
