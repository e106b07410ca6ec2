import Foundation
import QuantCore
import QuantIR

/// Graph preparation before quantization; each pass keeps the float semantics.
public enum Preparation {
    public struct Report: Sendable, Equatable {
        public init() {}

        public var constantsFolded = 0
        public var identitiesRemoved = 0
        public var batchNormsFolded = 0
        public var staticNodesFolded = 0
        public var padsFolded = 0
        /// Constant Mul/Div/Add/Sub folded into a neighbouring Conv/ConvTranspose/Gemm.
        public var affinesFolded = 0
        /// `x · Clip(x + 3, 0, 6) / 6` chains turned into HardSwish (or x · HardSigmoid).
        public var hardSwishesFused = 0
        /// ONNX Runtime's FusedConv/FusedGemm split back into Conv/Gemm and their activation, and
        /// its Attention into Q/K/V MatMuls and MultiHeadAttention.
        public var contribUnfused = 0
        /// The float type (float16, bfloat16, double) the model computed in before preparation
        /// made it float32 inside (nil: it was float32).
        public var computedAsFloat32From: DType? = nil
        /// The model's opset before it was raised to ``OpsetUpgrade/target`` (nil: unchanged).
        public var upgradedFromOpset: Int? = nil
        /// Nodes without a name, or with one another node already has, that were named.
        public var nodesNamed = 0
    }

    /// Runs every pass in order: the passes on the graph as loaded (``asLoaded(_:)``), opset
    /// upgrade (below 10 only), Constant folding, Identity/Dropout removal, static folding, BN
    /// folding, hard-swish fusion, constant affine folding into Convs, zero Pad folding into Conv.
    public static func run(_ model: Model) throws -> Report {
        var r = Report()
        r.nodesNamed = nameNodes(model)
        (r.computedAsFloat32From, r.contribUnfused) = asLoaded(model)
        r.upgradedFromOpset = try OpsetUpgrade.run(model)
        r.constantsFolded = try ConstantNodeFolding.run(model.graph)
        r.identitiesRemoved = removeIdentities(model.graph)
        r.staticNodesFolded = try StaticFolding.run(model)
        r.batchNormsFolded = try foldBatchNorms(model.graph)
        r.hardSwishesFused = fuseDecomposedHardSwish(model.graph, opset: model.opsets[""] ?? 13)
        r.affinesFolded = foldAffinesIntoConvs(model.graph)
        // A BatchNormalization behind a constant Mul/Add (Conv -> Mul -> BN) reaches its Conv now.
        if r.affinesFolded > 0 { r.batchNormsFolded += try foldBatchNorms(model.graph) }
        r.padsFolded = foldPadsIntoConvs(model.graph, opset: model.opsets[""] ?? 13)
        try model.graph.sortTopologically()
        return r
    }

    /// The passes that run first, on the graph as loaded: float16/bfloat16/double computed as
    /// float32 inside, and ONNX Runtime's fused Conv/Gemm/Attention split. Calibration runs the
    /// model after these too (`Quantizer.loadForCalibration`), so the tensors they create get
    /// statistics under the same names. Returns the float type converted from and the number of
    /// nodes split.
    public static func asLoaded(_ model: Model) -> (DType?, Int) {
        let from = Float32Inside.run(model)
        return (from, ContribUnfusing.run(model.graph, opset: model.opsets[""] ?? 13))
    }

    /// Gives every node of the model (bodies included) a name no other node has: an unnamed
    /// node (every node of CenterFace's export) or a second node of a name already taken gets
    /// `OPTYPE_OUTPUT` after its first output (`_2`, `_3`, ... if that is taken too). Everything
    /// that follows keys nodes by name: exclusions, weight rounding and bias correction, the
    /// report's layers; nameless nodes shared one entry (bias correction of CenterFace crashed).
    public static func nameNodes(_ model: Model) -> Int {
        let all = model.graph.allNodes
        var taken = Set<String>()
        var seen = Set<String>()
        for n in all where !n.name.isEmpty { taken.insert(n.name) }
        var named = 0
        for n in all {
            if !n.name.isEmpty && seen.insert(n.name).inserted { continue }
            let base = n.opType + "_" + (n.outputs.first { !$0.isEmpty } ?? "node")
            var name = base, k = 2
            while taken.contains(name) {
                name = "\(base)_\(k)"
                k += 1
            }
            n.name = name
            taken.insert(name)
            seen.insert(name)
            named += 1
        }
        return named
    }

