import ArgumentParser
import Foundation
import QuantKit

struct ExportAllOutputs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-all-outputs",
        abstract: "Write a copy of the model whose graph outputs are all its intermediate tensors.")

    @Argument(help: "The .onnx model.")
    var model: String

    @Option(name: .shortAndLong, help: "Output model path.")
    var output: String

    func run() throws {
        try reportingErrors {
            if URL(fileURLWithPath: model).standardizedFileURL == URL(fileURLWithPath: output).standardizedFileURL {
                throw QuantKitError("QK7001", "output '\(output)' is the input model", fix: "choose another output path; QuantKit never overwrites its input")
            }
            let m = try Model.load(path: model)
            let r = try AllOutputsExport.apply(to: m)
            try m.save(to: output)
            print("outputs    \(m.graph.outputs.count) (\(r.added) intermediate tensors added)")
            if !r.skipped.isEmpty { print("warning    \(r.skipped.count) tensors left out, element type unknown (e.g. '\(r.skipped[0])')") }
            print("model      \(output)")
        }
    }
}
