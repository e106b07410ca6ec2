import Foundation
import QuantCore
import QuantExecutor
import QuantIR
@testable import QuantAlgorithms
import QuantKit
import Testing

/// A chain with every case equalization handles: Conv -> Clip(0, 6) -> depthwise Conv -> Relu ->
/// Conv -> (nothing) -> Conv, output channels whose weight ranges differ by up to 1000×.
private func chainModel(seed: UInt64) -> Model {
    var rng = SplitMix64(seed: seed)
    func tensor(_ shape: [Int], channelSpread: Bool = false) -> Tensor {
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { i in
            let wide: Float = channelSpread ? pow(10, Float((i / inner) % 4) - 1) : 1
            return Float.random(in: -1...1, using: &rng) * wide
        })
    }
    let g = Graph(name: "chain", initializers: [
        Initializer(name: "w1", tensor: tensor([8, 3, 3, 3], channelSpread: true)), Initializer(name: "b1", tensor: tensor([8])),
        Initializer(name: "wd", tensor: tensor([8, 1, 3, 3])), Initializer(name: "bd", tensor: tensor([8])),
        Initializer(name: "w3", tensor: tensor([6, 8, 1, 1], channelSpread: true)),
        Initializer(name: "w4", tensor: tensor([5, 6, 1, 1])), Initializer(name: "b4", tensor: tensor([5])),
        Initializer(name: "lo", tensor: Tensor(shape: [], floats: [0])), Initializer(name: "hi", tensor: Tensor(shape: [], floats: [6])),
    ])
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(2), .value(3), .value(10), .value(10)]))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
    g.nodes = [
        Node(name: "c1", opType: "Conv", inputs: ["x", "w1", "b1"], outputs: ["a"], attributes: [.ints("pads", [1, 1, 1, 1])]),
        Node(name: "relu6", opType: "Clip", inputs: ["a", "lo", "hi"], outputs: ["b"]),
        Node(name: "dw", opType: "Conv", inputs: ["b", "wd", "bd"], outputs: ["c"], attributes: [.int("group", 8), .ints("pads", [1, 1, 1, 1])]),
        Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["d"]),
        Node(name: "c3", opType: "Conv", inputs: ["d", "w3"], outputs: ["e"]),
        Node(name: "c4", opType: "Conv", inputs: ["e", "w4", "b4"], outputs: ["y"]),
    ]
    return Model(graph: g, opsets: ["": 13])
}

@Test func equalizationKeepsTheFloatOutputsAndEqualizesRanges() throws {
    let model = chainModel(seed: 5)
    var rng = SplitMix64(seed: 9)
    let x = Tensor(shape: [2, 3, 10, 10], floats: (0..<600).map { _ in Float.random(in: -2...2, using: &rng) })
    let before = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])["y"]!.floats()
    let report = CrossLayerEqualization.run(model.graph)
    // Three pairs: c1 -> dw through the Clip, dw -> c3 through the Relu, c3 -> c4 directly.
    #expect(report.pairs.map(\.first) .sorted() == ["c1", "c3", "dw"])
    #expect(report.clipsSplit == 1 && model.graph.nodes.contains { $0.opType == "Min" } && !model.graph.nodes.contains { $0.opType == "Clip" })
    // The wide first Convs hand their spread to the narrow Conv after them (the depthwise Conv's own
    // spread grows: that is the trade).
    for p in report.pairs where p.first != "dw" { #expect(p.spreadAfter < p.spreadBefore, "\(p.first)") }
    // c1's channels spanned 1000× before; equalized against the depthwise Conv they span far less.
    let c1 = try #require(report.pairs.first { $0.first == "c1" })
    #expect(c1.spreadBefore > 100 && c1.spreadAfter < c1.spreadBefore / 10)
    let after = try Executor(model: model, options: ExecutorOptions(threads: 1)).run(["x": x])["y"]!.floats()
    let scale = before.map { abs($0) }.max()!
    let worst = zip(before, after).map { abs($0 - $1) }.max()!
    #expect(worst / scale < 1e-5, "relative error \(worst / scale)")
    // The Clip's upper bound really clips in this data (the check would miss a wrong bound otherwise).
    let probe = chainModel(seed: 5)
    probe.graph.outputs = [ValueInfo(name: "a", type: TensorType(elementType: .float, shape: nil))]
    let a = try Executor(model: probe, options: ExecutorOptions(threads: 1)).run(["x": x])["a"]!.floats()
    #expect(a.filter { $0 > 6 }.count > 10 && a.filter { $0 > 0 && $0 < 6 }.count > 10)
}
