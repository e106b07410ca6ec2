#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file, unmapped when the last reference goes.
///
/// Tensors loaded from external data files keep their `MappedFile` alive and read straight
/// from the mapping, so a multi-gigabyte model costs address space, not heap.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let byteCount: Int
    public let base: UnsafeRawPointer?

    /// Maps `path` read-only. Throws `QuantKitError` QK1001 (missing/unreadable) with the path.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw QuantKitError(
                "QK1001", "cannot open '\(path)': \(String(cString: strerror(errno)))",
                fix: "check that the file exists and is readable")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw QuantKitError("QK1001", "cannot stat '\(path)'", fix: "check that the file is readable")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw QuantKitError("QK1001", "'\(path)' is a directory, not a file", fix: "pass the path of a file")
        }
        byteCount = Int(st.st_size)
        if byteCount == 0 {
            base = nil
            return
        }
        let p = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw QuantKitError("QK1001", "cannot map '\(path)'", fix: "check free address space and permissions")
        }
        base = UnsafeRawPointer(p)
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: byteCount) }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), byteCount) }
    }
}
