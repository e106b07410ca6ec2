import Foundation
@_exported import QuantAnalysis

/// Where the reports of an analysis go: `NAME.report.md`, `.html` and `.json` beside the
/// quantized model (`NAME.q.onnx` gives `NAME.report.*`).
public struct AnalysisReportPaths: Sendable {
    public var markdown: String
    public var html: String
    public var json: String

    public init(prefix: String) {
        markdown = prefix + ".md"
        html = prefix + ".html"
        json = prefix + ".json"
    }

    public init(quantizedModel: String) {
        self.init(prefix: Quantizer.sidePath(for: quantizedModel, suffix: ".report"))
    }
}

/// The high-level analysis API: a float model and its QDQ model in, a report out.
public struct Analysis {
    public var options: AnalysisOptions

    public init(options: AnalysisOptions = AnalysisOptions()) { self.options = options }

    /// Runs both models over the batches `next` returns (until nil or `maxSamples` samples) and
    /// builds the report. `statistics` (calibration statistics) gives the activation histograms;
    /// without it they are collected during analysis. `observe` sees each batch with the analyzer
    /// after it was added (e.g. to score the outputs). Throws QK6002 when no batch arrives.
    public func run(floatModel: String, quantizedModel: String, statistics: StatisticsFile? = nil, maxSamples: Int? = nil, total: Int?,
                    next: () throws -> CalibrationBatch?, observe: (CalibrationBatch, QuantAnalyzer) throws -> Void = { _, _ in },
                    progress: (StageProgress) -> Void = { _ in }) throws -> AnalysisReport {
        let f = try Model.load(path: floatModel)
        let q = try Model.load(path: quantizedModel)
        // A model quantized after float-equivalent transforms (equalization, SmoothQuant) is
        // compared with the float model transformed the same way: the tensors inside differ.
        var recovery: [AnalysisReport.Section] = []
        if let record = ParameterRecord.beside(quantizedModel: quantizedModel), record.model == URL(fileURLWithPath: floatModel).lastPathComponent {
            if let t = record.transforms, !t.isEmpty { try t.prepare(f) }
            recovery = Analysis.sections(record)
        }
        let analyzer = try QuantAnalyzer(floatModel: f, quantizedModel: q, options: options, collectHistograms: statistics == nil)
        while maxSamples.map({ analyzer.samples < $0 }) ?? true, let batch = try next() {
            try analyzer.add(batch.tensors)
            try observe(batch, analyzer)
            progress(StageProgress(stage: "analyze", done: analyzer.batches, total: total, unit: "batches"))
        }
        guard analyzer.batches > 0 else {
            throw QuantKitError("QK6002", "analysis received no data", fix: "check the --input data paths; at least one batch is needed")
        }
        var report = AnalysisReport(analyzer: analyzer, floatModel: f, quantizedModel: q, floatName: floatModel, quantizedName: quantizedModel,
                                    statistics: statistics?.tensors.mapValues(\.statistics))
        report.recovery = recovery.isEmpty ? nil : recovery
        if let record = ParameterRecord.beside(quantizedModel: quantizedModel) {
            report.rangeMethods = record.tensors.mapValues(\.method)
        }
        return report
    }

    /// The report's tables of what equalization, SmoothQuant and AdaRound did, per layer.
    static func sections(_ record: ParameterRecord) -> [AnalysisReport.Section] {
        func f(_ x: Double?) -> String { x.map { String(format: "%.3g", $0) } ?? "–" }
        var out: [AnalysisReport.Section] = []
        if let e = record.applied?.equalization, !e.pairs.isEmpty {
            out.append(AnalysisReport.Section(
                title: "Cross-layer equalization",
                text: "\(e.pairs.count) Conv pairs equalized in \(e.rounds) rounds: output channel i of the first Conv divided by s_i, input channel i of the second multiplied by it. Spread: largest / smallest per-channel weight range of the first Conv.",
                columns: ["first Conv", "activation", "second Conv", "s min", "s max", "spread before", "spread after"],
                rows: e.pairs.map { [$0.first, $0.activation.isEmpty ? "–" : $0.activation, $0.second, f($0.minFactor), f($0.maxFactor), f($0.spreadBefore), f($0.spreadAfter)] }))
        }
        if let s = record.applied?.smoothing, !s.sites.isEmpty {
            out.append(AnalysisReport.Section(
                title: "SmoothQuant",
                text: "Per MatMul/Gemm input: α (– where no smoothing was best or the site could not take it), where the division went, the outlier ratio (largest / median channel maximum) and the layer's relative output error on the sampled rows.",
                columns: ["input", "readers", "α", "division", "outlier ratio before", "after", "error before", "error after"],
                rows: s.sites.map { [$0.tensor, $0.readers.joined(separator: ", "), $0.alpha.map { String(format: "%g", $0) } ?? "–",
                                     $0.folded.isEmpty ? "–" : $0.folded, f($0.outlierBefore), f($0.outlierAfter), f($0.errorBefore), f($0.errorAfter)] }))
        }
        if let r = record.rounding, !r.isEmpty {
            out.append(AnalysisReport.Section(
                title: "AdaRound",
                text: "Per weight: how many weights round the other way than to nearest, and the layer's mean squared output error over the calibration inputs with round-to-nearest and with AdaRound.",
                columns: ["node", "flipped", "weights", "error nearest", "error AdaRound"],
                rows: r.sorted { $0.key < $1.key }.map { [$0.key, "\($0.value.flips)", "\($0.value.weights)", f($0.value.errorNearest), f($0.value.errorAfter)] }))
        }
        return out
    }

    /// Writes the Markdown, HTML and JSON reports as one set (all rendered and written before
    /// any replaces an older one).
    public static func write(_ report: AnalysisReport, to paths: AnalysisReportPaths) throws {
        let batch = AtomicBatch()
        try AtomicFile.write(Data(report.markdown().utf8), to: paths.markdown, batch: batch)
        try AtomicFile.write(Data(report.html().utf8), to: paths.html, batch: batch)
        try AtomicFile.write(try report.json(), to: paths.json, batch: batch)
        try batch.commit()
    }
}