    /// `Identity(x) -> y` and inference `Dropout(x) -> y` (mask unused) ==> readers of y read x.
    public static func removeIdentities(_ g: Graph) -> Int {
        var removed = 0
        for node in g.nodes where node.isStandard && (node.opType == "Identity" || node.opType == "Dropout") {
            guard let x = node.inputs.first, !x.isEmpty, node.outputs.count >= 1 else { continue }
            if node.opType == "Dropout" {
                if node.outputs.count > 1, !node.outputs[1].isEmpty, GraphIndex(g).consumers(of: node.outputs[1]).count > 0 { continue }
                if node.inputs.count > 2, !node.inputs[2].isEmpty { continue }  // training_mode input
            }
            // An Identity between a graph input and a graph output must stay (it names the output).
            if g.outputs.contains(where: { $0.name == node.outputs[0] }) && (g.inputs.contains { $0.name == x } || g.isInitializer(x) || g.outputs.contains { $0.name == x }) { continue }
            node.outputs = Array(node.outputs.prefix(1))
            g.bypass(node, input: x)
            removed += 1
        }
        return removed
    }

    /// `Pad(x, zeros on N and C, constant 0) -> Conv(auto_pad NOTSET/VALID)  ==>  Conv(x)` with
    /// the pads added to the Conv's own, when the Conv is the Pad's only reader. Exporters write
    /// TensorFlow's "same" padding as such a Pad (EfficientNet-Lite0: 17); ONNX Runtime has no
    /// QDQ rule for Pad, so a quantized Pad runs float between a DQ and a Q.
    public static func foldPadsIntoConvs(_ g: Graph, opset: Int) -> Int {
        var folded = 0
        let index = GraphIndex(g)
        for pad in g.nodes where pad.isStandard && pad.opType == "Pad" {
            guard (pad.attribute("mode")?.string ?? "constant") == "constant", let out = pad.outputs.first,
                  !g.outputs.contains(where: { $0.name == out }),
                  let readers = Optional(index.consumers(of: out)), readers.count == 1,
                  let conv = readers.first, conv.isStandard, conv.opType == "Conv", conv.inputs.first == out,
                  conv.inputs.dropFirst().allSatisfy({ $0 != out }),
                  ["NOTSET", "VALID"].contains(conv.attribute("auto_pad")?.string ?? "NOTSET"),
                  let w = conv.inputs.count > 1 ? g.initializer(conv.inputs[1]) : nil, w.rank >= 3
            else { continue }
            var pads: [Int]
            if opset >= 11 {
                guard pad.inputs.count >= 2, let p = g.initializer(pad.inputs[1]), p.dtype == .int64 else { continue }
                pads = p.int64s().map { Int($0) }
                if pad.inputs.count > 2, !pad.inputs[2].isEmpty {
                    guard let v = g.initializer(pad.inputs[2]), v.count == 1, v.dtype == .float, v.floats()[0] == 0 else { continue }
                }
                if pad.inputs.count > 3, !pad.inputs[3].isEmpty { continue }  // axes (opset 18)
            } else {
                pads = pad.attribute("pads")?.ints ?? []
                guard (pad.attribute("value")?.float ?? 0) == 0 else { continue }
            }
            let rank = w.rank, spatial = rank - 2
            guard pads.count == 2 * rank, pads.allSatisfy({ $0 >= 0 }),
                  pads[0] == 0, pads[1] == 0, pads[rank] == 0, pads[rank + 1] == 0 else { continue }
            let own = (conv.attribute("auto_pad")?.string ?? "NOTSET") == "VALID"
                ? [Int](repeating: 0, count: 2 * spatial) : (conv.attribute("pads")?.ints ?? [Int](repeating: 0, count: 2 * spatial))
            guard own.count == 2 * spatial else { continue }
            let begins = (0..<spatial).map { own[$0] + pads[2 + $0] }
            let ends = (0..<spatial).map { own[spatial + $0] + pads[rank + 2 + $0] }
            conv.setAttribute(.ints("pads", begins + ends))
            conv.attributes.removeAll { $0.name == "auto_pad" }
            conv.inputs[0] = pad.inputs[0]
            g.remove(pad)
            folded += 1
        }
        return folded
    }

