import Foundation
import QuantAlgorithms
import QuantCore
import QuantIR

/// The deploy model (`--format qoperator`): the QDQ model with each quantized op written as ONNX
/// Runtime's integer operator, so that the model runs integer without ONNX Runtime's QDQ fusion
/// (graph optimizations off) and shows a runtime the integer computation directly, as AMCT's
/// deploy model does.
///
/// A node is converted when every float input it computes on comes from a DequantizeLinear
/// (standard domain, scalar scale; a weight may have per-output-channel scales), its output goes
/// only to QuantizeLinear(s) with one scale and zero point (except MatMul and Gemm, whose integer
/// forms may have float outputs), and its integers are 8-bit of a type pair ONNX Runtime's
/// kernel takes (uint8/uint8, uint8/int8, int8/int8):
///
/// | QDQ | deploy |
/// |---|---|
/// | Conv | QLinearConv (int32 bias) |
/// | MatMul | QLinearMatMul, or com.microsoft MatMulIntegerToFloat with a float output |
/// | Gemm | com.microsoft QGemm (int32 bias; float output allowed) |
/// | Add, Mul | com.microsoft QLinearAdd, QLinearMul |
/// | Concat | com.microsoft QLinearConcat |
/// | AveragePool, GlobalAveragePool | com.microsoft QLinearAveragePool, QLinearGlobalAveragePool |
/// | Sigmoid, LeakyRelu | com.microsoft QLinearSigmoid, QLinearLeakyRelu |
/// | Reshape, Transpose, Flatten, Squeeze, Unsqueeze, MaxPool (opset 12+), Resize (nearest), ... with the same scale and zero point in and out | the same op on the integers |
///
/// Everything else (float regions, 16-bit, int4, per-group weights, bodies of If/Loop/Scan)
/// stays as in the QDQ model. Q/DQ pairs left without readers are removed.
public enum QOperatorExport {
    public struct Report: Sendable {
        /// Converted nodes per deploy op type.
        public var converted: [String: Int] = [:]
        /// Per converted Conv/MatMul/Gemm: its input and weight parameters (`NAME.record.txt`).
        public var records: [Record] = []
    }

    /// AMCT-style per-layer record: data (input) scale and offset, weight scales and offsets.
    public struct Record: Sendable {
        public var layer: String
        public var scaleD: Double
        public var offsetD: Int
        public var scaleW: [Double]
        public var offsetW: [Int]
    }

    /// Ops ONNX Runtime runs on 8-bit integers as they are (MaxPool from opset 12, DepthToSpace on
    /// uint8 only; SpaceToDepth has no integer kernel).
    static let movement: Set<String> = ["Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "MaxPool", "Identity", "DepthToSpace",
                                        "Slice", "Gather"]

    /// The (input, weight) integer types ONNX Runtime's QLinearConv, QLinearMatMul, QGemm and
    /// MatMulIntegerToFloat take: uint8 with uint8 or int8, int8 with int8.
    static func supported(_ a: DType?, _ b: DType?) -> Bool {
        switch (a, b) {
        case (.uint8?, .uint8?), (.uint8?, .int8?), (.int8?, .int8?): true
        default: false
        }
    }

    /// Converts `model`'s main graph in place.
    public static func convert(_ model: Model) throws -> Report {
        let g = model.graph
        var report = Report()
        var names = NameAllocator(g)
        var usesMicrosoft = false
        // One index for the pass: a conversion replaces its node and removes that node's output
        // QuantizeLinears, which no later node looks up (producers of later inputs are unchanged).
        let index = GraphIndex(g)
        let opset = model.opsets[""] ?? 13
        for n in try g.topologicalOrder() where n.isStandard {
            guard let converted = try convert(n, g, index, opset: opset, &names, &report) else { continue }
            usesMicrosoft = usesMicrosoft || converted.domain == "com.microsoft"
            report.converted[converted.opType, default: 0] += 1
        }
        removeDeadNodes(g)
        Preparation.removeUnusedInitializers(g)
        try g.sortTopologically()
        if usesMicrosoft { model.declareDomain("com.microsoft") }
        return report
    }

