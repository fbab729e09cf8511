import Testing
import VirtioBlock
import VMMSysUtil
import VMMTestSupport

@Suite("virtio-blk backing file", .serialized)
struct BackingFileTests {
    @Test("capacity counts whole sectors; the descriptor is close-on-exec and closed on release", .isolatedDescriptors)
    func capacity() throws {
        let image = try TestImage(bytes: [UInt8](repeating: 7, count: 4096 + 100))
        let (capacity, leaked) = try descriptorsLeaked { () throws -> UInt64 in
            let file = try BlockBackingFile(path: image.path)
            #expect(file.logicalBlockSize == 512 && !file.isReadOnly)
            return file.capacity
        }
        #expect(capacity == 8 && leaked == 0)
        let empty = try TestImage(bytes: [])
        #expect(try BlockBackingFile(path: empty.path, readOnly: true).capacity == 0)
    }

    @Test("open failures throw typed errors and leak nothing", .isolatedDescriptors)
    func failures() throws {
        let (_, leaked) = descriptorsLeaked {
            #expect(throws: BlockBackingFileError.self) { try BlockBackingFile(path: "/nonexistent/virtio-blk-image") }
            #expect(throws: BlockBackingFileError.unsupportedFileType(path: "/tmp")) {
                try BlockBackingFile(path: "/tmp", readOnly: true)
            }
        }
        #expect(leaked == 0)
        // The open must fail, and with the errno of open(2).
        let error = #expect(throws: BlockBackingFileError.self) {
            try BlockBackingFile(path: "/nonexistent/virtio-blk-image")
        }
        guard case let .system(_, systemError)? = error else {
            Issue.record("wrong error \(String(describing: error))")
            return
        }
        #expect(systemError.errno == .noSuchFile)
    }

    @Test("the id is 20 hex digits from the file's device and inode, distinct per file")
    func identifier() throws {
        let a = try TestImage(sectors: 1)
        let b = try TestImage(sectors: 1)
        let idA = try BlockBackingFile(path: a.path).identifier
        let idB = try BlockBackingFile(path: b.path).identifier
        #expect(idA.count == 20 && idB.count == 20 && idA != idB)
        #expect(
            idA.allSatisfy {
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
            })
        let inode = String(try inodeNumber(a.path) & 0xFFFF_FFFF_FFFF, radix: 16)
        #expect(String(decoding: idA, as: UTF8.self).hasSuffix(inode))
        // Same file, same id.
        #expect(try BlockBackingFile(path: a.path, readOnly: true).identifier == idA)
    }
}
