import Foundation
import QuantCore
import QuantRewrite

/// The `[quantize]` table of an Icraft-style TOML file, plus QuantKit's extra keys beside its
/// keys. Icraft's `json`/`raw` network files are replaced by `model` (the ONNX path). Keys
/// Icraft has and QuantKit does not implement (`smooth_alpha`, `per = "group=N"`) throw QK7005 naming the key. Other tables of the file
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
    var quant_autotune_config: String?
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
    var weight_bits: Int?
    var weight_mode: String?
    var pack_weights: Bool?
    var weight_levels: Int?
    var scale_format: String?
    var hardware_profile: String?
    var value_range_in_bits: String?
    var accumulator_bits: Int?
    var format: String?
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
    var equalization: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case forward_dir, forward_list, saturation, per, batch, bin_num, qdtype, mix_precision, quant_autotune_config, smooth_alpha, autoqset_num, json, raw
        case model, output, steps, percentile, threads, truncate, exclude_nodes, exclude_op_types, concat_split_ratio, statistics, statistics_output
        case preset, color_format, mean_value, std_value, file_type, input_shape, seed, equalization, weight_bits, weight_mode, pack_weights, weight_levels, scale_format, hardware_profile, value_range_in_bits, accumulator_bits, format
    }

    static let schema = KeySchema.keys(CodingKeys.self)

    /// `autoTune`: the `[AutoTune]` table of the same file, if any.
    func configuration(autoTune: IcraftAutoTune? = nil) throws -> QuantizerConfiguration {
        var c = QuantizerConfiguration()
        if let j = json ?? raw {
            throw ConfigurationError.notImplemented("quantize.\(json != nil ? "json" : "raw")", "'\(j)'",
                detail: "QuantKit reads the ONNX model itself: set model = \"path/to/model.onnx\" instead of Icraft's json/raw network files")
        }
        // mix_precision = "plan.csv": a precision plan (the CSV every run writes has Icraft's
        // columns); "auto" (or a strategy name): the tuning loop to the [AutoTune] target.
        var tuning: TuningOptions? = nil
        if let m = mix_precision {
            switch m.lowercased() {
            case "auto", "variance", "lstm": tuning = TuningOptions(strategy: .variance)
            case "cosimilarity", "cosine": tuning = TuningOptions(strategy: .cosine)
            default: c.plan = m
            }
        }
        var table = autoTune
        if let path = quant_autotune_config {
            guard table == nil else {
                throw ConfigurationError.invalidValue("quantize.quant_autotune_config", "'\(path)'", expected: "either an [AutoTune] table in this file or quant_autotune_config, not both")
            }
            table = try IcraftAutoTune.read(path)
        }
        if let t = table {
            tuning = try t.options(base: tuning ?? TuningOptions())
        }
        c.tuning = tuning
        // smooth_alpha: SmoothQuant's α for LayerNorm -> MatMul (and every other MatMul/Gemm input);
        // QuantKit also accepts a negative value for `auto` (α per layer).
        if let a = smooth_alpha {
            guard a <= 1 else { throw ConfigurationError.invalidValue("quantize.smooth_alpha", "\(a)", expected: "α in [0, 1], or -1 for α chosen per layer") }
            c.smoothQuant = a < 0 ? .auto : .fixed(a)
        }
        c.equalize = equalization ?? false
        if let n = autoqset_num {
            guard n >= 1 else { throw ConfigurationError.invalidValue("quantize.autoqset_num", "\(n)", expected: "a number of items of 1 or more") }
            c.autoSubset = n
        }
        c.model = model
        c.output = output
        c.threads = threads
        c.statistics = statistics
        c.statisticsOutput = statistics_output
        switch qdtype?.lowercased() {
        case "float16", "fp16", "half":
            c.control.wholeModel = .fp16
        case "bfloat16", "bf16":
            c.control.wholeModel = .bf16
        default:
            c.scheme = try IcraftQuantize.scheme(qdtype ?? "int8")
        }
        // Icraft's saturation: kld (its default), ems, null; QuantKit's method names are accepted too.
        let name = saturation ?? "kld"
        guard let method = RangeMethod(name: name, percentile: percentile ?? 0.9999) else {
            throw ConfigurationError.unknownMethod(name, key: "quantize.saturation")
        }
        c.scheme.method = method
        switch per?.lowercased() {
        case nil, "channel": c.scheme.perChannelWeights = true
        case "tensor": c.scheme.perChannelWeights = false
        case let p?:
            guard let g = PrecisionPlan.Granularity(text: p), let n = g.groupSize else {
                throw ConfigurationError.invalidValue("quantize.per", "'\(p)'", expected: "tensor, channel or group=N (N >= 2)")
            }
            c.scheme.perChannelWeights = true
            c.scheme.weightGroupSize = n
        }
        try QuantizerConfiguration.NumberFormats(weightBits: weight_bits, weightMode: weight_mode, packWeights: pack_weights, weightLevels: weight_levels,
                                                 valueRange: value_range_in_bits, accumulatorBits: accumulator_bits, scaleFormat: scale_format,
                                                 hardwareProfile: hardware_profile, format: format).apply(to: &c) { "quantize.\($0)" }
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
            throw ConfigurationError.invalidValue("quantize.qdtype", "'\(qdtype)'", expected: "int8, uint8, int16, float16 or bfloat16")
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

/// Icraft's `[AutoTune]` table (in the configuration itself, or in the file
/// `quant_autotune_config` names): the tuning loop's target and budget. One target value at a
/// time; `evalscript_cmd` is the evaluation command (`{model}` for the model path, else the path
/// is appended), whose last printed number `metrics_targetvalue` applies to (higher is better
/// unless `metrics_higher_is_better = false`, a QuantKit key).
struct IcraftAutoTune: Decodable {
    var priority: String?
    var round_num: Int?
    var threshold_level: Int?
    var cos_targetvalue: Double?
    var dis_targetvalue: Double?
    var mae_targetvalue: Double?
    var mse_targetvalue: Double?
    var metrics_targetvalue: Double?
    var evalscript_cmd: String?
    // QuantKit.
    var metrics_higher_is_better: Bool?
    var latency_cmd: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case priority, round_num, threshold_level, cos_targetvalue, dis_targetvalue, mae_targetvalue, mse_targetvalue, metrics_targetvalue, evalscript_cmd
        case metrics_higher_is_better, latency_cmd
    }

    static let schema = KeySchema.keys(CodingKeys.self)

    /// Reads the `[AutoTune]` table of a TOML file.
    static func read(_ path: String) throws -> IcraftAutoTune {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError.unreadable(path, "the AutoTune file (quant_autotune_config) does not exist or is not UTF-8 text")
        }
        let tree: [String: Any]
        do { tree = try TOMLReader.parse(text) } catch let e as TOMLReader.SyntaxError {
            throw ConfigurationError.unreadable(path, e.description)
        }
        guard let t = tree["AutoTune"] as? [String: Any] else {
            throw ConfigurationError.missing("[AutoTune] table in '\(path)'", fix: "put the tuning keys (cos_targetvalue, round_num, ...) under an [AutoTune] table")
        }
        return try decode(t, path: path)
    }

    static func decode(_ table: [String: Any], path: String) throws -> IcraftAutoTune {
        let json = try JSONSerialization.data(withJSONObject: table)
        return try QuantizerConfiguration.decode(json: json, path: path, schema: .object(["AutoTune": schema]), wrap: "AutoTune", as: IcraftAutoTune.self)
    }

    func options(base: TuningOptions) throws -> TuningOptions {
        var o = base
        if let t = threshold_level {
            throw ConfigurationError.notImplemented("AutoTune.threshold_level", "\(t)", detail: "give the target itself (cos_targetvalue, dis_targetvalue, mae_targetvalue, mse_targetvalue or metrics_targetvalue)")
        }
        let targets: [(TuningTarget.Metric, Double?)] = [(.cosine, cos_targetvalue), (.distance, dis_targetvalue), (.mae, mae_targetvalue),
                                                          (.mse, mse_targetvalue), (.metric, metrics_targetvalue)]
        let given = targets.compactMap { m, v in v.map { (m, $0) } }
        if given.count > 1 {
            throw ConfigurationError.invalidValue("AutoTune", given.map { "\($0.0.rawValue)=\($0.1)" }.joined(separator: ", "), expected: "one target value")
        }
        if let (m, v) = given.first {
            o.target = TuningTarget(metric: m, value: v, higherIsBetter: m == .metric ? (metrics_higher_is_better ?? true) : nil)
        }
        if let p = priority {
            guard let v = TuningPriority(rawValue: p.lowercased()) else {
                throw ConfigurationError.invalidValue("AutoTune.priority", "'\(p)'", expected: "accuracy, tradeoff or performance")
            }
            o.priority = v
        }
        if let r = round_num {
            guard r >= 0 else { throw ConfigurationError.invalidValue("AutoTune.round_num", "\(r)", expected: "0 or more rounds") }
            o.rounds = r
        }
        if let cmd = evalscript_cmd { o.evalCommand = cmd.contains("{model}") ? cmd : cmd + " {model}" }
        if let l = latency_cmd { o.latencyCommand = l.contains("{model}") ? l : l + " {model}" }
        try o.validate()
        return o
    }
}
