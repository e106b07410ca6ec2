import Foundation

/// Writes files so that a reader never sees a half-written output and an existing file is
/// replaced only once the new content is complete: write to a temporary file in the target
/// directory, flush, then rename over the target.
public enum AtomicFile {
    /// Writes `chunks` produced by `body` to `path` atomically. `body` receives a writer that
    /// appends bytes; if it throws, the temporary file is removed and `path` is untouched.
    public static func write(to path: String, _ body: (inout FileSink) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
            throw QuantKitError(
                "QK1010", "cannot create a file in '\(dir)'",
                fix: "check that the folder exists and is writable")
        }
        guard let handle = FileHandle(forWritingAtPath: tmp) else {
            throw QuantKitError("QK1010", "cannot open '\(tmp)' for writing", fix: "check permissions")
        }
        var sink = FileSink(handle: handle, path: tmp)
        do {
            try body(&sink)
            try sink.flush()
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            unlink(tmp)
            if error is CodedError { throw error }
            throw QuantKitError("QK1010", "writing '\(path)' failed: \(error)", fix: "check free disk space")
        }
        if rename(tmp, path) != 0 {
            unlink(tmp)
            throw QuantKitError("QK1010", "cannot move the new file into place at '\(path)'", fix: "check permissions")
        }
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { sink in try sink.append(data) }
    }
}

/// A buffered append-only writer used by `AtomicFile`.
public struct FileSink {
    let handle: FileHandle
    let path: String
    var buffer = Data()
    public private(set) var bytesWritten = 0

    init(handle: FileHandle, path: String) {
        self.handle = handle
        self.path = path
    }

    public mutating func append(_ data: Data) throws {
        bytesWritten += data.count
        if data.count >= 1 << 20 {
            try flush()
            try handle.write(contentsOf: data)
            return
        }
        buffer.append(data)
        if buffer.count >= 4 << 20 { try flush() }
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        if bytes.count >= 1 << 20 {
            try flush()
            bytesWritten += bytes.count
            try handle.write(contentsOf: bytes)
            return
        }
        try append(Data(bytes))
    }

    public mutating func flush() throws {
        guard !buffer.isEmpty else { return }
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}
