import CKernels
import Foundation
import QuantCore
import QuantExecutor
import QuantIR

/// Fake-quantization parameters of one activation tensor, read from its QuantizeLinear node.
/// `fakeQuantize` computes DequantizeLinear(QuantizeLinear(x)) as the ONNX spec defines it:
/// `q = saturate(round_half_even(x / scale) + zero_point)`, `y = (q − zero_point) · scale`, in
/// Float like ONNX Runtime's kernels.
public struct ActivationQuantization: Sendable {
    public var tensor: String
    public var scales: [Float]
    public var zeroPoints: [Float]
    /// Channel axis for per-channel parameters (nil: per tensor).
    public var axis: Int?
    public var dtype: DType
    public var qmin: Float
    public var qmax: Float

    public init(tensor: String, scales: [Float], zeroPoints: [Float], axis: Int?, dtype: DType, qmin: Float, qmax: Float) {
        self.tensor = tensor
        self.scales = scales
        self.zeroPoints = zeroPoints
        self.axis = axis
        self.dtype = dtype
        self.qmin = qmin
        self.qmax = qmax
    }

    /// The float range the integers cover (first channel): [(qmin − zp)·s, (qmax − zp)·s].
    public var clipRange: (lo: Double, hi: Double) {
        (Double((qmin - zeroPoints[0]) * scales[0]), Double((qmax - zeroPoints[0]) * scales[0]))
    }

    /// `threads` split the work (the result does not depend on it).
    public func fakeQuantize(_ x: Tensor, threads: Int = 1) -> Tensor {
        let src = x.dtype == .float ? x : Tensor(shape: x.shape, floats: x.floats())
        let out = Tensor(dtype: .float, shape: x.shape)
        let a = axis.map { $0 < 0 ? $0 + x.rank : $0 }
        let inner = a.map { x.shape[($0 + 1)...].reduce(1, *) } ?? src.count
        let channels = scales.count
        // Per-channel scales with one zero point (a QuantizeLinear without its zero-point input).
        let zeroPoints = self.zeroPoints.count == channels ? self.zeroPoints : [Float](repeating: self.zeroPoints.first ?? 0, count: channels)
        let (scales, qmin, qmax) = (self.scales, self.qmin, self.qmax)
        if [.float8e4m3fn, .float8e5m2, .float8e4m3fnuz, .float8e5m2fnuz].contains(dtype) {
            // Float8: the nearest number of the format (saturating), zero point 0.
            let f = dtype
            src.withUnsafeBufferPointer(as: Float.self) { s in
                out.withUnsafeMutableBufferPointer(as: Float.self) { o in
                    for i in 0..<s.count {
                        let sc = scales[channels == 1 ? 0 : (i / max(inner, 1)) % channels]
                        o[i] = Float8.toFloat(Float8Encoding.encode(s[i] / sc, f, saturate: true), f) * sc
                    }
                }
            }
            return out
        }
        src.withUnsafeBufferPointer(as: Float.self) { s in
            out.withUnsafeMutableBufferPointer(as: Float.self) { o in
                guard let sp = s.baseAddress, let op = o.baseAddress, s.count > 0 else { return }
                if channels == 1 {
                    parallelFor(s.count, threads: threads, grain: 1 << 16) { r in
                        qk_fake_quantize(sp + r.lowerBound, r.count, scales[0], zeroPoints[0], qmin, qmax, op + r.lowerBound)
                    }
                } else {
                    // Blocks of `inner` values share one channel.
                    parallelFor(s.count / max(inner, 1), threads: threads, grain: max(1, (1 << 16) / max(inner, 1))) { r in
                        for b in r {
                            let c = b % channels
                            qk_fake_quantize(sp + b * inner, inner, scales[c], zeroPoints[c], qmin, qmax, op + b * inner)
                        }
                    }
                }
            }
        }
        return out
    }
}

/// The quantization structure of a QDQ model (written by QuantKit, ONNX Runtime's
/// quantize_static or any tool emitting QuantizeLinear → DequantizeLinear pairs): which float
/// tensors are quantized with which parameters, which DequantizeLinear outputs stand for them,
/// and the quantized ops (nodes reading a DequantizeLinear output) in graph order.
public struct QDQLayout: Sendable {
    /// One quantized op and the tensor its error is measured on.
    public struct Layer: Sendable {
        public var node: String
        public var opType: String
        /// The op's output, or the output of an activation absorbed behind it (Conv → Relu → Q):
        /// the tensor whose quantized value the next op reads.
        public var tensor: String
        /// Float tensors whose quantized values the op reads.
        public var activationInputs: [String]
        /// Element type of the quantized weight, and whether it has one scale per channel.
        public var weightType: String?
        public var weightPerChannel: Bool?
    }

    public var activations: [String: ActivationQuantization] = [:]
    /// DequantizeLinear output → the float tensor it dequantizes.
    public var dequantizedActivations: [String: String] = [:]
    /// Quantized float tensor → the outputs of its DequantizeLinear nodes.
    public var dequantizedOutputs: [String: [String]] = [:]
    public var layers: [Layer] = []
    public var weightTensors = 0

