import ArgumentParser
import Foundation
import QuantKit

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's IR version, opsets, inputs/outputs, op counts, parameters and subgraphs.")

    @Argument(help: "The .onnx model file.")
    var model: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Also verify the graph structure and list problems.")
    var verify = false

    func run() throws {
        try reportingErrors {
            let summary = try ModelSummary.inspect(path: model)
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try enc.encode(summary), as: UTF8.self))
            } else {
                print(summary.text)
            }
            if verify {
                let problems = Verifier.verify(try Model.load(path: model))
                if problems.isEmpty { print("verify     ok") }
                for p in problems { print("verify     \(p)") }
                if problems.contains(where: { $0.severity == .error }) { throw ExitCode(ExitStatus.badInput) }
            }
        }
    }
}
