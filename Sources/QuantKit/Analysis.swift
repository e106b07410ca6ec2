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
        if let record = ParameterRecord.beside(quantizedModel: quantizedModel), let t = record.transforms, !t.isEmpty,
           record.model == URL(fileURLWithPath: floatModel).lastPathComponent {
            try t.prepare(f)
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
        return AnalysisReport(analyzer: analyzer, floatModel: f, quantizedModel: q, floatName: floatModel, quantizedName: quantizedModel,
                              statistics: statistics?.tensors.mapValues(\.statistics))
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
