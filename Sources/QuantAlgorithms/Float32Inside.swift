import QuantCore
import QuantIR

/// A float16, bfloat16 or double model, computed in float32 inside; its inputs and outputs keep
/// their types (a Cast after each such input, one before each such output), so the quantized
/// model is fed and read as the float one was.
///
/// Why: below opset 19 QuantizeLinear and DequantizeLinear take float32 only (double never), so
/// Q/DQ around float16 or double tensors make an invalid model; and the integer kernels ONNX
/// Runtime fuses them into compute in int8/int32 whatever the float type around them. QuantKit's
/// executor computes such models in float32 already, so calibration sees the same values.
///
/// Converted: initializers, tensor attributes (Constant, ConstantOfShape), Cast `to`, the
/// `dtype` of EyeLike and the random generators, value_info and subgraph signatures.
public enum Float32Inside {
    static let converted: Set<DType> = [.float16, .bfloat16, .double]

    /// Returns the float type the model used instead of float32 (nil when none: nothing changed).
    @discardableResult
    public static func run(_ model: Model) -> DType? {
        let g = model.graph
        guard let type = otherFloatType(in: g) else { return nil }
        var names = NameAllocator(g)
        for (k, input) in g.inputs.enumerated() where !g.isInitializer(input.name) {
            guard let t = input.tensorType?.elementType, converted.contains(t) else { continue }
            let inside = names.fresh(input.name + "_float")
            g.replaceUses(of: input.name, with: inside)
            g.nodes.insert(Node(name: names.fresh(input.name + "_Cast"), opType: "Cast", inputs: [input.name], outputs: [inside],
                                attributes: [.int("to", Int(DType.float.rawValue))]), at: 0)
            // A graph output that was this input itself reads the input again.
            for j in g.outputs.indices where g.outputs[j].name == inside { g.outputs[j].name = g.inputs[k].name }
        }
        upcast(g)
        for output in g.outputs {
            guard let t = output.tensorType?.elementType, converted.contains(t), !g.inputs.contains(where: { $0.name == output.name }),
                  let producer = g.nodes.first(where: { $0.outputs.contains(output.name) }) else { continue }
            let inside = names.fresh(output.name + "_float")
            for k in producer.outputs.indices where producer.outputs[k] == output.name { producer.outputs[k] = inside }
            let saved = g.outputs.map(\.name)
            g.replaceUses(of: output.name, with: inside)
            for j in g.outputs.indices { g.outputs[j].name = saved[j] }
            g.nodes.append(Node(name: names.fresh(output.name + "_Cast"), opType: "Cast", inputs: [inside], outputs: [output.name],
                                attributes: [.int("to", Int(t.rawValue))]))
        }
        return type
    }

    /// The first float16, bfloat16 or double type in the graph's signature, values or constants.
    static func otherFloatType(in g: Graph) -> DType? {
        let types = (g.inputs + g.outputs + g.valueInfo).compactMap { $0.tensorType?.elementType }
            + g.initializers.map(\.tensor.dtype)
            + g.nodes.compactMap { $0.opType == "Cast" ? $0.attribute("to")?.int.flatMap { DType(rawValue: Int32($0)) } : nil }
        if let t = types.first(where: { converted.contains($0) }) { return t }
        return g.nodes.lazy.flatMap(\.subgraphs).compactMap(otherFloatType(in:)).first
    }

    /// Float32 everywhere inside `g` and its subgraphs (the main graph's signature excepted).
    static func upcast(_ g: Graph, signature: Bool = false) {
        for i in g.initializers where converted.contains(i.tensor.dtype) {
            g.setInitializer(i.name, Tensor(shape: i.tensor.shape, floats: i.tensor.floats()))
        }
        func floatType(_ v: inout ValueInfo) {
            if var t = v.tensorType, let e = t.elementType, converted.contains(e) { t.elementType = .float; v.tensorType = t }
        }
        for k in g.valueInfo.indices { floatType(&g.valueInfo[k]) }
        if signature {
            for k in g.inputs.indices { floatType(&g.inputs[k]) }
            for k in g.outputs.indices { floatType(&g.outputs[k]) }
        }
        let typed: Set<String> = ["Cast", "EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"]
        for node in g.nodes {
            for (k, a) in node.attributes.enumerated() {
                if let t = try? a.tensor(), converted.contains(t.dtype) {
                    node.attributes[k] = .tensor(a.name, Tensor(shape: t.shape, floats: t.floats()))
                } else if node.isStandard, typed.contains(node.opType), a.name == "to" || a.name == "dtype",
                          let v = a.int, let t = DType(rawValue: Int32(v)), converted.contains(t) {
                    node.attributes[k] = .int(a.name, Int(DType.float.rawValue))
                }
            }
            for sub in node.subgraphs { upcast(sub, signature: true) }
        }
    }
}
