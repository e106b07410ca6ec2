import Foundation
import QuantCore
import QuantIR

/// Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
/// Equalization and Bias Correction", section 4.1): for two Convs in a chain, output channel i
/// of the first is divided by s_i and input channel i of the second multiplied by s_i, with
/// s_i = √(r1_i / r2_i) (r1_i, r2_i the largest |weight| of that channel in each), so that both
/// ranges become √(r1_i·r2_i). Per-tensor weight grids then waste far fewer levels on a few wide
/// channels (depthwise Convs above all).
///
/// `Conv1 -> act -> Conv2  ==>  Conv1(W1/s, b1/s) -> act' -> Conv2(W2·s)` is exact because
/// act(x/s) = act(x)/s for act ∈ {nothing, Relu, LeakyRelu, PRelu} (positive homogeneous).
/// Clip(0, M) (Relu6) is not: it becomes `Relu -> Min(·, M/s)` with the bound per channel, which
/// is exact; ONNX Runtime runs that Min in float between its DequantizeLinear and QuantizeLinear.
///
/// A pair qualifies when the first Conv's output (and its activation's) has the next node as its
/// only reader and is no graph output, both weights are float initializers read by that node alone,
/// and the second Conv has group 1 or is depthwise (one input channel per group). Pairs are
/// equalized in turn, repeatedly, until no factor moves by more than 0.1% (chains of three, such
/// as expand -> depthwise -> project, converge in a few rounds).
public enum CrossLayerEqualization {
    /// What equalization did to one pair.
    public struct Pair: Codable, Sendable, Equatable {
        /// The first and second Conv.
        public var first: String
        public var second: String
        /// The activation between them (empty: none).
        public var activation: String
        /// The smallest and largest factor s_i applied (the first Conv's channel i divided by it).
        public var minFactor: Double
        public var maxFactor: Double
        /// max/min of the first Conv's per-channel weight ranges before and after: 1 is perfectly
        /// equalized, a per-tensor grid loses log2 of it in bits on the narrowest channel.
        public var spreadBefore: Double
        public var spreadAfter: Double
    }

    public struct Report: Codable, Sendable, Equatable {
        public var pairs: [Pair] = []
        /// Rounds over all pairs until the factors stopped moving.
        public var rounds = 0
        /// Clip(0, M) activations turned into Relu and a per-channel Min.
        public var clipsSplit = 0
        public init() {}
    }

    /// Largest number of rounds over all pairs.
    static let maxRounds = 50

    struct Chain {
        var first: Node, second: Node
        var activation: Node?
        var w1: String, w2: String
        var depthwise: Bool
    }

