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
            let m = try Model.load(path: model)
            try OutputSafety.check(outputs: [.init("the output model", output)],
                                   inputs: [.init("the input model", model)] + m.externalFiles.map { .init("the input's external data", $0) })
            let r = try AllOutputsExport.apply(to: m)
            try m.save(to: output)
            print("outputs    \(m.graph.outputs.count) (\(r.added) intermediate tensors added)")
            if !r.skipped.isEmpty { print("warning    \(r.skipped.count) tensors left out, element type unknown (e.g. '\(r.skipped[0])')") }
            print("model      \(output)")
        }
    }
}
