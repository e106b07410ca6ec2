import ArgumentParser
import Foundation
import QuantData
import QuantKit

/// Analysis options shared by `quantize` (analysis runs after quantization unless
/// --no-analysis) and `analyze`.
struct AnalysisArguments: ParsableArguments {
    @Flag(help: "(quantize) Skip the error analysis and its reports.")
    var noAnalysis = false

    @Option(help: "Analyze on at most this many samples of the data (0: all; quantize defaults to 16).")
    var analysisSamples: Int?

    @Flag(help: "Skip the layerwise pass (each op quantized alone); only the graphwise error is measured.")
    var noLayerwise = false

    @Option(help: "A shell command evaluating a model, with {model} for its path; the metric is the last number on the last stdout line (or in --eval-metrics-file). Run on the float and the quantized model.")
    var evalCommand: String?

    @Option(help: "A file the evaluation command writes its metric to (the last number in it is used).")
    var evalMetricsFile: String?

    @Option(help: "Labels file (PATH CLASS per line) for the built-in classification evaluator: top-1/top-5 before and after on the analysis data.")
    var labels: String?

    @Option(help: "SNR (noise/signal) above which a layer is marked.")
    var snrWarning = 0.1

    @Option(help: "Cosine similarity below which a layer is marked.")
    var cosineWarning = 0.99

    /// Refuses values no analysis can use, before any work (QK7004): a NaN threshold made the
    /// HTML chart crash after part of the reports was written.
    func check() throws {
        if let n = analysisSamples, n < 0 {
            throw ConfigurationError.invalidValue("--analysis-samples", "\(n)", expected: "0 (all) or more samples")
        }
        if !snrWarning.isFinite || snrWarning < 0 {
            throw ConfigurationError.invalidValue("--snr-warning", "\(snrWarning)", expected: "a finite noise/signal ratio of 0 or more, e.g. 0.1")
        }
        if !cosineWarning.isFinite || cosineWarning < -1 || cosineWarning > 1 {
            throw ConfigurationError.invalidValue("--cosine-warning", "\(cosineWarning)", expected: "a cosine similarity in [-1, 1], e.g. 0.99")
        }
    }

    /// After `quantize`: analyzes on the first --analysis-samples (16) items of the calibration
    /// data (`dataset`, from the options or the configuration file) unless --no-analysis.
    @discardableResult
    func afterQuantize(floatModel: String, quantizedModel: String, dataset: DatasetConfig?, statistics: StatisticsFile?, threads: Int,
                       reporter: ProgressReporter, notes: [String] = [], findings: [String] = []) throws -> AnalysisReport? {
        guard !noAnalysis else { return nil }
        // `--stats` without `--input` (data options like --batch alone configure no source).
        guard let dataset, !dataset.inputs.isEmpty else {
            print("analysis   skipped: no calibration data (run `quantkit analyze FLOAT QUANT --input ...`)")
            return nil
        }
        return try analyze(floatModel: floatModel, quantizedModel: quantizedModel, data: nil, dataset: dataset, statistics: statistics,
                           defaultSamples: 16, threads: threads, reporter: reporter, notes: notes, findings: findings)
    }

    /// Analyzes `quantizedModel` against `floatModel` on `data` (or an already resolved
    /// `dataset`), writes the three reports and prints the summary and their paths.
    @discardableResult
    func analyze(floatModel: String, quantizedModel: String, data: DataArguments?, dataset given: DatasetConfig? = nil,
                 statistics: StatisticsFile?, defaultSamples: Int?, threads: Int, reporter: ProgressReporter,
                 reportPrefix: String? = nil, notes: [String] = [], findings: [String] = []) throws -> AnalysisReport {
        var report = try measure(floatModel: floatModel, quantizedModel: quantizedModel, data: data, dataset: given, statistics: statistics,
                                 defaultSamples: defaultSamples, threads: threads, reporter: reporter, reportPrefix: reportPrefix)
        report.notes += notes
        report.findings = findings + report.findings
        try publish(report, floatModel: floatModel, quantizedModel: quantizedModel, reportPrefix: reportPrefix, outputFindings: report.findings.count - findings.count)
        return report
    }

