import QuantCore
@testable import QuantExecutor
import QuantIR
import Testing

/// ```
/// zeros4, ones2, ones2 ─ Concat ─ Cast(int64) ─ pads ─┐
///                                          x ─ Pad ─ Conv 3×3 ─ y
/// ```
/// The pads are computed from constants at run time (as TF-style "same" padding exports do);
/// the plan folds Concat and Cast into a constant, so the fused list is the Pad+Conv alone.
func foldableModel(channels c: Int) -> Model {
    var rng = SplitMixForTests(seed: 13)
    var initializers: [Initializer] = []
    initializers.append(Initializer(name: "w", tensor: Tensor(shape: [c, c, 3, 3], floats: (0..<(c * c * 9)).map { _ in rng.next() })))
    initializers.append(Initializer(name: "zeros4", tensor: Tensor(shape: [4], floats: [0, 0, 0, 0])))
    initializers.append(Initializer(name: "ones2", tensor: Tensor(shape: [2], floats: [1, 1])))
    initializers.append(Initializer(name: "order", tensor: Tensor(shape: [8], values: [0, 1, 4, 5, 2, 3, 6, 7] as [Int64])))
    let g = Graph(name: "foldable", initializers: initializers)
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.param("N"), .value(c), .param("H"), .param("W")]))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
    g.nodes = [
        // pads [0, 0, 1, 1, 0, 0, 1, 1]: one row and column on each side of H and W.
        Node(name: "cat", opType: "Concat", inputs: ["zeros4", "ones2", "ones2"], outputs: ["catted"], attributes: [.int("axis", 0)]),
        Node(name: "perm", opType: "Gather", inputs: ["catted", "order"], outputs: ["ordered"], attributes: [.int("axis", 0)]),
        Node(name: "cast", opType: "Cast", inputs: ["ordered"], outputs: ["pads"], attributes: [.int("to", 7)]),
        Node(name: "pad", opType: "Pad", inputs: ["x", "pads"], outputs: ["padded"]),
        Node(name: "conv", opType: "Conv", inputs: ["padded", "w"], outputs: ["y"]),
    ]
    return Model(graph: g, opsets: ["": 13])
}

@Test func constantStepsAreFoldedOnlyInTheFusedPlan() throws {
    let c = 3
    let exec = try Executor(model: foldableModel(channels: c), options: ExecutorOptions(threads: 1))
    #expect(exec.plan.fusedSteps.map(\.node.opType) == ["Conv"])
    #expect(exec.plan.steps.map(\.node.opType) == ["Concat", "Gather", "Cast", "Pad", "Conv"])
    var rng = SplitMixForTests(seed: 2)
    let x = Tensor(shape: [2, c, 5, 7], floats: (0..<(2 * c * 35)).map { _ in rng.next() })
    let fused = try #require(try exec.run(["x": x])["y"])
    #expect(fused.shape == [2, c, 5, 7])
    // With a hook every step runs and the hook sees the pads it computes.
    let recorder = NameRecorder()
    let plain = try #require(try exec.run(["x": x], hooks: [recorder])["y"])
    #expect(recorder.seen.contains("pads"))
    let d = zip(fused.floats(), plain.floats()).map { abs($0 - $1) }.max() ?? 1
    #expect(d <= 1e-5)
}
