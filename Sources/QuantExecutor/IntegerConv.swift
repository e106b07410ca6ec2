import QuantCore
import QuantIR

/// DequantizeLinear → Conv → QuantizeLinear run as ONNX Runtime's CPU provider runs them: one
/// integer QLinearConv (exact int32 sums, then float32 requantization, `QuantizationInteger`).
///
/// Run as written, the Conv sums dequantized floats and QuantizeLinear divides by the output
/// scale; a sum within an ulp of k + 0.5 output steps then rounds by the order of the float
/// additions, and where the input is constant (a blank background) a whole region moves by one
/// step. ONNX Runtime fuses these groups, so a simulation meant to predict it must too: on
/// PP-OCRv4 rec the QDQ model run as written agrees with ONNX Runtime's fused run to a cosine of
/// 0.9925, with the groups run as QLinearConv to 0.99999 (`Benchmarks/simulation_vs_ort.py`).
///
/// With `ExecutorOptions.integerConv` the plan keeps every node (the Conv still produces its
/// float output, which hooks observe) and gives the QuantizeLinear step a kernel that computes
/// its integers from the group's quantized inputs instead of from the Conv output. It applies
/// where ONNX Runtime's rule does: 8-bit x and y of one type, int8 weights (or uint8 with uint8
/// x), per-tensor x and y scales, weights per tensor or per output channel, an int32 bias, and a
/// Conv output read by the QuantizeLinear alone; otherwise the QuantizeLinear runs as written.
/// Unlike ONNX Runtime it also applies where the Conv output is a graph output, so that a model
/// with every tensor exposed (`export-all-outputs`) shows the values the simulation computes.
enum IntegerConv {
    typealias Step = GraphPlan.Step

    /// The ONNX domain, or com.microsoft (per-axis and 16-bit Q/DQ below opset 13 and 21).
    static func quantizationDomain(_ n: Node) -> Bool { n.isStandard || n.domain == "com.microsoft" }

    static func rewrite(_ steps: [Step], constants: [Int: Tensor], names: [String], options: ExecutorOptions) -> [Step] {
        guard let factory = options.registry.factory(domain: "", op: "QLinearConv") else { return steps }
        var producer: [Int: Int] = [:]
        var uses: [Int: Int] = [:]
        for (i, s) in steps.enumerated() {
            for o in s.outputs where o >= 0 { producer[o] = i }
            for v in s.inputs where v >= 0 { uses[v, default: 0] += 1 }
        }
        func dequantize(_ v: Int) -> Step? {
            guard let p = producer[v], quantizationDomain(steps[p].node), steps[p].node.opType == "DequantizeLinear",
                  steps[p].node.attribute("block_size") == nil, steps[p].inputs.count >= 2, steps[p].inputs[0] >= 0 else { return nil }
            return steps[p]
        }
        func input(_ s: Step, _ k: Int) -> Int { k < s.inputs.count ? s.inputs[k] : -1 }
        var out = steps
        for (i, q) in steps.enumerated() where quantizationDomain(q.node) && q.node.opType == "QuantizeLinear" {
            guard q.inputs.count >= 2, q.inputs[0] >= 0, let c = producer[q.inputs[0]], steps[c].node.isStandard,
                  steps[c].node.opType == "Conv", uses[q.inputs[0]] == 1,
                  q.node.attribute("output_dtype") == nil, q.node.attribute("block_size") == nil
            else { continue }
            let conv = steps[c]
            guard conv.inputs.count >= 2, let x = dequantize(conv.inputs[0]), let w = dequantize(conv.inputs[1]),
                  constants[w.inputs[0]] != nil,
                  // Per-channel weights must be per output channel (DequantizeLinear's default axis is 1).
                  (w.node.attribute("axis")?.int ?? 1) == 0 || constants[w.inputs[1]]?.count == 1
            else { continue }
            var bias = -1
            if input(conv, 2) >= 0 {
                guard let b = dequantize(conv.inputs[2]), let bq = constants[b.inputs[0]], bq.dtype == .int32 else { continue }
                bias = b.inputs[0]
            }
            let ids = [x.inputs[0], x.inputs[1], input(x, 2), w.inputs[0], w.inputs[1], input(w, 2), q.inputs[1], input(q, 2), bias]
            let node = Node(name: q.node.name, opType: "QLinearConv", inputs: ids.map { $0 >= 0 ? names[$0] : "" }, outputs: q.node.outputs,
                            attributes: conv.node.attributes)
            let ctx = KernelContext(node: node, opset: 10, options: options, constantLookup: { _ in nil },
                                    compileSubgraph: { _ in throw ExecutorError.unsupportedFeature(node, "subgraphs in QLinearConv") })
            guard let integer = try? factory(ctx) else { continue }
            let kernel = IntegerConvKernel(integer: integer, written: q.kernel)
            out[i] = Step(node: q.node, kernel: kernel, inputs: Array(q.inputs.prefix(3)) + [Int](repeating: -1, count: max(0, 3 - q.inputs.count)) + ids,
                          outputs: q.outputs, label: "QLinearConv")
        }
        return out
    }
}

/// QuantizeLinear of a Conv output, computed as QLinearConv from the group's quantized inputs
/// when their types are those ONNX Runtime fuses, else as written. Inputs: the QuantizeLinear's
/// (y, y_scale, y_zero_point), then QLinearConv's nine.
final class IntegerConvKernel: Kernel {
    let integer: Kernel
    let written: Kernel

    init(integer: Kernel, written: Kernel) {
        self.integer = integer
        self.written = written
    }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        let q = Array(inputs[3...])
        if let x = q[0], let xs = q[1], let w = q[3], let ws = q[4], let ys = q[6], let yz = q[7],
           x.dtype == .uint8 || x.dtype == .int8, yz.dtype == x.dtype, w.dtype == .int8 || (w.dtype == .uint8 && x.dtype == .uint8),
           xs.count == 1, ys.count == 1, yz.count == 1, q[2].map({ $0.count == 1 && $0.dtype == x.dtype }) ?? true,
           ws.count == 1 || ws.count == w.shape.first, q[8].map({ $0.dtype == .int32 }) ?? true {
            return try integer.run(q, env)
        }
        return try written.run(Array(inputs[..<3]), env)
    }
}
