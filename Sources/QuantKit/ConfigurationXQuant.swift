import Foundation
import QuantCore

/// An XQuant (PPQ-based) JSON configuration, key for key, plus QuantKit's extra keys beside
/// them. ``configuration(baseDirectory:)`` maps it to ``QuantizerConfiguration``; docs/CONFIG.md
/// documents every key. Paths are relative to the current directory, as in XQuant.
struct XQuantFile: Decodable {
    var model_parameters: ModelParameters?
    var calibration_parameters: CalibrationParameters?
    var quantization_parameters: QuantizationParameters?

    enum CodingKeys: String, CodingKey, CaseIterable { case model_parameters, calibration_parameters, quantization_parameters }

    struct ModelParameters: Decodable {
        var onnx_model: String?
        var output_prefix: String?
        /// XQuant 1.x's name of `output_prefix`.
        var output_model_file_prefix: String?
        var working_dir: String?
        var skip_onnxsim: Bool?
        // QuantKit: the output path itself, worker threads.
        var output: String?
        var threads: Int?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case onnx_model, output_prefix, output_model_file_prefix, working_dir, skip_onnxsim, output, threads
        }
    }

    struct CalibrationParameters: Decodable {
        var calibration_step: Int?
        var calibration_device: String?
        var calibration_type: String?
        var input_parametres: [InputParameters]?
        // QuantKit: batching, histogram bins, activation scheme, statistics files, seed.
        var batch_size: Int?
        var bins: Int?
        var activations: String?
        var per_channel: Bool?
        var n_std: Double?
        var statistics: String?
        var statistics_output: String?
        var seed: UInt64?
        var prefetch: Int?
        var fail_on_nonfinite: Bool?
        var python: String?
        var max_image_pixels: Int?
        var max_item_bytes: Int?
        var weight_rounding: String?
        var bias_correction: BiasCorrectionScope?
        var weight_bits: Int?
        var weight_mode: String?
        var weight_group_size: Int?
        var pack_weights: Bool?
        var weight_levels: Int?
        var scale_format: String?
        var hardware_profile: String?
    var value_range_in_bits: String?
    var accumulator_bits: Int?
    var format: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case calibration_step, calibration_device, calibration_type, input_parametres
            case batch_size, bins, activations, per_channel, n_std, statistics, statistics_output, seed, prefetch, fail_on_nonfinite, python
            case max_image_pixels, max_item_bytes, weight_rounding, bias_correction, weight_bits, weight_mode, weight_group_size, pack_weights, weight_levels, scale_format, hardware_profile, value_range_in_bits, accumulator_bits, format
        }
    }

    struct InputParameters: Decodable {
        var input_name: String?
        var input_shape: [Int]?
        var dtype: String?
        var file_type: String?
        var color_format: String?
        var mean_value: [Double]?
        var std_value: [Double]?
        var preprocess_file: String?
        var data_list_path: String?
        // QuantKit: other sources and image options.
        var data_dir: String?
        var files: [String]?
        var random: Bool?
        var raw_dtype: String?
        var resize: String?
        var size: [Int]?
        var resize_shorter: Int?
        var center_crop: Bool?
        var scale: Double?
        var layout: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case input_name, input_shape, dtype, file_type, color_format, mean_value, std_value, preprocess_file, data_list_path
            case data_dir, files, random, raw_dtype, resize, size, resize_shorter, center_crop, scale, layout
        }
    }

    struct QuantizationParameters: Decodable {
        var analysis_enable: Bool?
        var precision_level: Int?
        var finetune_level: Int?
        var max_percentile: Double?
        var custom_setting: [CustomSetting]?
        var truncate_var_names: [String]?
        // QuantKit: exclusions.
        var exclude_nodes: [String]?
        var exclude_op_types: [String]?
        var concat_split_ratio: Double?
        // QuantKit: accuracy-recovery transforms.
        var equalization: Bool?
        var smoothquant: SmoothQuant.Alpha?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case analysis_enable, precision_level, finetune_level, max_percentile, custom_setting, truncate_var_names
            case exclude_nodes, exclude_op_types, concat_split_ratio, equalization, smoothquant
        }
    }

    struct CustomSetting: Decodable {
        var input_names: [String]?
        var output_names: [String]?
        var max_percentile: Double?
        var precision_level: Int?
        var calibration_type: String?
        // QuantKit: activation bits inside, or keep the region float.
        var bits: Int?
        var keep_float: Bool?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case input_names, output_names, max_percentile, precision_level, calibration_type, bits, keep_float
        }
    }

    /// The keys each object may hold, for QK7003 before decoding.
    static let schema: KeySchema = .object([
        "model_parameters": .keys(ModelParameters.CodingKeys.self),
        "calibration_parameters": .keys(CalibrationParameters.CodingKeys.self, nested: ["input_parametres": .array(.keys(InputParameters.CodingKeys.self))]),
        "quantization_parameters": .keys(QuantizationParameters.CodingKeys.self, nested: ["custom_setting": .array(.keys(CustomSetting.CodingKeys.self))]),
    ])

    /// XQuant's default `calibration_step`: at most this many calibration items.
    static let defaultCalibrationStep = 100

    func configuration() throws -> QuantizerConfiguration {
        var c = QuantizerConfiguration()
        let m = model_parameters, cal = calibration_parameters, q = quantization_parameters
        c.model = m?.onnx_model
        c.threads = m?.threads
        if let out = m?.output {
            c.output = out
        } else if let model = m?.onnx_model, m?.output_prefix != nil || m?.output_model_file_prefix != nil || m?.working_dir != nil {
            // XQuant: WORKING_DIR/PREFIX.q.onnx; the prefix defaults to the model's stem, the folder to the model's.
            let url = URL(fileURLWithPath: model)
            var prefix = m?.output_prefix ?? m?.output_model_file_prefix ?? url.deletingPathExtension().lastPathComponent
            if prefix.hasSuffix(".onnx") { prefix.removeLast(5) }
            if !prefix.hasSuffix(".q") { prefix += ".q" }
            let dir = m?.working_dir.map { URL(fileURLWithPath: $0) } ?? url.deletingLastPathComponent()
            c.output = dir.appendingPathComponent(prefix + ".onnx").path
        }
        if m?.skip_onnxsim == true {
            c.notes.append("model_parameters.skip_onnxsim: QuantKit never runs onnxsim; its own graph preparation keeps float semantics and always runs")
        }

        let type = cal?.calibration_type ?? "default"
        let percentile = q?.max_percentile ?? 0.9999
        guard let method = RangeMethod(name: type, percentile: percentile, n: cal?.n_std ?? 3) else {
            throw ConfigurationError.unknownMethod(type, key: "calibration_parameters.calibration_type")
        }
        c.scheme = try QuantizerConfiguration.scheme(named: cal?.activations ?? "u8", key: "calibration_parameters.activations")
        c.scheme.method = method
        if let pc = cal?.per_channel { c.scheme.perChannelWeights = pc }
        try QuantizerConfiguration.NumberFormats(weightBits: cal?.weight_bits, weightMode: cal?.weight_mode, weightGroupSize: cal?.weight_group_size,
                                                 packWeights: cal?.pack_weights, weightLevels: cal?.weight_levels, valueRange: cal?.value_range_in_bits,
                                                 accumulatorBits: cal?.accumulator_bits, scaleFormat: cal?.scale_format, hardwareProfile: cal?.hardware_profile,
                                                 format: cal?.format).apply(to: &c) { "calibration_parameters.\($0)" }
        if let r = cal?.weight_rounding {
            guard let v = WeightRounding(rawValue: r.lowercased()) else {
                throw ConfigurationError.invalidValue("calibration_parameters.weight_rounding", "'\(r)'", expected: "nearest, gptq or adaround")
            }
            c.weightRounding = v
        }
        if let b = cal?.bias_correction { c.biasCorrection = b }
        if let b = cal?.bins { c.observer.bins = b }
        switch cal?.calibration_device?.lowercased() {
        case nil, "cpu": break
        case "cuda": c.notes.append("calibration_parameters.calibration_device: QuantKit calibrates on the CPU; \"cuda\" is accepted and ignored")
        case let d?: throw ConfigurationError.invalidValue("calibration_parameters.calibration_device", "'\(d)'", expected: "cpu or cuda")
        }
        c.statistics = cal?.statistics
        c.statisticsOutput = cal?.statistics_output

        if let inputs = cal?.input_parametres, !inputs.isEmpty {
            let step = cal?.calibration_step ?? XQuantFile.defaultCalibrationStep
            if step < 1 { throw ConfigurationError.invalidValue("calibration_parameters.calibration_step", "\(step)", expected: "1 or more items") }
            let batch = cal?.batch_size ?? 1
            var d = DatasetConfig(inputs: try inputs.enumerated().map { try $1.inputConfig(index: $0) })
            d.batchSize = batch
            d.steps = max(1, step / max(batch, 1))
            d.randomItems = step
            if let s = cal?.seed { d.seed = s }
            if let p = cal?.prefetch { d.prefetch = p }
            if cal?.fail_on_nonfinite == true { d.nonFinite = .fail }
            if let py = cal?.python { d.python = py }
            if let v = cal?.max_image_pixels { d.limits.maxImagePixels = v }
            if let v = cal?.max_item_bytes { d.limits.maxItemBytes = v }
            c.data = d
        } else if let step = cal?.calibration_step, step < 1 {
            throw ConfigurationError.invalidValue("calibration_parameters.calibration_step", "\(step)", expected: "1 or more items")
        }

        if let p = q?.max_percentile, !(p >= 0.99 && p <= 1) {
            throw ConfigurationError.invalidValue("quantization_parameters.max_percentile", "\(p)", expected: "a fraction in [0.99, 1] (XQuant's limits)")
        }
        if let l = q?.precision_level {
            c.tuning = try QuantizerConfiguration.precisionLevel(l, key: "quantization_parameters.precision_level")
            if l == 4 { c.control.wholeModel = .fp16 }
        }
        if let r = try QuantizerConfiguration.finetuneLevel(q?.finetune_level ?? 1, key: "quantization_parameters.finetune_level") { c.weightRounding = r }
        if q?.analysis_enable == true {
            c.notes.append("quantization_parameters.analysis_enable: the analysis report is written by `quantkit analyze` when that stage is available")
        }
        c.equalize = q?.equalization ?? false
        c.smoothQuant = q?.smoothquant
        c.control.truncateAfter = q?.truncate_var_names ?? []
        c.control.excludeNodes = q?.exclude_nodes ?? []
        c.control.excludeOpTypes = q?.exclude_op_types ?? []
        c.control.concatSplitRatio = try q?.concat_split_ratio.map { try QuantizerConfiguration.checkConcatSplitRatio($0, key: "quantization_parameters.concat_split_ratio") }
        c.control.subgraphSettings = try (q?.custom_setting ?? []).enumerated().map { try $1.setting(index: $0, percentile: percentile) }
        return c
    }
}

