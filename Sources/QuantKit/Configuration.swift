import Foundation
import QuantIR
@_exported import QuantAlgorithms
@_exported import QuantCalibration
@_exported import QuantData
@_exported import QuantRewrite

/// Everything one quantization run needs: the model, the output, the calibration data, the
/// scheme, which parts stay float and how statistics are observed.
///
/// The command line, an XQuant JSON file and an Icraft TOML file all decode into this one
/// structure (see <doc:Configuration>), and ``validate()`` checks it in one place. Every field
/// has a default, so `QuantizerConfiguration(model: "m.onnx", data: ...)` is a complete run.
/// Weight rounding: to nearest (the default), or error-compensated (GPTQ, Frantar et al. 2022)
/// with the input statistics of each Conv/Gemm/MatMul collected in one more pass of the
/// quantized model over at most ``QuantizerConfiguration/weightRoundingSamples`` calibration items.
/// Or adaptive (AdaRound, Nagel et al. 2020: up or down per weight, learned on the same
/// statistics; ``AdaRound``).
public enum WeightRounding: String, Codable, Sendable, CaseIterable {
    case nearest, gptq, adaround

    /// Whether it reads the layer inputs' second moments (one pass of the quantized model).
    public var readsHessians: Bool { self != .nearest }
}

/// Which Conv/Gemm biases absorb the mean output shift their weight rounding causes
/// (``BiasCorrection``). `depthwise` (the default) corrects grouped Convs only: with 9 or 25
/// weights per channel their rounding errors do not average out, and correcting them halves
/// EfficientNet-Lite0's output error (SNR 0.0142 → 0.0072) and helps PP-OCRv4 rec's exact match a
/// little, while correcting the other layers costs rec 2–4 points (docs/BENCHMARKS.md). Decodes from
/// `off`/`depthwise`/`all` or a Bool (true: all, false: off).
public enum BiasCorrectionScope: String, Codable, Sendable, CaseIterable {
    case off, depthwise, all

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = b ? .all : .off
            return
        }
        let s = try c.decode(String.self)
        guard let v = BiasCorrectionScope(rawValue: s.lowercased()) else {
            throw ConfigurationError.invalidValue("bias_correction", "'\(s)'", expected: "off, depthwise, all, true or false")
        }
        self = v
    }

    /// Whether the scope corrects `node` (a Conv or Gemm).
    public func covers(_ node: Node) -> Bool {
        switch self {
        case .off: false
        case .all: true
        case .depthwise: node.opType == "Conv" && (node.attribute("group")?.int ?? 1) > 1
        }
    }
}

