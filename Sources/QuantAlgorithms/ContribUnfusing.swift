import QuantCore
import QuantIR

/// ONNX Runtime's fused contrib nodes, as its graph optimizer saves them
/// (`optimized_model_filepath`), split back into standard ONNX so they quantize:
///
///     FusedConv(X, W, B[, Z]) {activation, activation_params}  ==>  Conv(X, W, B) [-> Add Z] -> activation
///     FusedGemm(A, B, C) {activation, activation_alpha, _beta}  ==>  Gemm(A, B, C) -> activation
///     Attention(X, W, bias, mask) {num_heads, ...}  ==>  MatMul(X, W_q), MatMul(X, W_k), MatMul(X, W_v)
///                                                      -> MultiHeadAttention(q, k, v, bias, mask)
///
/// QuantKit's op rules and ONNX Runtime's QDQ selectors know only the standard Conv, Gemm and
/// MatMul (ONNX Runtime fuses Conv + Relu/Clip again itself); left fused, every such node would
/// run float, and an Attention node hides its Q/K/V projection (a third of a BERT layer's MatMul
/// work) inside. MultiHeadAttention is ONNX Runtime's attention core on separate Q, K, V.
///
/// Activations without a standard twin (none of ONNX Runtime's current ones) keep the node
/// fused. Float semantics are unchanged: the same operations in the same order. The split
/// creates tensors the saved model does not name (the Conv's output before its activation), so
/// calibration runs the split model too (`Quantizer.loadForCalibration`).
public enum ContribUnfusing {
    public static func run(_ g: Graph, opset: Int) -> Int {
        var names = NameAllocator(g)
        var count = 0
        let index = GraphIndex(g)
        for node in g.nodes where node.domain == "com.microsoft" && node.opType == "Attention" {
            if splitAttention(node, g, index, &names) { count += 1 }
        }
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
        if count > 0 { Preparation.removeUnusedInitializers(g) }  // the Attention weights split into three
        return count
    }

    /// Attention with constant weights (and bias), no past/present, no rotary, and a mask that
    /// MultiHeadAttention reads the same way (none, EmbedLayerNormalization's [B] end positions,
    /// or a declared 2-D raw mask): its projection becomes three MatMuls with the weight's Q, K
    /// and V columns, feeding MultiHeadAttention with the same attributes.
    static func splitAttention(_ node: Node, _ g: Graph, _ index: GraphIndex, _ names: inout NameAllocator) -> Bool {
        func input(_ i: Int) -> String? { i < node.inputs.count && !node.inputs[i].isEmpty ? node.inputs[i] : nil }
        guard node.outputs.count == 1 || node.outputs.dropFirst().allSatisfy(\.isEmpty), input(4) == nil, input(6) == nil,
              (node.attribute("do_rotary")?.int ?? 0) == 0, (node.attribute("past_present_share_buffer")?.int ?? 0) == 0,
              let x = input(0), let wName = input(1), let w = g.initializer(wName), w.dtype == .float, w.rank == 2,
              let heads = node.attribute("num_heads")?.int, heads > 0 else { return false }
        let bias = input(2).map { g.initializer($0) }
        if let bias, bias?.dtype != .float { return false }  // a bias computed at run time
        let width = w.shape[1], sizes = node.attribute("qkv_hidden_sizes")?.ints ?? [width / 3, width / 3, width / 3]
        guard sizes.count == 3, sizes.reduce(0, +) == width, sizes[0] == sizes[1], sizes.allSatisfy({ $0 > 0 && $0 % heads == 0 }) else { return false }
        if let mask = input(3) {
            let fromEmbed = index.producer[mask].map { $0.domain == "com.microsoft" && $0.opType == "EmbedLayerNormalization" && $0.outputs.count > 1 && $0.outputs[1] == mask } ?? false
            guard fromEmbed || g.valueInfo(for: mask)?.tensorType?.shape?.count == 2 else { return false }
        }
        let rows = w.shape[0], values = w.floats()
        let base = node.name.isEmpty ? node.outputs[0] : node.name
        var offset = 0, projections: [String] = [], matmuls: [Node] = []
        for (part, size) in zip(["q", "k", "v"], sizes) {
            var columns = [Float](repeating: 0, count: rows * size)
            for r in 0..<rows { for c in 0..<size { columns[r * size + c] = values[r * width + offset + c] } }
            offset += size
            let weight = names.fresh(wName + "_" + part), out = names.fresh(base + "_" + part)
            g.setInitializer(weight, Tensor(shape: [rows, size], floats: columns))
            matmuls.append(Node(name: names.fresh(base + "_" + part + "_MatMul"), opType: "MatMul", inputs: [x, weight], outputs: [out]))
            projections.append(out)
        }
        var mhaInputs = projections + [input(2) ?? "", input(3) ?? "", input(5) ?? ""]
        while mhaInputs.last == "" { mhaInputs.removeLast() }
        let kept = node.attributes.filter { ["num_heads", "unidirectional", "scale", "mask_filter_value"].contains($0.name) }
        let mha = Node(name: node.name, opType: "MultiHeadAttention", domain: "com.microsoft", inputs: mhaInputs, outputs: [node.outputs[0]], attributes: kept)
        g.replace(node, with: matmuls + [mha])
        return true
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
