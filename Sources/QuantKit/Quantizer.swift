import Foundation
@_exported import QuantAlgorithms
@_exported import QuantRewrite

/// What a quantization run produced.
public struct QuantizationResult: Sendable {
    /// The QDQ model written.
    public var modelPath: String
    /// The parameter record (`NAME.qparams.json`) written beside it.
    public var parametersPath: String
    /// The precision plan the run used (`NAME.plan.csv` beside the model): feed it back with
    /// `--plan` (edited or not) to quantize again from the same statistics.
    public var planPath: String = ""
    public var plan = PrecisionPlan()
    /// The deploy model (`--format qoperator`) and its converted ops per integer operator.
    public var deployPath: String?
    public var deployConverted: [String: Int] = [:]
    /// What graph preparation folded and removed.
    public var preparation: Preparation.Report
    /// Nodes that run on quantized inputs.
    public var quantizedNodes: Int
    /// Nodes that stay float (excluded, truncated or without a quantized kernel).
    public var floatNodes: Int
    /// Relu/Clip activations absorbed into the preceding quantization.
    public var absorbedActivations: Int
    /// Calibration batches and items seen (0 when statistics came from a file).
    public var calibrationBatches: Int = 0
    public var calibrationItems: Int = 0
    /// Tensors calibration kept statistics of (0 when statistics came from a file), and whether
    /// it observed only those this configuration quantizes; see
    /// ``Quantizer/run(model:statistics:completeStatistics:progress:cancelled:)``.
    public var observedTensors: Int = 0
    public var observedOnlyQuantized = false
    /// The statistics the ranges came from (calibrated or read), e.g. for analysis reports.
    public var statistics: StatisticsFile?
    /// Warnings of the data set, the rewrite and the configuration's notes; the library never
    /// prints them.
    public var warnings: [String]
    /// The calibration items `autoSubset` chose, and the lists it wrote.
    public var subset: CalibrationSubset.Selection?
    /// Which Conv/MatMul/Gemm ONNX Runtime will run as integer kernels, and why not the others.
    public var integerKernels = RuntimeFusion.Summary(kernels: [])
    /// What the float-equivalent transforms (equalization, SmoothQuant) did.
    public var transforms = FloatTransforms.Report()
    /// Per node whose weight AdaRound rounded: flips and output error before and after.
    public var rounding: [String: WeightRoundingRecord] = [:]
    /// The layer statistics GPTQ, AdaRound and bias correction read, and AdaRound's outcomes:
    /// another run of the same model and statistics (a tuning round) reuses them instead of one
    /// more pass and optimization (``Quantizer/run(model:statistics:completeStatistics:reuse:progress:cancelled:)``).
    public var reusable: ReusableWork?

    public init(modelPath: String, parametersPath: String, planPath: String = "", plan: PrecisionPlan = PrecisionPlan(),
                preparation: Preparation.Report = Preparation.Report(), quantizedNodes: Int = 0, floatNodes: Int = 0, absorbedActivations: Int = 0,
                warnings: [String] = [], integerKernels: RuntimeFusion.Summary = RuntimeFusion.Summary(kernels: [])) {
        self.modelPath = modelPath
        self.parametersPath = parametersPath
        self.planPath = planPath
        self.plan = plan
        self.preparation = preparation
        self.quantizedNodes = quantizedNodes
        self.floatNodes = floatNodes
        self.absorbedActivations = absorbedActivations
        self.warnings = warnings
        self.integerKernels = integerKernels
    }

    /// The error-level warnings (QK5003 collapsed activations, QK5004 mostly float in ONNX Runtime).
    public var findings: [String] { warnings.filter { $0.hasPrefix("QK5003") || $0.hasPrefix("QK5004") } }
}

/// Turns a float ONNX model into a QDQ ONNX model plus a parameter record.
///
/// ```swift
/// var config = try QuantizerConfiguration(contentsOf: "examples/efficientnet_lite0.json")
/// config.output = "out/efficientnet_lite0.q.onnx"
/// let result = try await Quantizer(configuration: config).quantize(model: config.model!)
/// print(result.modelPath, result.quantizedNodes)
/// ```
///
/// A run validates the configuration (``QuantizerConfiguration/validate()``), loads the model,
/// calibrates on the configured data in one streamed pass (or reads a statistics file),
/// prepares the graph (float-equivalent folding), rewrites it to QDQ and writes the model and
/// the parameter record atomically. It never overwrites its input and never leaves a
/// half-written output. Errors are `QuantKitError`s with stable codes (docs/ERRORS.md).
public struct Quantizer: Sendable {
    /// The float model as calibration runs it: loaded, then preparation's first passes
    /// (``Preparation/asLoaded(_:)``; same float outputs), so the tensors they create (a Conv's
    /// output before its activation) get statistics too.
    /// With `transforms` (equalization, SmoothQuant), the model is prepared in full and
    /// transformed, as the rewrite will quantize it: the transforms change tensors inside.
    /// `prepared`: prepare it in full even without transforms (SmoothQuant's pass will add some).
    public static func loadForCalibration(path: String, transforms: FloatTransforms = FloatTransforms(), prepared: Bool = false) throws -> Model {
        let model = try Model.load(path: path)
        try Verifier.check(model, codes: Verifier.loadCodes)  // before any data is read
        if transforms.isEmpty && !prepared {
            _ = Preparation.asLoaded(model)
        } else {
            try transforms.prepare(model)
        }
        return model
    }