    /// Folds inference BatchNormalization into the Conv, ConvTranspose (group 1) or Gemm before
    /// it, when that node's only reader is the BN and its weights are initializers:
    /// `Conv(x, W, b) -> BN(γ, β, μ, σ²)  ==>  Conv(x, W·γ/s, (b-μ)·γ/s + β)`, s = √(σ² + ε),
    /// scaling W along its output-channel axis.
    public static func foldBatchNorms(_ g: Graph) throws -> Int {
        var folded = 0
        var index = GraphIndex(g)
        for bn in g.nodes where bn.isStandard && bn.opType == "BatchNormalization" {
            guard bn.outputs.count == 1 || bn.outputs.dropFirst().allSatisfy(\.isEmpty),
                  bn.inputs.count == 5, (bn.attribute("training_mode")?.int ?? 0) == 0,
                  let prev = index.producer[bn.inputs[0]], prev.isStandard,
                  ["Conv", "ConvTranspose", "Gemm"].contains(prev.opType),
                  index.consumers(of: bn.inputs[0]).count == 1,
                  !g.outputs.contains(where: { $0.name == bn.inputs[0] }),
                  prev.inputs.count >= 2, let w = g.initializer(prev.inputs[1]), w.dtype == .float,
                  let gamma = g.initializer(bn.inputs[1]), let beta = g.initializer(bn.inputs[2]),
                  let mean = g.initializer(bn.inputs[3]), let variance = g.initializer(bn.inputs[4])
            else { continue }
            let eps = Double(bn.attribute("epsilon")?.float ?? 1e-5)
            let c = gamma.count
            guard beta.count == c, mean.count == c, variance.count == c else { continue }
            guard let axis = outputChannelAxis(of: prev, weight: w), w.shape[axis] == c,
                  let bias = outputBias(of: prev, in: g, channels: c) else { continue }
            let gv = gamma.doubles(), bv = beta.doubles(), mv = mean.doubles(), vv = variance.doubles()
            let factor = (0..<c).map { gv[$0] / (vv[$0] + eps).squareRoot() }
            let newBias = (0..<c).map { Float((Double(bias[$0]) - mv[$0]) * factor[$0] + bv[$0]) }
            replaceWeightAndBias(g, prev, weight: w, axis: axis, scale: factor, bias: newBias, suffix: "bnfolded")
            // prev now produces the BN's output.
            let bnOut = bn.outputs[0]
            g.remove(bn)
            prev.outputs[0] = bnOut
            folded += 1
            index = GraphIndex(g)
        }
        removeUnusedInitializers(g)
        return folded
    }

    /// The output-channel axis of `node`'s weight `w`: 0 for Conv, 1 for ConvTranspose with
    /// group 1, 0 or 1 for Gemm (transB); nil for anything else.
    static func outputChannelAxis(of node: Node, weight w: Tensor) -> Int? {
        switch node.opType {
        case "Conv": return w.rank >= 3 ? 0 : nil
        case "ConvTranspose": return w.rank >= 3 && (node.attribute("group")?.int ?? 1) == 1 ? 1 : nil
        case "Gemm": return w.rank == 2 ? ((node.attribute("transB")?.int ?? 0) == 1 ? 0 : 1) : nil
        default: return nil
        }
    }

    /// The bias of a Conv/ConvTranspose/Gemm per output channel (Gemm's beta applied; zeros
    /// without one); nil when it is not a float initializer of `channels` values ([c] or [1, c]).
    static func outputBias(of node: Node, in g: Graph, channels: Int) -> [Float]? {
        guard node.inputs.count > 2, !node.inputs[2].isEmpty else { return [Float](repeating: 0, count: channels) }
        guard let b = g.initializer(node.inputs[2]), b.dtype == .float, b.count == channels,
              b.rank == 1 || (b.rank == 2 && b.shape[0] == 1) else { return nil }
        var bias = b.floats()
        if node.opType == "Gemm", let beta = node.attribute("beta")?.float { bias = bias.map { $0 * beta } }
        return bias
    }

    /// Gives `node` the weight `w`·scale (scaled along `axis`) and the bias `bias`, as new
    /// initializers named with `suffix`; a Gemm's beta becomes 1.
    static func replaceWeightAndBias(_ g: Graph, _ node: Node, weight w: Tensor, axis: Int, scale: [Double], bias: [Float], suffix: String) {
        let channels = scale.count
        let inner = w.shape[(axis + 1)...].reduce(1, *)
        let wf = w.floats()
        var out = wf
        for i in wf.indices { out[i] = Float(Double(wf[i]) * scale[(i / inner) % channels]) }
        var names = NameAllocator(g)
        let wName = names.fresh(node.inputs[1] + "_" + suffix)
        let bName = names.fresh((node.name.isEmpty ? node.outputs[0] : node.name) + "_bias_" + suffix)
        g.setInitializer(wName, Tensor(shape: w.shape, floats: out))
        g.setInitializer(bName, Tensor(shape: [channels], floats: bias))
        node.inputs[1] = wName
        // Gemm's C broadcasts; a [c] bias is valid for output [M, c].
        if node.inputs.count > 2 { node.inputs[2] = bName } else { node.inputs.append(bName) }
        if node.opType == "Gemm", let beta = node.attribute("beta")?.float, beta != 1 { node.setAttribute(.float("beta", 1)) }
    }

    /// Drops initializers nothing reads (left behind by folding).
    public static func removeUnusedInitializers(_ g: Graph) {
        var used = Set(g.outputs.map(\.name))
        for n in g.nodes {
            used.formUnion(n.inputs)
            for sg in n.subgraphs { used.formUnion(sg.outerScopeReads) }
        }
        for t in g.initializers where !used.contains(t.name) && !g.inputs.contains(where: { $0.name == t.name }) {
            g.removeInitializer(t.name)
        }
    }
}