    /// Runs the analysis (with the layerwise pass unless --no-layerwise or `layerwise` false,
    /// and the evaluations asked for) without writing or printing anything.
    func measure(floatModel: String, quantizedModel: String, data: DataArguments?, dataset given: DatasetConfig? = nil,
                 statistics: StatisticsFile?, defaultSamples: Int?, threads: Int, reporter: ProgressReporter, layerwise: Bool = true,
                 evaluations: Bool = true, reportPrefix: String? = nil) throws -> AnalysisReport {
        try check()
        let signatures: [InputSignature]
        let cfg: DatasetConfig
        if let given {
            signatures = CalibrationDataset.signatures(of: try Model.load(path: floatModel).graph)
            cfg = given
        } else {
            (signatures, cfg) = try DataPreviewOptions(model: floatModel, data: data!).resolve()
        }
        let dataset = try CalibrationDataset(signatures: signatures, config: cfg)
        // The reports that will be written must not replace the data read.
        let paths = reportPrefix.map(AnalysisReportPaths.init(prefix:)) ?? AnalysisReportPaths(quantizedModel: quantizedModel)
        try OutputSafety.check(outputs: [.init("the Markdown report", paths.markdown), .init("the HTML report", paths.html), .init("the JSON report", paths.json)],
                               inputs: [.init("the float model", floatModel), .init("the quantized model", quantizedModel)]
                                   + dataset.sourceFiles.map { .init("analysis data file", $0) })
        let stream = dataset.makeStream()
        defer { stream.cancel() }
        let limit = (analysisSamples ?? defaultSamples).flatMap { $0 > 0 ? $0 : nil }
        var total: Int? = nil
        if dataset.frames == nil {
            var items = dataset.itemCount
            if let limit { items = min(items, limit) }
            var t = (items + cfg.batchSize - 1) / max(cfg.batchSize, 1)
            if let s = cfg.steps { t = min(t, s) }
            total = t
        }
        var classifier = evaluations ? try labels.map(ClassificationEvaluator.init(labelsFile:)) : nil
        let imageInput = signatures.first?.name
        let analysis = Analysis(options: AnalysisOptions(threads: threads, layerwise: layerwise && !noLayerwise, snrWarning: snrWarning, cosineWarning: cosineWarning))
        var report = try analysis.run(
            floatModel: floatModel, quantizedModel: quantizedModel, statistics: statistics, maxSamples: limit, total: total,
            next: { try stream.next() },
            observe: { batch, analyzer in
                guard classifier != nil, let name = imageInput, let files = batch.files[name], let out = analyzer.outputNames.first,
                      let f = analyzer.lastOutputs.float[out], let q = analyzer.lastOutputs.quantized[out] else { return }
                classifier!.add(files: files, float: f, quantized: q)
            },
            progress: reporter.report)
        report.evaluations += classifier?.evaluations ?? []
        if evaluations, let evalCommand {
            let u = UserEvaluation(command: evalCommand, metricsFile: evalMetricsFile)
            report.evaluations.append(AnalysisReport.Evaluation(name: "user metric (\(evalCommand))", float: try u.evaluate(model: floatModel),
                                                                quantized: try u.evaluate(model: quantizedModel)))
        }
        return report
    }

    /// Writes the three reports of `report` and prints its summary and their paths; the last
    /// `outputFindings` findings are the analysis's own (printed), the others the quantizer's.
    func publish(_ report: AnalysisReport, floatModel: String, quantizedModel: String, reportPrefix: String? = nil, outputFindings count: Int) throws {
        let outputFindings = report.findings.suffix(count)
        let paths = reportPrefix.map(AnalysisReportPaths.init(prefix:)) ?? AnalysisReportPaths(quantizedModel: quantizedModel)
        try OutputSafety.check(outputs: [.init("the Markdown report", paths.markdown), .init("the HTML report", paths.html), .init("the JSON report", paths.json)],
                               inputs: [.init("the float model", floatModel), .init("the quantized model", quantizedModel)])
        try Analysis.write(report, to: paths)
        let f = AnalysisReport.format
        for o in report.outputs {
            let m = o.metrics
            print("output     \(o.name): SNR \(f(m.snr))\(m.medianItemSNR.map { " (median item \(f($0)))" } ?? ""), cosine \(f(m.cosine))\(m.top1Agreement.map { ", top-1 agreement \(f($0))" } ?? "")\(m.maskIoU.map { ", mask IoU (> 0.5) \(f($0))" } ?? "")\(m.worstSlice.map { "; worst slice \(AnalysisReport.describe($0))" } ?? "")")
        }
        let marked = report.layers.filter(\.marked).count
        let alone = report.markedByThemselves
        let why = marked == 0 || report.layers.allSatisfy({ $0.layerwise == nil }) ? ""
            : alone.isEmpty ? " (none bad by itself: accumulated error)"
            : " (\(alone.count) bad by \(alone.count == 1 ? "itself" : "themselves"): \(alone.prefix(3).map(\.node).joined(separator: ", "))\(alone.count > 3 ? ", ..." : ""))"
        print("layers     \(report.layers.count) quantized ops, \(marked) marked\(why); worst by themselves: \(report.worstLayers.prefix(3).map(\.node).joined(separator: ", "))")
        for e in report.evaluations { print("metric     \(e.name): float \(f(e.float)), quantized \(f(e.quantized)), loss \(f(e.quantizationLoss)) %") }
        for x in outputFindings { print("finding    \(x)") }
        if report.findings.isEmpty {
            print("verdict    OK: every output within SNR \(f(snrWarning)) and cosine \(f(cosineWarning)) of float on the analysis data (output slices of another magnitude included; class scores keep top-1 agreement \(f(AnalysisReport.minTop1Agreement)) or more)")
        } else {
            var codes: [String] = []
            var counts: [String: Int] = [:]
            for c in report.findings.compactMap({ $0.split(separator: " ").first.map(String.init) }) {
                if counts[c] == nil { codes.append(c) }
                counts[c, default: 0] += 1
            }
            let list = codes.map { counts[$0]! > 1 ? "\($0) ×\(counts[$0]!)" : $0 }.joined(separator: ", ")
            print("verdict    NOT OK: \(report.findings.count) error-level finding(s) (\(list)); see above and the report's Findings")
        }
        print("report     \(paths.markdown)\nreport     \(paths.html)\nreport     \(paths.json)")
    }
}