extension XQuantFile.InputParameters {
    func inputConfig(index: Int) throws -> InputConfig {
        let key = "calibration_parameters.input_parametres[\(index)]"
        let sources = [data_list_path != nil, data_dir != nil, files != nil, random == true].filter { $0 }.count
        if sources > 1 {
            throw ConfigurationError.invalidValue(key, "configured with several sources", expected: "one of data_list_path, data_dir, files or random: true")
        }
        let source: InputSource
        if let p = data_list_path { source = .list(p) }
        else if let p = data_dir { source = .folder(p) }
        else if let f = files { source = .files(f) }
        else if random == true { source = .random }
        else {
            throw ConfigurationError.missing("data for \(key)", fix: "set data_list_path (a list file, one path per line), or QuantKit's data_dir, files or random: true")
        }
        var c = InputConfig(name: input_name ?? "", source: source, shape: input_shape)
        if let d = dtype { c.dtype = try QuantizerConfiguration.dtype(d, key: "\(key).dtype") }
        if let r = raw_dtype { c.rawDType = try QuantizerConfiguration.dtype(r, key: "\(key).raw_dtype") }
        if let f = file_type { c.fileType = try QuantizerConfiguration.fileType(f, key: "\(key).file_type") }
        var image = ImagePreprocessing()
        if let p = preprocess_file {
            if let preset = ImagePreprocessing.preset(named: p) { image = preset } else if !p.isEmpty { c.preprocessFile = p }
        }
        if let v = color_format { image.colorFormat = try QuantizerConfiguration.choice(v, key: "\(key).color_format") }
        if let v = resize { image.resize = try QuantizerConfiguration.choice(v, key: "\(key).resize") }
        if let v = layout { image.layout = try QuantizerConfiguration.choice(v.uppercased(), key: "\(key).layout") }
        if let v = mean_value { image.mean = v }
        if let v = std_value { image.std = v }
        if let v = size { image.size = v }
        if let v = resize_shorter { image.resizeShorterSide = v; image.centerCrop = true }
        if let v = center_crop { image.centerCrop = v }
        if let v = scale { image.scale = v }
        c.image = image
        return c
    }
}

