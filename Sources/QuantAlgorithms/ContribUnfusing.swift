import QuantCore
import QuantIR

/// ONNX Runtime's fused contrib nodes, as its graph optimizer saves them
/// (`optimized_model_filepath`), split back into standard ONNX so they quantize:
///
///     FusedConv(X, W, B[, Z]) {activation, activation_params}  ==>  Conv(X, W, B) [-> Add Z] -> activation
///     FusedGemm(A, B, C) {activation, activation_alpha, _beta}  ==>  Gemm(A, B, C) -> activation
///
/// QuantKit's op rules and ONNX Runtime's QDQ selectors know only the standard Conv and Gemm
/// (ONNX Runtime fuses Conv + Relu/Clip again itself); left fused, every such node would run
/// float. Activations without a standard twin (none of ONNX Runtime's current ones) keep the
/// node fused. Float semantics are unchanged: the same operations in the same order. The split
/// creates tensors the saved model does not name (the Conv's output before its activation), so
/// calibration runs the split model too (`Quantizer.loadForCalibration`).
public enum ContribUnfusing {
    public static func run(_ g: Graph, opset: Int) -> Int {
        var names = NameAllocator(g)
        var count = 0
        for node in g.nodes where node.domain == "com.microsoft" && (node.opType == "FusedConv" || node.opType == "FusedGemm") {
            let conv = node.opType == "FusedConv"
            let activation = node.attribute("activation")?.string ?? ""
            let params = conv ? node.attribute("activation_params")?.floats ?? []
                : ["activation_alpha", "activation_beta"].compactMap { node.attribute($0)?.float }
            guard node.outputs.count == 1, let y = node.outputs.first,
                  let act = standardActivation(activation, params, opset: opset, graph: g, names: &names, base: y) else { continue }
            let base = node.name.isEmpty ? y : node.name
            var chain: [Node] = []
            var value = names.fresh(y + "_" + (conv ? "conv" : "gemm"))
            let z = conv && node.inputs.count > 3 && !node.inputs[3].isEmpty ? node.inputs[3] : nil
            // The Conv/Gemm keeps the fused node's name (the one users exclude and reports show).
            let plain = Node(name: node.name, opType: conv ? "Conv" : "Gemm",
                             inputs: Array(node.inputs.prefix(3)), outputs: [value],
                             attributes: node.attributes.filter { !$0.name.hasPrefix("activation") })
            chain.append(plain)
            if let z {
                let sum = names.fresh(y + "_sum")
                chain.append(Node(name: names.fresh(base + "_add"), opType: "Add", inputs: [value, z], outputs: [sum]))
                value = sum
            }
            if case let .op(op, inputs, attributes) = act {
                chain.append(Node(name: names.fresh(base + "_" + op.lowercased()), opType: op, inputs: [value] + inputs, outputs: [y], attributes: attributes))
            } else {
                chain[chain.count - 1].outputs = [y]
            }
            g.replace(node, with: chain)
            count += 1
        }
        return count
    }

    enum Activation {
        case none
        /// A standard node: op type, inputs after the activated value, attributes.
        case op(String, [String], [Attribute])
    }

    /// The standard ONNX form of an activation by ONNX Runtime's fused-kernel name, or nil when
    /// there is none (a Clip's bounds become initializers from opset 11).
    static func standardActivation(_ name: String, _ p: [Float], opset: Int, graph g: Graph, names: inout NameAllocator,
                                   base: String) -> Activation? {
        func param(_ i: Int, _ fallback: Float) -> Float { i < p.count ? p[i] : fallback }
        switch name {
        case "": return Activation.none
        case "Relu", "Sigmoid", "Tanh": return .op(name, [], [])
        case "LeakyRelu": return .op("LeakyRelu", [], [.float("alpha", param(0, 0.01))])
        case "HardSigmoid": return .op("HardSigmoid", [], [.float("alpha", param(0, 0.2)), .float("beta", param(1, 0.5))])
        case "Clip":
            let lo = param(0, -Float.greatestFiniteMagnitude), hi = param(1, Float.greatestFiniteMagnitude)
            if opset < 11 { return .op("Clip", [], [.float("min", lo), .float("max", hi)]) }
            let (loName, hiName) = (names.fresh(base + "_clip_min"), names.fresh(base + "_clip_max"))
            g.setInitializer(loName, Tensor(shape: [], floats: [lo]))
            g.setInitializer(hiName, Tensor(shape: [], floats: [hi]))
            return .op("Clip", [loName, hiName], [])
        default: return nil
        }
    }
}
