import Foundation
import QuantCore
import QuantIR
import Testing

// Schema checks of the verifier (OperatorArity, opset, graph interface). The executor refuses
// the same nodes when it builds a plan (QuantExecutorTests); here, what `inspect --verify`
// and quantization's load report.

@Test func nodeOutsideItsSchemaArityIsQK1207() throws {
    let model = Fixtures.tinyModel()
    model.graph.nodes[2].inputs = []  // Relu with no input
    let d = Verifier.verify(model).filter { $0.code == "QK1207" }
    #expect(d.map(\.message) == ["graph 'tiny': node Relu 'relu' has 0 inputs; Relu-14 takes 1"])

    let tooMany = Fixtures.tinyModel()
    tooMany.graph.nodes[3].inputs = ["r", "k", "r"]  // Add takes 2
    #expect(Verifier.verify(tooMany).map(\.message).contains("graph 'tiny': node Add 'add' has 3 inputs; Add-14 takes 2"))

    let omitted = Fixtures.tinyModel()
    omitted.graph.nodes[1].inputs = ["x", "", "B"]  // Conv's weight omitted
    #expect(Verifier.verify(omitted).map(\.message).contains("graph 'tiny': node Conv 'conv' omits input 1, which Conv-11 requires"))

    let noOutput = Fixtures.tinyModel()
    noOutput.graph.nodes[2].outputs = []
    #expect(Verifier.verify(noOutput).contains { $0.code == "QK1207" && $0.message.hasSuffix("has 0 outputs; Relu-14 produces 1") })

    // Omitted trailing optional inputs and outputs are fine; an unknown operator is not judged here.
    let optional = Fixtures.tinyModel()
    optional.graph.nodes[2] = Node(name: "clip", opType: "Clip", inputs: ["c", "", ""], outputs: ["r"])
    optional.graph.nodes.append(Node(name: "custom", opType: "Thing", domain: "my.domain", inputs: [], outputs: ["z"]))
    #expect(!Verifier.verify(optional).contains { $0.code == "QK1207" })
    #expect(throws: QuantKitError.self) { try Verifier.check(model) }
}

@Test func newerOpsetNoOutputsUntypedInputsAndDuplicateInitializersAreErrors() throws {
    let future = Fixtures.tinyModel()
    future.extras.opsetImport[0].version = 99
    #expect(Verifier.verify(future).contains { $0.code == "QK1208" && $0.message.contains("opset 99 of the default ONNX domain") })

    let noOutputs = Fixtures.tinyModel()
    noOutputs.graph.outputs = []
    #expect(Verifier.verify(noOutputs).contains { $0.code == "QK1209" })

    let untyped = Fixtures.tinyModel()
    untyped.graph.inputs[0].proto.clearType()
    #expect(Verifier.verify(untyped).map(\.message).contains("graph 'tiny': input 'x' has no element type"))
    #expect(Verifier.verify(untyped).contains { $0.code == "QK1210" })

    let duplicate = Fixtures.tinyModel()
    duplicate.graph.setInitializer("W2", Tensor(shape: [1], floats: [1]))
    duplicate.graph.renameValue("W2", to: "B")  // two initializers named B
    #expect(Verifier.verify(duplicate).map(\.message).contains("graph 'tiny': value 'B' is defined more than once (two initializers)"))
}

/// The schema checks refuse nothing real: every cached model (the real ones, the light_*
/// architectures and every node-suite case) passes them.
@Test func schemaChecksAcceptEveryCachedModel() throws {
    let models = try Fixtures.cachedModels()
    try #require(models.count >= 1893, "run scripts/test.sh (it fetches models and writes the ONNX test suites)")
    var refused: [String] = []
    for path in models {
        let problems = Verifier.verify(try Model.load(path: path)).filter { ["QK1207", "QK1208", "QK1209", "QK1210"].contains($0.code) }
        refused += problems.map { "\(path): \($0)" }
    }
    #expect(refused.isEmpty, "\(refused.count) refused: \(refused.prefix(10))")
}

@Test func topologicalOrderOfAWideGraphIsStable() throws {
    // 5,000 independent Relus read x, then one Sum of all, stored in reverse: the order puts
    // each Relu at its smallest original position first (a heap, not a scan per node).
    let n = 5000
    var nodes = (0..<n).map { Node(name: "r\($0)", opType: "Relu", inputs: ["x"], outputs: ["r\($0)"]) }
    nodes.reverse()
    nodes.insert(Node(name: "sum", opType: "Sum", inputs: (0..<n).map { "r\($0)" }, outputs: ["y"]), at: 0)
    let g = Graph(name: "wide", nodes: nodes, inputs: [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(1)]))],
                  outputs: [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: [.value(1)]))])
    let order = try g.topologicalOrder().map(\.name)
    #expect(order.count == n + 1 && order.last == "sum")
    #expect(Array(order.prefix(3)) == ["r\(n - 1)", "r\(n - 2)", "r\(n - 3)"])
}