    /// Equalizes every qualifying pair of `g` (after preparation: BatchNorms folded). The float
    /// outputs stay the same up to float rounding.
    public static func run(_ g: Graph) -> Report {
        var report = Report()
        let chains = findChains(g)
        guard !chains.isEmpty else { return report }
        // Weights by initializer name, edited in place over the rounds.
        var weights: [String: [Float]] = [:]
        var shapes: [String: [Int]] = [:]
        var biases: [ObjectIdentifier: [Float]] = [:]
        for c in chains {
            for name in [c.w1, c.w2] where weights[name] == nil {
                let t = g.initializer(name)!
                weights[name] = t.floats()
                shapes[name] = t.shape
            }
            if biases[ObjectIdentifier(c.first)] == nil {
                let channels = shapes[c.w1]![0]
                biases[ObjectIdentifier(c.first)] = Preparation.outputBias(of: c.first, in: g, channels: channels)
            }
        }
        var total = chains.map { [Double](repeating: 1, count: shapes[$0.w1]![0]) }
        var before = [Double](repeating: 1, count: chains.count)
        for (k, c) in chains.enumerated() { before[k] = spread(outputRanges(weights[c.w1]!, shapes[c.w1]!)) }
        var rounds = 0
        while rounds < maxRounds {
            rounds += 1
            var moved = 0.0
            for (k, c) in chains.enumerated() {
                let r1 = outputRanges(weights[c.w1]!, shapes[c.w1]!)
                let r2 = inputRanges(weights[c.w2]!, shapes[c.w2]!, depthwise: c.depthwise)
                guard r1.count == r2.count else { continue }
                var s = [Double](repeating: 1, count: r1.count)
                for i in s.indices where r1[i] > 0 && r2[i] > 0 {
                    s[i] = (r1[i] / r2[i]).squareRoot()
                    moved = max(moved, abs(log(s[i])))
                }
                scaleOutputs(&weights[c.w1]!, shapes[c.w1]!, by: s)
                if var b = biases[ObjectIdentifier(c.first)] {
                    for i in b.indices { b[i] = Float(Double(b[i]) / s[i]) }
                    biases[ObjectIdentifier(c.first)] = b
                }
                scaleInputs(&weights[c.w2]!, shapes[c.w2]!, by: s, depthwise: c.depthwise)
                for i in s.indices { total[k][i] *= s[i] }
            }
            if moved < 1e-3 { break }
        }
        report.rounds = rounds
        var names = NameAllocator(g)
        for (name, values) in weights {
            let fresh = names.fresh(name + "_equalized")
            g.setInitializer(fresh, Tensor(shape: shapes[name]!, floats: values))
            for c in chains {
                if c.w1 == name { c.first.inputs[1] = fresh }
                if c.w2 == name { c.second.inputs[1] = fresh }
            }
        }
        for c in chains {
            guard let b = biases.removeValue(forKey: ObjectIdentifier(c.first)), c.first.inputs.count > 2, !c.first.inputs[2].isEmpty else { continue }
            let fresh = names.fresh(c.first.inputs[2] + "_equalized")
            g.setInitializer(fresh, Tensor(shape: [b.count], floats: b))
            c.first.inputs[2] = fresh
        }
        for (k, c) in chains.enumerated() {
            if let a = c.activation, a.opType == "Clip" {
                splitClip(a, in: g, factors: total[k], spatialRank: shapes[c.w1]!.count - 2, names: &names)
                report.clipsSplit += 1
            }
            let after = spread(outputRanges(weights[c.w1]!, shapes[c.w1]!))
            report.pairs.append(Pair(first: c.first.name, second: c.second.name, activation: c.activation?.opType ?? "",
                                     minFactor: total[k].min() ?? 1, maxFactor: total[k].max() ?? 1, spreadBefore: before[k], spreadAfter: after))
        }
        Preparation.removeUnusedInitializers(g)
        return report
    }

    /// The pairs of `g` that qualify (see the type's documentation).
    static func findChains(_ g: Graph) -> [Chain] {
        let index = GraphIndex(g)
        let outputs = Set(g.outputs.map(\.name))
        var uses: [String: Int] = [:]
        for n in g.allNodes { for i in n.inputs where !i.isEmpty { uses[i, default: 0] += 1 } }
        func onlyReader(_ value: String, _ reader: Node) -> Bool {
            !outputs.contains(value) && index.consumers(of: value).count == 1 && index.consumers(of: value)[0] === reader && uses[value] == 1
        }
        func convWeight(_ n: Node) -> (String, [Int])? {
            guard n.isStandard, n.opType == "Conv", n.inputs.count >= 2, let w = g.initializer(n.inputs[1]), w.dtype == .float, w.rank >= 3,
                  uses[n.inputs[1]] == 1, !outputs.contains(n.inputs[1]) else { return nil }
            if n.inputs.count > 2, !n.inputs[2].isEmpty {
                guard let b = g.initializer(n.inputs[2]), b.dtype == .float, b.count == w.shape[0], uses[n.inputs[2]] == 1 else { return nil }
            }
            return (n.inputs[1], w.shape)
        }
        var chains: [Chain] = []
        for second in g.nodes {
            guard let (w2, s2) = convWeight(second), let x = second.inputs.first, let p = index.producer[x], onlyReader(x, second) else { continue }
            let group = second.attribute("group")?.int ?? 1
            let depthwise = group > 1 && s2[1] == 1 && group == s2[0]
            guard group == 1 || depthwise else { continue }
            var activation: Node? = nil
            var first = p
            if p.isStandard, ["Relu", "LeakyRelu", "PRelu", "Clip"].contains(p.opType) {
                guard let y = p.inputs.first, let q = index.producer[y], onlyReader(y, p), homogeneous(p, g) else { continue }
                activation = p
                first = q
            }
            guard let (w1, s1) = convWeight(first), s1[0] == (depthwise ? s2[0] : s2[1]), first !== second else { continue }
            chains.append(Chain(first: first, second: second, activation: activation, w1: w1, w2: w2, depthwise: depthwise))
        }
        // A weight scaled by two pairs on the same axis would be equalized twice over: keep the first.
        var claimedOutputs = Set<String>(), claimedInputs = Set<String>()
        return chains.filter { c in
            guard !claimedOutputs.contains(c.w1), !claimedInputs.contains(c.w2) else { return false }
            claimedOutputs.insert(c.w1)
            claimedInputs.insert(c.w2)
            return true
        }
    }

