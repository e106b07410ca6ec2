import ArgumentParser
import Foundation
import QuantKit

struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the error of a QDQ model against its float model, layer by layer, and write reports.",
        discussion: """
            Works on any float/QDQ pair (QuantKit's, ONNX Runtime's quantize_static, ...). Per quantized op: \
            graphwise error (whole model quantized) and layerwise error (only this op quantized, its inputs \
            from the float model): SNR (noise/signal), cosine, MSE, MAE, relative distance, max abs error; \
            top-1 agreement of class-score outputs. Writes REPORT.md, .html and .json (default: \
            NAME.report.* beside the quantized model).
            """)

    @Argument(help: "The float .onnx model.")
    var floatModel: String

    @Argument(help: "The quantized (QDQ) .onnx model.")
    var quantizedModel: String

    @OptionGroup var data: DataArguments

    @OptionGroup var analysis: AnalysisArguments

    @Option(help: "Calibration statistics (from `quantkit calibrate`) for the activation histograms; without it they are collected on the analysis data.")
    var stats: String?

    @Option(name: .customLong("report"), help: "Report path prefix (writes PREFIX.md, .html, .json).")
    var reportPrefix: String?

    @Option(help: "Threads.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "No progress output.")
    var quiet = false

    @Flag(help: "Progress as JSON lines on stderr.")
    var logJson = false

    func run() throws {
        try reportingErrors {
            let statistics = try stats.map(StatisticsFile.read(path:))
            try analysis.analyze(floatModel: floatModel, quantizedModel: quantizedModel, data: data, statistics: statistics, defaultSamples: nil,
                                 threads: threads, reporter: ProgressReporter(quiet: quiet, json: logJson), reportPrefix: reportPrefix)
        }
    }
}