public struct QuantizerConfiguration: Codable, Sendable {
    /// Activation and weight grids, per-channel weights and the range method.
    public var scheme: QuantScheme
    /// Nodes, op types and sub-graphs kept float or treated differently.
    public var control: QuantControl
    /// Histogram bins (and per-channel observation) of calibration statistics.
    public var observer: ObserverOptions
    /// The float `.onnx` model (XQuant `onnx_model`). Optional here so a configuration can be
    /// written once and applied to several models with ``Quantizer/quantize(model:progress:)``.
    public var model: String?
    /// Where the QDQ model goes; nil writes `NAME.q.onnx` beside the model. The parameter
    /// record goes beside it (``Quantizer/parametersPath(for:)``).
    public var output: String?
    /// Calibration data. Inputs with an empty name take the model's inputs in order.
    public var data: DatasetConfig?
    /// A statistics file (`quantkit calibrate --stats-out`, or a CSV of `tensor,min,max`) used
    /// instead of calibrating on ``data``.
    public var statistics: String?
    /// Also write the collected calibration statistics here.
    public var statisticsOutput: String?
    /// A precision plan file (`NAME.plan.csv` as every run writes, or its JSON form) read into
    /// ``QuantControl/plan`` when the run starts (`--plan`, Icraft `mix_precision = "x.csv"`).
    public var plan: String?
    /// ONNX Runtime's TensorQuantOverrides JSON (`--tensor-quant-overrides`): per activation
    /// tensor a range (rmin/rmax, or scale and zero point) over the calibrated one.
    public var tensorOverrides: String?
    /// The verify-and-repair loop after quantizing (`--target`, Icraft `mix_precision = "auto"`
    /// and `[AutoTune]`, XQuant `precision_level`); nil: the defaults (``TuningOptions/init``:
    /// output cosine 0.99, tradeoff). It runs where the command has analysis data.
    public var tuning: TuningOptions?
    /// Calibrate on this many items chosen from the data (``CalibrationSubset``; Icraft
    /// `autoqset_num`, `--auto-subset`); the chosen lists are written beside the data as `…_auto.txt`.
    public var autoSubset: Int?
    /// Worker threads of the executor and statistics; nil uses every core.
    public var threads: Int?
    /// Notes about settings that were accepted but have no effect in QuantKit (for example
    /// XQuant's `calibration_device: "cuda"`); copied into ``QuantizationResult/warnings``.
    public var notes: [String]
    /// How weights are rounded onto their grid when calibration data is given (with only a
    /// statistics file, weights round to nearest).
    public var weightRounding: WeightRounding = .nearest
    /// Weight-only quantization to ONNX Runtime's MatMulNBits (`--weight-only int4`) instead of
    /// the QDQ model; nil: the QDQ model.
    public var weightOnly: WeightOnly.Options?
    /// Bytes the Hessians of one data pass of weight-only GPTQ/AWQ may take (8·K² per MatMul);
    /// more MatMuls than fit take more passes over the data, with the same result.
    public var hessianMemory = QuantizerConfiguration.defaultHessianMemory
    public static let defaultHessianMemory = 1 << 30
    /// Which Conv/Gemm biases absorb the output shift their weight rounding causes (reads
    /// calibration data, like GPTQ; with only a statistics file the default `depthwise` is
    /// skipped with a warning, `all` is an error).
    public var biasCorrection: BiasCorrectionScope = .depthwise
    /// Cross-layer equalization of Conv chains before calibration (``CrossLayerEqualization``;
    /// `--equalize`, XQuant `equalization`, Icraft `equalization`).
    public var equalize = false
    /// SmoothQuant before calibration (``SmoothQuant``): α for every site, or `auto` (α per site on
    /// its output error); nil: off. `--smoothquant`, Icraft `smooth_alpha`.
    public var smoothQuant: SmoothQuant.Alpha?
    /// Also write the deploy model of ONNX Runtime's integer operators (`--format qoperator`,
    /// ``QOperatorExport``) and its per-layer record.
    public var qoperator = false
    /// Calibration items the GPTQ and bias correction pass reads (the first ones).
    public static let weightRoundingSamples = 128
    /// Calibration items the bias-correction pass reads without GPTQ: it needs only the mean
    /// of each im2col row, which 32 images already give over thousands of positions each.
    public static let biasCorrectionSamples = 32

    public init(scheme: QuantScheme = .u8s8, control: QuantControl = QuantControl(), observer: ObserverOptions = ObserverOptions(),
                model: String? = nil, output: String? = nil, data: DatasetConfig? = nil, statistics: String? = nil,
                statisticsOutput: String? = nil, threads: Int? = nil, notes: [String] = []) {
        self.scheme = scheme
        self.control = control
        self.observer = observer
        self.model = model
        self.output = output
        self.data = data
        self.statistics = statistics
        self.statisticsOutput = statisticsOutput
        self.threads = threads
        self.notes = notes
    }

    enum CodingKeys: String, CodingKey {
        case scheme, control, observer, model, output, data, statistics, statisticsOutput, plan, tuning, autoSubset, threads, notes, weightRounding, biasCorrection, equalize, smoothQuant, qoperator
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        scheme = try c.decodeIfPresent(QuantScheme.self, forKey: .scheme) ?? .u8s8
        control = try c.decodeIfPresent(QuantControl.self, forKey: .control) ?? QuantControl()
        observer = try c.decodeIfPresent(ObserverOptions.self, forKey: .observer) ?? ObserverOptions()
        model = try c.decodeIfPresent(String.self, forKey: .model)
        output = try c.decodeIfPresent(String.self, forKey: .output)
        data = try c.decodeIfPresent(DatasetConfig.self, forKey: .data)
        statistics = try c.decodeIfPresent(String.self, forKey: .statistics)
        statisticsOutput = try c.decodeIfPresent(String.self, forKey: .statisticsOutput)
        plan = try c.decodeIfPresent(String.self, forKey: .plan)
        tuning = try c.decodeIfPresent(TuningOptions.self, forKey: .tuning)
        autoSubset = try c.decodeIfPresent(Int.self, forKey: .autoSubset)
        threads = try c.decodeIfPresent(Int.self, forKey: .threads)
        notes = try c.decodeIfPresent([String].self, forKey: .notes) ?? []
        weightRounding = try c.decodeIfPresent(WeightRounding.self, forKey: .weightRounding) ?? .nearest
        biasCorrection = try c.decodeIfPresent(BiasCorrectionScope.self, forKey: .biasCorrection) ?? .depthwise
        equalize = try c.decodeIfPresent(Bool.self, forKey: .equalize) ?? false
        smoothQuant = try c.decodeIfPresent(SmoothQuant.Alpha.self, forKey: .smoothQuant)
        qoperator = try c.decodeIfPresent(Bool.self, forKey: .qoperator) ?? false
    }

