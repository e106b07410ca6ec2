import ArgumentParser
import Foundation
import QuantKit
import QuantTuning

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a float ONNX model to QDQ ONNX (runs in ONNX Runtime with integer kernels).",
        discussion: """
            Writes NAME.q.onnx and NAME.qparams.json beside the model (or at -o). Settings come from a \
            configuration file (-c: XQuant-style .json or Icraft-style .toml with a [quantize] table; \
            see docs/CONFIG.md) and from the options below, which override the file:
              quantkit quantize -c cfg.json -i in.onnx -o out.onnx
            Activation ranges come from calibration data (--input, or the file's input_parametres) or \
            from a statistics file (--stats: written by `quantkit calibrate`, or a CSV of tensor,min,max).
            Methods: \(RangeMethod.names.joined(separator: ", ")) (default: default = per tensor the \
            lowest-error of mse, percentile 0.9999 and minmax).
            """)

    @Argument(help: "The float .onnx model (or -i MODEL, or the configuration's onnx_model/model).")
    var model: String?

    @Option(name: [.customShort("i"), .customLong("model")], help: "The float .onnx model (XQuant's -i).")
    var modelOption: String?

    @Option(name: [.customShort("c"), .customLong("config")], help: "Configuration file: XQuant-style .json or Icraft-style .toml.")
    var config: String?

    @Option(name: .shortAndLong, help: "Output model path (default NAME.q.onnx beside the model).")
    var output: String?

    @Option(help: "Statistics file (.json from `quantkit calibrate`, or .csv of tensor,min,max); without it QuantKit calibrates on the data.")
    var stats: String?

    @OptionGroup var data: DataArguments

    @OptionGroup var calibration: CalibrationArguments

    @OptionGroup var settings: QuantizeSettings

    @OptionGroup var analysis: AnalysisArguments

    @Option(help: "Also write the calibration statistics here.")
    var statsOut: String?

    @Flag(help: "Print the resolved configuration as JSON and stop.")
    var printConfig = false

    @Option(help: "After the analysis, keep float the N Conv/Gemm/MatMul ops with the largest error by themselves (layerwise SNR), then quantize and analyze again with the same calibration statistics (default 0: off; no tuning loop then).")
    var autoKeepFloat = 0

    @OptionGroup var tuning: TuningArguments

    func run() throws {
        try reportingErrors {
            var cfg = try resolvedConfiguration()
            try analysis.check()
            if cfg.data?.stream != nil {
                // The stream is read once, by calibration; the later passes replay its first items.
                let analyzed = analysis.noAnalysis ? 0 : (analysis.analysisSamples ?? 16) == 0 ? Quantize.streamReplayCap : analysis.analysisSamples ?? 16
                let weights = cfg.weightRounding.readsHessians ? QuantizerConfiguration.weightRoundingSamples
                    : cfg.biasCorrection != .off ? QuantizerConfiguration.biasCorrectionSamples : 0
                cfg.data!.streamRetainItems = max(analyzed, weights)
            }
            if printConfig {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try enc.encode(cfg), as: UTF8.self))
                return
            }
            if autoKeepFloat < 0 { throw ConfigurationError.invalidValue("--auto-keep-float", "\(autoKeepFloat)", expected: "0 (off) or more ops") }
            if autoKeepFloat > 0 && (analysis.noAnalysis || analysis.noLayerwise) {
                throw ConfigurationError.invalidValue("--auto-keep-float", "\(autoKeepFloat)",
                                                      expected: "the analysis's layerwise pass to choose the ops (drop --no-analysis and --no-layerwise)")
            }
            if autoKeepFloat > 0 && !cfg.hasDataSource {
                throw ConfigurationError.invalidValue("--auto-keep-float", "\(autoKeepFloat)",
                                                      expected: "calibration data for the analysis that chooses the ops (give --input; --stats alone has none)")
            }
            if cfg.weightOnly != nil {
                try runWeightOnly(cfg)
                return
            }
            let tune = try tuning.options(cfg, analysis: analysis, autoKeepFloat: autoKeepFloat)
            if let m = cfg.model {
                // What the command writes beside the quantizer's outputs (the reports), against
                // the files it reads beside the model and the data (the configuration files).
                let out = cfg.output ?? Quantizer.defaultOutput(for: m)
                var written = Quantizer.outputItems(output: out, statisticsOutput: cfg.statisticsOutput, deploy: cfg.qoperator)
                if !analysis.noAnalysis {
                    let p = AnalysisReportPaths(quantizedModel: out)
                    written += [.init("the Markdown report", p.markdown), .init("the HTML report", p.html), .init("the JSON report", p.json)]
                }
                let read = [.init("the input model", m)] + (config.map { [OutputSafety.Item("the configuration file", $0)] } ?? [])
                    + (data.config.map { [OutputSafety.Item("--data-config", $0)] } ?? []) + (cfg.statistics.map { [OutputSafety.Item("the statistics file", $0)] } ?? [])
                    + (cfg.plan.map { [OutputSafety.Item("the precision plan (--plan)", $0)] } ?? [])
                    + (cfg.tensorOverrides.map { [OutputSafety.Item("--tensor-quant-overrides", $0)] } ?? [])
                try OutputSafety.check(outputs: written, inputs: read)
            }
            let reporter = calibration.reporter
            // Another plan (--auto-keep-float, the tuning loop) quantizes again with ops raised,
            // whose neighbours then need ranges of their own: the first run observes every tensor.
            let r = try Quantizer(configuration: cfg).run(completeStatistics: autoKeepFloat > 0 || tune != nil, progress: reporter.report)
            Quantize.printSummary(r)
            guard let m = cfg.model else { return }
            let dataset = try cfg.resolvedData(for: CalibrationDataset.signatures(of: try Model.load(path: m).graph))
            let threads = cfg.threads ?? ProcessInfo.processInfo.activeProcessorCount
            if let tune, let dataset, !dataset.inputs.isEmpty {
                try tuneAndPublish(cfg, first: r, options: tune, floatModel: m, dataset: dataset, threads: threads, reporter: reporter)
                return
            }
            let report = try analysis.afterQuantize(floatModel: m, quantizedModel: r.modelPath, dataset: dataset, statistics: r.statistics,
                                                    threads: threads, reporter: reporter, findings: r.findings)
            guard autoKeepFloat > 0, let report else { return }
            let (plan, worst) = Tuner.keepWorstFloat(autoKeepFloat, report: report, plan: r.plan)
            guard !worst.isEmpty else {
                print("auto-keep-float: no quantized Conv/Gemm/MatMul was measured; the model stays as written")
                return
            }
            print("auto-keep-float: keeping \(worst.map { "'\($0.node)'" }.joined(separator: ", ")) float, quantizing again")
            var again = cfg
            again.plan = nil
            again.control.plan = plan
            // The same ranges: the first run's statistics (GPTQ and bias correction still read
            // the data).
            let r2 = try Quantizer(configuration: again).run(statistics: r.statistics, progress: reporter.report)
            Quantize.printSummary(r2)
            let bad = worst.map { "'\($0.node)' (layerwise SNR \(AnalysisReport.format($0.layerwise!.snr)))" }
            try analysis.afterQuantize(floatModel: m, quantizedModel: r2.modelPath, dataset: dataset, statistics: r.statistics,
                                       threads: threads, reporter: reporter,
                                       notes: ["--auto-keep-float \(autoKeepFloat): kept float, the largest errors by themselves when quantized: \(bad.joined(separator: ", "))"],
                                       findings: r2.findings)
        }
    }

    /// `--weight-only`: MatMulNBits weights, then the analysis of the outputs against float.
    func runWeightOnly(_ cfg: QuantizerConfiguration) throws {
        guard let m = cfg.model else { throw ConfigurationError.missing("model", fix: "give the .onnx model") }
        let reporter = calibration.reporter
        let r = try WeightOnlyQuantizer(configuration: cfg).run(progress: reporter.report)
        let o = r.options
        if r.calibrationBatches > 0 { print("calibrated \(r.calibrationItems) items in \(r.calibrationBatches) batches (layer inputs for \(o.rounding.rawValue))") }
        let mib = { (b: Int) in String(format: "%.2f MiB", Double(b) / 1_048_576) }
        let gathers = r.layers.filter { $0.op == "GatherBlockQuantized" }.count
        let embeddings = gathers > 0 ? ", \(gathers) Gather -> GatherBlockQuantized (nearest)" : ""
        print("weights    \(r.layers.count - gathers) MatMul -> MatMulNBits int\(o.bits)\(embeddings), block \(o.blockSize), \(o.symmetric ? "symmetric" : "with zero points"), \(o.rounding.rawValue); initializers \(mib(r.bytesBefore)) -> \(mib(r.bytesAfter))")
        if !r.awq.isEmpty {
            let alphas = r.awq.values.sorted()
            print("awq        \(r.awq.filter { $0.value > 0 }.count) of \(r.awq.count) inputs scaled (α \(String(format: "%g", alphas.first!))–\(String(format: "%g", alphas.last!)))")
        }
        for w in r.warnings { print("warning    \(w)") }
        print("model      \(r.modelPath)\nparameters \(r.recordPath)")
        let dataset = try cfg.resolvedData(for: CalibrationDataset.signatures(of: try Model.load(path: m).graph))
        try analysis.afterQuantize(floatModel: m, quantizedModel: r.modelPath, dataset: dataset, statistics: nil,
                                   threads: cfg.threads ?? ProcessInfo.processInfo.activeProcessorCount, reporter: reporter)
    }

    /// Items of a stream kept for an analysis of "all" samples (--analysis-samples 0): a stream
    /// is not held in memory, so "all" is at most this many of its first items.
    static let streamReplayCap = 256

    /// Verifies the first run against the target and, when it misses, runs the tuning loop
    /// (trials in a scratch folder beside the output), writes the chosen plan's model over the
    /// first one and publishes its analysis with the rounds tried.
    func tuneAndPublish(_ cfg: QuantizerConfiguration, first r: QuantizationResult, options: TuningOptions, floatModel m: String, dataset: DatasetConfig,
                        threads: Int, reporter: ProgressReporter) throws {
        let f = AnalysisReport.format
        let target = options.target!
        let baseReport = try analysis.measure(floatModel: m, quantizedModel: r.modelPath, data: nil, dataset: dataset, statistics: r.statistics,
                                              defaultSamples: 16, threads: threads, reporter: reporter)
        let userValue = target.metric == .metric ? try UserEvaluation(command: options.evalCommand!, metricsFile: options.evalMetricsFile).evaluate(model: r.modelPath) : nil
        let firstValue = target.measure(baseReport, user: userValue)
        if target.met(firstValue) {
            var report = baseReport
            report.notes.append("verified: \(target) met (\(f(firstValue))); nothing was raised")
            report.findings = r.findings + report.findings
            print("target     \(target): \(f(firstValue)), met")
            reporter.tuningRound(AnalysisReport.Tuning.Round(round: 0, change: "plain recipe", raised: [], value: firstValue, met: true,
                                                             integerKernels: r.integerKernels.integer, kernels: r.integerKernels.total, seconds: 0))
            try analysis.publish(report, floatModel: m, quantizedModel: r.modelPath, outputFindings: report.findings.count - r.findings.count)
            if tuning.strict && !target.met(firstValue) { throw TuningArguments.missed(target, firstValue) }
            return
        }
        print("target     \(target): \(f(firstValue)), missed; tuning (at most \(options.rounds) rounds, from the same statistics)")
        let output = r.modelPath
        let scratch = URL(fileURLWithPath: output).deletingLastPathComponent()
            .appendingPathComponent(".\(URL(fileURLWithPath: output).lastPathComponent).tune-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let silent = ProgressReporter(quiet: true, json: false)
        let outcome = try Tuner(options: options).run(
            baseline: r, baselineReport: baseReport,
            quantize: { plan, round in
                var c = cfg
                c.plan = nil
                c.control.plan = plan
                c.output = scratch.appendingPathComponent("round\(round).q.onnx").path
                // The first run's layer statistics and AdaRound outcomes: a round changes a few ops' precision, not the weights.
                return try Quantizer(configuration: c).run(statistics: r.statistics, reuse: r.reusable, progress: silent.report)
            },
            measure: { t in
                try analysis.measure(floatModel: m, quantizedModel: t.modelPath, data: nil, dataset: dataset, statistics: r.statistics,
                                     defaultSamples: 16, threads: threads, reporter: silent, layerwise: false, evaluations: false,
                                     reportPrefix: scratch.appendingPathComponent("round.report").path)
            },
            progress: { round in
                if round.round > 0 {
                    print("tune       round \(round.round): \(round.change): \(f(round.value))\(round.met ? ", met" : ""); integer \(round.integerKernels) of \(round.kernels)\(round.latencyMs.map { "; \(f($0)) ms" } ?? "") (\(String(format: "%.1f", round.seconds)) s)")
                }
                reporter.tuningRound(round)
            })
        let t = outcome.tuning
        var final = r
        if t.chosen != 0 {
            var c = cfg
            c.plan = nil
            c.control.plan = outcome.plan
            final = try Quantizer(configuration: c).run(statistics: r.statistics, reuse: r.reusable, progress: reporter.report)
            let chosen = t.rounds[t.chosen]
            let precisions = Set(chosen.raised.compactMap { n in outcome.plan.ops.first { $0.node == n }?.dtype.rawValue }).sorted().joined(separator: "/")
            let names = chosen.raised.prefix(6).map { "'\($0)'" }.joined(separator: ", ") + (chosen.raised.count > 6 ? " and \(chosen.raised.count - 6) more" : "")
            print("repaired   \(chosen.raised.count) op\(chosen.raised.count == 1 ? "" : "s") raised to \(precisions): \(names) (the largest errors, measured on the outputs): "
                  + "\(target.metric.rawValue) \(f(firstValue)) -> \(f(chosen.value))\(chosen.met ? "" : ", target not met (the best round)"); the plan is \(final.planPath)")
            Quantize.printSummary(final)
        } else {
            print("repaired   nothing: no round within the limits did better than the plain recipe")
        }
        var report = t.chosen == 0 ? baseReport
            : try analysis.measure(floatModel: m, quantizedModel: final.modelPath, data: nil, dataset: dataset, statistics: r.statistics,
                                   defaultSamples: 16, threads: threads, reporter: reporter)
        report.tuning = t
        if !t.met {
            let best = t.rounds[t.chosen].value
            // A round that met the target but kept too few integer kernels: say what it would cost.
            let floor = options.minimumIntegerKernels(plain: r.integerKernels.integer)
            let costly = t.rounds.filter { $0.met && $0.integerKernels < floor }.max { $0.integerKernels < $1.integerKernels }
            let why = costly.map { c in
                "; round \(c.round) met it with \(c.integerKernels) of \(c.kernels) integer kernels, under the \(floor) that --min-integer-share \(f(options.integerShare)) keeps "
                    + "(--min-integer-share 0 allows it)"
            } ?? "; raise --tune-rounds, use --priority accuracy, or read the layers of this report"
            report.notes.append("tuning did not reach \(target): best \(f(best)) (round \(t.chosen)) in \(t.rounds.count - 1) rounds" + why)
            print("target     not met: best \(f(best)) (round \(t.chosen)) after \(t.rounds.count - 1) rounds" + why)
        }
        report.findings = final.findings + report.findings
        try analysis.publish(report, floatModel: m, quantizedModel: final.modelPath, outputFindings: report.findings.count - final.findings.count)
        if tuning.strict && !t.met { throw TuningArguments.missed(target, t.rounds[t.chosen].value) }
    }

    static func printSummary(_ r: QuantizationResult) {
        if let s = r.subset {
            let lists = s.lists.sorted { $0.key < $1.key }.map(\.value).joined(separator: ", ")
            print(s.indices.count < s.total ? "subset     calibrating on \(s.indices.count) of \(s.total) items chosen to cover the data's spread: \(lists)"
                                             : "subset     the data holds \(s.total) items, not more than --auto-subset: all are used")
        }
        if r.calibrationBatches > 0 {
            let partial = r.observedOnlyQuantized ? " (statistics of the \(r.observedTensors) tensors this configuration quantizes)" : ""
            print("calibrated \(r.calibrationItems) items in \(r.calibrationBatches) batches\(partial)")
        }
        print("quantized  \(r.quantizedNodes) nodes (\(r.floatNodes) stay float, \(r.absorbedActivations) activations absorbed)")
        print("integer    \(r.integerKernels.line)")
        print("prepared   \(r.preparation.constantsFolded) constants folded, \(r.preparation.batchNormsFolded) BatchNorms folded, \(r.preparation.padsFolded) Pads folded into Convs, \(r.preparation.affinesFolded) constant Mul/Add folded into Convs, \(r.preparation.hardSwishesFused) hard-swish chains fused, \(r.preparation.identitiesRemoved) Identity/Dropout removed\(r.preparation.nodesNamed > 0 ? ", \(r.preparation.nodesNamed) unnamed or same-named nodes named (OPTYPE_OUTPUT)" : "")\(r.preparation.contribUnfused > 0 ? ", \(r.preparation.contribUnfused) ONNX Runtime FusedConv/FusedGemm/Attention split" : "")\(r.preparation.upgradedFromOpset.map { ", opset \($0) raised to \(OpsetUpgrade.target)" } ?? "")\(r.preparation.computedAsFloat32From.map { ", \($0) computed as float32 inside (inputs and outputs keep their type)" } ?? "")")
        for w in r.warnings.prefix(3) { print("warning    \(w)") }
        if r.warnings.count > 3 { print("warning    ... \(r.warnings.count - 3) more (all in the parameter record's warnings)") }
        if let e = r.transforms.equalization {
            let spread = { (v: [Double]) in v.isEmpty ? 1 : v.sorted()[v.count / 2] }
            print("equalized  \(e.pairs.count) Conv pairs in \(e.rounds) rounds (median weight-range spread of the first Conv \(String(format: "%.3g", spread(e.pairs.map(\.spreadBefore)))) -> \(String(format: "%.3g", spread(e.pairs.map(\.spreadAfter)))))\(e.clipsSplit > 0 ? "; \(e.clipsSplit) Relu6/Clip bounds made per channel (Relu + Min)" : "")")
        }
        if let sq = r.transforms.smoothing {
            let smoothed = sq.sites.filter { $0.alpha != nil }
            var how: [String: Int] = [:]
            for site in smoothed { how[site.folded.isEmpty ? "not applied (quantized producer that cannot take the division)" : site.folded, default: 0] += 1 }
            let alphas = smoothed.compactMap(\.alpha)
            print("smoothed   \(smoothed.count) of \(sq.sites.count) MatMul/Gemm/Conv inputs (SmoothQuant\(alphas.isEmpty ? "" : ", α \(String(format: "%g", alphas.min()!))–\(String(format: "%g", alphas.max()!))"); \(how.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")))")
        }
        if !r.rounding.isEmpty {
            let flips = r.rounding.values.reduce(0) { $0 + $1.flips }, weights = r.rounding.values.reduce(0) { $0 + $1.weights }
            let gains = r.rounding.values.filter { $0.errorNearest > 0 }.map { $0.errorAfter / $0.errorNearest }.sorted()
            print("rounded    \(r.rounding.count) weights adaptively (AdaRound): \(String(format: "%.1f", 100 * Double(flips) / Double(max(weights, 1))))% of the weights flipped from nearest; layer output error \(gains.isEmpty ? "unchanged" : "× \(String(format: "%.2f", gains[gains.count / 2])) (median)")")
        }
        print("model      \(r.modelPath)")
        if let d = r.deployPath {
            print("deploy     \(d) (\(r.deployConverted.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))")
        }
        print("parameters \(r.parametersPath)")
        print("plan       \(r.planPath)")
    }

    /// The file's configuration (or the defaults) with every given option applied on top: the
    /// command line decodes into the same `QuantizerConfiguration` as the file.
    func resolvedConfiguration() throws -> QuantizerConfiguration {
        var cfg = try config.map { try QuantizerConfiguration(contentsOf: $0) } ?? QuantizerConfiguration()
        if let model, let modelOption, model != modelOption {
            throw QuantKitError("QK7008", "the model is given twice: '\(model)' and -i '\(modelOption)'", fix: "give the model once")
        }
        if let m = modelOption ?? model { cfg.model = m }
        if let output { cfg.output = output }
        if let stats { cfg.statistics = stats }
        if let statsOut { cfg.statisticsOutput = statsOut }
        try applyData(&cfg)
        let c = calibration
        if let a = c.activations {
            let s = try QuantizerConfiguration.scheme(named: a, key: "--activations")
            cfg.scheme.activation = s.activation
            cfg.scheme.weight = s.weight
        }
        try settings.applyWeightOnly(to: &cfg, method: c.method)
        if let name = c.method, cfg.weightOnly == nil {
            guard let m = RangeMethod(name: name, percentile: c.percentile ?? 0.9999) else { throw ConfigurationError.unknownMethod(name, key: "--method") }
            cfg.scheme.method = m
        } else if let p = c.percentile, case .percentile = cfg.scheme.method {
            cfg.scheme.method = .percentile(p)
        }
        if let b = c.bins { cfg.observer.bins = b }
        if let t = c.threads { cfg.threads = t }
        if let e = c.equalize { cfg.equalize = e }
        if let a = try c.smoothQuantAlpha() { cfg.smoothQuant = a }
        try settings.apply(to: &cfg)
        try tuning.apply(to: &cfg, analysis: analysis)
        return cfg
    }

    /// Data options replace the file's data when they name sources; --batch/--steps/--seed
    /// adjust the file's data otherwise.
    func applyData(_ cfg: inout QuantizerConfiguration) throws {
        if data.describesSources {
            guard let m = cfg.model else {
                throw ConfigurationError.missing("model", fix: "give the .onnx model (-i MODEL.onnx) so --input names can be checked")
            }
            cfg.data = try DataPreviewOptions(model: m, data: data).resolve().1
        } else if var d = cfg.data {
            if let b = data.batch { d.batchSize = b }
            if let s = data.steps { d.steps = s }
            if let s = data.seed { d.seed = s }
            if data.failOnNonfinite { d.nonFinite = .fail }
            data.applyLimits(&d)
            cfg.data = d
        }
    }
}

