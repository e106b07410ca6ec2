import QuantCore
@testable import QuantExecutor
import QuantIR
import Testing

/// ```
/// x ─ Conv 3×3 ─ Relu ─┬───────────── Add ─ GlobalAveragePool ─ Reshape ─ y
///                      └ Conv 1×1 ─ Clip ┘                        ↑
///   Shape(x) ─ Gather 0 ─ Unsqueeze ─ Concat(·, [-1]) ───────────┘
/// x ─ ReduceMean(axis 0) ─ Sub(x, ·) ─ Conv 1×1 ─ z        (mixes the samples)
/// x ─ Pad(axis 0 by 1, 1) ─ Relu ─ p                       (pads the batch axis)
/// ```
/// The first branch up to GlobalAveragePool is sample-wise; Shape ends it, so the Reshape
/// runs on the whole batch. The ReduceMean branch and the Pad (checked at run time) must stay
/// layer by layer.
func sampleSplitModel(channels c: Int) -> Model {
    var rng = SplitMixForTests(seed: 11)
    var initializers: [Initializer] = []
    func constant(_ name: String, _ shape: [Int], _ values: [Float]) { initializers.append(Initializer(name: name, tensor: Tensor(shape: shape, floats: values))) }
    constant("w1", [c, c, 3, 3], (0..<(c * c * 9)).map { _ in rng.next() * 0.3 })
    constant("b1", [c], (0..<c).map { _ in rng.next() })
    constant("w2", [c, c, 1, 1], (0..<(c * c)).map { _ in rng.next() * 0.5 })
    constant("w3", [c, c, 1, 1], (0..<(c * c)).map { _ in rng.next() * 0.5 })
    constant("lo", [], [0])
    constant("hi", [], [6])
    initializers.append(Initializer(name: "zero", tensor: Tensor(shape: [1], values: [0] as [Int64])))
    initializers.append(Initializer(name: "minus1", tensor: Tensor(shape: [1], values: [-1] as [Int64])))
    initializers.append(Initializer(name: "batchPads", tensor: Tensor(shape: [8], values: [1, 0, 0, 0, 1, 0, 0, 0] as [Int64])))
    func node(_ op: String, _ inputs: [String], _ out: String, _ attrs: [Attribute] = []) -> Node {
        Node(name: out, opType: op, inputs: inputs, outputs: [out], attributes: attrs)
    }
    let g = Graph(name: "split", initializers: initializers)
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.param("N"), .value(c), .param("H"), .param("W")]))]
    g.outputs = ["y", "z", "p"].map { ValueInfo(name: $0, type: TensorType(elementType: .float, shape: nil)) }
    g.nodes = [
        node("Conv", ["x", "w1", "b1"], "c1", [.ints("pads", [1, 1, 1, 1])]),
        node("Relu", ["c1"], "r1"),
        node("Conv", ["r1", "w2"], "c2"),
        node("Clip", ["c2", "lo", "hi"], "k2"),
        node("Add", ["r1", "k2"], "a1"),
        node("GlobalAveragePool", ["a1"], "gap"),
        node("Shape", ["x"], "shape"),
        node("Gather", ["shape", "zero"], "n", [.int("axis", 0)]),
        node("Concat", ["n", "minus1"], "target", [.int("axis", 0)]),
        node("Reshape", ["gap", "target"], "y"),
        node("ReduceMean", ["x"], "mean", [.ints("axes", [0])]),
        node("Sub", ["x", "mean"], "centered"),
        node("Conv", ["centered", "w3"], "z"),
        node("Pad", ["x", "batchPads"], "padded"),
        node("Relu", ["padded"], "p"),
    ]
    return Model(graph: g, opsets: ["": 13])
}

@Test(arguments: [1, 2])
func sampleSplitRunMatchesLayerByLayer(threads: Int) throws {
    let c = 6
    let model = sampleSplitModel(channels: c)
    let split = try Executor(model: model, options: ExecutorOptions(threads: threads))
    let layered = try Executor(model: model, options: ExecutorOptions(threads: threads, splitBatch: false))
    // Conv, Relu, Conv+Clip, Add, GlobalAveragePool: one segment; Sub reads ReduceMean (not
    // sample-wise) and the Pad's Relu follows a guarded Pad.
    let segments = try #require(split.plan.sampleSplit).segments
    #expect(segments.values.map(\.steps.count).max() ?? 0 >= 4)
    var rng = SplitMixForTests(seed: 5)
    for n in [1, 3] {
        let x = Tensor(shape: [n, c, 9, 11], floats: (0..<(n * c * 99)).map { _ in rng.next() * 3 })
        let a = try split.run(["x": x]), b = try layered.run(["x": x])
        for name in ["y", "z", "p"] {
            let u = try #require(a[name]), v = try #require(b[name])
            #expect(u.shape == v.shape, "\(name)")
            let d = zip(u.floats(), v.floats()).map { abs($0 - $1) }.max() ?? 0
            #expect(d <= 1e-5, "\(name) differs by \(d)")
        }
        #expect(a["y"]?.shape == [n, c])
        #expect(a["p"]?.shape == [n + 2, c, 9, 11])
    }
}

/// Operators whose samples interact are never part of a segment.
@Test func sampleSplitLeavesCrossSampleStepsAlone() throws {
    let exec = try Executor(model: sampleSplitModel(channels: 4), options: ExecutorOptions(threads: 2))
    let plan = exec.plan
    let split = try #require(plan.sampleSplit)
    let inSegments = Set(split.segments.values.flatMap(\.steps)).map { plan.fusedSteps[$0].node.opType }
    #expect(!inSegments.contains("ReduceMean"))
    #expect(!inSegments.contains("Sub"))
    #expect(!inSegments.contains("Reshape"))
    #expect(inSegments.contains("GlobalAveragePool"))
}
