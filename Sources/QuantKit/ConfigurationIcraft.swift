import Foundation
import QuantCore

/// The `[quantize]` table of an Icraft-style TOML file, plus QuantKit's extra keys beside its
/// keys. Icraft's `json`/`raw` network files are replaced by `model` (the ONNX path). Keys
/// Icraft has and QuantKit does not implement (`smooth_alpha`,
/// `autoqset_num`, `per = "group=N"`) throw QK7005 naming the key. Other tables of the file
/// (`[parse]`, `[optimize]`, ...) belong to other stages and are ignored.
struct IcraftQuantize: Decodable {
    var forward_dir: String?
    var forward_list: String?
    var saturation: String?
    var per: String?
    var batch: Int?
    var bin_num: Int?
    var qdtype: String?
    var mix_precision: String?
    var smooth_alpha: Double?
    var autoqset_num: Int?
    var json: String?
    var raw: String?
    // QuantKit.
    var model: String?
    var output: String?
    var steps: Int?
    var percentile: Double?
    var threads: Int?
    var truncate: [String]?
    var exclude_nodes: [String]?
    var exclude_op_types: [String]?
    var concat_split_ratio: Double?
    var statistics: String?
    var statistics_output: String?
    var preset: String?
    var color_format: String?
    var mean_value: [Double]?
    var std_value: [Double]?
    var file_type: String?
    var input_shape: [Int]?
    var seed: UInt64?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case forward_dir, forward_list, saturation, per, batch, bin_num, qdtype, mix_precision, smooth_alpha, autoqset_num, json, raw
        case model, output, steps, percentile, threads, truncate, exclude_nodes, exclude_op_types, concat_split_ratio, statistics, statistics_output
        case preset, color_format, mean_value, std_value, file_type, input_shape, seed
    }

    static let schema = KeySchema.keys(CodingKeys.self)

    func configuration() throws -> QuantizerConfiguration {
        var c = QuantizerConfiguration()
        if let j = json ?? raw {
            throw ConfigurationError.notImplemented("quantize.\(json != nil ? "json" : "raw")", "'\(j)'",
                detail: "QuantKit reads the ONNX model itself: set model = \"path/to/model.onnx\" instead of Icraft's json/raw network files")
        }
        // mix_precision = "plan.csv": a precision plan (the CSV every run writes has Icraft's columns).
        if let m = mix_precision {
            if m.lowercased() == "auto" {
                throw ConfigurationError.notImplemented("quantize.mix_precision", "'\(m)'", detail: "give a plan file (mix_precision = \"NAME.plan.csv\", as every run writes beside its model)")
            }
            c.plan = m
        }
        if let a = smooth_alpha {
            throw ConfigurationError.notImplemented("quantize.smooth_alpha", "\(a)", detail: "SmoothQuant is not implemented yet; remove the key")
        }
        if let n = autoqset_num {
            throw ConfigurationError.notImplemented("quantize.autoqset_num", "\(n)", detail: "automatic quantization-setting search is not implemented; remove the key")
        }
        c.model = model
        c.output = output
        c.threads = threads
        c.statistics = statistics
        c.statisticsOutput = statistics_output
        c.scheme = try IcraftQuantize.scheme(qdtype ?? "int8")
        // Icraft's saturation: kld (its default), ems, null; QuantKit's method names are accepted too.
        let name = saturation ?? "kld"
        guard let method = RangeMethod(name: name, percentile: percentile ?? 0.9999) else {
            throw ConfigurationError.unknownMethod(name, key: "quantize.saturation")
        }
        c.scheme.method = method
        switch per?.lowercased() {
        case nil, "channel": c.scheme.perChannelWeights = true
        case "tensor": c.scheme.perChannelWeights = false
        case let p? where p.hasPrefix("group"):
            throw ConfigurationError.notImplemented("quantize.per", "'\(p)'", detail: "group-wise weight scales are not implemented; use \"channel\" or \"tensor\"")
        case let p?: throw ConfigurationError.invalidValue("quantize.per", "'\(p)'", expected: "tensor, channel or group=N")
        }
        if let b = bin_num { c.observer.bins = b }
        c.control.truncateAfter = truncate ?? []
        c.control.excludeNodes = exclude_nodes ?? []
        c.control.excludeOpTypes = exclude_op_types ?? []
        c.control.concatSplitRatio = try concat_split_ratio.map { try QuantizerConfiguration.checkConcatSplitRatio($0, key: "quantize.concat_split_ratio") }
        c.data = try dataset()
        return c
    }

    /// int8: symmetric int8 activations and weights (Icraft's default); uint8: asymmetric uint8
    /// activations; int16: symmetric int16 activations with int8 weights (QuantKit writes no
    /// 16-bit weights).
    static func scheme(_ qdtype: String) throws -> QuantScheme {
        guard ["int8", "uint8", "int16"].contains(qdtype.lowercased()) else {
            throw ConfigurationError.invalidValue("quantize.qdtype", "'\(qdtype)'", expected: "int8, uint8 or int16")
        }
        return try QuantizerConfiguration.scheme(named: qdtype, key: "quantize.qdtype")
    }

    /// forward_dir alone: every file in it feeds the (single) input. forward_list: one item per
    /// line, files of several inputs separated by `;`, relative to forward_dir when given (else
    /// to the list's folder).
    func dataset() throws -> DatasetConfig? {
        guard forward_dir != nil || forward_list != nil else { return nil }
        var image = ImagePreprocessing()
        if let p = preset {
            guard let v = ImagePreprocessing.preset(named: p) else {
                throw ConfigurationError.invalidValue("quantize.preset", "'\(p)'", expected: ImagePreprocessing.presetNames.joined(separator: ", "))
            }
            image = v
        }
        if let v = color_format { image.colorFormat = try QuantizerConfiguration.choice(v, key: "quantize.color_format") }
        if let v = mean_value { image.mean = v }
        if let v = std_value { image.std = v }
        let type = try file_type.map { try QuantizerConfiguration.fileType($0, key: "quantize.file_type") }
        func input(_ source: InputSource) -> InputConfig { InputConfig(name: "", source: source, shape: input_shape, fileType: type, image: image) }
        var d: DatasetConfig
        if let list = forward_list {
            if let dir = forward_dir {
                let columns = try IcraftQuantize.readList(list, base: dir)
                d = DatasetConfig(inputs: columns.map { input(.files($0)) })
            } else {
                let width = try IcraftQuantize.readList(list, base: URL(fileURLWithPath: list).deletingLastPathComponent().path).count
                d = DatasetConfig(inputs: (0..<width).map { input(.sharedList(column: $0)) }, sharedList: list)
            }
        } else {
            d = DatasetConfig(inputs: [input(.folder(forward_dir!))])
        }
        if let b = batch { d.batchSize = b }
        d.steps = steps
        if let s = seed { d.seed = s }
        return d
    }

    /// The list's lines as per-input columns of paths under `base`. QK2113/QK2103 like any list.
    static func readList(_ path: String, base: String) throws -> [[String]] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw QuantKitError("QK2113", "forward_list '\(path)' cannot be read as UTF-8 text", fix: "one item per line; several inputs: their files separated by ';'")
        }
        var columns: [[String]] = []
        for (n, raw) in text.split(whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if columns.isEmpty { columns = Array(repeating: [], count: parts.count) }
            guard parts.count == columns.count, !parts.contains(where: \.isEmpty) else {
                throw QuantKitError("QK2113", "forward_list '\(path)' line \(n + 1) has \(parts.count) file(s) where earlier lines have \(columns.count)",
                                    fix: "give every line one file per input, separated by ';'")
            }
            for (i, p) in parts.enumerated() { columns[i].append(p.hasPrefix("/") ? p : URL(fileURLWithPath: base).appendingPathComponent(p).path) }
        }
        if columns.isEmpty { throw DataError.noItems(input: "forward_list", searched: path, detail: "the list holds no file") }
        return columns
    }
}
