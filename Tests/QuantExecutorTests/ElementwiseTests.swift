import QuantCore
import QuantExecutor
import QuantIR
import Testing

/// Runs one node on `inputs` and returns its outputs (compute-type tensors).
///
///   x0, x1, ... ─ op ─ y0, y1, ...
func runNode(_ op: String, _ inputs: [Tensor?], attrs: [Attribute] = [], outputs: Int = 1, opset: Int = 18, threads: Int = 2) throws -> [Tensor] {
    let g = Graph(name: op)
    let names = inputs.enumerated().map { $0.element == nil ? "" : "x\($0.offset)" }
    g.inputs = inputs.enumerated().compactMap { k, t in t.map { ValueInfo(name: "x\(k)", type: TensorType(elementType: $0.dtype, shape: nil)) } }
    g.outputs = (0..<outputs).map { ValueInfo(name: "y\($0)", type: TensorType(elementType: nil, shape: nil)) }
    g.nodes = [Node(name: "n", opType: op, inputs: names, outputs: (0..<outputs).map { "y\($0)" }, attributes: attrs)]
    let exec = try Executor(model: Model(graph: g, opsets: ["": opset]), options: ExecutorOptions(threads: threads))
    var feeds: [String: Tensor] = [:]
    for (k, t) in inputs.enumerated() { if let t { feeds["x\(k)"] = t } }
    let out = try exec.run(feeds)
    return (0..<outputs).map { out["y\($0)"]! }
}

@Test func addBroadcastsPerChannel() throws {
    // [1,2,2,2] + [1,2,1,1]: channel 0 adds 10, channel 1 adds 20.
    let x = Tensor(shape: [1, 2, 2, 2], floats: [0, 1, 2, 3, 4, 5, 6, 7])
    let b = Tensor(shape: [1, 2, 1, 1], floats: [10, 20])
    #expect(try runNode("Add", [x, b])[0].floats() == [10, 11, 12, 13, 24, 25, 26, 27])
    // Outer-product broadcast [3,1] - [1,2] runs rows with one repeated operand.
    let c = Tensor(shape: [3, 1], floats: [1, 2, 3]), r = Tensor(shape: [1, 2], floats: [10, 20])
    let y = try runNode("Sub", [c, r])[0]
    #expect(y.shape == [3, 2])
    #expect(y.floats() == [-9, -19, -8, -18, -7, -17])
}

@Test func largeBroadcastMatchesScalarLoop() throws {
    // Big enough to run in parallel chunks that start mid-row.
    let x = Tensor(shape: [3, 5, 7, 301], floats: (0..<(3 * 5 * 7 * 301)).map { Float($0 % 13) })
    let b = Tensor(shape: [5, 1, 301], floats: (0..<(5 * 301)).map { Float($0 % 7) })
    let y = try runNode("Mul", [x, b], threads: 4)[0].floats()
    let xf = x.floats(), bf = b.floats()
    var want: [Float] = []
    for n in 0..<3 { for c in 0..<5 { for h in 0..<7 { for w in 0..<301 {
        want.append(xf[((n * 5 + c) * 7 + h) * 301 + w] * bf[c * 301 + w])
    } } } }
    #expect(y == want)
}

@Test func integerModDivAndShiftSemantics() throws {
    let a = Tensor(shape: [4], values: [Int32(-7), 7, -7, 7]), b = Tensor(shape: [4], values: [Int32(3), -3, -3, 3])
    // fmod=0: the sign of the divisor (Python); fmod=1: the sign of the dividend (C).
    #expect(try runNode("Mod", [a, b])[0].int64s() == [2, -2, -1, 1])
    #expect(try runNode("Mod", [a, b], attrs: [.int("fmod", 1)])[0].int64s() == [-1, 1, -1, 1])
    // Division truncates toward zero; by zero gives 0; Int8.min / -1 wraps instead of trapping.
    #expect(try runNode("Div", [a, b])[0].int64s() == [-2, -2, 2, 2])
    let m = Tensor(shape: [2], values: [Int8.min, 5]), z = Tensor(shape: [2], values: [Int8(-1), 0])
    #expect(try runNode("Div", [m, z])[0].int64s() == [-128, 0])
    // Shifts by negative or too-large amounts shift every bit out.
    let s = Tensor(shape: [3], values: [Int8(-8), 4, 1]), k = Tensor(shape: [3], values: [Int8(-1), 9, 2])
    #expect(try runNode("BitShift", [s, k], attrs: [.string("direction", "LEFT")])[0].int64s() == [0, 0, 4])
    #expect(try runNode("BitShift", [s, k], attrs: [.string("direction", "RIGHT")])[0].int64s() == [-1, 0, 0])
}

@Test func roundIsHalfToEvenAndClipHandlesOpsets() throws {
    let x = Tensor(shape: [5], floats: [0.5, 1.5, 2.5, -0.5, -1.5])
    #expect(try runNode("Round", [x])[0].floats() == [0, 2, 2, -0, -2])
    let v = Tensor(shape: [3], floats: [-2, 0.5, 9])
    #expect(try runNode("Clip", [v], attrs: [.float("min", -1), .float("max", 1)], opset: 6)[0].floats() == [-1, 0.5, 1])
    // From opset 11 the bounds are optional inputs: here only max.
    #expect(try runNode("Clip", [v, nil, Tensor(shape: [], floats: [1])], opset: 13)[0].floats() == [-2, 0.5, 1])
    let i = Tensor(shape: [3], values: [Int64(-5), 3, 50])
    #expect(try runNode("Clip", [i, Tensor(shape: [], values: [Int64(0)]), Tensor(shape: [], values: [Int64(10)])], opset: 13)[0].int64s() == [0, 3, 10])
}

@Test func comparisonsAndWhereBroadcast() throws {
    let a = Tensor(shape: [2, 2], floats: [1, 5, 3, 3]), b = Tensor(shape: [2], floats: [3, 3])
    let less = try runNode("Less", [a, b])[0]
    #expect(less.dtype == .bool)
    #expect(less.int64s() == [1, 0, 0, 0])
    let y = try runNode("Where", [less, Tensor(shape: [], floats: [-1]), a])[0]
    #expect(y.floats() == [-1, 5, 3, 3])
}

@Test func geluApproximationsDiffer() throws {
    let x = Tensor(shape: [1], floats: [1])
    let exact = try runNode("Gelu", [x], opset: 20)[0].floats()[0]
    let tanh = try runNode("Gelu", [x], attrs: [.string("approximate", "tanh")], opset: 20)[0].floats()[0]
    #expect(abs(exact - 0.8413447) < 1e-6)
    #expect(abs(tanh - 0.8411920) < 1e-6)
}