    public var configuration: QuantizerConfiguration

    public init(configuration: QuantizerConfiguration) { self.configuration = configuration }

    /// Quantizes `model` (or the configuration's model when nil) with the configuration's data,
    /// output and settings. Checks for task cancellation between calibration batches.
    public func quantize(model: String? = nil, progress: @Sendable (StageProgress) -> Void = { _ in }) async throws -> QuantizationResult {
        try run(model: model, progress: progress, cancelled: { try Task.checkCancellation() })
    }

    /// The synchronous form of ``quantize(model:progress:)``. `statistics`, when given, supplies
    /// the activation ranges instead of calibration or the configuration's statistics file
    /// (`quantkit quantize --auto-keep-float` quantizes a second time with the first run's).
    ///
    /// Calibration observes only the tensors this configuration quantizes (the histograms are
    /// most of calibration's time), unless `completeStatistics` is set or a statistics file is
    /// written (`statisticsOutput`): those observe every float tensor, as `quantkit calibrate`
    /// does, so that other settings can reuse them.
    /// `reuse`: the ``QuantizationResult/reusable`` work of an earlier run with the same model and
    /// statistics (a tuning round): its layer statistics and AdaRound outcomes instead of a new pass.
    public func run(model: String? = nil, statistics given: StatisticsFile? = nil, completeStatistics: Bool = false, reuse: ReusableWork? = nil,
                    progress: (StageProgress) -> Void = { _ in }, cancelled: () throws -> Void = {}) throws -> QuantizationResult {
        // The stages keep the callbacks only while this call runs.
        try withoutActuallyEscaping(progress) { progress in
            try withoutActuallyEscaping(cancelled) { cancelled in
                try runStages(model: model, statistics: given, completeStatistics: completeStatistics, reuse: reuse, progress: progress, cancelled: cancelled)
            }
        }
    }

    private func runStages(model: String?, statistics given: StatisticsFile?, completeStatistics: Bool, reuse: ReusableWork?,
                           progress: @escaping (StageProgress) -> Void, cancelled: @escaping () throws -> Void) throws -> QuantizationResult {
        var config = configuration
        if let model { config.model = model }
        try config.validate(statisticsGiven: given != nil)
        if let p = config.plan { config.control.plan = try PrecisionPlan(contentsOf: p) }
        let path = config.model!
        let output = config.output ?? Quantizer.defaultOutput(for: path)
        var stages = Stages(config: config, path: path, cancelled: cancelled, progress: progress)
        // 1. The data, and the float model the passes run (prepared and equalized when asked).
        try stages.openData(statisticsGiven: given != nil)
        // Nothing written may be something read: the model, its external data, the data files.
        try OutputSafety.check(
            outputs: Quantizer.outputItems(output: output, statisticsOutput: config.statisticsOutput, deploy: config.qoperator),
            inputs: [.init("the input model", path)] + (stages.floatModel?.externalFiles ?? []).map { .init("the model's external data", $0) }
                + (config.statistics.map { [.init("the statistics file", $0)] } ?? [])
                + (stages.data?.sourceFiles ?? []).map { .init("calibration file", $0) })
        // 2. Activation statistics: given, read, or calibrated (after SmoothQuant's own pass).
        let statistics: StatisticsFile
        if let given {
            try given.check(equalize: config.equalize, smooth: config.smoothQuant != nil, path: "(given in memory)")
            statistics = given
        } else if let file = config.statistics {
            statistics = try StatisticsFile.read(path: file)
            try statistics.check(equalize: config.equalize, smooth: config.smoothQuant != nil, path: file)
        } else {
            if let alpha = config.smoothQuant { try stages.smooth(alpha: alpha) }
            statistics = try stages.calibrate(complete: completeStatistics || config.statisticsOutput != nil)
            if let out = config.statisticsOutput { try statistics.write(to: out) }
        }
        try AtomicFile.makeDirectory(URL(fileURLWithPath: output).deletingLastPathComponent().path)
        // 3. The rewrite, with the pass over the quantized model that GPTQ and bias correction read.
        let weightPass = reuse == nil ? try stages.weightStatisticsPass() : nil
        defer { weightPass?.stream.cancel() }
        var r = try Quantizer(configuration: config).quantize(modelPath: path, statistics: statistics, output: output,
                                                              weightStatisticsBatches: weightPass?.next, smoothingChoice: stages.smoothing, reuse: reuse,
                                                              progress: progress)
        r.calibrationBatches = stages.batches
        r.calibrationItems = stages.items
        if stages.batches > 0 {
            r.observedTensors = statistics.tensors.count
            r.observedOnlyQuantized = stages.onlyQuantized
        }
        r.statistics = statistics
        r.subset = stages.subset
        r.warnings = stages.warnings + r.warnings
        return r
    }

