import Foundation
import QuantCore
@testable import QuantData

/// Temporary folders and small files for the data tests.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("qk-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    @discardableResult
    static func writeNpy(_ t: Tensor, _ url: URL) throws -> String {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Npy.encode(t)!.write(to: url)
        return url.path
    }

    static func write(_ text: String, _ url: URL) throws -> String {
        try Data(text.utf8).write(to: url)
        return url.path
    }

    /// An .npy file from a header dict literal and raw data bytes (version 1.0 unless `major` says).
    static func npyBytes(_ header: String, _ data: [UInt8], major: UInt8 = 1) -> [UInt8] {
        let lenSize = major == 1 ? 2 : 4
        var h = header
        let total = 8 + lenSize + h.utf8.count + 1
        h += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        let n = h.utf8.count
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, 0]
        for i in 0..<lenSize { out.append(UInt8((n >> (8 * i)) & 0xFF)) }
        return out + Array(h.utf8) + data
    }

    static func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// The Python with numpy for preprocessing tests: the project venv when set up.
    static var python: String {
        let venv = root.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "python3"
    }

    /// Runs `body` and returns the QuantKitError it throws (nil if none or another error).
    static func error(_ body: () throws -> Void) -> QuantKitError? {
        do { try body() } catch let e as QuantKitError { return e } catch { return nil }
        return nil
    }

    /// Streams every batch of `ds`.
    static func all(_ ds: CalibrationDataset) throws -> [CalibrationBatch] {
        var out: [CalibrationBatch] = []
        try ds.forEachBatch { out.append($0) }
        return out
    }
}
