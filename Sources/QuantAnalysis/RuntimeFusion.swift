import QuantCore
import QuantIR

/// Which Conv/ConvTranspose/MatMul/Gemm nodes of a QDQ model ONNX Runtime's CPU provider will
/// run as integer kernels, from its QDQ fusion rules (the node-group selectors of its
/// QDQSelectorActionTransformer, ORT 1.23):
///
/// - every input the op reads (X, W and a bias when present; MatMul's two) must come from a
///   DequantizeLinear (ONNX Runtime duplicates a DequantizeLinear read by several nodes first);
/// - Conv/ConvTranspose: every reader of the output is a QuantizeLinear (or a Relu/Clip whose
///   only reader is one) and the output is no graph output; the QuantizeLinear's type is the
///   input's; int8 input needs int8 weights; a bias is int32 → QLinearConv;
/// - ConvTranspose: no QDQ fusion in the CPU provider (it runs float between the
///   DequantizeLinear and QuantizeLinear nodes);
/// - MatMul: with QuantizeLinear readers as for Conv → QLinearMatMul; with no QuantizeLinear
///   reader at all → MatMulIntegerToFloat (a float output), or, when its one reader is an Add
///   of an int32 DequantizeLinear bias, QGemm after ONNX Runtime's MatMulAddFusion; an Add of a
///   float constant [N] is fused into a Gemm with a float bias, which no selector takes (float);
/// - Gemm: a QuantizeLinear output as for Conv, or none → QGemm; a bias needs beta 1 and int32;
/// - no 16-bit or 4-bit activations and weights (no CPU kernels for them at 8-bit QDQ
///   fusion's level).
///
/// Checked against ONNX Runtime's optimized graphs in `Tests/interop/test_fusion_real.py`.
public enum RuntimeFusion {
    /// One compute node and how ONNX Runtime will run it.
    public struct Kernel: Codable, Sendable, Equatable {
        public var node: String
        public var opType: String
        /// The integer kernel (QLinearConv, QLinearMatMul, MatMulIntegerToFloat, QGemm), nil
        /// when the node runs float.
        public var integerKernel: String?
        /// Why the node runs float (nil when it runs integer).
        public var reason: String?
    }

    /// How much of a QDQ model runs integer in ONNX Runtime.
    public struct Summary: Codable, Sendable, Equatable {
        public var kernels: [Kernel]

        public init(kernels: [Kernel]) { self.kernels = kernels }
        public var total: Int { kernels.count }
        public var integer: Int { kernels.filter { $0.integerKernel != nil }.count }
        public var floatKernels: [Kernel] { kernels.filter { $0.integerKernel == nil } }

        /// Integer kernel names with their counts, most frequent first.
        public var byKernel: [(String, Int)] {
            var d: [String: Int] = [:]
            for k in kernels { if let i = k.integerKernel { d[i, default: 0] += 1 } }
            return d.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
        }

        /// One line for the summary: "12 of 13 Conv/MatMul/Gemm ... ; float: ...".
        public var line: String {
            guard total > 0 else { return "no Conv/ConvTranspose/MatMul/Gemm in the model" }
            var s = "\(integer) of \(total) Conv/MatMul/Gemm run as integer kernels in ONNX Runtime"
            if !byKernel.isEmpty { s += " (" + byKernel.map { "\($0.0) \($0.1)" }.joined(separator: ", ") + ")" }
            if !floatKernels.isEmpty { s += "; float: " + floatReasons }
            return s
        }

        /// The float nodes grouped by reason, at most 3 groups and 3 names each:
        /// "'a', 'b' (reason); 'c' (other reason)".
        public var floatReasons: String {
            var order: [String] = [], nodes: [String: [String]] = [:]
            for k in floatKernels {
                let r = k.reason ?? "?"
                if nodes[r] == nil { order.append(r) }
                nodes[r, default: []].append(k.node)
            }
            var parts = order.prefix(3).map { r in
                let ns = nodes[r]!
                return ns.prefix(3).map { "'\($0)'" }.joined(separator: ", ") + (ns.count > 3 ? " and \(ns.count - 3) more" : "") + " (\(r))"
            }
            if order.count > 3 { parts.append("\(order.dropFirst(3).reduce(0) { $0 + nodes[$1]!.count }) more for other reasons") }
            return parts.joined(separator: "; ")
        }
    }

