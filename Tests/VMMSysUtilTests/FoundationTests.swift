import Testing
import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileDescriptorTests {
    @Test(.isolatedDescriptors) func ownerClosesExactlyOnce() throws {
        let before = openFileDescriptorCount()
        do {
            let fd = FileDescriptor(adopting: open("/dev/null", O_RDONLY | O_CLOEXEC))
            #expect(fd.rawValue >= 0)
            #expect(try fd.isCloseOnExec())
            #expect(openFileDescriptorCount() == before + 1)
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func duplicateIsCloseOnExec() throws {
        let fd = FileDescriptor(adopting: open("/dev/null", O_RDONLY))
        #expect(try !fd.isCloseOnExec())
        let copy = try fd.duplicate()
        #expect(try copy.isCloseOnExec())
        #expect(copy.rawValue != fd.rawValue)
    }

    @Test func mappingRefusesRangesBeyondTheFile() throws {
        let fd = FileDescriptor(adopting: open("/dev/null", O_RDONLY | O_CLOEXEC))
        #expect(throws: MappingError.self) { try MemoryMapping(fd: fd.rawValue, size: 4096) }
        #expect(throws: MappingError.rangeOverflow(offset: UInt64.max, size: 2)) {
            try MemoryMapping(fd: fd.rawValue, size: 2, offset: UInt64.max)
        }
        #expect(throws: MappingError.emptyRegion) { try MemoryMapping(fd: fd.rawValue, size: 0) }
    }
}
