import QuantCore
import QuantExecutor
import QuantIR
import Testing

/// x ─ Pad(0) ─ Conv 3×3 ─ Mul 0.5 ─ Add 0.25 ─ [HardSwish as Add 3, Clip 0..6, Mul x, Div 6]
///   ─ Mul 2 ─ Add -1 ─ (depthwise Conv ─ Relu) ─ Sub 0.5 ─ Clip -1..1 ─ Mul 3 ─ y
/// Every node is fusible: Pad+Conv with an epilogue, the depthwise Conv with Relu, and the
/// trailing scalar chain as an element-wise region.
func fusibleModel(channels c: Int) -> Model {
    var initializers: [Initializer] = []
    var rng = SplitMixForTests(seed: 7)
    func constant(_ name: String, _ shape: [Int], _ values: [Float]) { initializers.append(Initializer(name: name, tensor: Tensor(shape: shape, floats: values))) }
    constant("w", [c, c, 3, 3], (0..<(c * c * 9)).map { _ in rng.next() * 0.3 })
    constant("b", [c], (0..<c).map { _ in rng.next() })
    constant("wd", [c, 1, 3, 3], (0..<(c * 9)).map { _ in rng.next() * 0.5 })
    for (name, v) in [("half", 0.5), ("quarter", 0.25), ("three", 3), ("zero", 0), ("six", 6), ("two", 2), ("minus1", -1), ("one", 1)] as [(String, Float)] {
        constant(name, [1], [v])
    }
    initializers.append(Initializer(name: "pads", tensor: Tensor(shape: [8], values: [0, 0, 1, 1, 0, 0, 1, 1] as [Int64])))
    func node(_ op: String, _ inputs: [String], _ out: String, _ attrs: [Attribute] = []) -> Node {
        Node(name: out, opType: op, inputs: inputs, outputs: [out], attributes: attrs)
    }
    let g = Graph(name: "fusible", initializers: initializers)
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.param("N"), .value(c), .param("H"), .param("W")]))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
    g.nodes = [
        node("Pad", ["x", "pads"], "p"),
        node("Conv", ["p", "w", "b"], "c1"),
        node("Mul", ["half", "c1"], "m1"),
        node("Add", ["m1", "quarter"], "a1"),
        node("Add", ["a1", "three"], "h1"),
        node("Clip", ["h1", "zero", "six"], "h2"),
        node("Mul", ["a1", "h2"], "h3"),
        node("Div", ["h3", "six"], "h4"),
        node("Mul", ["h4", "two"], "m2"),
        node("Add", ["m2", "minus1"], "a2"),
        node("Conv", ["a2", "wd"], "d1", [.int("group", c), .ints("pads", [1, 1, 1, 1])]),
        node("Relu", ["d1"], "r1"),
        node("Sub", ["r1", "half"], "s1"),
        node("Clip", ["s1", "minus1", "one"], "k1"),
        node("Mul", ["k1", "three"], "y"),
    ]
    return Model(graph: g, opsets: ["": 17])
}

/// Deterministic uniform values in [-1, 1).
struct SplitMixForTests {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 24) * 2 - 1
    }
}

final class NameRecorder: ExecutionHook {
    var seen: [String] = []
    var replace: [String: (Tensor) -> Tensor] = [:]
    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        let name = executor.name(of: value)
        seen.append(name)
        return replace[name].map { $0(tensor) }
    }
}

@Test(arguments: [1, 2])
func fusedRunMatchesNodeByNodeRun(threads: Int) throws {
    let c = 8
    let exec = try Executor(model: fusibleModel(channels: c), options: ExecutorOptions(threads: threads))
    var rng = SplitMixForTests(seed: 3)
    let x = Tensor(shape: [2, c, 13, 21], floats: (0..<(2 * c * 13 * 21)).map { _ in rng.next() * 4 })
    let fused = try #require(try exec.run(["x": x])["y"])
    // A hook turns fusion off: every node runs on its own and reports its output.
    let recorder = NameRecorder()
    let plain = try #require(try exec.run(["x": x], hooks: [recorder])["y"])
    #expect(recorder.seen == ["x", "p", "c1", "m1", "a1", "h1", "h2", "h3", "h4", "m2", "a2", "d1", "r1", "s1", "k1", "y"])
    #expect(fused.shape == [2, c, 13, 21])
    let a = fused.floats(), b = plain.floats()
    let maxDiff = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    #expect(maxDiff < 1e-5)
    // Not a trivially constant output: the clip keeps values on both sides.
    #expect(a.contains { $0 > 0 && $0 < 3 } && a.contains { $0 < 0 })
}

