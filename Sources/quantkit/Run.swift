import ArgumentParser
import Foundation
import QuantData
import QuantKit

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on tensors with QuantKit's executor and write the outputs as .npy.",
        discussion: "Inputs are .npy files or ONNX TensorProto .pb files. Outputs go to DIR/<output name>.npy (characters other than letters, digits, '_', '-', '.' become '_').")

    @Argument(help: "The .onnx model.")
    var model: String

    @Option(name: .customLong("input"), help: "name=FILE (.npy or .pb), one per model input.")
    var inputs: [String] = []

    @Option(help: "Folder for the output .npy files (default: print shapes only).")
    var outputDir: String?

    @Option(help: "Threads for the executor.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "Run each DequantizeLinear → Conv → QuantizeLinear group of a QDQ model as one integer QLinearConv, as ONNX Runtime's CPU provider does (the analysis simulates QDQ models this way); without it every node runs as written.")
    var integerConv = false

    func run() throws {
        try reportingErrors {
            let m = try Model.load(path: model)
            let executor = try Executor(model: m, options: ExecutorOptions(threads: threads, integerConv: integerConv))
            var feeds: [String: Tensor] = [:]
            for (name, path) in try DataPreviewOptions.pairs(inputs, option: "input") {
                feeds[name] = path.lowercased().hasSuffix(".pb")
                    ? try TensorProtoCodec.decode(ModelFile.readTensor(path: path), store: nil)
                    : try Npy.read(path: path, input: name)
            }
            if let dir = outputDir {
                try OutputSafety.check(outputs: executor.outputNames.map { .init("output '\($0)'", dir + "/" + DataPreviewOptions.fileName($0)) },
                                       inputs: [.init("the model", model)] + m.externalFiles.map { .init("the model's external data", $0) }
                                           + (try DataPreviewOptions.pairs(inputs, option: "input")).map { .init("input '\($0.0)'", $0.1) })
            }
            let outputs = try executor.run(feeds)
            if let dir = outputDir { try AtomicFile.makeDirectory(dir) }
            for name in executor.outputNames {
                guard let t = outputs[name] else { continue }
                print("\(name): \(t.dtype) \(t.shape)")
                if let dir = outputDir {
                    guard let data = Npy.encode(t) else {
                        throw QuantKitError("QK7021", "output '\(name)' of type \(t.dtype) cannot be written as .npy", fix: "")
                    }
                    try AtomicFile.write(data, to: dir + "/" + DataPreviewOptions.fileName(name))
                }
            }
        }
    }
}