    /// The stages of ``run(model:statistics:completeStatistics:progress:cancelled:)`` that read
    /// the data, in the order their dependencies allow: SmoothQuant's channel maxima are taken
    /// in the prepared float model (one pass), activation statistics in the model transformed by
    /// them (one pass), GPTQ's and bias correction's layer inputs in the quantized model (one
    /// pass over the first items). Each pass collects everything its model is needed for.
    struct Stages {
        let config: QuantizerConfiguration
        let path: String
        let cancelled: () throws -> Void
        let progress: (StageProgress) -> Void
        var floatModel: Model?
        var data: CalibrationDataset?
        var subset: CalibrationSubset.Selection?
        var transforms: FloatTransforms
        var smoothing: SmoothQuant.Report?
        var warnings: [String]
        var batches = 0, items = 0, onlyQuantized = false

        init(config: QuantizerConfiguration, path: String, cancelled: @escaping () throws -> Void, progress: @escaping (StageProgress) -> Void) {
            self.config = config
            self.path = path
            self.cancelled = cancelled
            self.progress = progress
            transforms = FloatTransforms(equalize: config.equalize)
            warnings = config.notes
        }

        var threads: Int { config.threads ?? ProcessInfo.processInfo.activeProcessorCount }

        /// Loads the float model and opens the data when a pass will read it: calibration
        /// (no statistics given), SmoothQuant, GPTQ, bias correction.
        mutating func openData(statisticsGiven: Bool) throws {
            let calibrates = !statisticsGiven && config.statistics == nil
            guard calibrates || config.weightRounding.readsHessians || config.biasCorrection != .off else { return }
            let m = try Quantizer.loadForCalibration(path: path, transforms: transforms, prepared: calibrates && config.smoothQuant != nil)
            floatModel = m
            let signatures = CalibrationDataset.signatures(of: m.graph)
            // Without statistics a source-less data configuration fails here (QK2101).
            guard config.hasDataSource || calibrates, var d = try config.resolvedData(for: signatures) else { return }
            // --auto-subset: calibrate on N representative items, listed beside the data.
            if let n = config.autoSubset, calibrates {
                var chosen = try CalibrationSubset.choose(modelPath: path, data: d, count: n, threads: threads, progress: progress)
                if chosen.indices.count < chosen.total { d = try CalibrationSubset.write(&chosen, data: d) }
                subset = chosen
            }
            data = try CalibrationDataset(signatures: signatures, config: d)
        }

        /// One pass of `model` over the data (at most `limit` items) with `hooks` attached.
        func pass(_ model: Model, hooks: [ExecutionHook], stage: String, limit: Int? = nil) throws {
            let stream = data!.makeStream()
            defer { stream.cancel() }
            let executor = try Executor(model: model, options: ExecutorOptions(threads: threads))
            var seen = 0, count = 0
            while limit.map({ seen < $0 }) ?? true, let b = try stream.next() {
                try cancelled()
                _ = try executor.run(b.tensors, hooks: hooks)
                seen += b.tensors.values.first?.shape.first ?? 1
                count += 1
                progress(StageProgress(stage: stage, done: count, total: data!.knownBatchCount, unit: "batches"))
            }
        }

        /// SmoothQuant: per-channel maxima and sampled rows of every site's input (one pass of
        /// the prepared float model), the factors chosen, and the float model transformed.
        mutating func smooth(alpha: SmoothQuant.Alpha) throws {
            let m = floatModel!
            let sites = SmoothQuant.sites(m.graph)
            guard !sites.isEmpty else {
                warnings.append("SmoothQuant found no MatMul/Gemm with a constant weight to smooth")
                return
            }
            let collector = SmoothQuant.Collector(sites: sites)
            try pass(m, hooks: [collector], stage: "smoothquant statistics")
            let scheme = config.scheme
            let (factors, report) = SmoothQuant.choose(m.graph, sites: sites, collector: collector, alpha: alpha, activation: scheme.activation,
                                                       weight: scheme.weight, perChannel: scheme.perChannelWeights)
            transforms.smoothing = factors
            try FloatTransforms(smoothing: factors).apply(to: m)
            smoothing = report
        }

        /// Calibration: activation statistics of the (transformed) float model, of the tensors
        /// this configuration quantizes unless `complete`.
        mutating func calibrate(complete: Bool) throws -> StatisticsFile {
            // validate() made sure there is data when there are no statistics.
            let dataset = data!
            let stream = dataset.makeStream()
            defer { stream.cancel() }
            let total = dataset.knownBatchCount
            let calibrator = Calibrator(observer: config.observer, threads: threads)
            let only = complete ? nil : try Quantizer(configuration: config).tensorsToObserve(modelPath: path, transforms: transforms)
            var observed = try calibrator.run(model: floatModel!, modelName: URL(fileURLWithPath: path).lastPathComponent, total: total, only: only,
                                              dataset: dataset, stream: stream, before: cancelled, progress: progress)
            observed.transforms = transforms.isEmpty ? nil : transforms
            onlyQuantized = only != nil
            let report = dataset.report
            batches = report.batches
            items = report.items
            warnings += report.warnings.map { "\($0.code) \($0.message)" }
            return observed
        }