@Test func hooksCanReplaceValuesThatFusionWouldHide() throws {
    let c = 4
    let exec = try Executor(model: fusibleModel(channels: c), options: ExecutorOptions(threads: 2))
    let x = Tensor(shape: [1, c, 5, 6], floats: [Float](repeating: 0.5, count: c * 30))
    // Replacing the depthwise Conv's output (fused with Relu when no hook is attached) by
    // -10 everywhere gives Relu 0, Sub -0.5, Clip -0.5, Mul -1.5.
    let recorder = NameRecorder()
    recorder.replace["d1"] = { t in Tensor(shape: t.shape, floats: [Float](repeating: -10, count: t.count)) }
    let y = try #require(try exec.run(["x": x], hooks: [recorder])["y"])
    #expect(y.floats().allSatisfy { $0 == -1.5 })
}

@Test func padThatIsNotASpatialZeroPadStillRunsCorrectly() throws {
    // Pad with a non-zero constant in front of a Conv: the fused kernel must fall back to
    // running Pad and Conv separately (same result as with a hook).
    let g = Graph(name: "pad-value", initializers: [
        Initializer(name: "pads", tensor: Tensor(shape: [8], values: [0, 0, 1, 1, 0, 0, 1, 1] as [Int64])),
        Initializer(name: "v", tensor: Tensor(shape: [], floats: [2])),
        Initializer(name: "w", tensor: Tensor(shape: [1, 1, 3, 3], floats: [Float](repeating: 1, count: 9))),
    ])
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(1), .value(1), .value(3), .value(3)]))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
    g.nodes = [
        Node(name: "pad", opType: "Pad", inputs: ["x", "pads", "v"], outputs: ["p"]),
        Node(name: "conv", opType: "Conv", inputs: ["p", "w"], outputs: ["y"]),
    ]
    let exec = try Executor(model: Model(graph: g, opsets: ["": 17]), options: ExecutorOptions(threads: 1))
    let x = Tensor(shape: [1, 1, 3, 3], floats: [Float](repeating: 1, count: 9))
    let y = try #require(try exec.run(["x": x])["y"])
    // Corner: 4 ones + 5 twos = 14; edge: 6 + 3·2 = 12; centre: 9.
    #expect(y.floats() == [14, 12, 14, 12, 9, 12, 14, 12, 14])
}

@Test func valuesReadOutsideAFusablePatternAreStillProduced() throws {
    // Conv ─ c ─ Add 3 ─ Clip 0..6 ─ k ─ Mul(c, k) ─ Div 6 ─ y, and k is also a graph output:
    // the written-out HardSwish must not be folded into the Conv, or `k` would be missing.
    let g = Graph(name: "hardswish-shared", initializers: [
        Initializer(name: "w", tensor: Tensor(shape: [2, 1, 1, 1], floats: [1, -2])),
        Initializer(name: "three", tensor: Tensor(shape: [], floats: [3])),
        Initializer(name: "zero", tensor: Tensor(shape: [], floats: [0])),
        Initializer(name: "six", tensor: Tensor(shape: [], floats: [6])),
    ])
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(1), .value(1), .value(1), .value(3)]))]
    g.outputs = ["y", "k"].map { ValueInfo(name: $0, type: TensorType(elementType: .float, shape: nil)) }
    g.nodes = [
        Node(name: "conv", opType: "Conv", inputs: ["x", "w"], outputs: ["c"]),
        Node(name: "add", opType: "Add", inputs: ["c", "three"], outputs: ["a"]),
        Node(name: "clip", opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
        Node(name: "mul", opType: "Mul", inputs: ["c", "k"], outputs: ["m"]),
        Node(name: "div", opType: "Div", inputs: ["m", "six"], outputs: ["y"]),
    ]
    let exec = try Executor(model: Model(graph: g, opsets: ["": 17]), options: ExecutorOptions(threads: 1))
    let out = try exec.run(["x": Tensor(shape: [1, 1, 1, 3], floats: [-4, 1, 2])])
    // c = [-4, 1, 2 | 8, -2, -4]; k = clip(c + 3, 0, 6); y = c·k/6.
    #expect(out["k"]?.floats() == [0, 4, 5, 6, 1, 0])
    let y = try #require(out["y"]).floats()
    let want: [Float] = [0, 4.0 / 6, 10.0 / 6, 8, -2.0 / 6, 0]
    #expect(zip(y, want).allSatisfy { abs($0 - $1) < 1e-6 })
}