    /// `qdq` (the default) or `qoperator` (also the deploy model); QK7004 otherwise.
    public mutating func setFormat(_ text: String?, key: String) throws {
        guard let text else { return }
        switch text.lowercased() {
        case "qdq": qoperator = false
        case "qoperator", "qop": qoperator = true
        default: throw ConfigurationError.invalidValue(key, "'\(text)'", expected: "qdq or qoperator")
        }
    }

    /// Whether the data options name at least one source (data options such as a batch size
    /// alone, given beside a statistics file, configure none).
    public var hasDataSource: Bool { data?.stream != nil || !(data?.inputs.isEmpty ?? true) }

    /// Checks the settings that do not need the model. Throws QK7004 (a value out of range),
    /// QK7001 (output is the input model) or QK7007 (no model, or neither data nor statistics).
    /// The data set is checked against the model's inputs when the run loads it (QK21xx).
    /// `statisticsGiven`: the caller supplies activation statistics in memory (no data or
    /// statistics file is then required for the ranges).
    public func validate(statisticsGiven: Bool = false) throws {
        guard let model, !model.isEmpty else {
            throw ConfigurationError.missing("model", fix: "give the .onnx model (XQuant `onnx_model`, Icraft `model`, or `-i MODEL.onnx`)")
        }
        if data == nil && statistics == nil && !statisticsGiven {
            throw ConfigurationError.missing("calibration data", fix: "configure input data (XQuant `input_parametres`, Icraft `forward_dir`/`forward_list`, `--input NAME=PATH`) or a statistics file (`--stats`)")
        }
        if smoothQuant != nil && !hasDataSource && statistics == nil && !statisticsGiven {
            throw ConfigurationError.missing("calibration data for --smoothquant", fix: "give the data (`--input NAME=PATH`): SmoothQuant's factors come from it")
        }
        if !hasDataSource && (weightRounding.readsHessians || biasCorrection == .all) {
            let what = weightRounding.readsHessians ? "--weight-rounding \(weightRounding.rawValue)" : "--bias-correction all"
            throw ConfigurationError.missing("calibration data for \(what) (a statistics file gives ranges only)",
                                             fix: "give the data (`--input NAME=PATH`) besides `--stats`: \(what) runs the model on it")
        }
        try OutputSafety.check(outputs: Quantizer.outputItems(output: output ?? Quantizer.defaultOutput(for: model), statisticsOutput: statisticsOutput, deploy: qoperator),
                               inputs: [.init("the input model", model)] + (statistics.map { [.init("the statistics file", $0)] } ?? [])
                                   + (plan.map { [.init("the precision plan (--plan)", $0)] } ?? []))
        try ConfigurationError.checkBins(observer.bins)
        try tuning?.validate()
        if let n = autoSubset, n < 1 { throw ConfigurationError.invalidValue("auto_subset", "\(n)", expected: "a number of items of 1 or more, e.g. 32") }
        if let threads, threads < 1 { throw ConfigurationError.invalidValue("threads", "\(threads)", expected: "1 or more") }
        switch scheme.method {
        case .percentile(let p) where !(p > 0.5 && p <= 1):
            throw ConfigurationError.invalidValue("max_percentile", "\(p)", expected: "a fraction in (0.5, 1], e.g. 0.9999")
        case .standardDeviations(let n) where !(n > 0):
            throw ConfigurationError.invalidValue("n_std", "\(n)", expected: "a positive number of standard deviations")
        default: break
        }
        for s in control.subgraphSettings {
            if s.inputNames.isEmpty || s.outputNames.isEmpty {
                throw ConfigurationError.invalidValue("custom_setting", "\(s.inputNames) -> \(s.outputNames)", expected: "non-empty input_names and output_names")
            }
            if let b = s.bits, b != 8 && b != 16 {
                throw ConfigurationError.invalidValue("custom_setting.bits", "\(b)", expected: "8 or 16")
            }
        }
    }