        /// The batches GPTQ and bias correction read (the first calibration items, a fresh
        /// stream), or nil when neither runs. The default depthwise bias correction applies only
        /// to a model with grouped Convs, and is skipped with a warning without data.
        mutating func weightStatisticsPass() throws -> (stream: BatchStream, next: () throws -> [String: Tensor]?)? {
            let corrects = floatModel.map { m in m.graph.allNodes.contains { config.biasCorrection.covers($0) } } ?? false
            if corrects && config.biasCorrection == .depthwise && data == nil {
                warnings.append("bias correction of the grouped (depthwise) Convs skipped: a statistics file alone gives no data to run the model on "
                                + "(give the calibration data with --input too, or --bias-correction off to silence this)")
            }
            guard config.weightRounding.readsHessians || corrects, let dataset = data else { return nil }
            try cancelled()
            let stream = dataset.makeStream()
            var seen = 0
            let limit = config.weightRounding.readsHessians ? QuantizerConfiguration.weightRoundingSamples : QuantizerConfiguration.biasCorrectionSamples
            return (stream, {
                guard seen < limit, let b = try stream.next()?.tensors else { return nil }
                seen += b.values.first?.shape.first ?? 1
                return b
            })
        }
    }

    /// `NAME.q.onnx` beside `NAME.onnx`.
    public static func defaultOutput(for model: String) -> String {
        let url = URL(fileURLWithPath: model)
        let stem = url.deletingPathExtension().lastPathComponent
        return url.deletingLastPathComponent().appendingPathComponent(stem + ".q.onnx").path
    }

