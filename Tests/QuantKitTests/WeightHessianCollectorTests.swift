import Foundation
import QuantCore
import QuantExecutor
import QuantIR
import QuantKit
import Testing

/// The input means bias correction reads are the same whether or not GPTQ's Hessians are
/// collected beside them (the means-only path sums the im2col rows without building im2col),
/// for a depthwise Conv with strides, asymmetric pads and dilations, a regular Conv, and a
/// SAME_UPPER Conv.
@Test func inputMeansWithoutHessiansEqualThoseWithHessians() throws {
    var rng = SplitMix64(seed: 31)
    func tensor(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...2, using: &rng) }) }
    let g = Graph(name: "convs", initializers: [
        Initializer(name: "wd", tensor: tensor([4, 1, 3, 3])), Initializer(name: "wr", tensor: tensor([3, 4, 2, 3])),
        Initializer(name: "ws", tensor: tensor([2, 4, 3, 3])),
    ])
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(3), .value(4), .value(9), .value(11)]))]
    g.outputs = ["d", "r", "s"].map { ValueInfo(name: $0, type: TensorType(elementType: .float, shape: nil)) }
    g.nodes = [
        Node(name: "dw", opType: "Conv", inputs: ["x", "wd"], outputs: ["d"],
             attributes: [.int("group", 4), .ints("strides", [2, 1]), .ints("pads", [1, 0, 2, 1]), .ints("dilations", [1, 2])]),
        Node(name: "regular", opType: "Conv", inputs: ["x", "wr"], outputs: ["r"], attributes: [.ints("pads", [0, 1, 1, 0])]),
        Node(name: "same", opType: "Conv", inputs: ["x", "ws"], outputs: ["s"], attributes: [.string("auto_pad", "SAME_UPPER"), .ints("strides", [2, 2])]),
    ]
    let model = Model(graph: g, opsets: ["": 13])
    let executor = try Executor(model: model, options: ExecutorOptions(threads: 2))
    let both = WeightHessianCollector(graph: g, hessians: true), meansOnly = WeightHessianCollector(graph: g, hessians: false)
    for _ in 0..<2 { _ = try executor.run(["x": tensor([3, 4, 9, 11])], hooks: [both, meansOnly]) }
    let a = both.inputMeans, b = meansOnly.inputMeans
    #expect(Set(a.keys) == ["dw", "regular", "same"] && Set(b.keys) == Set(a.keys))
    for (node, groups) in a {
        let other = try #require(b[node])
        #expect(groups.count == other.count, "\(node)")
        for (x, y) in zip(groups, other) {
            #expect(x.count == y.count && zip(x, y).allSatisfy { abs($0 - $1) <= 1e-9 * max(1, abs($0)) }, "\(node)")
        }
    }
    #expect(a["dw"]?.count == 4 && a["dw"]?[0].count == 9)
}
