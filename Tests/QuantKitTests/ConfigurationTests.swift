import Foundation
import QuantCalibration
import QuantKit
import Testing

/// Writes `text` to a fresh temporary file with extension `ext` and returns its path.
func temporaryFile(_ text: String, ext: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qk-config-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent("config.\(ext)").path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// The coded error `body` throws, or nil.
func codedError(_ body: () throws -> Void) -> QuantKitError? {
    do { try body() } catch let e as QuantKitError { return e } catch { return nil }
    return nil
}

func xquant(_ text: String) throws -> QuantizerConfiguration { try QuantizerConfiguration(contentsOf: try temporaryFile(text, ext: "json")) }
func icraft(_ text: String) throws -> QuantizerConfiguration { try QuantizerConfiguration(contentsOf: try temporaryFile(text, ext: "toml")) }

/// XQuant's documented sample (resnet50/inference.json), key for key.
let xquantSample = """
    {
        "model_parameters": { "onnx_model": "resnet50/inference.onnx", "output_model_file_prefix": "inference.q", "working_dir": "resnet50" },
        "calibration_parameters": {
            "calibration_step": 500, "calibration_device": "cuda", "calibration_type": "default",
            "input_parametres": [ { "input_name": "inputs", "input_shape": [1, 3, 224, 224], "file_type": "img",
                "mean_value": [123.675, 116.28, 103.53], "std_value": [58.395, 57.12, 57.375],
                "preprocess_file": "IMAGENET", "data_list_path": "dataset/data/Imagenet/calib_list.txt" } ]
        },
        "quantization_parameters": { "precision_level": 0 }
    }
    """

@Test func xquantSampleMapsEveryKey() throws {
    let c = try xquant(xquantSample)
    #expect(c.model == "resnet50/inference.onnx")
    #expect(c.output == URL(fileURLWithPath: "resnet50/inference.q.onnx").path)
    #expect(c.scheme.method == .auto)
    #expect(c.scheme == .u8s8)
    let d = try #require(c.data)
    #expect(d.steps == 500 && d.batchSize == 1 && d.randomItems == 500)
    #expect(d.inputs.count == 1)
    let i = d.inputs[0]
    #expect(i.name == "inputs" && i.shape == [1, 3, 224, 224] && i.fileType == .image)
    #expect(i.source == .list("dataset/data/Imagenet/calib_list.txt"))
    // The IMAGENET preset, then mean/std from the file.
    #expect(i.image?.colorFormat == .bgr && i.image?.mean == [123.675, 116.28, 103.53] && i.image?.std == [58.395, 57.12, 57.375])
    #expect(c.notes.contains { $0.contains("calibration_device") })
}

@Test func xquantDefaultsFollowItsDocumentation() throws {
    let c = try xquant(#"{"model_parameters": {"onnx_model": "m/a.onnx"}, "calibration_parameters": {"input_parametres": [{"data_list_path": "l.txt"}]}}"#)
    #expect(c.output == nil)  // NAME.q.onnx beside the model
    #expect(Quantizer.defaultOutput(for: "m/a.onnx").hasSuffix("m/a.q.onnx"))
    #expect(c.data?.steps == 100)  // calibration_step 100
    #expect(c.data?.inputs[0].name == "")  // the name is read from the model
    #expect(c.data?.inputs[0].shape == nil)
    #expect(c.data?.inputs[0].image?.colorFormat == .bgr)
    let prefixed = try xquant(#"{"model_parameters": {"onnx_model": "m/a.onnx", "output_prefix": "b"}}"#)
    #expect(prefixed.output == URL(fileURLWithPath: "m/b.q.onnx").path)
}

@Test func quantizationParametersMapToControl() throws {
    let c = try xquant("""
        {"model_parameters": {"onnx_model": "a.onnx"},
         "calibration_parameters": {"calibration_type": "percentile"},
         "quantization_parameters": {"max_percentile": 0.999, "truncate_var_names": ["t1"], "exclude_op_types": ["Softmax"],
            "custom_setting": [{"input_names": ["a"], "output_names": ["b"], "calibration_type": "minmax"},
                               {"input_names": ["c"], "output_names": ["d"], "precision_level": 4},
                               {"input_names": ["e"], "output_names": ["f"], "bits": 16, "max_percentile": 0.99}]}}
        """)
    #expect(c.scheme.method == .percentile(0.999))
    #expect(c.control.truncateAfter == ["t1"] && c.control.excludeOpTypes == ["Softmax"])
    #expect(c.control.subgraphSettings == [
        SubgraphSetting(inputNames: ["a"], outputNames: ["b"], method: .minMax),
        SubgraphSetting(inputNames: ["c"], outputNames: ["d"], keepFloat: true),
        SubgraphSetting(inputNames: ["e"], outputNames: ["f"], bits: 16, method: .percentile(0.99)),
    ])
}

@Test func unknownKeySuggestsTheNearestValidKey() {
    let e = codedError { _ = try xquant(#"{"quantization_parameters": {"precison_level": 0}}"#) }
    #expect(e?.code == "QK7003")
    #expect(e?.message == "unknown key 'quantization_parameters.precison_level'")
    #expect(e?.fix.hasPrefix("did you mean 'precision_level'?") == true)
    let nested = codedError { _ = try xquant(#"{"calibration_parameters": {"input_parametres": [{"data_list_path": "l", "input_nme": "x"}]}}"#) }
    #expect(nested?.message == "unknown key 'calibration_parameters.input_parametres[0].input_nme'")
    #expect(nested?.fix.hasPrefix("did you mean 'input_name'?") == true)
    let far = codedError { _ = try xquant(#"{"something_else": 1}"#) }
    #expect(far?.code == "QK7003" && far?.fix.hasPrefix("valid keys here: calibration_parameters") == true)
}

@Test func editDistanceIsLevenshtein() {
    #expect(ConfigurationError.editDistance("kitten", "sitting") == 3)
    #expect(ConfigurationError.editDistance("", "abc") == 3)
    #expect(ConfigurationError.editDistance("flaw", "lawn") == 2)
    #expect(ConfigurationError.nearest("calibraton_step", in: ["calibration_step", "calibration_type"]) == "calibration_step")
    #expect(ConfigurationError.nearest("zzz", in: ["calibration_step"]) == nil)
}

@Test func unknownCalibrationTypeListsTheValidOnes() {
    let e = codedError { _ = try xquant(#"{"calibration_parameters": {"calibration_type": "entropy2"}}"#) }
    #expect(e?.code == "QK7002")
    #expect(e?.message == "calibration_parameters.calibration_type 'entropy2' is not a known calibration type")
    #expect(e?.fix == "use one of: default, minmax, null, min_max, avg, n_std, percentile, kl, kld, entropy, kl_v2, mse, ems")
}

@Test func unsupportedFileTypeIsQK2107() {
    let e = codedError { _ = try xquant(#"{"calibration_parameters": {"input_parametres": [{"data_list_path": "l", "file_type": "jpg"}]}}"#) }
    #expect(e?.code == "QK2107")
    #expect(e?.message == "calibration_parameters.input_parametres[0].file_type 'jpg' is not a supported file type")
    #expect(e?.fix == "use one of: img, npy, raw, pb")
}

@Test func wrongTypesAndRangesAreQK7004() throws {
    let t = codedError { _ = try xquant(#"{"calibration_parameters": {"calibration_step": "many"}}"#) }
    #expect(t?.code == "QK7004" && t?.message.hasPrefix("calibration_parameters.calibration_step is of the wrong type") == true)
    let r = codedError { _ = try xquant(#"{"calibration_parameters": {"calibration_step": 0, "input_parametres": [{"data_list_path": "l"}]}}"#) }
    #expect(r?.code == "QK7004" && r?.message == "calibration_parameters.calibration_step is 0")
    let p = codedError { _ = try xquant(#"{"quantization_parameters": {"max_percentile": 0.9}}"#) }
    #expect(p?.code == "QK7004" && p?.message == "quantization_parameters.max_percentile is 0.9")
    let d = codedError { _ = try xquant(#"{"calibration_parameters": {"calibration_device": "tpu"}}"#) }
    #expect(d?.code == "QK7004" && d?.fix == "expected cpu or cuda")
    let c = codedError { _ = try xquant(#"{"calibration_parameters": {"input_parametres": [{"data_list_path": "l", "color_format": "yuv"}]}}"#) }
    #expect(c?.code == "QK7004" && c?.fix == "expected one of bgr, rgb, gray")
    let w = codedError { _ = try xquant(#"{"calibration_parameters": {"weight_rounding": "brecq"}}"#) }
    #expect(w?.code == "QK7004" && w?.fix == "expected nearest, gptq or adaround")
    #expect(try xquant(#"{"calibration_parameters": {"weight_rounding": "AdaRound", "input_parametres": [{"data_list_path": "l"}]}}"#).weightRounding == .adaround)
}

@Test func weightRoundingDefaultsToNearestAndDecodes() throws {
    #expect(QuantizerConfiguration().weightRounding == .nearest)
    let c = try xquant(#"{"calibration_parameters": {"weight_rounding": "GPTQ", "input_parametres": [{"data_list_path": "l"}]}}"#)
    #expect(c.weightRounding == .gptq)
}

@Test func biasCorrectionDefaultsToDepthwiseAndDecodes() throws {
    #expect(QuantizerConfiguration().biasCorrection == .depthwise)
    #expect(try xquant(#"{"calibration_parameters": {"input_parametres": [{"data_list_path": "l"}]}}"#).biasCorrection == .depthwise)
    for (value, scope) in [("true", BiasCorrectionScope.all), ("false", .off), (#""Depthwise""#, .depthwise), (#""all""#, .all), (#""off""#, .off)] {
        let c = try xquant(#"{"calibration_parameters": {"bias_correction": "# + value + #", "input_parametres": [{"data_list_path": "l"}]}}"#)
        #expect(c.biasCorrection == scope)
    }
    let e = codedError { _ = try xquant(#"{"calibration_parameters": {"bias_correction": "some"}}"#) }
    #expect(e?.code == "QK7004" && e?.fix == "expected off, depthwise, all, true or false")
}

@Test func unimplementedXQuantLevelsAreQK7005() throws {
    let p = codedError { _ = try xquant(#"{"quantization_parameters": {"precision_level": 3}}"#) }
    #expect(p?.code == "QK7005" && p?.message == "quantization_parameters.precision_level = 3 is not implemented in QuantKit")
    // finetune_level 2 is AdaRound; 3 (block reconstruction) is not implemented.
    #expect(try xquant(#"{"quantization_parameters": {"finetune_level": 2}}"#).weightRounding == .adaround)
    #expect(try xquant(#"{"quantization_parameters": {"finetune_level": 1}}"#).weightRounding == .nearest)
    let f = codedError { _ = try xquant(#"{"quantization_parameters": {"finetune_level": 3}}"#) }
    #expect(f?.code == "QK7005" && f?.message == "quantization_parameters.finetune_level = 3 is not implemented in QuantKit")
}

@Test func unreadableFilesAreQK7006() throws {
    let missing = codedError { _ = try QuantizerConfiguration(contentsOf: "/nonexistent/cfg.json") }
    #expect(missing?.code == "QK7006" && missing?.message == "cannot read the configuration '/nonexistent/cfg.json': the file does not exist or cannot be read")
    let bad = codedError { _ = try xquant(#"{"model_parameters": "#) }
    #expect(bad?.code == "QK7006" && bad?.message.contains("not valid JSON") == true)
    let toml = codedError { _ = try icraft("[quantize]\nbatch = = 2\n") }
    #expect(toml?.code == "QK7006" && toml?.message.contains("TOML syntax error at line 2") == true)
    let ext = codedError { _ = try QuantizerConfiguration(contentsOf: try temporaryFile("a: 1", ext: "yaml")) }
    #expect(ext?.code == "QK7006" && ext?.message.hasSuffix("the extension is neither .json nor .toml") == true)
}

@Test func missingSettingsAreQK7007() throws {
    let noTable = codedError { _ = try icraft("[parse]\nx = 1\n") }
    #expect(noTable?.code == "QK7007" && noTable?.message.hasPrefix("the configuration gives no [quantize] table") == true)
    let noModel = codedError { try QuantizerConfiguration().validate() }
    #expect(noModel?.code == "QK7007" && noModel?.message == "the configuration gives no model")
    let noData = codedError { try QuantizerConfiguration(model: "a.onnx").validate() }
    #expect(noData?.code == "QK7007" && noData?.message == "the configuration gives no calibration data")
    let noSource = codedError { _ = try xquant(#"{"calibration_parameters": {"input_parametres": [{"input_name": "x"}]}}"#) }
    #expect(noSource?.code == "QK7007" && noSource?.message == "the configuration gives no data for calibration_parameters.input_parametres[0]")
}

@Test func outputOverTheInputIsQK7001() {
    let e = codedError { try QuantizerConfiguration(model: "a.onnx", output: "./a.onnx", statistics: "s.json").validate() }
    #expect(e?.code == "QK7001" && e?.message == "the output model './a.onnx' is the input model 'a.onnx'")
    // A side output over the input: the parameter record of o.onnx is o.qparams.json.
    let side = codedError { try QuantizerConfiguration(model: "/tmp/o.qparams.json", output: "/tmp/o.onnx", statistics: "s.json").validate() }
    #expect(side?.code == "QK7001" && side?.message == "the parameter record '/tmp/o.qparams.json' is the input model '/tmp/o.qparams.json'")
}

@Test func icraftTableMapsToTheConfiguration() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qk-icraft-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let list = dir.appendingPathComponent("list.txt").path
    try "a.npy;b.npy\nc.npy;d.npy\n".write(toFile: list, atomically: true, encoding: .utf8)
    let c = try icraft("""
        [parse]
        net_name = "x"
        [quantize]
        model = "m.onnx"
        forward_dir = "\(dir.path)/data"
        forward_list = "\(list)"
        saturation = "ems"
        per = "tensor"
        batch = 2
        bin_num = 4096
        qdtype = "int8"
        """)
    #expect(c.model == "m.onnx")
    #expect(c.scheme.method == .mse && !c.scheme.perChannelWeights && c.scheme.activation == QuantScheme.s8s8.activation)
    #expect(c.observer.bins == 4096 && c.data?.batchSize == 2)
    #expect(c.data?.inputs.map(\.source) == [.files(["\(dir.path)/data/a.npy", "\(dir.path)/data/c.npy"]), .files(["\(dir.path)/data/b.npy", "\(dir.path)/data/d.npy"])])
    let kld = try icraft("[quantize]\nmodel = \"m.onnx\"\nforward_dir = \"d\"\n")
    #expect(kld.scheme.method == .kl(stride: 128) && kld.data?.inputs.first?.source == .folder("d"))
    #expect(try icraft("[quantize]\nsaturation = \"null\"\n").scheme.method == .minMax)
    // mix_precision names a precision plan, as --plan does.
    #expect(try icraft("[quantize]\nmix_precision = \"m.plan.csv\"\n").plan == "m.plan.csv")
    // smooth_alpha is SmoothQuant's α (negative: chosen per layer); equalization turns CLE on.
    #expect(try icraft("[quantize]\nsmooth_alpha = 0.5\nequalization = true\n").smoothQuant == .fixed(0.5))
    #expect(try icraft("[quantize]\nequalization = true\n").equalize)
    #expect(try !icraft("[quantize]\n").equalize)
    #expect(try icraft("[quantize]\nsmooth_alpha = -1\n").smoothQuant == .auto && (try icraft("[quantize]\n").smoothQuant) == nil)
    #expect(codedError { _ = try icraft("[quantize]\nsmooth_alpha = 1.5\n") }?.code == "QK7004")
    // per = "group=N": one weight scale per N weights of each output channel's fan-in.
    #expect(try icraft("[quantize]\nper = \"group=32\"\n").scheme.weightGroupSize == 32)
    #expect(try icraft("[quantize]\nper = \"channel\"\n").scheme.weightGroupSize == nil)
    #expect(codedError { _ = try icraft("[quantize]\nper = \"group=1\"\n") }?.code == "QK7004")
}

@Test func icraftKeysNotImplementedAreNamed() {
    for (line, key) in [("json = \"net.json\"", "quantize.json")] {
        let e = codedError { _ = try icraft("[quantize]\n\(line)\n") }
        #expect(e?.code == "QK7005", "\(line)")
        #expect(e?.message.hasPrefix("\(key) = ") == true && e?.message.hasSuffix("is not implemented in QuantKit") == true, "\(line)")
    }
    let typo = codedError { _ = try icraft("[quantize]\nsaturaton = \"kld\"\n") }
    #expect(typo?.code == "QK7003" && typo?.message == "unknown key 'quantize.saturaton'" && typo?.fix.hasPrefix("did you mean 'saturation'?") == true)
    let bad = codedError { _ = try icraft("[quantize]\nsaturation = \"max\"\n") }
    #expect(bad?.code == "QK7002" && bad?.message == "quantize.saturation 'max' is not a known calibration type")
    let q = codedError { _ = try icraft("[quantize]\nqdtype = \"int4\"\n") }
    #expect(q?.code == "QK7004" && q?.message == "quantize.qdtype is 'int4'")
}

@Test func configurationRoundTripsThroughJSON() throws {
    let c = try xquant(xquantSample)
    let back = try JSONDecoder().decode(QuantizerConfiguration.self, from: try JSONEncoder().encode(c))
    #expect(back.model == c.model && back.output == c.output && back.data == c.data && back.scheme == c.scheme && back.control == c.control)
}

@Test func icraftAutoTuneAndMixPrecisionDriveTheTuningLoop() throws {
    // mix_precision = "auto" with an [AutoTune] table in the same file.
    let c = try icraft("[quantize]\nmix_precision = \"auto\"\n[AutoTune]\npriority = \"accuracy\"\nround_num = 5\ncos_targetvalue = 0.995\n")
    #expect(c.tuning == TuningOptions(target: TuningTarget(metric: .cosine, value: 0.995), priority: .accuracy, strategy: .variance, rounds: 5))
    #expect(try icraft("[quantize]\nmix_precision = \"cosimilarity\"\n").tuning?.strategy == .cosine)
    #expect(try icraft("[quantize]\nautoqset_num = 16\n").autoSubset == 16)
    // The same table in a file quant_autotune_config names; a script's metric as the target.
    let tune = try temporaryFile("[AutoTune]\nmetrics_targetvalue = 0.7\nevalscript_cmd = \"python eval.py\"\n", ext: "toml")
    let m = try icraft("[quantize]\nquant_autotune_config = \"\(tune)\"\n")
    #expect(m.tuning?.target == TuningTarget(metric: .metric, value: 0.7, higherIsBetter: true) && m.tuning?.evalCommand == "python eval.py {model}")
    // Two targets at once, an unknown priority, threshold_level, a metric target without a script.
    for (text, code) in [("[quantize]\n[AutoTune]\ncos_targetvalue = 0.99\nmse_targetvalue = 0.1\n", "QK7004"),
                         ("[quantize]\n[AutoTune]\npriority = \"speed\"\n", "QK7004"),
                         ("[quantize]\n[AutoTune]\nthreshold_level = 2\n", "QK7005"),
                         ("[quantize]\n[AutoTune]\nmetrics_targetvalue = 0.7\n", "QK7004"),
                         ("[quantize]\n[AutoTune]\ncos_target = 0.99\n", "QK7003")] {
        #expect(codedError { _ = try icraft(text) }?.code == code, "\(text)")
    }
}

@Test func xquantPrecisionLevelsMapToTuning() throws {
    func level(_ l: Int) throws -> TuningOptions? { try xquant(#"{"quantization_parameters": {"precision_level": \#(l)}}"#).tuning }
    #expect(try level(0)?.target == nil)
    #expect(try level(1) == TuningOptions(target: .standard, priority: .performance))
    #expect(try level(2) == TuningOptions(target: TuningTarget(metric: .cosine, value: 0.995), priority: .accuracy))
    #expect(try xquant(#"{"quantization_parameters": {}}"#).tuning == nil)
}

@Test func weightFormatKeysInBothFiles() throws {
    // XQuant: QuantKit's weight format keys in calibration_parameters.
    let x = try xquant(#"{"calibration_parameters": {"weight_bits": 4, "weight_mode": "asym_u", "weight_group_size": 32, "pack_weights": true}}"#)
    #expect(x.scheme.weight == QuantGrid(bits: 4, signed: false, symmetric: false) && x.scheme.weightGroupSize == 32 && x.scheme.packedWeights == true)
    #expect(try xquant(#"{"calibration_parameters": {"weight_levels": 16}}"#).scheme.weightLevels == 16)
    // Icraft: per = "group=N" plus the same keys in [quantize].
    let i = try icraft("[quantize]\nper = \"group=64\"\nweight_bits = 4\nweight_mode = \"asym_s\"\nweight_levels = 8\n")
    #expect(i.scheme.weight == QuantGrid(bits: 4, signed: true, symmetric: false) && i.scheme.weightGroupSize == 64 && i.scheme.weightLevels == 8)
    // The whole model in fp16/bf16: XQuant precision_level 4, Icraft qdtype float16/bfloat16.
    #expect(try xquant(#"{"quantization_parameters": {"precision_level": 4}}"#).control.wholeModel == .fp16)
    #expect(try icraft("[quantize]\nqdtype = \"bfloat16\"\n").control.wholeModel == .bf16)
    #expect(try icraft("[quantize]\nqdtype = \"int8\"\n").control.wholeModel == nil)
    // Value ranges, accumulators and fixed-point scales.
    let h = try xquant(#"{"calibration_parameters": {"value_range_in_bits": "7;6", "accumulator_bits": 16, "scale_format": "fixed:8"}}"#)
    #expect(h.scheme.weight.bits == 7 && h.scheme.activation.bits == 6 && h.scheme.accumulatorBits == 16 && h.scheme.hardware?.scale == FixedPointFormat(mantissaBits: 8))
    let k = try icraft("[quantize]\nvalue_range_in_bits = \"7\"\nscale_format = \"pow2\"\n")
    #expect(k.scheme.weight.bits == 7 && k.scheme.activation.bits == 7 && k.scheme.hardware?.scale?.mantissaBits == 0)
    // Out of range: coded, naming the key.
    for (text, key) in [(#"{"calibration_parameters": {"value_range_in_bits": "9;9"}}"#, "calibration_parameters.value_range_in_bits"),
                        (#"{"calibration_parameters": {"accumulator_bits": 4}}"#, "calibration_parameters.accumulator_bits"),
                        (#"{"calibration_parameters": {"scale_format": "pow3"}}"#, "calibration_parameters.scale_format"),(#"{"calibration_parameters": {"weight_bits": 9}}"#, "calibration_parameters.weight_bits"),
                        (#"{"calibration_parameters": {"weight_mode": "sym8"}}"#, "calibration_parameters.weight_mode"),
                        (#"{"calibration_parameters": {"weight_group_size": 1}}"#, "calibration_parameters.weight_group_size"),
                        (#"{"calibration_parameters": {"weight_bits": 4, "weight_levels": 16}}"#, "calibration_parameters.weight_levels")] {
        let e = codedError { _ = try xquant(text) }
        #expect(e?.code == "QK7004" && e?.message.hasPrefix(key) == true, "\(text): \(String(describing: e))")
    }
}
