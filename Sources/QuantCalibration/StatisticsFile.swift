import Foundation
import QuantCore

/// The statistics file (JSON): every observed tensor's statistics and, once chosen, its range.
/// Written after calibration and read back to skip calibration; files of two data shards merge
/// into the file of their union. Ranges computed elsewhere come in as CSV (`tensor,min,max`,
/// as Icraft's saturation files and Distiller's stats carry them).
public struct StatisticsFile: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var statistics: TensorStatistics
        /// The chosen clipping range and method, when ranges have been selected.
        public var range: ClipRange?
        public var method: String?

        public init(statistics: TensorStatistics, range: ClipRange? = nil, method: String? = nil) {
            self.statistics = statistics
            self.range = range
            self.method = method
        }
    }

    public static let currentVersion = 1
    public var version: Int
    /// The model the statistics were collected on (file name), for a sanity check on reuse.
    public var model: String
    /// Calibration samples seen.
    public var samples: Int
    public var tensors: [String: Entry]
    /// The float-equivalent transforms of the model the tensors were observed in (nil: none).
    public var transforms: FloatTransforms?

    public init(model: String, samples: Int, tensors: [String: Entry], transforms: FloatTransforms? = nil) {
        version = StatisticsFile.currentVersion
        self.model = model
        self.samples = samples
        self.tensors = tensors
        self.transforms = transforms.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Throws QK4006 unless the statistics were observed under the transforms asked for:
    /// equalization on or off as `equalize`, SmoothQuant factors present or not as `smooth` (the
    /// run then uses the file's factors). A file written without equalization does not describe
    /// an equalized model's tensors. A CSV of ranges (no model name) is taken as it is.
    public func check(equalize: Bool, smooth: Bool, path: String) throws {
        let mine = transforms ?? FloatTransforms()
        guard !model.isEmpty, mine.equalize != equalize || mine.smoothing.isEmpty == smooth else { return }
        throw QuantKitError("QK4006", "the statistics file '\(path)' was calibrated with float transforms '\(mine.summary)' but this run applies '\(FloatTransforms.describe(equalize: equalize, smoothed: smooth ? nil : 0))'",
                            fix: "calibrate again with the same --equalize/--smoothquant settings (`quantkit calibrate ... --stats-out`), or drop those options")
    }

    public func write(to path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try AtomicFile.write(try enc.encode(self), to: path)
    }

    public static func read(path: String) throws -> StatisticsFile {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw QuantKitError("QK4001", "cannot read statistics file '\(path)'", fix: "check the path")
        }
        if path.lowercased().hasSuffix(".csv") { return try importCSV(String(decoding: data, as: UTF8.self), path: path) }
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let file: StatisticsFile
        do { file = try dec.decode(StatisticsFile.self, from: data) } catch {
            throw QuantKitError("QK4002", "'\(path)' is not a QuantKit statistics file (\(error))",
                                fix: "pass a file written by `quantkit calibrate --stats-out`, or a CSV of tensor,min,max")
        }
        guard file.version <= currentVersion else {
            throw QuantKitError("QK4002", "'\(path)' has statistics format \(file.version), newer than this QuantKit (\(currentVersion))", fix: "update QuantKit")
        }
        return file
    }

    /// Parses `tensor,min,max` lines (a header line and `#` comments are skipped).
    public static func importCSV(_ text: String, path: String) throws -> StatisticsFile {
        var tensors: [String: Entry] = [:]
        for (n, raw) in text.split(whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let f = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard f.count >= 3, let lo = Double(f[f.count - 2]), let hi = Double(f[f.count - 1]) else {
                if n == 0 { continue }  // header
                throw QuantKitError("QK4003", "'\(path)' line \(n + 1) is not `tensor,min,max`: \(line)", fix: "write one tensor per line as name,min,max")
            }
            guard lo <= hi, lo.isFinite, hi.isFinite else {
                throw QuantKitError("QK4003", "'\(path)' line \(n + 1): min \(lo) is above max \(hi) or not finite", fix: "give finite min ≤ max")
            }
            let name = f[0..<(f.count - 2)].joined(separator: ",")
            tensors[name] = Entry(statistics: .imported(min: lo, max: hi), range: ClipRange(lo: lo, hi: hi), method: "imported")
        }
        return StatisticsFile(model: "", samples: 0, tensors: tensors)
    }

    /// The statistics of the union of both files' data (ranges are dropped: select again).
    public static func merged(_ a: StatisticsFile, _ b: StatisticsFile) throws -> StatisticsFile {
        if !a.model.isEmpty, !b.model.isEmpty, a.model != b.model {
            throw QuantKitError("QK4004", "statistics of different models cannot merge ('\(a.model)' and '\(b.model)')", fix: "merge files calibrated on the same model")
        }
        if (a.transforms ?? FloatTransforms()) != (b.transforms ?? FloatTransforms()) {
            throw QuantKitError("QK4004", "statistics of differently transformed models cannot merge ('\((a.transforms ?? FloatTransforms()).summary)' and '\((b.transforms ?? FloatTransforms()).summary)')",
                                fix: "calibrate every shard with the same --equalize/--smoothquant settings")
        }
        var out = a
        out.samples += b.samples
        for (name, e) in b.tensors {
            if var mine = out.tensors[name] {
                mine.statistics.merge(e.statistics)
                mine.range = nil
                mine.method = nil
                out.tensors[name] = mine
            } else {
                out.tensors[name] = Entry(statistics: e.statistics, range: nil, method: nil)
            }
        }
        for k in out.tensors.keys where b.tensors[k] == nil {
            out.tensors[k]?.range = nil
            out.tensors[k]?.method = nil
        }
        return out
    }
}
