import Foundation
import QuantCore
import QuantIR

/// Preparation passes for element-wise constant arithmetic next to a Conv, and for hard-swish
/// written as five elementwise ops. Both are common in exported PaddlePaddle models (PP-OCRv4's
/// PPLCNetV3 "learnable affine blocks": `Conv -> Mul(scalar) -> Add(scalar)` after every Conv and
/// after every activation). Left in place, every one of these ops is one more quantized tensor:
/// one more rounding step and one more requantizing kernel in ONNX Runtime.
extension Preparation {
    /// The values of constant `c` per channel, when `c` broadcasts against a tensor of rank `rank`
    /// varying at most along axis 1 (shapes [], [1], [C, 1, 1], [1, C, 1, 1], [C] for rank 2);
    /// nil otherwise (another axis varies, more dims than `rank`, non-finite values, not float).
    static func channelValues(_ c: Tensor, rank: Int, channels: Int) -> [Double]? {
        guard c.dtype == .float, c.rank <= rank, rank >= 2, c.count >= 1 else { return nil }
        let padded = [Int](repeating: 1, count: rank - c.rank) + c.shape
        for (i, d) in padded.enumerated() where i != 1 && d != 1 { return nil }
        let v = c.doubles()
        guard v.allSatisfy(\.isFinite) else { return nil }
        if padded[1] == 1 { return [Double](repeating: v[0], count: channels) }
        return padded[1] == channels ? v : nil
    }

    /// Folds constant element-wise arithmetic into a neighbouring Conv; float semantics kept (up
    /// to float rounding, as BatchNormalization folding):
    /// - `Conv/ConvTranspose(group 1)/Gemm(x, W, b) -> Mul|Div|Add|Sub(·, c)` with c constant per
    ///   output channel (or scalar), the node's only reader:
    ///   `W·m, b·m + a` with m = c (Mul), 1/c (Div) or a = c (Add), −c (Sub; x − c only);
    /// - `Mul|Div|Add|Sub(x, c scalar) -> Conv` with the Conv its only reader and no padding
    ///   (padding would see the zeros of x·m + a, not of x): `W·m`, `b + a·ΣW` per output channel.
    /// Repeated until nothing changes, so `Conv -> Mul -> Add` folds both. Returns the ops folded.
    public static func foldAffinesIntoConvs(_ g: Graph) -> Int {
        var done = 0
        var changed = true
        while changed {
            changed = false
            let index = GraphIndex(g)
            let graphOutputs = Set(g.outputs.map(\.name))
            for op in g.nodes where op.isStandard && ["Mul", "Div", "Add", "Sub"].contains(op.opType)
                && op.inputs.count == 2 && op.outputs.count == 1 {
                for k in 0..<2 {
                    let x = op.inputs[k], cName = op.inputs[1 - k]
                    guard x != cName, !x.isEmpty, !g.isInitializer(x), let c = g.initializer(cName),
                          k == 0 || op.opType == "Mul" || op.opType == "Add" else { continue }
                    if let prev = index.producer[x], index.consumers(of: x).count == 1, !graphOutputs.contains(x),
                       foldIntoProducer(g, op: op, prev: prev, constant: c) {
                        done += 1
                        changed = true
                        break
                    }
                    let readers = index.consumers(of: op.outputs[0])
                    if readers.count == 1, !graphOutputs.contains(op.outputs[0]),
                       foldIntoReader(g, op: op, x: x, conv: readers[0], constant: c) {
                        done += 1
                        changed = true
                        break
                    }
                }
                if changed { break }
            }
        }
        if done > 0 { removeUnusedInitializers(g) }
        return done
    }