    static let computeOps: Set<String> = ["Conv", "ConvTranspose", "MatMul", "Gemm"]

    /// The verdict for every Conv/ConvTranspose/MatMul/Gemm of `model` (main graph first, then
    /// If/Loop/Scan bodies).
    public static func summary(of model: Model) -> Summary {
        var kernels: [Kernel] = []
        for g in [model.graph] + model.graph.allSubgraphs {
            let index = GraphIndex(g)
            let outputs = Set(g.outputs.map(\.name))
            for n in g.nodes where n.isStandard && computeOps.contains(n.opType) {
                kernels.append(verdict(n, g, index, outputs))
            }
        }
        return Summary(kernels: kernels)
    }

    /// The integer type a DequantizeLinear reads (its input's element type), when known.
    static func dequantizedType(_ dq: Node, _ g: Graph, _ index: GraphIndex) -> DType? {
        guard let x = dq.inputs.first else { return nil }
        if let t = g.initializer(x) { return t.dtype }
        if let q = index.producer[x], isQ(q) { return quantizedType(q, g) }
        return g.valueInfo(for: x)?.tensorType?.elementType
    }

    /// A QuantizeLinear's output type: its zero point's, else `output_dtype`, else uint8.
    static func quantizedType(_ q: Node, _ g: Graph) -> DType? {
        if q.inputs.count > 2, !q.inputs[2].isEmpty {
            return g.initializer(q.inputs[2])?.dtype ?? g.valueInfo(for: q.inputs[2])?.tensorType?.elementType
        }
        if let code = q.attribute("output_dtype")?.int, code != 0 { return DType(rawValue: Int32(code)) }
        return .uint8
    }

    /// The DequantizeLinear of a per-group weight `t`: one with `block_size`, or one behind the
    /// Reshape/Slice/Transpose chain QuantKit writes for groups below opset 21.
    static func groupedWeightDQ(_ t: String, _ index: GraphIndex) -> Node? {
        var x = t, hops = 0
        while let p = index.producer[x] {
            if isDQ(p) { return hops > 0 || (p.attribute("block_size")?.int ?? 0) > 0 ? p : nil }
            guard p.isStandard, ["Reshape", "Slice", "Transpose"].contains(p.opType), let i = p.inputs.first, hops < 4 else { return nil }
            x = i
            hops += 1
        }
        return nil
    }

    static func isQ(_ n: Node) -> Bool { n.opType == "QuantizeLinear" && (n.isStandard || n.domain == "com.microsoft") }
    static func isDQ(_ n: Node) -> Bool { n.opType == "DequantizeLinear" && (n.isStandard || n.domain == "com.microsoft") }