    /// Weight grid settings from the CLI or a file (`key` prefixes the names in errors): `bits`
    /// 2–8; `mode` sym (signed symmetric, the default), asym_u (unsigned with a zero point:
    /// uint4 at 4 bits) or asym_s (signed with a zero point), Distiller's names; `groupSize` ≥ 2
    /// (per group); `packed` stores grids of 4 bits or fewer as int4/uint4. Throws QK7004.
    /// `levels`: non-uniform weights, each layer's integers restricted to that many values (2 up
    /// to the grid's count, AMCT's NUQ).
    public mutating func setWeightFormat(bits: Int? = nil, mode: String? = nil, groupSize: Int? = nil, packed: Bool? = nil, levels: Int? = nil,
                                         key: (String) -> String) throws {
        var grid = scheme.weight
        if let b = bits {
            guard (2...8).contains(b) else { throw ConfigurationError.invalidValue(key("bits"), "\(b)", expected: "2 to 8") }
            grid.bits = b
        }
        if let m = mode {
            switch m.lowercased() {
            case "sym", "symmetric": (grid.signed, grid.symmetric) = (true, true)
            case "asym_u", "asymmetric": (grid.signed, grid.symmetric) = (false, false)
            case "asym_s": (grid.signed, grid.symmetric) = (true, false)
            default: throw ConfigurationError.invalidValue(key("mode"), "'\(m)'", expected: "sym, asym_u or asym_s")
            }
        }
        // Integer bits or a mode make the weights integers again (after a float8 scheme).
        if bits != nil || mode != nil { grid.float8 = nil }
        scheme.weight = grid
        if let n = groupSize {
            guard n >= 2 else { throw ConfigurationError.invalidValue(key("group_size"), "\(n)", expected: "a group size of 2 or more, e.g. 32 or 128") }
            scheme.weightGroupSize = n
        }
        if let p = packed { scheme.packedWeights = p ? true : nil }
        if let l = levels {
            let count = scheme.weight.qmax - scheme.weight.qmin + 1
            guard l >= 2 && l < count else {
                throw ConfigurationError.invalidValue(key("levels"), "\(l)", expected: "2 to \(count - 1) levels for \(scheme.weight.bits)-bit weights, e.g. 16 or 32")
            }
            scheme.weightLevels = l
        }
    }

    /// The number-format settings as the CLI and both config files give them; `key` names a
    /// setting (its config-file name: `weight_bits`, `scale_format`, ...) in errors.
    public struct NumberFormats {
        public var weightBits: Int?, weightMode: String?, weightGroupSize: Int?, packWeights: Bool?, weightLevels: Int?
        public var valueRange: String?, accumulatorBits: Int?, scaleFormat: String?, hardwareProfile: String?, format: String?

        public init(weightBits: Int? = nil, weightMode: String? = nil, weightGroupSize: Int? = nil, packWeights: Bool? = nil, weightLevels: Int? = nil,
                    valueRange: String? = nil, accumulatorBits: Int? = nil, scaleFormat: String? = nil, hardwareProfile: String? = nil, format: String? = nil) {
            (self.weightBits, self.weightMode, self.weightGroupSize, self.packWeights, self.weightLevels) = (weightBits, weightMode, weightGroupSize, packWeights, weightLevels)
            (self.valueRange, self.accumulatorBits, self.scaleFormat, self.hardwareProfile, self.format) = (valueRange, accumulatorBits, scaleFormat, hardwareProfile, format)
        }