    /// Per-channel (scale, shift) of `y = x·scale + shift` for op(x, c), x the left input of
    /// Sub/Div; nil for a division by zero.
    private static func affine(_ opType: String, _ v: [Double]) -> (scale: [Double], shift: [Double])? {
        let ones = [Double](repeating: 1, count: v.count), zeros = [Double](repeating: 0, count: v.count)
        switch opType {
        case "Mul": return (v, zeros)
        case "Div":
            guard v.allSatisfy({ $0 != 0 && (1 / $0).isFinite }) else { return nil }
            return (v.map { 1 / $0 }, zeros)
        case "Add": return (ones, v)
        default: return (ones, v.map { -$0 })
        }
    }

    private static func foldIntoProducer(_ g: Graph, op: Node, prev: Node, constant c: Tensor) -> Bool {
        guard prev.isStandard, prev.outputs.count == 1, prev.inputs.count >= 2,
              let w = g.initializer(prev.inputs[1]), w.dtype == .float,
              let axis = outputChannelAxis(of: prev, weight: w) else { return false }
        let channels = w.shape[axis]
        guard let v = channelValues(c, rank: w.rank, channels: channels), let (scale, shift) = affine(op.opType, v),
              let bias = outputBias(of: prev, in: g, channels: channels) else { return false }
        let newBias = (0..<channels).map { Float(Double(bias[$0]) * scale[$0] + shift[$0]) }
        replaceWeightAndBias(g, prev, weight: w, axis: axis, scale: scale, bias: newBias, suffix: "folded")
        g.remove(op)
        prev.outputs[0] = op.outputs[0]
        return true
    }

    private static func foldIntoReader(_ g: Graph, op: Node, x: String, conv: Node, constant c: Tensor) -> Bool {
        // A scalar only: a per-channel constant could broadcast x's channels up, which the Conv
        // would then not see.
        guard c.dtype == .float, c.count == 1, conv.isStandard, conv.opType == "Conv", conv.inputs.count >= 2,
              conv.inputs[0] == op.outputs[0], conv.inputs.dropFirst().allSatisfy({ $0 != op.outputs[0] }),
              let w = g.initializer(conv.inputs[1]), w.dtype == .float, w.rank >= 3 else { return false }
        let autoPad = conv.attribute("auto_pad")?.string ?? "NOTSET"
        guard autoPad == "VALID" || (autoPad == "NOTSET" && (conv.attribute("pads")?.ints ?? []).allSatisfy { $0 == 0 }) else { return false }
        let v = c.doubles()[0]
        guard v.isFinite, let (scale, shift) = affine(op.opType, [v]) else { return false }
        let cout = w.shape[0], inner = w.count / max(cout, 1)
        var bias = [Double](repeating: 0, count: cout)
        if conv.inputs.count > 2, !conv.inputs[2].isEmpty {
            guard let b = g.initializer(conv.inputs[2]), b.dtype == .float, b.count == cout else { return false }
            bias = b.doubles()
        }
        let wf = w.floats()
        var newBias = bias
        for o in 0..<cout {
            var sum = 0.0
            for i in (o * inner)..<((o + 1) * inner) { sum += Double(wf[i]) }
            newBias[o] += shift[0] * sum
        }
        var names = NameAllocator(g)
        let wName = names.fresh(conv.inputs[1] + "_folded")
        let bName = names.fresh((conv.name.isEmpty ? conv.outputs[0] : conv.name) + "_bias_folded")
        g.setInitializer(wName, Tensor(shape: w.shape, floats: wf.map { Float(Double($0) * scale[0]) }))
        g.setInitializer(bName, Tensor(shape: [cout], floats: newBias.map { Float($0) }))
        conv.inputs[0] = x
        conv.inputs[1] = wName
        if conv.inputs.count > 2 { conv.inputs[2] = bName } else { conv.inputs.append(bName) }
        g.remove(op)
        return true
    }