    /// Whether `act` commutes with a positive per-channel scale (Clip only with min 0 and
    /// constant bounds: it is then split into Relu and a per-channel Min).
    static func homogeneous(_ act: Node, _ g: Graph) -> Bool {
        switch act.opType {
        case "Relu", "LeakyRelu": return true
        case "PRelu": return act.inputs.count > 1 && g.initializer(act.inputs[1]).map { $0.count == 1 } ?? false
        case "Clip":
            guard let (lo, hi) = clipBounds(act, g) else { return false }
            return lo == 0 && hi > 0 && hi.isFinite
        default: return false
        }
    }

    static func clipBounds(_ n: Node, _ g: Graph) -> (Float, Float)? {
        func value(_ i: Int, _ attr: String, _ fallback: Float) -> Float? {
            if n.inputs.count > i, !n.inputs[i].isEmpty {
                guard let t = g.initializer(n.inputs[i]), t.count == 1 else { return nil }
                return t.floats()[0]
            }
            return n.attribute(attr)?.float ?? fallback
        }
        guard let lo = value(1, "min", -.infinity), let hi = value(2, "max", .infinity) else { return nil }
        return (lo, hi)
    }

    /// `Clip(x, 0, M) -> y  ==>  Relu(x) -> Min(·, M/s) -> y`, the bound of shape [C, 1, ...].
    static func splitClip(_ clip: Node, in g: Graph, factors: [Double], spatialRank: Int, names: inout NameAllocator) {
        let (_, hi) = clipBounds(clip, g)!
        let bound = names.fresh(clip.name + "_bound")
        g.setInitializer(bound, Tensor(shape: [factors.count] + [Int](repeating: 1, count: spatialRank), floats: factors.map { Float(Double(hi) / $0) }))
        let mid = names.fresh(clip.outputs[0] + "_relu")
        let relu = Node(name: names.fresh(clip.name + "_relu"), opType: "Relu", inputs: [clip.inputs[0]], outputs: [mid])
        let min = Node(name: clip.name, opType: "Min", inputs: [mid, bound], outputs: [clip.outputs[0]])
        g.insert(relu, before: clip)
        g.insert(min, before: clip)
        g.remove(clip)
    }

    /// Largest |w| per output channel (axis 0).
    static func outputRanges(_ w: [Float], _ shape: [Int]) -> [Double] {
        let c = shape[0], inner = w.count / max(c, 1)
        return (0..<c).map { i in Double(w[(i * inner)..<((i + 1) * inner)].reduce(0) { max($0, abs($1)) }) }
    }

    /// Largest |w| per input channel (axis 1; axis 0 for a depthwise weight [C, 1, ...]).
    static func inputRanges(_ w: [Float], _ shape: [Int], depthwise: Bool) -> [Double] {
        if depthwise { return outputRanges(w, shape) }
        let o = shape[0], c = shape[1], inner = w.count / max(o * c, 1)
        var r = [Double](repeating: 0, count: c)
        for a in 0..<o { for i in 0..<c { for k in 0..<inner { r[i] = max(r[i], Double(abs(w[(a * c + i) * inner + k]))) } } }
        return r
    }

    static func scaleOutputs(_ w: inout [Float], _ shape: [Int], by s: [Double]) {
        let inner = w.count / max(shape[0], 1)
        for i in w.indices { w[i] = Float(Double(w[i]) / s[i / inner]) }
    }

    static func scaleInputs(_ w: inout [Float], _ shape: [Int], by s: [Double], depthwise: Bool) {
        if depthwise {
            let inner = w.count / max(shape[0], 1)
            for i in w.indices { w[i] = Float(Double(w[i]) * s[i / inner]) }
            return
        }
        let c = shape[1], inner = w.count / max(shape[0] * c, 1)
        for i in w.indices { w[i] = Float(Double(w[i]) * s[(i / inner) % c]) }
    }

    /// max/min of the nonzero ranges.
    static func spread(_ r: [Double]) -> Double {
        let nz = r.filter { $0 > 0 }
        guard let lo = nz.min(), let hi = nz.max() else { return 1 }
        return hi / lo
    }
}
