import QuantCore
import QuantExecutor
import QuantIR
import Testing

/// xq ─ DQ ─ Conv 3×3 (DQ int8 weights per output channel, DQ int32 bias) ─ Q ─ yq, and the
/// same computation as one QLinearConv node.
private func qdqConv(xType: DType, domain: String) -> (qdq: Model, qlinear: Model) {
    let (c, m) = (16, 8)
    var rng = SplitMixForTests(seed: 19)
    let w = Tensor(shape: [m, c, 3, 3], values: (0..<(m * c * 9)).map { _ in Int8(clamping: Int((rng.next() * 127).rounded())) })
    let ws = Tensor(shape: [m], floats: (0..<m).map { _ in 0.003 + 0.002 * abs(rng.next()) })
    let b = Tensor(shape: [m], values: (0..<m).map { _ in Int32((rng.next() * 3000).rounded()) })
    let xs: Float = 0.047, ys: Float = 0.2371
    let xz: Tensor = xType == .uint8 ? Tensor(shape: [], values: [UInt8(7)]) : Tensor(shape: [], values: [UInt16(700)])
    let yz: Tensor = xType == .uint8 ? Tensor(shape: [], values: [UInt8(121)]) : Tensor(shape: [], values: [UInt16(12100)])
    let bs = Tensor(shape: [m], floats: ws.floats().map { xs * $0 })
    let inits = [
        Initializer(name: "xs", tensor: Tensor(shape: [], floats: [xs])), Initializer(name: "xz", tensor: xz),
        Initializer(name: "w", tensor: w), Initializer(name: "ws", tensor: ws), Initializer(name: "wz", tensor: Tensor(shape: [m], values: [Int8](repeating: 0, count: m))),
        Initializer(name: "b", tensor: b), Initializer(name: "bs", tensor: bs), Initializer(name: "bz", tensor: Tensor(shape: [m], values: [Int32](repeating: 0, count: m))),
        Initializer(name: "ys", tensor: Tensor(shape: [], floats: [ys])), Initializer(name: "yz", tensor: yz),
    ]
    let xInfo = ValueInfo(name: "xq", type: TensorType(elementType: xType, shape: [.param("N"), .value(c), .param("H"), .param("W")]))
    let convAttributes: [Attribute] = [.ints("pads", [1, 1, 1, 1])]
    let g = Graph(name: "qdq", initializers: inits)
    g.inputs = [xInfo]
    g.outputs = [ValueInfo(name: "yq", type: TensorType(elementType: xType, shape: nil)), ValueInfo(name: "probe", type: TensorType(elementType: .float, shape: nil))]
    g.nodes = [
        Node(name: "dqx", opType: "DequantizeLinear", domain: domain, inputs: ["xq", "xs", "xz"], outputs: ["x"]),
        Node(name: "dqw", opType: "DequantizeLinear", domain: domain, inputs: ["w", "ws", "wz"], outputs: ["wf"], attributes: [.int("axis", 0)]),
        Node(name: "dqb", opType: "DequantizeLinear", domain: domain, inputs: ["b", "bs", "bz"], outputs: ["bf"], attributes: [.int("axis", 0)]),
        Node(name: "conv", opType: "Conv", inputs: ["x", "wf", "bf"], outputs: ["y"], attributes: convAttributes),
        Node(name: "q", opType: "QuantizeLinear", domain: domain, inputs: ["y", "ys", "yz"], outputs: ["yq"]),
        Node(name: "probe", opType: "Identity", inputs: ["x"], outputs: ["probe"]),
    ]
    let l = Graph(name: "qlinear", initializers: inits)
    l.inputs = [xInfo]
    l.outputs = [ValueInfo(name: "yq", type: TensorType(elementType: xType, shape: nil))]
    l.nodes = [Node(name: "qlc", opType: "QLinearConv", inputs: ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], outputs: ["yq"], attributes: convAttributes)]
    let opsets = domain.isEmpty ? ["": 13] : ["": 13, "com.microsoft": 1]
    return (Model(graph: g, opsets: opsets), Model(graph: l, opsets: ["": 13]))
}

