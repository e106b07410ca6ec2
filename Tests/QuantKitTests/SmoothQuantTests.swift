import Foundation
import QuantCore
import QuantExecutor
import QuantIR
@testable import QuantAlgorithms
import QuantKit
import Testing

/// LayerNormalization -> {MatMul q, MatMul k, residual Add} (an explicit Mul is needed: the Add
/// reads the LayerNorm output too); a Mul by a constant -> MatMul (folded into the constant);
/// MatMul -> Add bias -> Gemm(transB) (folded into the first MatMul's columns and the bias).
/// Input channels 2 and 5 carry outliers 50× the others.
private func smoothModel(seed: UInt64) -> Model {
    var rng = SplitMix64(seed: seed)
    func tensor(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &rng) }) }
    let k = 8
    let g = Graph(name: "smooth", initializers: [
        Initializer(name: "gamma", tensor: tensor([k])), Initializer(name: "beta", tensor: tensor([k])),
        Initializer(name: "wq", tensor: tensor([k, 6])), Initializer(name: "wk", tensor: tensor([k, 6])),
        Initializer(name: "c", tensor: tensor([k])), Initializer(name: "wm", tensor: tensor([k, k])),
        Initializer(name: "bias", tensor: tensor([k])), Initializer(name: "wg", tensor: tensor([5, k])),
    ])
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(4), .value(k)]))]
    g.outputs = ["q", "kk", "res", "m", "y"].map { ValueInfo(name: $0, type: TensorType(elementType: .float, shape: nil)) }
    g.nodes = [
        Node(name: "ln", opType: "LayerNormalization", inputs: ["x", "gamma", "beta"], outputs: ["h"]),
        Node(name: "q", opType: "MatMul", inputs: ["h", "wq"], outputs: ["q"]),
        Node(name: "k", opType: "MatMul", inputs: ["h", "wk"], outputs: ["kk"]),
        Node(name: "res", opType: "Add", inputs: ["h", "x"], outputs: ["res"]),
        Node(name: "scale", opType: "Mul", inputs: ["x", "c"], outputs: ["sx"]),
        Node(name: "mm", opType: "MatMul", inputs: ["sx", "wm"], outputs: ["m0"]),
        Node(name: "addb", opType: "Add", inputs: ["m0", "bias"], outputs: ["m"]),
        Node(name: "gemm", opType: "Gemm", inputs: ["m", "wg"], outputs: ["y"], attributes: [.int("transB", 1)]),
    ]
    return Model(graph: g, opsets: ["": 17])
}

private func feed(_ seed: UInt64) -> Tensor {
    var rng = SplitMix64(seed: seed)
    return Tensor(shape: [4, 8], floats: (0..<32).map { i in Float.random(in: -1...1, using: &rng) * (i % 8 == 2 || i % 8 == 5 ? 50 : 1) })
}

@Test func smoothQuantKeepsTheFloatOutputs() throws {
    let model = smoothModel(seed: 3)
    let x = feed(4)
    let before = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])
    let sites = SmoothQuant.sites(model.graph)
    #expect(Set(sites.map(\.tensor)) == ["h", "sx", "m"])
    // The `m` tensor is a graph output: it cannot be folded into its producer, and its producer
    // (an Add) is quantized, so it is left alone. The others are smoothed.
    let collector = SmoothQuant.Collector(sites: sites)
    _ = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x], hooks: [collector])
    let (factors, _) = SmoothQuant.choose(model.graph, sites: sites, collector: collector, alpha: .fixed(0.5), activation: .uint8Asymmetric,
                                          weight: .int8Symmetric, perChannel: true)
    #expect(factors.count == 3 && factors.values.allSatisfy { $0.contains { abs($0 - 1) > 0.1 } })
    let (folded, floatNodes) = SmoothQuant.apply(model.graph, factors: factors)
    #expect(folded["h"] == "inserted Mul" && floatNodes.count == 1)
    #expect(folded["sx"] == "Mul")
    #expect(folded["m"] == "")
    try model.graph.sortTopologically()
    let after = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])
    for name in ["q", "kk", "res", "m", "y"] {
        let a = before[name]!.floats(), b = after[name]!.floats()
        let scale = a.map { abs($0) }.max()!
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 * scale }, "\(name)")
    }
}