    /// Quantizes the model at `modelPath` with activation ranges from `statistics` and writes
    /// `output` (QDQ ONNX) and `output` with `.qparams.json` instead of `.onnx`, each atomically.
    /// `weightStatisticsBatches` feeds the pass GPTQ and bias correction read (nil: neither runs).
    public func quantize(modelPath: String, statistics: StatisticsFile, output: String,
                         weightStatisticsBatches: (() throws -> [String: Tensor]?)? = nil, smoothingChoice: SmoothQuant.Report? = nil,
                         reuse: ReusableWork? = nil, progress: (StageProgress) -> Void = { _ in }) throws -> QuantizationResult {
        let model = try Model.load(path: modelPath)
        try OutputSafety.check(outputs: Quantizer.outputItems(output: output, statisticsOutput: nil, deploy: configuration.qoperator),
                               inputs: [.init("the input model", modelPath)] + model.externalFiles.map { .init("the model's external data", $0) })
        try Verifier.check(model, codes: Verifier.loadCodes)
        // ONNX Runtime's TensorQuantOverrides name the float model's tensors.
        let overrides = try configuration.tensorOverrides.map { try TensorQuantOverrides(contentsOf: $0) }
        if let overrides {
            let g = model.graph
            let weights = Set(g.initializers.map(\.name))
            let tensors = Set(g.allNodes.flatMap(\.outputs) + g.inputs.map(\.name)).subtracting(weights)
            try overrides.check(weights: weights, tensors: tensors, activation: configuration.scheme.activation,
                                perChannelWeights: configuration.scheme.perChannelWeights)
        }
        // The statistics were observed in the transformed model: quantize that one.
        let transforms = statistics.transforms ?? FloatTransforms()
        var (prep, transformed) = try transforms.prepare(model)
        if var chosen = smoothingChoice {
            // The choice (α, errors) from the pass that chose, with where each division went.
            var folded: [String: String] = [:]
            for site in transformed.smoothing?.sites ?? [] { folded[site.tensor] = site.folded }
            for i in chosen.sites.indices { chosen.sites[i].folded = folded[chosen.sites[i].tensor] ?? "" }
            transformed.smoothing = chosen
        }
        let stats = statistics.tensors
        var control = configuration.control
        control.excludeNodes += transformed.floatNodes
        // Float8 Q/DQ exist from opset 19.
        if configuration.scheme.activation.float8 != nil || configuration.scheme.weight.float8 != nil {
            _ = try OpsetUpgrade.raise(model, to: 19, purpose: "float8 quantization")
        }
        var options = QDQRewriter.Options(scheme: configuration.scheme, control: control) { name, grid, method in
            if let r = overrides?.range(name, grid: grid) { return (r, "TensorQuantOverrides") }
            guard let e = stats[name] else { return nil }
            if e.statistics.absHistogram == nil, let r = e.range { return (r, e.method ?? "imported") }
            let sel = RangeSelection.select(e.statistics, method: method, grid: grid)
            return (sel.range, sel.method.description)
        }
        if let overrides { options.fixedRange = { overrides.range($0, grid: configuration.scheme.activation) != nil } }
        options.activationError = { name, grid, scale, zp in
            stats[name].flatMap { RangeSelection.gridError($0.statistics, scale: scale, zeroPoint: zp, grid: grid) }
        }
        var reusable = reuse
        if reuse == nil, let next = weightStatisticsBatches {
            let cache = AdaRound.Cache()
            let (hessians, means) = configuration.weightRounding == .adaround
                ? try adaRoundStatistics(modelPath: modelPath, transforms: transforms, options: options, cache: cache, batches: next, progress: progress)
                : try weightInputStatistics(modelPath: modelPath, transforms: transforms, options: options, batches: next, progress: progress)
            reusable = ReusableWork(hessians: hessians, means: means, adaRound: cache)
        }
        if let work = reusable {
            let (hessians, means) = (work.hessians, work.means)
            if configuration.weightRounding.readsHessians { options.weightHessians = hessians }
            if configuration.weightRounding == .adaround {
                options.adaRound = AdaRound.Options()
                options.adaRoundCache = work.adaRound
            }
            if configuration.biasCorrection != .off {
                let covered = Set(model.graph.allNodes.filter { configuration.biasCorrection.covers($0) }.map(\.name))
                options.inputMeans = means.filter { covered.contains($0.key) }
            }
        }
        var r = try withoutActuallyEscaping(progress) { progress in
            var options = options
            let layers = options.adaRound == nil ? 0 : options.weightHessians.count
            var done = 0
            if layers > 0 {
                options.onRounded = {
                    done += 1
                    progress(StageProgress(stage: "adaround", done: done, total: layers, unit: "layers"))
                }
            }
            return try QDQRewriter(model: model, options: options).run()
        }
        if let w = Quantizer.clippingWarning(r.parameters, stats) { r.warnings.insert(w, at: 0) }
        if let w = Quantizer.collapsedWarning(r.parameters, stats) { r.warnings.insert(w, at: 0) }
        let kernels = RuntimeFusion.summary(of: model)
        // A whole fp16/bf16 model runs float by request.
        if configuration.control.wholeModel == nil, let w = Quantizer.floatKernelsWarning(kernels, scheme: configuration.scheme) { r.warnings.insert(w, at: 0) }
        try Verifier.check(model)
        let paramsPath = Quantizer.parametersPath(for: output)
        let planPath = Quantizer.planPath(for: output)
        // The model and its parameter record are one set: both are written in full before
        // either replaces an older one (the record first, so a model is never newer than it).
        let batch = AtomicBatch()
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(ParameterRecord(model: URL(fileURLWithPath: modelPath).lastPathComponent, scheme: configuration.scheme,
                                                            tensors: r.parameters, warnings: r.warnings,
                                                            transforms: transforms.isEmpty ? nil : transforms,
                                                            applied: transforms.isEmpty ? nil : transformed,
                                                            rounding: r.rounding.isEmpty ? nil : r.rounding)), to: paramsPath, batch: batch)
        try AtomicFile.write(Data(r.plan.csv().utf8), to: planPath, batch: batch)
        try model.save(to: output, batch: batch)
        var deploy: QOperatorExport.Report? = nil
        if configuration.qoperator {
            // The QDQ model is serialized: the same model becomes the deploy model.
            let report = try QOperatorExport.convert(model)
            try Verifier.check(model)
            try AtomicFile.write(Data(QOperatorExport.recordText(report.records).utf8), to: Quantizer.recordPath(for: output), batch: batch)
            try model.save(to: Quantizer.deployPath(for: output), batch: batch)
            deploy = report
        }
        try batch.commit()
        var result = QuantizationResult(modelPath: output, parametersPath: paramsPath, planPath: planPath, plan: r.plan, preparation: prep,
                                        quantizedNodes: r.quantizedNodes.count, floatNodes: r.floatNodes.count, absorbedActivations: r.absorbedActivations,
                                        warnings: r.warnings, integerKernels: kernels)
        result.transforms = transformed
        result.rounding = r.rounding
        if let deploy {
            result.deployPath = Quantizer.deployPath(for: output)
            result.deployConverted = deploy.converted
        }
        result.reusable = reusable
        return result
    }

    /// The activation tensors whose statistics the rewrite of `modelPath` reads with this
    /// configuration: a dry rewrite of the prepared model records every range it asks for.
    /// Their names are those of the float model (preparation keeps the names of what it
    /// folds into), so calibration can observe just these.
    public func tensorsToObserve(modelPath: String, transforms: FloatTransforms? = nil) throws -> Set<String> {
        let model = try Model.load(path: modelPath)
        let floatNodes = try (transforms ?? FloatTransforms(equalize: configuration.equalize)).prepare(model).1.floatNodes
        final class Asked: @unchecked Sendable {
            let lock = NSLock()
            var names = Set<String>()
        }
        let asked = Asked()
        var control = configuration.control
        control.excludeNodes += floatNodes
        let options = QDQRewriter.Options(scheme: configuration.scheme, control: control) { name, _, _ in
            asked.lock.lock()
            asked.names.insert(name)
            asked.lock.unlock()
            return (ClipRange(lo: -1, hi: 1), "dry run")
        }
        _ = try QDQRewriter(model: model, options: options).run()
        return asked.names
    }

    /// Fewer steps than this between an activation's calibration min and max make it collapsed.
    static let collapsedLevels = 8.0

    /// The error-level finding (QK5003, first of the warnings) naming activations that the
    /// quantized model can tell apart in only a handful of levels: their calibration values span
    /// fewer than `collapsedLevels` steps of their scale, because the scale is shared with a
    /// much wider tensor (a Concat joining 0-320 pixel boxes with 0-1 sigmoid scores gives the
    /// scores a step of 1.25: every score becomes 0 or 1.25) or clipped far.
    static func collapsedWarning(_ parameters: [String: TensorQuantParameters], _ stats: [String: StatisticsFile.Entry]) -> String? {
        var collapsed: [(name: String, levels: Double, lo: Double, hi: Double, range: [Double])] = []
        for (t, p) in parameters where p.role == .activation && p.scale.count == 1 && p.scale[0] > 0 && p.threshold.count == 2 {
            guard let st = stats[t]?.statistics, st.max > st.min else { continue }
            let lo = Swift.max(st.min, p.threshold[0]), hi = Swift.min(st.max, p.threshold[1])
            let levels = Swift.max(0, hi - lo) / p.scale[0]
            if levels < collapsedLevels { collapsed.append((t, levels, st.min, st.max, p.threshold)) }
        }
        guard !collapsed.isEmpty else { return nil }
        collapsed.sort { ($0.levels, $0.name) < ($1.levels, $1.name) }
        func f(_ x: Double) -> String { String(format: "%.3g", x) }
        let worst = collapsed.prefix(3).map { c in
            "'\(c.name)' [\(f(c.lo)), \(f(c.hi))] spans \(f(c.levels)) steps of a scale set for [\(f(c.range[0])), \(f(c.range[1]))]"
        }.joined(separator: "; ")
        return "QK5003 error: \(collapsed.count) activation(s) collapse to fewer than \(Int(collapsedLevels)) quantization levels, so the quantized "
            + "model cannot tell their values apart: \(worst). Keep the node that joins them float (--exclude-node; a Concat's inputs keep "
            + "their own scales when --concat-split-ratio is left at its default), give the region 16-bit activations (--subgraph IN:OUT:bits=16), or change the range method"
    }

    /// The error-level finding (QK5004) for a model that is quantized on paper only: fewer than
    /// half of its Conv/MatMul/Gemm will run as integer kernels in ONNX Runtime (a file-type
    /// classifier whose one-hot MatMul reads an unquantized tensor, a Conv whose weight is
    /// computed at run time), so it will be about as slow as float.
    /// With per-group or packed int4 weights (`scheme`), which ONNX Runtime's CPU provider runs
    /// float by design, the advice says so instead.
    static func floatKernelsWarning(_ k: RuntimeFusion.Summary, scheme: QuantScheme = QuantScheme()) -> String? {
        guard k.total > 0, k.integer * 2 < k.total else { return nil }
        var formats: [String] = []
        if let g = scheme.weightGroupSize { formats.append("--group-size \(g)") }
        if scheme.packedWeights == true && scheme.weight.bits <= 4 { formats.append("--pack-weights") }
        if let f = scheme.activation.float8 ?? scheme.weight.float8 { formats.append("--activations \(f == .float8e5m2 ? "e5m2" : "e4m3fn") (float8)") }
        let advice = formats.isEmpty
            ? "Quantize the inputs named (remove exclusions, calibrate the branch that computes them) or keep the model float"
            : "\(formats.joined(separator: " and ")) \(formats.count == 1 ? "writes" : "write") weights ONNX Runtime's CPU provider dequantizes and runs float: right for a runtime with "
                + "int4/per-group/float8 kernels; for ONNX Runtime's integer kernels leave \(formats.count == 1 ? "it" : "them") out (weights then are int8 tensors)"
        return "QK5004 error: only \(k.integer) of \(k.total) Conv/MatMul/Gemm will run as integer kernels in ONNX Runtime, so the "
            + "quantized model runs mostly float: \(k.floatReasons). " + advice
    }

    /// One warning naming the activations whose clipping range cuts off more than 1% of the
    /// calibration values by more than 5% of the range (KL does this to Relu6 outputs: it does not weigh how far the clipped
    /// values move, and clipping [0, 6] to [0, 2] ruins EfficientNet-Lite0, docs/BENCHMARKS.md).
    static func clippingWarning(_ parameters: [String: TensorQuantParameters], _ stats: [String: StatisticsFile.Entry]) -> String? {
        var clipped: [(String, Double, String)] = []
        for (t, p) in parameters where p.role == .activation && p.threshold.count == 2 {
            // A constant tensor (ConstantOfShape zeros: range [0, 0]) has nothing to clip.
            guard let st = stats[t]?.statistics, st.max > st.min, let h = st.histogram, h.total > 0, p.threshold[1] > p.threshold[0] else { continue }
            // Values moved by less than 5% of the range (a saturation spike clipped by a hair)
            // do not count.
            let lo = p.threshold[0], hi = p.threshold[1], margin = 0.05 * (hi - lo)
            let share = h.mass(outside: lo - margin, hi + margin) / h.total
            if share > 0.01 { clipped.append((t, share, p.method)) }
        }
        guard !clipped.isEmpty else { return nil }
        clipped.sort { ($0.1, $1.0) > ($1.1, $0.0) }
        let worst = clipped.prefix(3).map { "'\($0.0)' \(String(format: "%.1f", $0.1 * 100))% (\($0.2))" }.joined(separator: ", ")
        return "\(clipped.count) activation(s) clip more than 1% of their calibration values far (by > 5% of the range), worst \(worst): "
            + "if accuracy suffers, try --method mse or percentile (or --subgraph IN:OUT:method=mse for those tensors)"
    }

    /// The statistics weight rounding reads, from the layer inputs of the quantized model: the
    /// model is rewritten once with round-to-nearest weights (same activation parameters) and run
    /// in QuantKit's executor. GPTQ's H = E[x xᵀ] per weight (weights fitted to the float
    /// model's inputs instead are worse wherever activation quantization moves the inputs far
    /// from float, PP-OCRv4 rec in docs/BENCHMARKS.md) and bias correction's per-channel E[x].
    func weightInputStatistics(modelPath: String, transforms: FloatTransforms, options: QDQRewriter.Options, batches next: () throws -> [String: Tensor]?,
                               progress: (StageProgress) -> Void) throws -> ([String: WeightHessian], [String: [[Double]]]) {
        let simulated = try Model.load(path: modelPath)
        try transforms.prepare(simulated)
        _ = try QDQRewriter(model: simulated, options: options).run()
        let g = simulated.graph
        let control = configuration.control
        let gptq = configuration.weightRounding.readsHessians
        let scope = configuration.biasCorrection
        // Without GPTQ only the nodes bias correction covers need their input statistics.
        let include = { (n: Node) in
            !control.excludeNodes.contains(n.name) && !control.excludeOpTypes.contains(n.opType) && (gptq || scope.covers(n))
        }
        let weight = Quantizer.dequantizedWeights(g)
        let threads = configuration.threads ?? ProcessInfo.processInfo.activeProcessorCount
        let collector = WeightHessianCollector(graph: g, include: include, weight: weight, hessians: gptq, threads: threads)
        let executor = try Executor(model: simulated, options: ExecutorOptions(threads: threads))
        var count = 0
        while let feed = try next() {
            _ = try executor.run(feed, hooks: [collector])
            count += 1
            progress(StageProgress(stage: gptq ? "layer input statistics" : "bias correction", done: count, total: nil, unit: "batches"))
        }
        return (gptq ? collector.hessians : [:], collector.inputMeans)
    }

    /// Layer groups AdaRound rounds one after the other (each after a pass of the model whose
    /// earlier groups are already rounded): every layer its own group up to this many layers.
    /// Fewer, larger groups leave each layer's target computed against nearest-rounded layers of
    /// its own group: 8 groups ruin EfficientNet-Lite0 W4A8 (agreement 0.08; one layer per group
    /// 0.68, docs/BENCHMARKS.md).
    static let adaRoundGroups = 1000
    /// Bytes of calibration batches AdaRound keeps in memory for its passes (the first items up to this).
    static let adaRoundDataBytes = 256 << 20

    /// AdaRound's statistics, group by group in topological order (as AIMET rounds layer by
    /// layer): the weighted layers are split into ``adaRoundGroups`` groups; for each, the float
    /// model and the quantized model (earlier groups already AdaRounded, this and later ones to
    /// nearest) run over the first calibration items, giving this group's E[x_q x_qᵀ], E[x_f x_qᵀ]
    /// and E[x_f x_fᵀ], and its layers are rounded toward the float model's layer output
    /// (outcomes kept in `cache` for the final rewrite). A target computed against nearest-rounded
    /// earlier layers instead would correct errors that AdaRound then removes twice (Fashion CNN
    /// W4A8: 0.881 → 0.754, docs/BENCHMARKS.md).
    func adaRoundStatistics(modelPath: String, transforms: FloatTransforms, options: QDQRewriter.Options, cache: AdaRound.Cache,
                            batches next: () throws -> [String: Tensor]?, progress: (StageProgress) -> Void) throws -> ([String: WeightHessian], [String: [[Double]]]) {
        var feeds: [[String: Tensor]] = []
        var bytes = 0
        while bytes < Quantizer.adaRoundDataBytes, let f = try next() {
            feeds.append(f)
            bytes += f.values.reduce(0) { $0 + $1.count * 4 }
        }
        let threads = configuration.threads ?? ProcessInfo.processInfo.activeProcessorCount
        let control = configuration.control
        let float = try Model.load(path: modelPath)
        try transforms.prepare(float)
        let floatExecutor = try Executor(model: float, options: ExecutorOptions(threads: threads))
        var hessians: [String: WeightHessian] = [:]
        var means: [String: [[Double]]] = [:]
        var groups: [[String]]? = nil
        var g = 0
        while g < (groups?.count ?? 1) {
            // The quantized model with the groups before this one AdaRounded (their outcomes come from the cache).
            let simulated = try Model.load(path: modelPath)
            try transforms.prepare(simulated)
            var o = options
            o.weightHessians = hessians
            o.adaRound = AdaRound.Options()
            o.adaRoundCache = cache
            _ = try QDQRewriter(model: simulated, options: o).run()
            try simulated.graph.sortTopologically()
            let graph = simulated.graph
            let producer = GraphIndex(graph).producer
            let dequantizedWeight = Quantizer.dequantizedWeights(graph)
            if groups == nil {
                let layers = graph.nodes.filter { n in
                    n.isStandard && ["Conv", "Gemm", "MatMul"].contains(n.opType) && !control.excludeNodes.contains(n.name)
                        && !control.excludeOpTypes.contains(n.opType) && dequantizedWeight(n) != nil
                }.map(\.name)
                let count = min(Quantizer.adaRoundGroups, max(layers.count, 1))
                groups = (0..<count).map { i in Array(layers[(layers.count * i / count)..<(layers.count * (i + 1) / count)]) }
            }
            let members = Set(groups![g])
            // Each site input's float counterpart: the tensor its DequantizeLinear's QuantizeLinear reads.
            var floatName: [String: String] = [:]
            for n in graph.nodes where members.contains(n.name) {
                guard let x = n.inputs.first, let dq = producer[x], dq.opType == "DequantizeLinear", let q = producer[dq.inputs[0]],
                      q.opType == "QuantizeLinear" else { continue }
                floatName[x] = q.inputs[0]
            }
            let capture = ValueCapture(names: Set(floatName.values))
            let collector = WeightHessianCollector(graph: graph, include: { members.contains($0.name) }, weight: dequantizedWeight, hessians: true, threads: threads)
            collector.reference = { name in floatName[name].flatMap { capture.values[$0] } }
            let executor = try Executor(model: simulated, options: ExecutorOptions(threads: threads))
            for (i, feed) in feeds.enumerated() {
                capture.values = [:]
                _ = try floatExecutor.run(feed, hooks: [capture])
                _ = try executor.run(feed, hooks: [collector])
                progress(StageProgress(stage: "adaround statistics", done: g * feeds.count + i + 1, total: groups!.count * feeds.count, unit: "batches"))
            }
            capture.values = [:]
            // The pass's tensors are not needed by the next group's rewrite and pass.
            TensorStorage.releaseFreedMemory()
            hessians.merge(collector.hessians) { $1 }
            means.merge(collector.inputMeans) { $1 }
            g += 1
        }
        return (hessians, means)
    }

    /// A QDQ graph's integer weight of a node: the initializer behind the DequantizeLinear its
    /// input 1 reads (nil for a float or computed weight).
    static func dequantizedWeights(_ g: Graph) -> (Node) -> Tensor? {
        let producer = GraphIndex(g).producer
        return { n in
            guard n.inputs.count > 1, let dq = producer[n.inputs[1]], dq.opType == "DequantizeLinear", let q = dq.inputs.first else { return nil }
            return g.initializer(q)
        }
    }

    /// Keeps the float values of some tensors of one run.
    final class ValueCapture: ExecutionHook {
        let names: Set<String>
        var values: [String: [Float]] = [:]
        init(names: Set<String>) { self.names = names }
        func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
            let name = executor.name(of: value)
            if tensor.dtype == .float, names.contains(name) { values[name] = tensor.floats() }
            return nil
        }
    }

    /// What quantizing to `output` writes: the model, its parameter record and (when asked)
    /// the statistics file.
    public static func outputItems(output: String, statisticsOutput: String?, deploy: Bool = false) -> [OutputSafety.Item] {
        [.init("the output model", output), .init("the parameter record", parametersPath(for: output)), .init("the precision plan", planPath(for: output))]
            + (deploy ? [.init("the deploy model", deployPath(for: output)), .init("the deploy record", recordPath(for: output))] : [])
            + (statisticsOutput.map { [.init("the statistics output", $0)] } ?? [])
    }

    /// The deploy model beside `output` (`--format qoperator`): `NAME.qop.onnx`.
    public static func deployPath(for output: String) -> String { sidePath(for: output, suffix: ".qop.onnx") }

    /// Its per-layer record (AMCT-style text): `NAME.record.txt`.
    public static func recordPath(for output: String) -> String { sidePath(for: output, suffix: ".record.txt") }

    /// The parameter record beside `output`: `NAME.qparams.json` for `NAME.q.onnx` or `NAME.onnx`.
    public static func parametersPath(for output: String) -> String { sidePath(for: output, suffix: ".qparams.json") }

    /// The precision plan beside `output`: `NAME.plan.csv` for `NAME.q.onnx` or `NAME.onnx`.
    public static func planPath(for output: String) -> String { sidePath(for: output, suffix: ".plan.csv") }

    /// A file beside the quantized model `output`: `NAME` + `suffix` for `NAME.q.onnx` or `NAME.onnx`.
    public static func sidePath(for output: String, suffix: String) -> String {
        let url = URL(fileURLWithPath: output)
        var stem = url.deletingPathExtension().lastPathComponent
        if stem.hasSuffix(".q") { stem.removeLast(2) }
        return url.deletingLastPathComponent().appendingPathComponent(stem + suffix).path
    }
}