    /// Covers the main graph, then each If/Loop/Scan body (value names are unique model-wide).
    public init(model: Model) throws {
        let graphs = [model.graph] + model.graph.allSubgraphs
        let order = try graphs.flatMap { try $0.topologicalOrder() }
        var producer: [String: Node] = [:]
        var consumers: [String: [Node]] = [:]
        for n in order {
            for o in n.outputs where !o.isEmpty { producer[o] = n }
            for i in n.inputs where !i.isEmpty { consumers[i, default: []].append(n) }
        }
        func constant(_ name: String) -> Tensor? {
            for g in graphs { if let t = g.initializer(name) { return t } }
            if let p = producer[name], p.opType == "Constant" { return try? p.attribute("value")?.tensor() }
            return nil
        }
        func isQ(_ n: Node) -> Bool { n.opType == "QuantizeLinear" }
        func isDQ(_ n: Node) -> Bool { n.opType == "DequantizeLinear" }
        var weightDQ: [String: (String, Bool)] = [:]
        for n in order where isDQ(n) {
            guard let src = n.inputs.first, let scale = n.inputs.count > 1 ? constant(n.inputs[1]) : nil else { continue }
            if let q = producer[src], isQ(q) {
                let zp = n.inputs.count > 2 && !n.inputs[2].isEmpty ? constant(n.inputs[2]) : nil
                let dtype = zp?.dtype ?? .uint8
                let (lo, hi) = QDQLayout.integerRange(dtype)
                let tensor = q.inputs[0]
                dequantizedActivations[n.outputs[0]] = tensor
                dequantizedOutputs[tensor, default: []].append(n.outputs[0])
                // One scale and zero point repeated along an axis (QuantKit's input of a Conv
                // kept float between quantized tensors) is the per-tensor quantization.
                var scales = scale.floats(), zeroPoints = zp?.floats() ?? [0]
                if scales.count > 1, Set(scales).count == 1, Set(zeroPoints).count == 1 { scales = [scales[0]]; zeroPoints = [zeroPoints[0]] }
                activations[tensor] = ActivationQuantization(
                    tensor: tensor, scales: scales, zeroPoints: zeroPoints,
                    axis: scales.count > 1 ? (n.attribute("axis")?.int ?? 1) : nil, dtype: dtype, qmin: lo, qmax: hi)
            } else if constant(src) != nil {
                weightDQ[n.outputs[0]] = (constant(src)!.dtype.name, scale.count > 1)
                weightTensors += 1
            }
        }
        // A per-group weight's DequantizeLinear is followed by Reshape/Slice/Transpose of
        // constants back to the weight's shape (QuantKit's form below opset 21): the chain is the
        // weight, not a layer.
        var weightChain = Set<ObjectIdentifier>()
        for n in order where ["Reshape", "Slice", "Transpose"].contains(n.opType) {
            guard let first = n.inputs.first, let w = weightDQ[first], n.inputs.dropFirst().allSatisfy({ $0.isEmpty || constant($0) != nil }),
                  let out = n.outputs.first else { continue }
            weightDQ[out] = (w.0, true)
            weightChain.insert(ObjectIdentifier(n))
        }
        // Ops whose outputs are not float values (shapes, sizes) have no error to measure.
        let nonNumeric: Set<String> = ["Shape", "Size"]
        for n in order where !isQ(n) && !isDQ(n) && !nonNumeric.contains(n.opType) && !weightChain.contains(ObjectIdentifier(n)) {
            let acts = n.inputs.compactMap { dequantizedActivations[$0] }
            let weight = n.inputs.lazy.compactMap { weightDQ[$0] }.first
            guard !acts.isEmpty || weight != nil, let out = n.outputs.first, !out.isEmpty else { continue }
            // Follow an absorbed activation (Conv → Relu → QuantizeLinear) to the quantized tensor.
            var tensor = out
            for _ in 0..<2 where activations[tensor] == nil {
                guard let next = consumers[tensor], next.count == 1, !isQ(next[0]), next[0].outputs.count == 1,
                      next[0].inputs.filter({ !$0.isEmpty && constant($0) == nil }) == [tensor],
                      !next[0].inputs.contains(where: { dequantizedActivations[$0] != nil }) else { break }
                tensor = next[0].outputs[0]
            }
            if activations[tensor] == nil { tensor = out }
            layers.append(Layer(node: n.name.isEmpty ? out : n.name, opType: n.opType, tensor: tensor, activationInputs: acts,
                                weightType: weight?.0, weightPerChannel: weight?.1))
        }
    }

    static func integerRange(_ t: DType) -> (Float, Float) {
        switch t {
        case .int8: (-128, 127)
        case .uint16: (0, 65535)
        case .int16: (-32768, 32767)
        case .int4: (-8, 7)
        case .uint4: (0, 15)
        case .int32: (Float(Int32.min), Float(Int32.max))
        case .float8e4m3fn, .float8e5m2, .float8e4m3fnuz, .float8e5m2fnuz: (-Float8Encoding.format(t).max, Float8Encoding.format(t).max)
        default: (0, 255)
        }
    }
}
