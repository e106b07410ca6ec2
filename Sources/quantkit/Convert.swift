import ArgumentParser
import Foundation
import QuantKit

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a model and save it again: move tensors to or from external data, fold Constant nodes.",
        discussion: "Unchanged models are written byte for byte as they were read. The output is written atomically and never replaces the input.")

    @Argument(help: "The input .onnx model.")
    var input: String

    @Argument(help: "The output .onnx path.")
    var output: String

    @Option(help: "Where tensor bytes go: auto (inline unless over 2 GiB or loaded with external data), always (side file), never (inline).")
    var externalData: ExternalDataChoice = .auto

    @Option(help: "Smallest tensor in bytes stored in the side file.")
    var externalThreshold = 1024

    @Flag(help: "Fold Constant nodes into initializers.")
    var foldConstants = false

    @Flag(help: "Apply quantization's graph preparation (Constant and static folding, BatchNorm folding, Identity/Dropout removal); the float semantics stay the same.")
    var prepare = false

    func run() throws {
        try reportingErrors {
            let model = try Model.load(path: input)
            try OutputSafety.check(outputs: [.init("the output model", output), .init("the output's external data", output + ".data")],
                                   inputs: [.init("the input model", input)] + model.externalFiles.map { .init("the input's external data", $0) })
            if foldConstants { try ConstantNodeFolding.run(model.graph) }
            if prepare {
                let r = try Preparation.run(model)
                print("prepared: \(r.constantsFolded) Constant nodes, \(r.staticNodesFolded) static nodes, \(r.batchNormsFolded) BatchNorms, \(r.padsFolded) Pads folded, \(r.affinesFolded) constant Mul/Add folded into Convs, \(r.hardSwishesFused) hard-swish chains fused; \(r.identitiesRemoved) Identity/Dropout removed\(r.contribUnfused > 0 ? "; \(r.contribUnfused) ONNX Runtime FusedConv/FusedGemm/Attention split" : "")\(r.upgradedFromOpset.map { "; opset \($0) raised to \(OpsetUpgrade.target)" } ?? "")\(r.computedAsFloat32From.map { "; \($0) computed as float32 inside" } ?? "")")
            }
            try model.save(to: output, options: SaveOptions(externalData: externalData.policy, externalThreshold: externalThreshold))
        }
    }
}

enum ExternalDataChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, always, never
    var policy: ExternalDataPolicy {
        switch self {
        case .auto: .auto
        case .always: .always
        case .never: .never
        }
    }
}