final class ValueGrabber: ExecutionHook {
    var values: [String: Tensor] = [:]
    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        values[executor.name(of: value)] = tensor
        return nil
    }
}

@Test(arguments: ["", "com.microsoft"])
func integerConvComputesTheQLinearConvIntegers(domain: String) throws {
    let (qdq, qlinear) = qdqConv(xType: .uint8, domain: domain)
    var rng = SplitMixForTests(seed: 23)
    // The integers must be QLinearConv's exactly. (Whether the node-by-node run differs needs a
    // sum within an ulp of a rounding tie, which this small layer does not produce; the interop
    // test `test_integer_conv_run_equals_onnxruntime_fused` shows that difference on a quantized
    // CNN and that the integer path removes it.)
    let shape = [4, 16, 64, 64]
    let x = Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in UInt8(7 + 16 * Int((rng.next() + 1) * 7.99)) })
    let integer = try Executor(model: qdq, options: ExecutorOptions(threads: 2, integerConv: true))
    let reference = try #require(try Executor(model: qlinear, options: ExecutorOptions(threads: 2)).run(["xq": x])["yq"])
    func differing(_ a: Tensor, _ b: Tensor) -> Int { zip(a.doubles(), b.doubles()).filter { $0 != $1 }.count }
    // Not saturated: most outputs strictly inside the uint8 range.
    #expect(reference.doubles().filter { $0 > 0 && $0 < 255 }.count > reference.count / 2)
    for hooked in [false, true] {
        let grabber = ValueGrabber()
        let y = try #require(try integer.run(["xq": x], hooks: hooked ? [grabber] : [])["yq"])
        #expect(y.dtype == .uint8 && y.shape == [4, 8, 64, 64])
        #expect(differing(y, reference) == 0)
        // With a hook every node still runs: the Conv's float output is observed.
        if hooked { #expect(grabber.values["y"]?.shape == [4, 8, 64, 64]) }
    }
}

@Test func integerConvLeavesSixteenBitGroupsAsWritten() throws {
    // ONNX Runtime has no 16-bit QLinearConv: such a group runs node by node either way.
    let (qdq, _) = qdqConv(xType: .uint16, domain: "com.microsoft")
    var rng = SplitMixForTests(seed: 29)
    let x = Tensor(shape: [1, 16, 9, 8], values: (0..<(16 * 72)).map { _ in UInt16(Int((rng.next() + 1) * 30000)) })
    let a = try #require(try Executor(model: qdq, options: ExecutorOptions(threads: 1, integerConv: true)).run(["xq": x])["yq"])
    let b = try #require(try Executor(model: qdq, options: ExecutorOptions(threads: 1)).run(["xq": x])["yq"])
    #expect(a.dtype == .uint16)
    #expect(a.doubles() == b.doubles() && a.count == 8 * 72)
}

@Test func qLinearConvInSampleChunksEqualsTheWholeBatch() throws {
    // One thread: chunks of 2 samples (2, 2, 1 for a batch of 5); eight threads: one chunk.
    let (_, qlinear) = qdqConv(xType: .uint8, domain: "")
    var rng = SplitMixForTests(seed: 29)
    let shape = [5, 16, 12, 12]
    let x = Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in UInt8(Int((rng.next() + 1) * 127.9)) })
    let chunked = try #require(try Executor(model: qlinear, options: ExecutorOptions(threads: 1)).run(["xq": x])["yq"])
    let whole = try #require(try Executor(model: qlinear, options: ExecutorOptions(threads: 8)).run(["xq": x])["yq"])
    #expect(chunked.shape == [5, 8, 12, 12] && chunked.dtype == .uint8)
    #expect(chunked.doubles() == whole.doubles())
    #expect(Set(chunked.doubles()).count > 16)
}