/// Quantization settings of `quantize`; each maps to a configuration-file key (docs/CONFIG.md).
struct QuantizeSettings: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "One weight scale per output channel (default); --no-per-channel-weights: per tensor (Icraft per = \"tensor\").")
    var perChannelWeights: Bool?

    @Flag(help: "Same as --no-per-channel-weights.")
    var perTensorWeights = false

    @Option(help: "Keep these nodes float (by name; repeatable; replaces the file's exclude_nodes).")
    var excludeNode: [String] = []

    @Option(help: "Keep nodes of this op type float (repeatable; replaces the file's exclude_op_types).")
    var excludeOpType: [String] = []

    @Option(help: "Keep everything after this tensor float (repeatable; XQuant truncate_var_names).")
    var truncate: [String] = []

    @Option(help: "IN1,IN2:OUT1,OUT2:SETTING for the nodes between those tensors (XQuant custom_setting); SETTING is float, bits=8|16 or method=NAME (repeatable).")
    var subgraph: [String] = []

    @Option(help: "A Concat whose inputs' calibration ranges differ by more than this factor gives each input its own scale (a Concat that produces a graph output then runs float); 0: one shared scale for all inputs, for hardware that cannot requantize (default 16).")
    var concatSplitRatio: Double?

    @Option(help: "A precision plan (CSV as every run writes beside the model, NAME.plan.csv, or JSON): per op its dtype (int8, int16, fp16, bf16, fp32), weight granularity (per: channel, tensor) and range method (saturation). Re-runs from --stats without calibrating again.")
    var plan: String?

    @Option(help: "ONNX Runtime's TensorQuantOverrides as JSON (what its quantize_static takes in extra_options): per activation tensor rmin/rmax or scale/zero_point over the calibrated range; quant_type, symmetric and a weight's axis must agree with the run (docs/PYTHON.md).")
    var tensorQuantOverrides: String?

    @Option(help: "Weight-only quantization for decoders: int4 (or int8, int2) MatMul weights as ONNX Runtime's MatMulNBits, activations float; --method rtn (default, no data needed), gptq or awq (both read the layer inputs of the first 128 calibration items; token sequences for a decoder, whose past key/value inputs get an empty cache); --block-size; --weight-mode sym or asym_u (default: zero points).")
    var weightOnly: String?

    @Option(help: "Weights per block along K for --weight-only (a power of two, 16 or more; default 32).")
    var blockSize: Int?

    @Option(help: "MiB the Hessians of one data pass of --weight-only gptq/awq may take (8·K² bytes per MatMul; default 1024): MatMuls that do not fit together get further passes over the data, with the same model.")
    var hessianMemory: Int?

    @Flag(help: "With --weight-only: Gather embedding tables too, as ONNX Runtime's GatherBlockQuantized (int4 or int8, rounded to nearest in blocks along the embedding); by default they stay float.")
    var quantizeEmbeddings = false

    @Option(help: "Calibrate on N items chosen from the data to cover its spread (k-center on per-item activation statistics of a few layers; Icraft autoqset_num); the chosen lists are written beside the data as NAME_auto.txt.")
    var autoSubset: Int?

    @Option(help: "XQuant precision_level: 0 all int8 (the plain recipe, no repair), 1 the tuning loop to output cosine 0.99 with --priority performance, 2 to cosine 0.995 with --priority accuracy, 4 the whole model fp16 (--precision fp16); 3 (dynamic) is not implemented; --target and the tuning options override it.")
    var precisionLevel: Int?

    @Option(help: "The whole model in fp16 or bf16 instead of int8: every op runs float on values rounded to that format (Cast pairs ONNX Runtime runs), weights stored in it (half the bytes) behind one Cast each; per op: --plan.")
    var precision: String?

    @Option(help: "XQuant finetune_level: 0 or 1 (static parameters), 2 (AdaRound: --weight-rounding adaround); 3 (block reconstruction) is not implemented.")
    var finetuneLevel: Int?

    @Option(help: "Bits of weight integers, 2 to 8 (default 8; symmetric: 4 gives [-7, 7]); stored in int8 tensors that ONNX Runtime runs as int8 (--pack-weights: int4). W4A8 is --weight-bits 4.")
    var weightBits: Int?

    @Option(help: "Weight grid (Distiller's names): sym (signed symmetric, default), asym_u (unsigned with a zero point: uint4 at 4 bits, uint8 at 8) or asym_s (signed with a zero point).")
    var weightMode: String?

    @Option(help: "One weight scale per N consecutive weights of each output channel's fan-in (per group; Icraft per = \"group=N\"), e.g. 32 or 128. ONNX Runtime runs these ops float on the dequantized weights.")
    var groupSize: Int?

    @Option(help: "Non-uniform weights (AMCT's NUQ): each layer's integer weights restricted to N values chosen by k-means on the int8 grid (a runtime can store log2(N)-bit indices; the model stays int8 QDQ), e.g. 16 or 32.")
    var weightLevels: Int?

    @Option(help: "Reduced value ranges W;A (Icraft's value_range_in_bits): weights on W bits and activations on A bits of their 8-bit storage, e.g. 7;7 so that accumulators do not overflow; one number sets both (per op: the plan's value_range_in_bits column).")
    var valueRange: String?

    @Option(help: "qdq (default): the QDQ model ONNX Runtime fuses; qoperator: also NAME.qop.onnx, the deploy model written with ONNX Runtime's integer operators (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, ...) that runs integer with graph optimizations off, and NAME.record.txt, each layer's scales and offsets (AMCT-style).")
    var format: String?

    @Option(help: "Accumulator width of the target hardware, e.g. 16, 24 or 32: each integer Conv/MatMul/Gemm output channel's worst case Σ|q_x − z_x|·|q_w| + |q_b| must fit it; the weight scales of channels that could overflow are widened until they fit (a summary warning names them), QK5008 when a channel would round to zero.")
    var accumulatorBits: Int?

    @Option(help: "Scales as the hardware computes them: float (default), pow2 (2^-n) or fixed:M (m·2^-n, m of M bits); each scale is rounded to the nearest representable one below or above, whichever quantizes the calibration data (weights) with less error, the zero point re-chosen.")
    var scaleFormat: String?

    @Option(help: "A hardware profile (JSON; profiles/icraft.json, profiles/knight.json): the fixed-point format and shift range of scales and of each integer op's requantization multiplier s_in·s_w/s_out, and whether values outside are an error (QK5007) or clamped with a warning.")
    var hardwareProfile: String?

    @Flag(help: "Store weight grids of 4 bits or fewer packed as int4/uint4 (half the size; opset 21 DequantizeLinear, or ONNX Runtime's com.microsoft one below it). ONNX Runtime then runs those ops float; without it they are int8 tensors that its int8 kernels run.")
    var packWeights = false

    @Option(help: "Weight rounding: nearest (default), gptq (error-compensated with the layer inputs of up to 128 calibration items; better on EfficientNet-Lite0, worse on PP-OCRv4 rec) or adaround (up or down per weight, learned on the same statistics; XQuant finetune_level 2); see docs/BENCHMARKS.md.")
    var weightRounding: WeightRounding?

    @Option(help: "Which Conv/Gemm biases absorb the mean output shift their weight rounding causes: off, depthwise (default: grouped Convs, better on EfficientNet-Lite0, slightly better on PP-OCRv4 rec) or all (better on EfficientNet-Lite0, worse on PP-OCRv4 rec); reads calibration data, see docs/BENCHMARKS.md.")
    var biasCorrection: BiasCorrectionScope?

    /// --weight-only: the options, with `method` (--method) as its rounding.
    func applyWeightOnly(to cfg: inout QuantizerConfiguration, method: String?) throws {
        guard let text = weightOnly else {
            if blockSize != nil { throw ConfigurationError.invalidValue("--block-size", "\(blockSize!)", expected: "--weight-only int4 with it (per-group QDQ weights: --group-size)") }
            if hessianMemory != nil { throw ConfigurationError.invalidValue("--hessian-memory", "\(hessianMemory!)", expected: "--weight-only with gptq or awq") }
            if quantizeEmbeddings { throw ConfigurationError.invalidValue("--quantize-embeddings", "set", expected: "--weight-only int4 with it") }
            return
        }
        guard let bits = ["int4": 4, "int8": 8, "int2": 2][text.lowercased()] else {
            throw ConfigurationError.invalidValue("--weight-only", "'\(text)'", expected: "int4, int8 or int2")
        }
        var o = WeightOnly.Options(bits: bits, embeddings: quantizeEmbeddings)
        if let b = blockSize { o.blockSize = b }
        if let m = method {
            guard let r = WeightOnly.Rounding(rawValue: m.lowercased()) else {
                throw ConfigurationError.invalidValue("--method", "'\(m)'", expected: "rtn, gptq or awq with --weight-only")
            }
            o.rounding = r
        }
        switch weightMode?.lowercased() {
        case nil, "asym_u": o.symmetric = false
        case "sym": o.symmetric = true
        case let other?: throw ConfigurationError.invalidValue("--weight-mode", "'\(other)'", expected: "sym or asym_u with --weight-only")
        }
        if let mib = hessianMemory {
            guard mib > 0 else { throw ConfigurationError.invalidValue("--hessian-memory", "\(mib)", expected: "a positive number of MiB") }
            cfg.hessianMemory = mib << 20
        }
        cfg.weightOnly = o
    }

    func apply(to cfg: inout QuantizerConfiguration) throws {
        if perTensorWeights { cfg.scheme.perChannelWeights = false }
        if let p = perChannelWeights { cfg.scheme.perChannelWeights = p }
        if let r = weightRounding { cfg.weightRounding = r }
        if let p = plan { cfg.plan = p }
        if let t = tensorQuantOverrides { cfg.tensorOverrides = t }
        if let n = autoSubset { cfg.autoSubset = n }
        if let b = biasCorrection { cfg.biasCorrection = b }
        if !excludeNode.isEmpty { cfg.control.excludeNodes = excludeNode }
        if let r = concatSplitRatio { cfg.control.concatSplitRatio = try QuantizerConfiguration.checkConcatSplitRatio(r, key: "--concat-split-ratio") }
        if !excludeOpType.isEmpty { cfg.control.excludeOpTypes = excludeOpType }
        if !truncate.isEmpty { cfg.control.truncateAfter = truncate }
        if !subgraph.isEmpty { cfg.control.subgraphSettings = try subgraph.map(QuantizeSettings.subgraphSetting) }
        if let l = precisionLevel {
            cfg.tuning = try QuantizerConfiguration.precisionLevel(l, key: "--precision-level")
            if l == 4 { cfg.control.wholeModel = .fp16 }
        }
        switch precision?.lowercased() {
        case nil: break
        case "fp16", "float16": cfg.control.wholeModel = .fp16
        case "bf16", "bfloat16": cfg.control.wholeModel = .bf16
        case let p?: throw ConfigurationError.invalidValue("--precision", "'\(p)'", expected: "fp16 or bf16 (the whole model; per op: --plan)")
        }
        if let l = finetuneLevel { cfg.weightRounding = try QuantizerConfiguration.finetuneLevel(l, key: "--finetune-level") ?? cfg.weightRounding }
        if let r = weightRounding { cfg.weightRounding = r }
        let flags = ["weight_bits": "--weight-bits", "weight_mode": "--weight-mode", "weight_group_size": "--group-size", "weight_levels": "--weight-levels",
                     "value_range_in_bits": "--value-range", "accumulator_bits": "--accumulator-bits", "scale_format": "--scale-format", "format": "--format"]
        try QuantizerConfiguration.NumberFormats(weightBits: weightBits, weightMode: weightMode, weightGroupSize: groupSize, packWeights: packWeights ? true : nil,
                                                 weightLevels: weightLevels, valueRange: valueRange, accumulatorBits: accumulatorBits, scaleFormat: scaleFormat,
                                                 hardwareProfile: hardwareProfile, format: format).apply(to: &cfg) { flags[$0] ?? $0 }
    }

    static func subgraphSetting(_ spec: String) throws -> SubgraphSetting {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else {
            throw ConfigurationError.invalidValue("--subgraph", "'\(spec)'", expected: "IN1,IN2:OUT1:SETTING, e.g. /conv1/Conv_output_0:/fc/Gemm_output_0:float")
        }
        let names = { (s: String) in s.split(separator: ",").map(String.init) }
        var s = SubgraphSetting(inputNames: names(parts[0]), outputNames: names(parts[1]))
        let setting = parts[2]
        if setting == "float" {
            s.keepFloat = true
        } else if setting.hasPrefix("bits="), let b = Int(setting.dropFirst(5)) {
            s.bits = b
        } else if setting.hasPrefix("method=") {
            let name = String(setting.dropFirst(7))
            guard let m = RangeMethod(name: name) else { throw ConfigurationError.unknownMethod(name, key: "--subgraph method") }
            s.method = m
        } else {
            throw ConfigurationError.invalidValue("--subgraph setting", "'\(setting)'", expected: "float, bits=8, bits=16 or method=NAME")
        }
        return s
    }
}

extension WeightRounding: ExpressibleByArgument {}
extension BiasCorrectionScope: ExpressibleByArgument {}
