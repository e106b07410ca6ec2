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

    @Option(help: "Statistics file (.json from `quantkit calibrate`, or .csv of tensor,min,max).")
    var stats: String

    @Option(help: "Range method for activations.")
    var method = "default"

    @Option(help: "Percentile for --method percentile.")
    var percentile = 0.9999

    @Option(help: "Activation scheme: u8 (uint8 asymmetric), s8 (int8 symmetric), u16 (A16W8).")
    var activations = "u8"

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
            guard let m = RangeMethod(name: method, percentile: percentile) else {
                throw QuantKitError("QK7002", "unknown method '\(method)'", fix: "use one of: \(RangeMethod.names.joined(separator: ", "))")
            }
            var scheme: QuantScheme
            switch activations {
            case "u8": scheme = .u8s8
            case "s8": scheme = .s8s8
            case "u16": scheme = .a16w8
            default: throw QuantKitError("QK7002", "unknown activation scheme '\(activations)'", fix: "use u8, s8 or u16")
            }
            scheme.method = m
            scheme.perChannelWeights = !perTensorWeights
            let control = QuantControl(excludeNodes: excludeNode, excludeOpTypes: excludeOpType, truncateAfter: truncate)
            let q = Quantizer(configuration: QuantizerConfiguration(scheme: scheme, control: control))
            let out = output ?? Quantizer.defaultOutput(for: model)
            let r = try q.quantize(modelPath: model, statistics: try StatisticsFile.read(path: stats), output: out)
            print("quantized  \(r.quantizedNodes) nodes (\(r.floatNodes) stay float, \(r.absorbedActivations) activations absorbed)")
            print("prepared   \(r.preparation.constantsFolded) constants folded, \(r.preparation.batchNormsFolded) BatchNorms folded, \(r.preparation.identitiesRemoved) Identity/Dropout removed")
            for w in r.warnings { print("warning    \(w)") }
            print("model      \(r.modelPath)")
            print("parameters \(r.parametersPath)")
        }
    }
}