        /// Applies them in the order that lets the later refine the earlier (a value range, then
        /// explicit weight bits). Throws QK7004 (QK7010 for the profile).
        public func apply(to c: inout QuantizerConfiguration, key: (String) -> String) throws {
            try c.setScaleFormat(scaleFormat, profile: hardwareProfile, key: key("scale_format"))
            try c.setValueRange(valueRange, key: key("value_range_in_bits"))
            try c.setFormat(format, key: key("format"))
            try c.setAccumulatorBits(accumulatorBits, key: key("accumulator_bits"))
            try c.setWeightFormat(bits: weightBits, mode: weightMode, groupSize: weightGroupSize, packed: packWeights, levels: weightLevels) {
                key($0 == "group_size" ? "weight_group_size" : "weight_\($0)")
            }
        }
    }

    /// Reduced value ranges (`--value-range W;A`, Icraft's value_range_in_bits): weights on W
    /// bits, activations on A bits of their 8-bit (16-bit) storage; one number sets both
    /// (`,` works as the separator too). Throws QK7004.
    public mutating func setValueRange(_ text: String?, key: String) throws {
        guard let text else { return }
        let parts = text.split(whereSeparator: { $0 == ";" || $0 == "," }).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        let actMax = scheme.activation.bits > 8 ? 16 : 8
        guard (1...2).contains(parts.count), let w = parts[0], let a = parts.last!, (2...8).contains(w), (2...actMax).contains(a) else {
            throw ConfigurationError.invalidValue(key, "'\(text)'", expected: "W;A bits of range for weights (2 to 8) and activations (2 to \(actMax)), e.g. 7;7, or one number for both")
        }
        scheme.weight.bits = w
        scheme.activation.bits = a
    }

    /// `--accumulator-bits N` (8 to 32): every integer Conv/MatMul/Gemm must fit a signed N-bit
    /// accumulator for any input; weight scales of channels that could overflow are widened.
    public mutating func setAccumulatorBits(_ bits: Int?, key: String) throws {
        guard let bits else { return }
        guard (8...32).contains(bits) else { throw ConfigurationError.invalidValue(key, "\(bits)", expected: "8 to 32 bits, e.g. 16, 24 or 32") }
        scheme.accumulatorBits = bits
    }

    /// Fixed-point scales: `profile` a hardware profile file (QK7010 when unreadable), `format`
    /// float, pow2 or fixed:M (M mantissa bits, 1–16), which replaces the profile's scale format
    /// and keeps its shift range. Throws QK7004 for another format.
    public mutating func setScaleFormat(_ format: String?, profile: String?, key: String) throws {
        if let p = profile { scheme.hardware = try HardwareProfile(contentsOf: p) }
        guard let f = format?.lowercased() else { return }
        var bits: Int? = nil
        if f == "pow2" {
            bits = 0
        } else if f.hasPrefix("fixed:"), let m = Int(f.dropFirst(6)), (1...16).contains(m) {
            bits = m
        } else if f != "float" {
            throw ConfigurationError.invalidValue(key, "'\(format!)'", expected: "float, pow2 or fixed:M (M mantissa bits, 1 to 16; scales m·2^-n)")
        }
        var h = scheme.hardware ?? HardwareProfile()
        h.scale = bits.map { FixedPointFormat(mantissaBits: $0, shift: h.scale?.shift) }
        scheme.hardware = h
    }

    /// The data set with unnamed inputs given the model's input names in order. Throws QK2101
    /// when more inputs are configured than the model has.
    public func resolvedData(for signatures: [InputSignature]) throws -> DatasetConfig? {
        guard var d = data else { return nil }
        if let stream = d.stream, d.inputs.isEmpty {
            var s = DatasetConfig.streaming(stream, signatures: signatures, retainItems: d.streamRetainItems)
            s.steps = d.steps
            s.nonFinite = d.nonFinite
            return s
        }
        for i in d.inputs.indices where d.inputs[i].name.isEmpty {
            guard i < signatures.count else {
                throw DataError.inputCount(model: signatures.map(\.name), configured: d.inputs.enumerated().map { $1.name.isEmpty ? "#\($0)" : $1.name })
            }
            d.inputs[i].name = signatures[i].name
        }
        // A decoder with a cache calibrated on token sequences: its past key/value inputs start
        // empty (the prefill; the decode steps then see the same layer inputs, token by token).
        d.inputs = DatasetConfig.withEmptyCaches(d.inputs, signatures: signatures)
        return d
    }
}