    static func verdict(_ n: Node, _ g: Graph, _ index: GraphIndex, _ graphOutputs: Set<String>) -> Kernel {
        func float(_ why: String) -> Kernel { Kernel(node: n.name, opType: n.opType, integerKernel: nil, reason: why) }
        let present = n.inputs.enumerated().filter { !$0.element.isEmpty }
        var types: [Int: DType?] = [:]
        for (k, t) in present {
            if k == 1, let dq = groupedWeightDQ(t, index) {
                return float("weight is quantized per group (\(dequantizedType(dq, g, index)?.name ?? "integer") blocks): no integer kernel in ONNX Runtime's CPU provider")
            }
            guard let p = index.producer[t], isDQ(p) else {
                let what = k == 0 ? "its input" : (k == 1 ? (g.isInitializer(t) ? "its float weight" : "its second input") : "its bias")
                if present.allSatisfy({ i in !(index.producer[i.element].map(isDQ) ?? false) }) {
                    return float("kept float: no quantized input")
                }
                return float("\(what) '\(t)' is not quantized (no DequantizeLinear before it)")
            }
            types[k] = dequantizedType(p, g, index)
        }
        guard let first = n.outputs.first, !first.isEmpty else { return float("no output") }
        if n.opType == "ConvTranspose" { return float("ONNX Runtime's CPU provider has no quantized ConvTranspose: it runs float between its Q/DQ") }
        let input = types[0] ?? nil, weight = types[1] ?? nil
        for (k, t) in [(0, input), (1, weight)] where t == .int16 || t == .uint16 || t == .int4 || t == .uint4 {
            return float("\(k == 0 ? "input" : "weight") is \(t!.name): no integer kernel in ONNX Runtime's CPU provider")
        }
        if input == .int8 && weight != .int8 { return float("int8 input needs int8 weights (weights are \(weight?.name ?? "of unknown type"))") }
        if types.count > 2, let b = types[2] ?? nil, b != .int32 { return float("bias is \(b.name), not int32") }
        if n.opType == "Gemm", types.count > 2, (n.attribute("beta")?.float ?? 1) != 1 { return float("Gemm with a bias and beta != 1") }

        // The output side: Q readers (through a redundant Relu/Clip), none, or a mix.
        var readers = index.consumers(of: first)
        var end = first
        if readers.count == 1, ["Relu", "Clip"].contains(readers[0].opType), readers[0].isStandard, !graphOutputs.contains(first),
           let o = readers[0].outputs.first, index.consumers(of: o).count == 1, index.consumers(of: o).allSatisfy(isQ), !graphOutputs.contains(o) {
            end = o
            readers = index.consumers(of: o)
        }
        let qReaders = readers.filter(isQ)
        let isOutput = graphOutputs.contains(end)
        let floatOutputAllowed = n.opType == "MatMul" || n.opType == "Gemm"
        if qReaders.isEmpty {
            guard floatOutputAllowed else {
                if isOutput { return float("its output is a graph output, not quantized") }
                return float("its output is not quantized (read by \(readers.first.map { "\($0.opType) '\($0.name)'" } ?? "nothing"))")
            }
            if n.opType == "MatMul", !isOutput, readers.count == 1, readers[0].isStandard, readers[0].opType == "Add", readers[0].inputs.count == 2 {
                // MatMulAddFusion makes a Gemm of MatMul + Add(bias [N]) first.
                let other = readers[0].inputs[readers[0].inputs[0] == first ? 1 : 0]
                if let p = index.producer[other], isDQ(p), dequantizedType(p, g, index) == .int32 {
                    // QGemm where ONNX Runtime knows the input is a matrix (or of static shape).
                    return Kernel(node: n.name, opType: n.opType, integerKernel: "QGemm or MatMulIntegerToFloat", reason: nil)
                }
                if let b = g.initializer(other), b.dtype == .float, b.rank == 1 || (b.rank == 2 && b.shape[0] == 1) {
                    return float("ONNX Runtime fuses it with the Add of float bias '\(other)' into a Gemm, which has no integer kernel with a float bias")
                }
            }
            return Kernel(node: n.name, opType: n.opType, integerKernel: n.opType == "MatMul" ? "MatMulIntegerToFloat" : "QGemm", reason: nil)
        }
        if qReaders.count != readers.count {
            let other = readers.first { !isQ($0) }!
            return float("its output is read both quantized and by \(other.opType) '\(other.name)'")
        }
        if isOutput { return float("its output is also a graph output") }
        let outType = quantizedType(qReaders[0], g)
        if outType != input { return float("input is \(input?.name ?? "?") but output is quantized to \(outType?.name ?? "?")") }
        let kernel = ["Conv": "QLinearConv", "MatMul": "QLinearMatMul", "Gemm": "QGemm"][n.opType]!
        return Kernel(node: n.name, opType: n.opType, integerKernel: kernel, reason: nil)
    }
}