/// Work a quantization run did that another run of the same model and statistics can reuse.
public final class ReusableWork: @unchecked Sendable {
    public let hessians: [String: WeightHessian]
    public let means: [String: [[Double]]]
    public let adaRound: AdaRound.Cache
    init(hessians: [String: WeightHessian], means: [String: [[Double]]], adaRound: AdaRound.Cache) {
        self.hessians = hessians
        self.means = means
        self.adaRound = adaRound
    }
}

/// `NAME.qparams.json`: the scheme and every quantized tensor's parameters.
public struct ParameterRecord: Codable, Sendable {
    public var model: String
    public var scheme: QuantScheme
    public var tensors: [String: TensorQuantParameters]
    public var warnings: [String]
    /// The float-equivalent transforms applied before quantizing (nil: none): the analysis
    /// compares the quantized model's tensors with the float model transformed the same way.
    public var transforms: FloatTransforms?
    /// What they did: equalized pairs and factors, SmoothQuant's α and error per site.
    public var applied: FloatTransforms.Report?
    /// Per node whose weight AdaRound rounded: flips and output error before and after.
    public var rounding: [String: WeightRoundingRecord]?

    /// The record beside the quantized model `path` (`NAME.qparams.json`), if there is one.
    public static func beside(quantizedModel path: String) -> ParameterRecord? {
        guard let data = FileManager.default.contents(atPath: Quantizer.parametersPath(for: path)) else { return nil }
        return try? JSONDecoder().decode(ParameterRecord.self, from: data)
    }
}
