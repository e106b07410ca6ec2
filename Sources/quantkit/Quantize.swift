import ArgumentParser
import Foundation
import QuantKit

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a float ONNX model to QDQ ONNX (runs in ONNX Runtime with integer kernels).",
        discussion: """
            Writes NAME.q.onnx and NAME.qparams.json beside the model (or at -o). Activation ranges \
            come from a statistics file (--stats: written by `quantkit calibrate`, or a CSV of \
            tensor,min,max).
            Methods: \(RangeMethod.names.joined(separator: ", ")) (default: default = per tensor the \
            lowest-error of mse, kl, percentile 0.9999 and minmax).
            """)

    @Argument(help: "The float .onnx model.")
    var model: String

    @Option(name: .shortAndLong, help: "Output model path (default NAME.q.onnx beside the model).")
    var output: String?

    @Option(help: "Statistics file (.json from `quantkit calibrate`, or .csv of tensor,min,max); without it QuantKit calibrates on the --input data.")
    var stats: String?

    @OptionGroup var data: DataArguments

    @OptionGroup var calibration: CalibrationArguments

    @OptionGroup var analysis: AnalysisArguments

    @Option(help: "Also write the calibration statistics here.")
    var statsOut: String?








    @Flag(help: "One weight scale per tensor instead of per output channel.")
    var perTensorWeights = false

    @Option(help: "Keep these nodes float (by name; repeatable).")
    var excludeNode: [String] = []

    @Option(help: "Keep nodes of this op type float (repeatable).")
    var excludeOpType: [String] = []

    @Option(help: "Keep everything after this tensor float (repeatable).")
    var truncate: [String] = []

    func run() throws {
        try reportingErrors {
            let c = calibration
            let (m, _) = try CalibrationChoice.parse(method: c.method, percentile: c.percentile, activations: c.activations)
            var scheme = try CalibrationChoice.scheme(c.activations)
            scheme.method = m
            scheme.perChannelWeights = !perTensorWeights
            let control = QuantControl(excludeNodes: excludeNode, excludeOpTypes: excludeOpType, truncateAfter: truncate)
            let q = Quantizer(configuration: QuantizerConfiguration(scheme: scheme, control: control))
            let out = output ?? Quantizer.defaultOutput(for: model)
            let statistics: StatisticsFile
            if let stats {
                statistics = try StatisticsFile.read(path: stats)
            } else {
                statistics = try CalibrationChoice.calibrate(model: model, data: data, bins: c.bins, threads: c.threads, reporter: c.reporter)
                if let statsOut { try statistics.write(to: statsOut) }
            }
            let r = try q.quantize(modelPath: model, statistics: statistics, output: out)
            print("quantized  \(r.quantizedNodes) nodes (\(r.floatNodes) stay float, \(r.absorbedActivations) activations absorbed)")
            print("prepared   \(r.preparation.constantsFolded) constants folded, \(r.preparation.batchNormsFolded) BatchNorms folded, \(r.preparation.identitiesRemoved) Identity/Dropout removed")
            for w in r.warnings.prefix(3) { print("warning    \(w)") }
            if r.warnings.count > 3 { print("warning    ... \(r.warnings.count - 3) more (all in the parameter record's warnings)") }
            print("model      \(r.modelPath)")
            print("parameters \(r.parametersPath)")
            try analysis.afterQuantize(floatModel: model, quantizedModel: r.modelPath, data: data, statistics: statistics, threads: c.threads, reporter: c.reporter)
        }
    }
}