    /// A value's quantized form: the integers, scale and zero point of the DequantizeLinear producing it.
    struct Quantized {
        var q: String, scale: String, zeroPoint: String
    }

    static func isEightBit(_ t: Tensor?) -> Bool { t.map { $0.dtype == .uint8 || $0.dtype == .int8 } ?? false }

    /// The DequantizeLinear producing `t` (standard, 8-bit, with a zero point): per tensor, or
    /// per channel along `axis` when `axis` is given.
    static func dequantized(_ t: String, _ g: Graph, _ index: GraphIndex, channelAxis axis: Int? = nil) -> Quantized? {
        // ONNX Runtime's com.microsoft DequantizeLinear (per-channel weights below opset 13) reads the same.
        guard let dq = index.producer[t], dq.opType == "DequantizeLinear", dq.isStandard || dq.domain == "com.microsoft", dq.inputs.count == 3,
              dq.attribute("block_size") == nil, let s = g.initializer(dq.inputs[1]), s.dtype == .float, let z = g.initializer(dq.inputs[2]),
              isEightBit(z) else { return nil }
        if s.count > 1 {
            guard let axis, (dq.attribute("axis")?.int ?? 1) == axis, s.rank == 1 else { return nil }
        }
        return Quantized(q: dq.inputs[0], scale: dq.inputs[1], zeroPoint: dq.inputs[2])
    }

    /// The one quantized form every reader of `y` makes of it: its readers are QuantizeLinears
    /// with equal scalar scale and zero point (and `y` is no graph output). Returns the first
    /// (whose output the converted node produces) and the others (whose readers are redirected).
    static func quantizedOutput(_ y: String, _ g: Graph, _ index: GraphIndex) -> (first: Node, others: [Node])? {
        let readers = index.consumers(of: y)
        guard !readers.isEmpty, !g.outputs.contains(where: { $0.name == y }),
              readers.allSatisfy({ $0.opType == "QuantizeLinear" && ($0.isStandard || $0.domain == "com.microsoft") && $0.inputs.count == 3 && $0.inputs[0] == y })
        else { return nil }
        let first = readers[0]
        guard let s = g.initializer(first.inputs[1]), s.count == 1, let z = g.initializer(first.inputs[2]), isEightBit(z) else { return nil }
        for r in readers.dropFirst() {
            guard let s2 = g.initializer(r.inputs[1]), let z2 = g.initializer(r.inputs[2]), s2.bitwiseEqual(s), z2.bitwiseEqual(z) else { return nil }
        }
        return (first, Array(readers.dropFirst()))
    }

    /// Replaces `n` by `op` reading `inputs` and producing the QuantizeLinear's output (or `n`'s
    /// own float output when `out` is nil).
    static func emit(_ op: String, domain: String, _ n: Node, inputs: [String], out: (first: Node, others: [Node])?, _ g: Graph,
                     attributes: [Attribute]) -> Node {
        let output = out?.first.outputs[0] ?? n.outputs[0]
        let m = Node(name: n.name, opType: op, domain: domain, inputs: inputs, outputs: [output])
        for a in attributes { m.setAttribute(a) }
        g.replace(n, with: [m])
        if let out {
            g.remove(out.first)
            for other in out.others {
                g.remove(other)
                g.replaceUses(of: other.outputs[0], with: output)
            }
        }
        return m
    }