@Test func smoothQuantFoldsIntoALinearLayerAndItsBias() throws {
    // Without the graph output on `m`, the Gemm's input folds into the MatMul's columns and bias.
    let model = smoothModel(seed: 3)
    model.graph.outputs.removeAll { $0.name == "m" }
    let x = feed(6)
    let before = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])["y"]!.floats()
    let (folded, _) = SmoothQuant.apply(model.graph, factors: ["m": (0..<8).map { Double($0) + 0.5 }])
    #expect(folded["m"] == "Add after MatMul")
    let after = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])["y"]!.floats()
    let scale = before.map { abs($0) }.max()!
    #expect(zip(before, after).allSatisfy { abs($0 - $1) <= 1e-5 * scale })
}

@Test func automaticAlphaNeverRaisesTheLayerError() throws {
    let model = smoothModel(seed: 8)
    let sites = SmoothQuant.sites(model.graph)
    let collector = SmoothQuant.Collector(sites: sites)
    let executor = try Executor(model: model, options: ExecutorOptions(threads: 1))
    for s in 0..<4 { _ = try executor.run(["x": feed(UInt64(10 + s))], hooks: [collector]) }
    let (_, report) = SmoothQuant.choose(model.graph, sites: sites, collector: collector, alpha: .auto, activation: .uint8Asymmetric,
                                         weight: .int8Symmetric, perChannel: false)
    #expect(report.sites.count == 3)
    for s in report.sites {
        let before = try #require(s.errorBefore), after = try #require(s.errorAfter)
        #expect(after <= before, "\(s.tensor)")
    }
    // With 50× outlier channels and per-tensor weights, smoothing the LayerNorm output wins.
    let h = try #require(report.sites.first { $0.tensor == "sx" })
    #expect(h.alpha != nil && h.errorAfter! < h.errorBefore! / 2 && h.outlierAfter < h.outlierBefore)
}

/// Conv readers: the graph input (float: an explicit Mul of shape [C, 1, 1]) and a Conv -> Relu
/// -> Conv chain (folded into the first Conv's output channels through the Relu); channel 1 of
/// the middle tensor carries an outlier. Float outputs unchanged; the objective's rows are patches.
@Test func smoothQuantHandlesConvReaders() throws {
    var rng = SplitMix64(seed: 12)
    func tensor(_ shape: [Int], spread: Bool = false) -> Tensor {
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { i in Float.random(in: -1...1, using: &rng) * (spread && i / inner == 1 ? 30 : 1) })
    }
    let g = Graph(name: "convs", initializers: [
        Initializer(name: "w1", tensor: tensor([4, 3, 3, 3], spread: true)), Initializer(name: "b1", tensor: tensor([4])),
        Initializer(name: "w2", tensor: tensor([5, 4, 3, 3])),
    ])
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(2), .value(3), .value(9), .value(9)]))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
    g.nodes = [
        Node(name: "c1", opType: "Conv", inputs: ["x", "w1", "b1"], outputs: ["a"], attributes: [.ints("pads", [1, 1, 1, 1])]),
        Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["r"]),
        Node(name: "c2", opType: "Conv", inputs: ["r", "w2"], outputs: ["y"], attributes: [.ints("pads", [1, 1, 1, 1])]),
    ]
    let model = Model(graph: g, opsets: ["": 13])
    let x = tensor([2, 3, 9, 9])
    let before = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])["y"]!.floats()
    let sites = SmoothQuant.sites(model.graph)
    #expect(Set(sites.map(\.tensor)) == ["x", "r"] && sites.allSatisfy { $0.kernel == [3, 3] && $0.patch == 9 })
    let collector = SmoothQuant.Collector(sites: sites)
    _ = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x], hooks: [collector])
    #expect(collector.rows["r"]?.first?.count == 36 && collector.absMax["r"]?.count == 4)
    let report = SmoothQuant.choose(model.graph, sites: sites, collector: collector, alpha: .auto, activation: .uint8Asymmetric,
                                    weight: .int8Symmetric, perChannel: false).report
    #expect(report.sites.count == 2 && report.sites.allSatisfy { $0.errorAfter! <= $0.errorBefore! })
    // Fixed α applies to both sites whatever auto chose.
    let fixed = SmoothQuant.choose(model.graph, sites: sites, collector: collector, alpha: .fixed(0.5), activation: .uint8Asymmetric,
                                   weight: .int8Symmetric, perChannel: false).factors
    let (folded, floatNodes) = SmoothQuant.apply(model.graph, factors: fixed)
    #expect(folded["r"] == "Conv through Relu" && folded["x"] == "inserted Mul" && floatNodes.count == 1)
    try model.graph.sortTopologically()
    let after = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])["y"]!.floats()
    let scale = before.map { abs($0) }.max()!
    #expect(zip(before, after).allSatisfy { abs($0 - $1) <= 1e-5 * scale })
}