extension XQuantFile.CustomSetting {
    func setting(index: Int, percentile: Double) throws -> SubgraphSetting {
        let key = "quantization_parameters.custom_setting[\(index)]"
        var s = SubgraphSetting(inputNames: input_names ?? [], outputNames: output_names ?? [])
        if let t = calibration_type ?? (max_percentile != nil ? "percentile" : nil) {
            guard let m = RangeMethod(name: t, percentile: max_percentile ?? percentile) else {
                throw ConfigurationError.unknownMethod(t, key: "\(key).calibration_type")
            }
            s.method = m
        }
        switch precision_level {
        case nil, 0: break
        case 1, 2: s.bits = 16  // higher precision inside: 16-bit activations
        case 4: s.keepFloat = true  // XQuant's FP16; QuantKit keeps the region float32
        case let l?:
            _ = try QuantizerConfiguration.precisionLevel(l, key: "\(key).precision_level")
        }
        if let b = bits { s.bits = b }
        if let k = keep_float { s.keepFloat = k }
        return s
    }
}

/// Which keys an object of a configuration file may hold.
indirect enum KeySchema {
    case object([String: KeySchema])
    case array(KeySchema)
    case leaf

    static func keys<K: CodingKey & CaseIterable>(_: K.Type, nested: [String: KeySchema] = [:]) -> KeySchema {
        .object(Dictionary(uniqueKeysWithValues: K.allCases.map { ($0.stringValue, nested[$0.stringValue] ?? .leaf) }))
    }

    /// Throws QK7003 for the first key (in sorted order) the schema does not allow.
    func check(_ value: Any, path: String = "") throws {
        switch self {
        case .leaf: return
        case .object(let allowed):
            guard let dict = value as? [String: Any] else { return }  // type errors are reported by the decoder
            for (k, v) in dict.sorted(by: { $0.key < $1.key }) {
                guard let sub = allowed[k] else { throw ConfigurationError.unknownKey(k, at: path, valid: allowed.keys.sorted()) }
                try sub.check(v, path: path.isEmpty ? k : "\(path).\(k)")
            }
        case .array(let element):
            guard let items = value as? [Any] else { return }
            for (i, v) in items.enumerated() { try element.check(v, path: "\(path)[\(i)]") }
        }
    }
}
