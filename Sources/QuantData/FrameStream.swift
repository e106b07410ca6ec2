import Foundation
import QuantCore

/// Calibration batches arriving on a pipe (the Python package's reader, or any producer) instead
/// of from files: `--input-stream PATH` (a FIFO, a file, `/dev/fd/N`, or `-` for standard input).
///
/// The stream is a sequence of batches. A batch is one record per model input, then an end
/// record. A record is a 4-byte little-endian name length, the input name in UTF-8, and one .npy
/// frame (format 1.0, 2.0 or 3.0: the frame's header says how many data bytes follow). The end
/// record is a name length of 0 and nothing else. The end of the file after an end record ends
/// the stream; anywhere else it is an error (QK2118).
///
/// The stream is read once, as the first pass over the data (calibration) asks for its batches;
/// memory holds the batch being read, never the data set. The first `retainItems` items are kept
/// so that later passes of the same process (the analysis, GPTQ, bias correction) replay them:
/// a later pass sees at most those items.
public final class FrameStream: @unchecked Sendable {
    public let path: String
    let fd: Int32
    let ownsFD: Bool
    /// Items kept for later passes.
    public let retainItems: Int
    private let lock = NSLock()
    private var retained: [[String: Tensor]] = []
    private var retainedItems = 0
    /// The index of the next batch the stream yields; nil once it ended.
    private var position: Int? = 0

    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var registry: [String: FrameStream] = [:]

    /// The stream at `path`, opened on first use: every data set of one process over the same
    /// path shares it (the first pass reads it, later ones replay the retained items).
    public static func shared(path: String, retainItems: Int) throws -> FrameStream {
        registryLock.lock(); defer { registryLock.unlock() }
        if let s = registry[path] { return s }
        let s = try FrameStream(path: path, retainItems: retainItems)
        registry[path] = s
        return s
    }

    init(path: String, retainItems: Int) throws {
        self.path = path
        self.retainItems = max(retainItems, 0)
        if path == "-" {
            fd = 0
            ownsFD = false
        } else {
            let f = open(path, O_RDONLY)
            guard f >= 0 else {
                throw FrameStream.error(path, "cannot be opened: \(String(cString: strerror(errno)))",
                                        fix: "give a FIFO, a file or '-' (standard input) that the producer writes batches to")
            }
            fd = f
            ownsFD = true
        }
    }

    deinit { if ownsFD { close(fd) } }

    static func error(_ path: String, _ what: String, fix: String = "write each batch as records of (u32 name length, name, .npy frame) and an end record of length 0 (docs/PYTHON.md, 'The stream')") -> QuantKitError {
        QuantKitError("QK2118", "calibration stream '\(path == "-" ? "standard input" : path)' \(what)", fix: fix)
    }

    /// Batch `b`: a retained batch, the next one read from the stream, or nil (the stream
    /// ended, or a later pass asks beyond the retained items).
    public func batch(_ b: Int) throws -> [String: Tensor]? {
        lock.lock(); defer { lock.unlock() }
        if b < retained.count { return retained[b] }
        guard let p = position, b == p else { return nil }
        guard let feed = try readBatch(index: b) else {
            position = nil
            return nil
        }
        position = p + 1
        let items = feed.values.first.map { $0.rank > 0 ? $0.shape[0] : 1 } ?? 1
        if retainedItems < retainItems && retained.count == b {
            retained.append(feed)
            retainedItems += items
        }
        return feed
    }

    /// Reads exactly `n` bytes; nil at a clean end of the file before the first byte.
    private func read(_ n: Int, allowEnd: Bool, what: String) throws -> Data? {
        var out = Data(count: n)
        var got = 0
        try out.withUnsafeMutableBytes { (p: UnsafeMutableRawBufferPointer) in
            while got < n {
                let r = Foundation.read(fd, p.baseAddress! + got, n - got)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw FrameStream.error(path, "could not be read (\(String(cString: strerror(errno))))", fix: "check that the producer is still writing")
                }
                if r == 0 { break }
                got += r
            }
        }
        if got == 0 && allowEnd { return nil }
        guard got == n else { throw FrameStream.error(path, "ends inside \(what) (\(got) of \(n) bytes)", fix: "the producer stopped mid-batch; check that it did not fail") }
        return out
    }

    private func readBatch(index: Int) throws -> [String: Tensor]? {
        var feed: [String: Tensor] = [:]
        while true {
            guard let lenBytes = try read(4, allowEnd: feed.isEmpty, what: "a record") else { return nil }
            let len = Int(lenBytes[0]) | Int(lenBytes[1]) << 8 | Int(lenBytes[2]) << 16 | Int(lenBytes[3]) << 24
            if len == 0 {
                guard !feed.isEmpty else { throw FrameStream.error(path, "has an empty batch (batch \(index + 1))") }
                return feed
            }
            guard len <= 4096 else { throw FrameStream.error(path, "has a record whose name is \(len) bytes long (batch \(index + 1)): not a calibration stream") }
            let name = String(decoding: try read(len, allowEnd: false, what: "an input name")!, as: UTF8.self)
            // The .npy frame: magic, version, header length, header, then the data.
            let pre = try read(10, allowEnd: false, what: "the .npy frame of input '\(name)'")!
            guard pre.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) else {
                throw FrameStream.error(path, "has no .npy frame after input name '\(name)' (batch \(index + 1))")
            }
            var frame = pre
            let headerLength: Int
            if pre[6] == 1 {
                headerLength = Int(pre[8]) | Int(pre[9]) << 8
            } else {
                let more = try read(2, allowEnd: false, what: "the .npy header of input '\(name)'")!
                frame.append(more)
                headerLength = Int(pre[8]) | Int(pre[9]) << 8 | Int(more[0]) << 16 | Int(more[1]) << 24
            }
            guard headerLength < 1 << 20 else { throw FrameStream.error(path, "has an .npy header of \(headerLength) bytes for input '\(name)'") }
            frame.append(try read(headerLength, allowEnd: false, what: "the .npy header of input '\(name)'")!)
            let header: Npy.Header
            do { header = try frame.withUnsafeBytes { try Npy.parseHeader($0) } } catch {
                throw FrameStream.error(path, "has a bad .npy header for input '\(name)' (batch \(index + 1)): \(error)")
            }
            guard let bytes = Tensor.checkedByteCount(header.dtype, header.shape), bytes < 1 << 40 else {
                throw FrameStream.error(path, "declares shape \(header.shape) for input '\(name)': negative or too large")
            }
            frame.append(try read(bytes, allowEnd: false, what: "the data of input '\(name)'")!)
            let t: Tensor
            do { t = try frame.withUnsafeBytes { try Npy.decode($0) } } catch {
                throw FrameStream.error(path, "has an unreadable .npy frame for input '\(name)' (batch \(index + 1)): \(error)")
            }
            guard feed[name] == nil else { throw FrameStream.error(path, "gives input '\(name)' twice in batch \(index + 1)", fix: "end each batch with a record of name length 0") }
            feed[name] = t
        }
    }
}
