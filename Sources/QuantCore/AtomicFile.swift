import Foundation

/// Writes files so that a reader never sees a half-written output and an existing file is
/// replaced only once the new content is complete: write to a temporary file in the target
/// directory, flush, then rename over the target.
public enum AtomicFile {
    /// Writes `chunks` produced by `body` to `path` atomically. `body` receives a writer that
    /// appends bytes; if it throws, the temporary file is removed and `path` is untouched.
    ///
    /// With a `batch`, the file is only staged: it replaces `path` when the batch commits, with
    /// the batch's other files (outputs that belong together appear together).
    public static func write(to path: String, batch: AtomicBatch? = nil, _ body: (inout FileSink) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        removeStaleTemporaries(of: url.lastPathComponent, in: dir)
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
        if let batch {
            batch.staged.append((tmp, path))
            return
        }
        try move(tmp, to: path)
    }

    static func move(_ tmp: String, to path: String) throws {
        if rename(tmp, path) != 0 {
            unlink(tmp)
            throw QuantKitError("QK1010", "cannot move the new file into place at '\(path)'", fix: "check permissions")
        }
    }

    /// Removes temporary files of `name` left in `dir` by a writer that was killed: those
    /// whose process id (`.NAME.tmp-PID-N`) no longer runs. A live writer's file is kept.
    static func removeStaleTemporaries(of name: String, in dir: String) {
        let prefix = "." + name + ".tmp-"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for e in entries where e.hasPrefix(prefix) {
            guard let pid = Int32(e.dropFirst(prefix.count).prefix { $0 != "-" }), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(dir + "/" + e) }
        }
    }

    /// Creates the folder `path` (and its parents) unless it exists; QK1010 when it cannot be
    /// made or a file of that name is in the way.
    public static func makeDirectory(_ path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw QuantKitError("QK1010", "cannot create the output folder '\(path)': a file of that name exists", fix: "choose another folder or move the file")
            }
            return
        }
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw QuantKitError("QK1010", "cannot create the output folder '\(path)'", fix: "check that the parent folder exists and is writable")
        }
    }

    /// Writes `data` to `path` atomically (staged in `batch` when given).
    public static func write(_ data: Data, to path: String, batch: AtomicBatch? = nil) throws {
        try write(to: path, batch: batch) { sink in try sink.append(data) }
    }
}

/// Files written as one set: each is written completely to a temporary file first
/// (`AtomicFile.write(to:batch:)`); `commit` then moves them all into place, in the order they
/// were staged, so that no output of the set replaces its old version before every other one
/// is complete. Temporary files of a batch that is never committed are removed.
public final class AtomicBatch {
    var staged: [(tmp: String, path: String)] = []

    public init() {}

    /// Moves every staged file into place.
    public func commit() throws {
        let files = staged
        staged = []
        for (k, f) in files.enumerated() {
            do { try AtomicFile.move(f.tmp, to: f.path) } catch {
                for g in files[(k + 1)...] { unlink(g.tmp) }
                throw error
            }
        }
    }

    deinit { for f in staged { unlink(f.tmp) } }
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
