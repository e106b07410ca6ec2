import QuantCore
import QuantIR

/// What quantization does around one operator, decided from its type and operands.
public struct OpRule: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Integer kernels exist: quantize the listed inputs and the output.
        case compute
        /// Data movement: output shares the input's scale and zero point (no requantization).
        case shareInput
        /// Concat: every input and the output share one scale.
        case concat
    }

    public var kind: Kind
    /// Inputs quantized with the activation grid (constant operands included).
    public var activationInputs: [Int]
    /// The weight input and its output-channel axis (per-channel scales along it).
    public var weight: (index: Int, axis: Int)?
    /// The bias input (int32, scale s_input·s_weight; with a weight computed at run time, and
    /// so quantized as an activation input, s_weight is that activation's scale).
    public var bias: Int?
    /// A second constant weight quantized like `weight`, along the same axis (the recurrence
    /// weight R of RNN/GRU/LSTM).
    public var secondWeight: Int? = nil

    public static func == (a: OpRule, b: OpRule) -> Bool {
        a.kind == b.kind && a.activationInputs == b.activationInputs && a.weight?.index == b.weight?.index
            && a.weight?.axis == b.weight?.axis && a.bias == b.bias && a.secondWeight == b.secondWeight
    }

    static func compute(_ inputs: [Int], weight: (Int, Int)? = nil, bias: Int? = nil) -> OpRule {
        OpRule(kind: .compute, activationInputs: inputs, weight: weight.map { (index: $0.0, axis: $0.1) }, bias: bias)
    }
}

/// What the rewrite knows about an op family beyond its rule: how it meets float neighbours,
/// activations and ONNX Runtime's own graph optimizations.
public struct OpTraits: Sendable, Equatable {
    /// A Relu, or Clip(0, max), right after it is absorbed into its quantized output (the range
    /// [0, max] clamps as the activation did).
    public var absorbsActivation = false
    /// It is such an activation (Relu, Clip).
    public var absorbable = false
    /// Keeps its rule when every reader runs float: an integer kernel with a float output exists,
    /// or it is absorbed.
    public var quantizedBeforeFloatReaders = false
    /// With every reader float (or as a graph output) its output stays float and it still fuses:
    /// `DQ -> MatMul` is MatMulIntegerToFloat, `DQ -> Gemm` a QGemm with a float output.
    public var floatOutputFuses = false
    /// ONNX Runtime (1.20+, `WeightBiasQuantization`) quantizes its float weight itself when it
    /// sits between a DequantizeLinear and a QuantizeLinear.
    public var runtimeQuantizesWeight = false
    /// Reads a weight (input 1) and a bias (input 2) that are quantized as weights.
    public var hasWeight = false

    /// Conv and ConvTranspose.
    static let convolution = OpTraits(absorbsActivation: true, quantizedBeforeFloatReaders: true, runtimeQuantizesWeight: true, hasWeight: true)
    static let gemm = OpTraits(absorbsActivation: true, quantizedBeforeFloatReaders: true, floatOutputFuses: true, runtimeQuantizesWeight: true, hasWeight: true)
    static let matMul = OpTraits(absorbsActivation: true, quantizedBeforeFloatReaders: true, floatOutputFuses: true, hasWeight: true)
    static let add = OpTraits(absorbsActivation: true)
    static let activation = OpTraits(absorbable: true, quantizedBeforeFloatReaders: true)
    static let none = OpTraits()

    init(absorbsActivation: Bool = false, absorbable: Bool = false, quantizedBeforeFloatReaders: Bool = false, floatOutputFuses: Bool = false,
         runtimeQuantizesWeight: Bool = false, hasWeight: Bool = false) {
        self.absorbsActivation = absorbsActivation
        self.absorbable = absorbable
        self.quantizedBeforeFloatReaders = quantizedBeforeFloatReaders
        self.floatOutputFuses = floatOutputFuses
        self.runtimeQuantizesWeight = runtimeQuantizesWeight
        self.hasWeight = hasWeight
    }
}