    /// Hard-swish written out, `x · Clip(x + 3, 0, 6) / 6` (or `· (1/6)`, either operand order),
    /// becomes `HardSwish(x)` (opset 14+) or `x · HardSigmoid(x; 1/6, 1/2)` (earlier opsets): one
    /// or two quantized tensors instead of three or four. The intermediate values must have no
    /// other readers.
    public static func fuseDecomposedHardSwish(_ g: Graph, opset: Int) -> Int {
        var fused = 0
        var index = GraphIndex(g)
        let graphOutputs = Set(g.outputs.map(\.name))
        // Rank 0 or [1] only: a constant of more dimensions could broadcast x up to its rank,
        // which the replacement would not.
        func scalar(_ name: String) -> Double? {
            guard let t = g.initializer(name), t.count == 1, t.rank <= 1, t.dtype == .float else { return nil }
            return t.doubles()[0]
        }
        func only(_ value: String, readBy node: Node) -> Bool {
            !graphOutputs.contains(value) && index.consumers(of: value).count == 1 && index.consumers(of: value)[0] === node
        }
        var removed = Set<ObjectIdentifier>()
        for last in g.nodes where !removed.contains(ObjectIdentifier(last)) && last.isStandard
            && (last.opType == "Div" || last.opType == "Mul") && last.inputs.count == 2 {
            // last = m / 6 or m · (1/6)
            let m: String
            if last.opType == "Div" {
                guard scalar(last.inputs[1]) == 6 else { continue }
                m = last.inputs[0]
            } else if let k = (0..<2).first(where: { scalar(last.inputs[$0]).map { abs($0 - 1.0 / 6) < 1e-7 } ?? false }) {
                m = last.inputs[1 - k]
            } else { continue }
            guard let mul = index.producer[m], mul.isStandard, mul.opType == "Mul", mul.inputs.count == 2, only(m, readBy: last) else { continue }
            // mul = x · r with r = Clip(x + 3, 0, 6)
            var match: (x: String, clip: Node, add: Node)?
            for k in 0..<2 {
                guard let clip = index.producer[mul.inputs[k]], clip.isStandard, clip.opType == "Clip",
                      only(clip.outputs[0], readBy: mul), let a = clip.inputs.first,
                      let add = index.producer[a], add.isStandard, add.opType == "Add", add.inputs.count == 2,
                      only(a, readBy: clip) else { continue }
                let x = mul.inputs[1 - k]
                guard let t = (0..<2).first(where: { add.inputs[$0] != x && scalar(add.inputs[$0]) == 3 }),
                      add.inputs[1 - t] == x else { continue }
                let lo: Double?, hi: Double?
                if clip.inputs.count > 1 || clip.attribute("min") == nil {
                    lo = clip.inputs.count > 1 && !clip.inputs[1].isEmpty ? scalar(clip.inputs[1]) : nil
                    hi = clip.inputs.count > 2 && !clip.inputs[2].isEmpty ? scalar(clip.inputs[2]) : nil
                } else {
                    lo = clip.attribute("min")?.float.map(Double.init)
                    hi = clip.attribute("max")?.float.map(Double.init)
                }
                guard lo == 0, hi == 6 else { continue }
                match = (x, clip, add)
                break
            }
            guard let (x, clip, add) = match else { continue }
            let y = last.outputs[0]
            var names = NameAllocator(g)
            let base = mul.name.isEmpty ? y : mul.name
            let replacement: [Node]
            if opset >= 14 {
                replacement = [Node(name: names.fresh(base + "_hardswish"), opType: "HardSwish", inputs: [x], outputs: [y])]
            } else {
                let h = names.fresh(x + "_hardsigmoid")
                replacement = [Node(name: names.fresh(base + "_hardsigmoid"), opType: "HardSigmoid", inputs: [x], outputs: [h],
                                    attributes: [.float("alpha", Float(1.0 / 6)), .float("beta", 0.5)]),
                               Node(name: names.fresh(base + "_hardswish"), opType: "Mul", inputs: [x, h], outputs: [y])]
            }
            g.replace(last, with: replacement)
            for n in [add, clip, mul] { g.remove(n) }
            for n in [add, clip, mul, last] { removed.insert(ObjectIdentifier(n)) }
            fused += 1
            index = GraphIndex(g)
        }
        if fused > 0 { removeUnusedInitializers(g) }
        return fused
    }
}