/// x ─ Conv 1×1 (cin → m, bias) ─ Clip 0..6 ─ [Pad] ─ depthwise Conv k×k, stride s ─ Clip 0..6 ─ y:
/// the expansion and depthwise steps of an inverted residual block. With 48 channels at
/// 112×112 the expanded tensor (2.4 MB per image) is above the size from which the executor
/// runs the two Convs together in row bands.
func expandDepthwiseModel(cin: Int, m: Int, kernel k: Int, stride s: Int, explicitPad: Bool, bias: Bool) -> Model {
    var rng = SplitMixForTests(seed: UInt64(31 * k + s))
    var initializers = [
        Initializer(name: "w1", tensor: Tensor(shape: [m, cin, 1, 1], floats: (0..<(m * cin)).map { _ in rng.next() * 0.6 })),
        Initializer(name: "w2", tensor: Tensor(shape: [m, 1, k, k], floats: (0..<(m * k * k)).map { _ in rng.next() * 0.5 })),
        Initializer(name: "lo", tensor: Tensor(shape: [], floats: [0])),
        Initializer(name: "hi", tensor: Tensor(shape: [], floats: [6])),
    ]
    if bias {
        initializers.append(Initializer(name: "b1", tensor: Tensor(shape: [m], floats: (0..<m).map { _ in rng.next() })))
        initializers.append(Initializer(name: "b2", tensor: Tensor(shape: [m], floats: (0..<m).map { _ in rng.next() })))
    }
    // TF-style "same" padding: the extra row and column at the end for stride 2.
    let (before, after) = s == 2 ? (k / 2 - 1, k / 2) : (k / 2, k / 2)
    let pads = [Int64(before), Int64(before), Int64(after), Int64(after)]
    if explicitPad {
        initializers.append(Initializer(name: "pads", tensor: Tensor(shape: [8], values: [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]])))
    }
    let g = Graph(name: "expand-depthwise", initializers: initializers)
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.param("N"), .value(cin), .param("H"), .param("W")]))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
    var nodes = [
        Node(name: "expand", opType: "Conv", inputs: ["x", "w1"] + (bias ? ["b1"] : []), outputs: ["e"]),
        Node(name: "relu6a", opType: "Clip", inputs: ["e", "lo", "hi"], outputs: ["a"]),
    ]
    var dwInput = "a"
    var dwAttributes: [Attribute] = [.int("group", m), .ints("strides", [s, s])]
    if explicitPad {
        nodes.append(Node(name: "pad", opType: "Pad", inputs: ["a", "pads"], outputs: ["p"]))
        dwInput = "p"
    } else {
        dwAttributes.append(.ints("pads", pads.map(Int.init)))
    }
    nodes.append(Node(name: "depthwise", opType: "Conv", inputs: [dwInput, "w2"] + (bias ? ["b2"] : []), outputs: ["d"], attributes: dwAttributes))
    nodes.append(Node(name: "relu6b", opType: "Clip", inputs: ["d", "lo", "hi"], outputs: ["y"]))
    g.nodes = nodes
    return Model(graph: g, opsets: ["": 17])
}

@Test(arguments: [(3, 2, true, true), (3, 1, false, true), (5, 2, true, false), (5, 1, true, true)])
func expandDepthwiseBandsMatchLayerByLayer(kernel: Int, stride: Int, explicitPad: Bool, bias: Bool) throws {
    let (cin, m) = (16, 48)
    let model = expandDepthwiseModel(cin: cin, m: m, kernel: kernel, stride: stride, explicitPad: explicitPad, bias: bias)
    var rng = SplitMixForTests(seed: 5)
    // Batch 2, 112×112 (above the fusion size) and 113×111 (odd sizes, the last band short).
    for (h, w) in [(112, 112), (113, 111)] {
        let x = Tensor(shape: [2, cin, h, w], floats: (0..<(2 * cin * h * w)).map { _ in rng.next() * 2 })
        for threads in [1, 2] {
            let exec = try Executor(model: model, options: ExecutorOptions(threads: threads, splitBatch: false))
            let profile = ExecutionProfile()
            let fused = try #require(try exec.run(["x": x], profile: profile)["y"])
            #expect(profile.counts["Conv+DepthwiseConv"] == 1)
            let plain = try #require(try exec.run(["x": x], hooks: [NameRecorder()])["y"])
            #expect(fused.shape == plain.shape)
            // The bands run the same kernels in the same order per output: bit for bit equal.
            let a = fused.floats(), b = plain.floats()
            let differing = zip(a, b).filter { $0 != $1 }.count
            #expect(differing == 0, "k \(kernel) s \(stride) \(h)×\(w) threads \(threads): \(differing) outputs differ")
            // Not trivially saturated: outputs inside (0, 6) on both sides of the clip.
            #expect(a.contains { $0 > 0 && $0 < 6 } && a.contains { $0 == 0 })
        }
    }
}