/// The per-op rule registry: one small function per op family.
public enum OpRules {
    /// The rule for `node`, or nil when the op stays float. `isConstant` tells which values are
    /// initializers.
    /// The traits of `node`'s op family (none for ops of other domains).
    public static func traits(of node: Node) -> OpTraits {
        guard node.isStandard else { return .none }
        switch node.opType {
        case "Conv", "ConvTranspose": return .convolution
        case "Gemm": return .gemm
        case "MatMul": return .matMul
        case "Add": return .add
        case "Relu", "Clip": return .activation
        default: return .none
        }
    }

    /// `constant` gives an initializer's value (rules that depend on a constant operand's sign).
    public static func rule(for node: Node, isConstant: (String) -> Bool, constant: (String) -> Tensor? = { _ in nil }) -> OpRule? {
        guard node.isStandard else { return nil }
        func has(_ i: Int) -> Bool { i < node.inputs.count && !node.inputs[i].isEmpty }
        switch node.opType {
        case "Conv":
            guard has(1), isConstant(node.inputs[1]) else { return .compute([0, 1], bias: has(2) && isConstant(node.inputs[2]) ? 2 : nil) }
            return .compute([0], weight: (1, 0), bias: has(2) && isConstant(node.inputs[2]) ? 2 : nil)
        case "ConvTranspose":
            guard has(1), isConstant(node.inputs[1]) else { return nil }
            // Weights are [C_in, C_out/group, ...]: per-channel along axis 1 only for group 1.
            let group = node.attribute("group")?.int ?? 1
            return .compute([0], weight: (1, group == 1 ? 1 : -1), bias: has(2) && isConstant(node.inputs[2]) ? 2 : nil)
        case "Gemm":
            let transB = node.attribute("transB")?.int ?? 0
            let plainBias = (node.attribute("alpha")?.float ?? 1) == 1 && (node.attribute("beta")?.float ?? 1) == 1
            let bias = has(2) && isConstant(node.inputs[2]) && plainBias ? 2 : nil
            guard has(1), isConstant(node.inputs[1]) else { return .compute([0, 1], bias: bias) }
            return .compute([0], weight: (1, transB == 1 ? 0 : 1), bias: bias)
        case "MatMul":
            if has(1), isConstant(node.inputs[1]) { return .compute([0], weight: (1, -2)) }
            return .compute([0, 1])
        case "Add", "Mul":
            return .compute([0, 1])
        case "AveragePool", "GlobalAveragePool", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Relu", "Clip":
            return .compute([0])
        case "MaxPool", "GlobalMaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split",
             "Gather", "DepthToSpace", "SpaceToDepth", "Identity":
            return OpRule(kind: .shareInput, activationInputs: [0], weight: nil, bias: nil)
        case "Pad":
            let mode = node.attribute("mode")?.string ?? "constant"
            return mode == "constant" ? OpRule(kind: .shareInput, activationInputs: [0], weight: nil, bias: nil) : nil
        case "Resize", "Upsample":
            return (node.attribute("mode")?.string ?? "nearest") == "nearest"
                ? OpRule(kind: .shareInput, activationInputs: [0], weight: nil, bias: nil) : .compute([0])
        case "Min", "Max":
            // Min(x, c) with every c ≥ 0 (Max with c ≤ 0) stays inside x's range, which always
            // contains 0: it shares x's scale (cross-layer equalization's per-channel Relu6 bound).
            guard node.inputs.count == 2, has(1), isConstant(node.inputs[1]), let c = constant(node.inputs[1]), c.dtype == .float,
                  c.floats().allSatisfy({ node.opType == "Min" ? $0 >= 0 : $0 <= 0 }) else { return nil }
            return OpRule(kind: .shareInput, activationInputs: [0], weight: nil, bias: nil)
        case "Concat":
            return OpRule(kind: .concat, activationInputs: Array(node.inputs.indices), weight: nil, bias: nil)
        case "LSTM", "GRU", "RNN":
            // W [directions, gates·hidden, input] and R [directions, gates·hidden, hidden]: int8
            // per gate channel (axis 1) behind DequantizeLinear; the input sequence X and the
            // output Y are quantized around the float recurrence (ONNX Runtime has no QDQ fusion
            // for it: it runs float on the dequantized weights). The bias stays float.
            guard has(1), has(2), isConstant(node.inputs[1]), isConstant(node.inputs[2]) else { return nil }
            var r = OpRule.compute([0], weight: (1, 1))
            r.secondWeight = 2
            return r
        default:
            return nil
        }
    }
}