    static func convert(_ n: Node, _ g: Graph, _ index: GraphIndex, opset: Int, _ names: inout NameAllocator, _ report: inout Report) throws -> Node? {
        guard let y = n.outputs.first, !y.isEmpty else { return nil }
        let ins = n.inputs
        func has(_ i: Int) -> Bool { i < ins.count && !ins[i].isEmpty }
        let out = quantizedOutput(y, g, index)
        func record(_ x: Quantized, _ w: Quantized) {
            let s = g.initializer(x.scale)!.floats().first.map(Double.init) ?? 0
            let z = Int(g.initializer(x.zeroPoint)!.scalarAsDouble(at: 0))
            let ws = g.initializer(w.scale)!.floats().map(Double.init)
            let wz = g.initializer(w.zeroPoint)!
            report.records.append(Record(layer: n.name, scaleD: s, offsetD: z, scaleW: ws, offsetW: (0..<wz.count).map { Int(wz.scalarAsDouble(at: $0)) }))
        }
        func types(_ a: Quantized, _ b: Quantized) -> Bool { supported(g.initializer(a.zeroPoint)?.dtype, g.initializer(b.zeroPoint)?.dtype) }
        /// An int32 bias behind a DequantizeLinear (scale s_x·s_w, zero point 0).
        func bias(_ i: Int) -> String?? {
            guard has(i) else { return .some(nil) }
            guard let dq = index.producer[ins[i]], dq.opType == "DequantizeLinear", let b = g.initializer(dq.inputs[0]), b.dtype == .int32 else { return nil }
            return .some(dq.inputs[0])
        }
        switch n.opType {
        case "Conv":
            guard let out, let x = dequantized(ins[0], g, index), let w = dequantized(ins[1], g, index, channelAxis: 0),
                  g.isInitializer(w.q), types(x, w), let b = bias(2),
                  g.initializer(w.zeroPoint).map({ z in (0..<z.count).allSatisfy { z.scalarAsDouble(at: $0) == 0 } }) == true else { return nil }
            record(x, w)
            return emit("QLinearConv", domain: "", n, inputs: [x.q, x.scale, x.zeroPoint, w.q, w.scale, w.zeroPoint, out.first.inputs[1], out.first.inputs[2]] + (b.map { [$0] } ?? []),
                        out: out, g, attributes: n.attributes)
        case "MatMul":
            guard let a = dequantized(ins[0], g, index), let b = dequantized(ins[1], g, index, channelAxis: 1), types(a, b) else { return nil }
            let bScale = g.initializer(b.scale)!
            if g.isInitializer(b.q) { record(a, b) }
            if let out {
                // QLinearMatMul takes per-column b parameters as [1, N] in ONNX Runtime.
                var bs = b.scale, bz = b.zeroPoint
                if bScale.count > 1 {
                    bs = names.fresh(b.scale + "_row")
                    g.setInitializer(bs, Tensor(dtype: bScale.dtype, shape: [1, bScale.count], storage: bScale.storage))
                    let z = g.initializer(b.zeroPoint)!
                    bz = names.fresh(b.zeroPoint + "_row")
                    g.setInitializer(bz, Tensor(dtype: z.dtype, shape: [1, z.count], storage: z.storage))
                }
                return emit("QLinearMatMul", domain: "", n, inputs: [a.q, a.scale, a.zeroPoint, b.q, bs, bz, out.first.inputs[1], out.first.inputs[2]],
                            out: out, g, attributes: [])
            }
            return emit("MatMulIntegerToFloat", domain: "com.microsoft", n, inputs: [a.q, b.q, a.scale, b.scale, a.zeroPoint, b.zeroPoint],
                        out: nil, g, attributes: [])
        case "Gemm":
            let transB = n.attribute("transB")?.int ?? 0
            guard let a = dequantized(ins[0], g, index), let w = dequantized(ins[1], g, index, channelAxis: transB == 1 ? 0 : 1), types(a, w), let b = bias(2),
                  (n.attribute("beta")?.float ?? 1) == 1 || !has(2) else { return nil }
            if g.isInitializer(w.q) { record(a, w) }
            let attrs = n.attributes.filter { $0.name != "beta" }
            return emit("QGemm", domain: "com.microsoft", n, inputs: [a.q, a.scale, a.zeroPoint, w.q, w.scale, w.zeroPoint, b ?? ""]
                        + (out.map { [$0.first.inputs[1], $0.first.inputs[2]] } ?? []), out: out, g, attributes: attrs)
        case "Add", "Mul":
            guard let out, ins.count == 2, let a = dequantized(ins[0], g, index), let b = dequantized(ins[1], g, index) else { return nil }
            return emit(n.opType == "Add" ? "QLinearAdd" : "QLinearMul", domain: "com.microsoft", n,
                        inputs: [a.q, a.scale, a.zeroPoint, b.q, b.scale, b.zeroPoint, out.first.inputs[1], out.first.inputs[2]], out: out, g, attributes: [])
        case "Concat":
            guard let out else { return nil }
            var inputs = [out.first.inputs[1], out.first.inputs[2]]
            for t in ins {
                guard let x = dequantized(t, g, index) else { return nil }
                inputs += [x.q, x.scale, x.zeroPoint]
            }
            return emit("QLinearConcat", domain: "com.microsoft", n, inputs: inputs, out: out, g, attributes: n.attributes)
        case "AveragePool", "GlobalAveragePool", "Sigmoid", "LeakyRelu":
            // QLinearAveragePool has no dilations.
            guard let out, let x = dequantized(ins[0], g, index), (n.attribute("dilations")?.ints ?? []).allSatisfy({ $0 == 1 }) else { return nil }
            let op = ["AveragePool": "QLinearAveragePool", "GlobalAveragePool": "QLinearGlobalAveragePool", "Sigmoid": "QLinearSigmoid",
                      "LeakyRelu": "QLinearLeakyRelu"][n.opType]!
            var attrs = n.attributes
            if n.opType == "GlobalAveragePool" { attrs.append(.int("channels_last", 0)) }
            if n.opType == "LeakyRelu" && n.attribute("alpha") == nil { attrs.append(.float("alpha", 0.01)) }
            return emit(op, domain: "com.microsoft", n, inputs: [x.q, x.scale, x.zeroPoint, out.first.inputs[1], out.first.inputs[2]],
                        out: out, g, attributes: attrs)
        case let op where movement.contains(op) || (op == "Resize" && (n.attribute("mode")?.string ?? "nearest") == "nearest"):
            guard let out, let x = dequantized(ins[0], g, index), n.outputs.count == 1,
                  let s = g.initializer(x.scale), let z = g.initializer(x.zeroPoint),
                  op != "MaxPool" || opset >= 12, op != "DepthToSpace" || z.dtype == .uint8,
                  let so = g.initializer(out.first.inputs[1]), let zo = g.initializer(out.first.inputs[2]),
                  s.bitwiseEqual(so), z.bitwiseEqual(zo) else { return nil }
            return emit(op, domain: "", n, inputs: [x.q] + Array(ins.dropFirst()), out: out, g, attributes: n.attributes)
        default:
            return nil
        }
    }

    /// Removes nodes none of whose outputs is read or a graph output, until none is left.
    static func removeDeadNodes(_ g: Graph) {
        while true {
            var read = Set(g.outputs.map(\.name))
            for n in g.nodes {
                read.formUnion(n.inputs)
                for sg in n.subgraphs { read.formUnion(sg.outerScopeReads) }
            }
            let before = g.nodes.count
            g.nodes.removeAll { n in n.outputs.allSatisfy { !read.contains($0) } }
            if g.nodes.count == before { return }
        }
    }

    /// The record as text, one `record` block per converted Conv/MatMul/Gemm (AMCT's
    /// scale_d/offset_d/scale_w/offset_w names; see docs/CONFIG.md "The deploy model").
    public static func recordText(_ records: [Record]) -> String {
        var s = ""
        for r in records {
            s += "record {\n  key: \"\(r.layer)\"\n  value {\n"
            s += "    scale_d: \(r.scaleD)\n    offset_d: \(r.offsetD)\n"
            for w in r.scaleW { s += "    scale_w: \(w)\n" }
            for o in r.offsetW { s += "    offset_w: \(o)\n" }
            s += "  }\n}\n"
        }
        return s
    }
}
