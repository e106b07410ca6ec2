import Foundation
import QuantAlgorithms
import QuantCalibration
import QuantCore
import QuantIR

extension QDQRewriter {
    /// `T -> QuantizeLinear -> DequantizeLinear -> readers of T`. A graph output T keeps its
    /// name on the DequantizeLinear output; a constant T becomes a quantized initializer.
    ///
    /// `floatReaders`, given when T's producer runs float (or T is a graph input), names the
    /// readers that run float too: they keep reading T itself, since `DQ(Q(T))` would only add
    /// rounding error where no integer kernel needs it (a transformer's residual Add reading a
    /// LayerNormalization output that the next MatMuls read quantized), and a graph output T
    /// stays the float value. Readers of a quantized producer always read the DequantizeLinear
    /// output: ONNX Runtime fuses a node into an integer kernel only when its output goes to Q alone.
    /// Returns the DequantizeLinear output readers now read (nil when it keeps the name `t`: a graph output).
    @discardableResult
    func insertQDQ(_ t: String, in g: Graph, grid: QuantGrid, scale: Double, zp: Int, domain: String, names: inout NameAllocator,
                   index: GraphIndex, floatReaders: ((Node) -> Bool)? = nil) -> String? {
        let scaleName = names.fresh(t + "_scale")
        let zpName = names.fresh(t + "_zero_point")
        g.setInitializer(scaleName, Tensor(shape: [], floats: [Float(scale)]))
        g.setInitializer(zpName, grid.zeroPointTensor([zp], perChannel: false))
        if let c = g.initializer(t) {
            let qName = names.fresh(t + "_quantized")
            g.setInitializer(qName, grid.quantize(c.floats(), shape: c.shape, scales: [scale], zeroPoints: [zp], axis: nil))
            let dq = names.fresh(t + Suffix.dq)
            g.replaceUses(of: t, with: dq, readers: index.consumers(of: t), includingOutputs: true)
            g.nodes.append(Node(name: names.fresh(t + "_DequantizeLinear"), opType: "DequantizeLinear", domain: domain, inputs: [qName, scaleName, zpName], outputs: [dq]))
            return dq
        }
        // `index` was built before any Q/DQ went in; the readers of `t` it lists are still all of
        // them, since inserting only renames readers of other values to fresh names.
        let readers = index.consumers(of: t)
        let qOut = names.fresh(t + Suffix.q)
        let isOutput = g.outputs.contains { $0.name == t }
        var source = t
        let dq: String
        if let floatReaders {
            dq = names.fresh(t + Suffix.dq)
            g.replaceUses(of: t, with: dq, readers: readers, includingOutputs: false, onlyIn: { !floatReaders($0) })
        } else if isOutput {
            source = names.fresh(t + "_float")
            for n in g.nodes { for k in n.outputs.indices where n.outputs[k] == t { n.outputs[k] = source } }
            dq = t
        } else {
            dq = names.fresh(t + Suffix.dq)
            g.replaceUses(of: t, with: dq, readers: readers, includingOutputs: false)
        }
        g.nodes.append(Node(name: names.fresh(t + "_QuantizeLinear"), opType: "QuantizeLinear", domain: domain, inputs: [source, scaleName, zpName], outputs: [qOut]))
        g.nodes.append(Node(name: names.fresh(t + "_DequantizeLinear"), opType: "DequantizeLinear", domain: domain, inputs: [qOut, scaleName, zpName], outputs: [dq]))
        return dq == t ? nil : dq
    }

    /// Removes Relu and Clip(min 0) nodes that follow an op whose output is quantized on an
    /// asymmetric grid: `Conv -> Relu -> y  ==>  Conv -> y` with y's range [0, max] clamping
    /// as Relu did. Only when the activation's output has a range (so it will be quantized).
    /// Returns each absorbed node with the node that absorbed it.
    func absorbActivations(_ g: Graph, floatNodes: Set<ObjectIdentifier>) -> [(absorbed: Node, into: Node)] {
        var absorbed: [(absorbed: Node, into: Node)] = []
        var index = GraphIndex(g)
        for n in g.nodes where OpRules.traits(of: n).absorbable && !floatNodes.contains(ObjectIdentifier(n)) {
            guard let x = n.inputs.first, let y = n.outputs.first, let p = index.producer[x],
                  !floatNodes.contains(ObjectIdentifier(p)), OpRules.traits(of: p).absorbsActivation,
                  index.consumers(of: x).count == 1, !g.outputs.contains(where: { $0.name == x }),
                  let (r, _) = options.range(y, options.scheme.activation, options.scheme.method)
            else { continue }
            if n.opType == "Clip" {
                let lo = n.inputs.count > 1 && !n.inputs[1].isEmpty ? g.initializer(n.inputs[1])?.floats().first : n.attribute("min")?.float
                guard lo == 0 else { continue }
                let hi = n.inputs.count > 2 && !n.inputs[2].isEmpty ? g.initializer(n.inputs[2])?.floats().first : n.attribute("max")?.float
                if let hi, r.hi > Double(hi) + 1e-6 { continue }
            }
            guard r.lo >= 0 else { continue }
            g.remove(n)
            p.outputs[0] = y
            absorbed.append((n, p))
            index = GraphIndex(g)
        }
        return absorbed
    }

    /// `values` rounded onto the grid with error compensation (GPTQ) when an input Hessian was
    /// collected for `n` and the layout fits (symmetric grid, per tensor or per row), else nil.
    /// With `groupSize` > 0, `scales` holds ⌈k/groupSize⌉ scales per row (row-major).
    func compensatedRounding(_ n: Node, values: [Float], shape: [Int], axis: Int?, scales: [Double], grid: QuantGrid,
                             groupSize: Int = 0, result: inout Result) -> [Float]? {
        guard let h = options.weightHessians[n.name], grid.symmetric, shape.count >= 2, !h.matrices.isEmpty else { return nil }
        let rowAxis = h.rowAxis
        guard axis == nil || axis == rowAxis, rowAxis == 0 || (rowAxis == 1 && shape.count == 2) else { return nil }
        let rows = shape[rowAxis], k = values.count / max(rows, 1)
        guard rows > 0, k == h.k, rows % h.matrices.count == 0 else { return nil }
        let perGroup = rows / h.matrices.count
        let rowScales = axis == nil ? [Double](repeating: scales[0], count: rows) : scales
        guard groupSize == 0 || (axis != nil && scales.count == rows * ((k + groupSize - 1) / groupSize)) else { return nil }
        func transpose(_ a: [Float], _ r: Int, _ c: Int) -> [Float] {
            var t = [Float](repeating: 0, count: a.count)
            for i in 0..<r { for j in 0..<c { t[j * r + i] = a[i * c + j] } }
            return t
        }
        let w = rowAxis == 0 ? values : transpose(values, shape[0], shape[1])
        if let ada = options.adaRound {
            let problem = AdaRound.Problem(w: w, rows: rows, k: k, scales: rowScales, qmin: Double(grid.qmin), qmax: Double(grid.qmax),
                                           hessians: h.matrices.map { $0.map(Float.init) }, cross: h.cross?.map { $0.map(Float.init) },
                                           floatHessians: h.floatMatrices?.map { $0.map(Float.init) }, groupSize: groupSize)
            let o = options.adaRoundCache.map { $0.outcome(node: n.name, problem: problem, options: ada) { AdaRound.round(problem, options: ada) } }
                ?? AdaRound.round(problem, options: ada)
            result.rounding[n.name] = WeightRoundingRecord(flips: o.flips, weights: w.count, errorNearest: o.errorNearest, errorAfter: o.errorAfter)
            options.onRounded?()
            return rowAxis == 0 ? o.values : transpose(o.values, shape[1], shape[0])
        }
        guard let r = ErrorCompensatedRounding.round(w, rows: rows, hessian: h, groupOfRow: { $0 / perGroup }, scales: rowScales,
                                                     qmin: Double(grid.qmin), qmax: Double(grid.qmax), groupSize: groupSize) else { return nil }
        return rowAxis == 0 ? r : transpose(r, shape[1], shape[0])
    }

    /// Quantizes node `n`'s weight (int8 per output channel along `axis`, or per tensor) and
    /// bias (int32, scale s_input·s_weight, zero point 0). When a bias would overflow int32,
    /// that channel's weight scale is widened until it fits.
    /// A weight computed at run time (`activationWeightScale`: its activation scale) keeps its
    /// activation Q/DQ; only the bias is quantized then, with scale s_input·s_weight, as ONNX
    /// Runtime would do itself (its optimizer's Div/Round/Cast need opset 11 and break an opset-10
    /// model; light_bvlc_alexnet's Gemms, whose weights come from ConstantOfShape, found it).
    func quantizeWeights(_ n: Node, in g: Graph, weightIndex wi: Int, axis requested: Int, biasIndex: Int?, inputScale: Double?,
                         activationWeightScale: Double? = nil, granularity: PrecisionPlan.Granularity, weightGrid grid: QuantGrid, inputSpan: Int? = nil,
                         domain: String, opset: Int, names: inout NameAllocator, result: inout Result) throws {
        let wName = n.inputs[wi]
        // Float8 grids have no integer accumulation: biases stay float.
        let float8 = grid.float8 != nil || options.scheme.activation.float8 != nil
        if !float8, g.initializer(wName) == nil, let s_w = activationWeightScale, let s_in = inputScale, let bi = biasIndex, bi < n.inputs.count,
           let b = g.initializer(n.inputs[bi]), b.dtype == .float, b.rank <= 1 {
            let bv = b.floats()
            // No weight scale to widen: a bias that would not fit int32 stays float.
            guard bv.allSatisfy({ abs(Double($0)) / (s_in * s_w) < Double(Int32.max - 1) }) else { return }
            emitBias(n, in: g, biasIndex: bi, values: bv, scales: [Double](repeating: s_in * s_w, count: bv.count), perChannel: false,
                     corrected: false, domain: domain, opset: opset, names: &names, result: &result)
            return
        }
        guard let w = g.initializer(wName), w.dtype == .float, w.count > 0 else { return }
        var axis: Int? = requested >= 0 ? requested : (requested == -2 && w.rank == 2 ? 1 : nil)
        if granularity == .tensor || (axis.map { $0 >= w.rank } ?? false) { axis = nil }
        if let size = granularity.groupSize, let a = axis, grid.float8 == nil {
            if let layout = WeightRows(shape: w.shape, channelAxis: a), layout.fanIn > size {
                try quantizeGroupedWeights(n, in: g, weightIndex: wi, layout: layout, groupSize: size, grid: grid, biasIndex: biasIndex, opset: opset,
                                           names: &names, result: &result)
                return
            }
            if WeightRows(shape: w.shape, channelAxis: a) == nil {
                result.warnings.append("\(n.label): weight groups need the output channel on the weight's first axis (or a 2-D weight); its weight is quantized per channel")
            }
        }
        let packed = options.scheme.packedWeights == true && grid.packedDType != grid.dtype
        let channels = axis.map { w.shape[$0] } ?? 1
        let inner = axis.map { w.shape[($0 + 1)...].reduce(1, *) } ?? w.count
        let values = w.floats()
        var lo = [Double](repeating: 0, count: channels), hi = [Double](repeating: 0, count: channels)
        for (i, v) in values.enumerated() {
            let c = axis == nil ? 0 : (i / inner) % channels
            lo[c] = min(lo[c], Double(v))
            hi[c] = max(hi[c], Double(v))
        }
        var scales = [Double](), zps = [Int]()
        for c in 0..<channels {
            let (s, z) = grid.parameters(for: ClipRange(lo: lo[c], hi: hi[c]))
            scales.append(s)
            zps.append(z)
        }
        // Bias: int32 with scale s_in·s_w; widen s_w where |b| / (s_in·s_w) exceeds int32.
        var biasValues: [Float]?
        var minimumScale = [Double](repeating: 0, count: channels)
        if !float8, let bi = biasIndex, let s_in = inputScale, bi < n.inputs.count, let b = g.initializer(n.inputs[bi]), b.dtype == .float,
           b.count == channels || channels == 1 {
            let bv = b.floats()
            let limit = Double(Int32.max - 1)
            var negligible = 0
            for (k, v) in bv.enumerated() {
                let c = channels == 1 ? 0 : k
                let need = abs(Double(v)) / (s_in * limit)
                minimumScale[c] = max(minimumScale[c], need)
                if need > scales[c] {
                    scales[c] = need * (1 + 1e-6)
                    // A channel whose largest possible weight contribution (|w|max · input span ·
                    // fan-in, the input span being ~256 steps of s_in) is below 1% of its bias
                    // does not lose anything that matters (typically channels BatchNorm folding
                    // switched off): one summary line instead of a warning per channel. Widening
                    // happens only when |w|max < 127·|b| / (s_in·2³¹), which bounds that
                    // contribution by fan-in · 1.5e-5 of the bias: EfficientNet-Lite0's expand
                    // Convs (fan-in 96–192) sat just above the former 0.1% line.
                    if max(abs(lo[c]), abs(hi[c])) * s_in * 256 * Double(inner) < 1e-2 * abs(Double(v)) {
                        negligible += 1
                    } else {
                        result.warnings.append("bias of \(n.label) channel \(k) would overflow int32: weight scale widened to \(scales[c])")
                    }
                }
            }
            if negligible > 0 { result.negligibleChannels.append((n.name, negligible)) }
            biasValues = bv
        }
        if options.scheme.hardware?.scale != nil {
            var byChannel = [[Float]](repeating: [], count: channels)
            for (i, v) in values.enumerated() { byChannel[axis == nil ? 0 : (i / inner) % channels].append(v) }
            try formatWeightScales(&scales, zeroPoints: &zps, grid: grid, what: "weight '\(wName)' of \(n.label)", values: { byChannel[$0] },
                                   minimum: { minimumScale[$0] }, result: &result)
        }
        let wDomain = (axis != nil && opset < 13) || (packed && opset < 21) ? "com.microsoft" : domain
        if packed { model.extras.irVersion = max(model.extras.irVersion, 10) }  // int4 tensors need IR 10
        if !wDomain.isEmpty { model.declareDomain(wDomain) }
        let qName = names.fresh(wName + "_quantized")
        let sName = names.fresh(wName + "_scale")
        let zName = names.fresh(wName + "_zero_point")
        let compensated = grid.float8 == nil ? compensatedRounding(n, values: values, shape: w.shape, axis: axis, scales: scales, grid: grid, result: &result) : nil
        func channel(_ i: Int) -> Int { axis == nil ? 0 : (i / inner) % channels }
        var q: [Int] = []
        var levels: [Int]? = nil
        if grid.float8 != nil {
            // Float8 weights: the nearest float8 number of w / scale per channel, zero point 0
            // (no bias: biasValues is nil for float8).
            g.setInitializer(qName, grid.quantize(values, shape: w.shape, scales: scales, zeroPoints: zps, axis: axis))
        } else {
            q = (compensated ?? values).enumerated().map { i, v in
                Int(min(max((Double(v) / scales[channel(i)]).rounded(.toNearestOrEven) + Double(zps[channel(i)]), Double(grid.qmin)), Double(grid.qmax)))
            }
            levels = restrictLevels(&q, grid: grid) { scales[channel($0)] }
            if let bits = options.scheme.accumulatorBits, let span = inputSpan, let s_in = inputScale, ["Conv", "MatMul", "Gemm"].contains(n.opType),
               let out = requested >= 0 ? requested : (w.rank == 2 ? 1 : nil), out < w.rank {
                let outInner = w.shape[(out + 1)...].reduce(1, *), outChannels = w.shape[out]
                let (count, factor) = try fitAccumulator(n, q: &q, values: compensated ?? values, scales: &scales, zeroPoints: zps, grid: grid, scaleOf: channel,
                                                         outputChannelOf: { ($0 / outInner) % outChannels }, outputChannels: outChannels, span: span,
                                                         bias: biasValues, inputScale: s_in, bits: bits)
                if count > 0 {
                    result.accumulatorFits.append("\(n.label) \(count) channel(s), scale x\(String(format: "%.3g", factor))")
                    // The refitted channels left the levels: restrict the layer again, then check the
                    // bound once more (a level may lie above the integers it replaces); what still
                    // overflows is refitted on the uniform grid and said so.
                    if levels != nil {
                        levels = restrictLevels(&q, grid: grid) { scales[channel($0)] }
                        let again = try fitAccumulator(n, q: &q, values: compensated ?? values, scales: &scales, zeroPoints: zps, grid: grid, scaleOf: channel,
                                                       outputChannelOf: { ($0 / outInner) % outChannels }, outputChannels: outChannels, span: span,
                                                       bias: biasValues, inputScale: s_in, bits: bits)
                        if again.widened > 0 {
                            levels = Array(Set(q)).sorted()
                            result.warnings.append("\(n.label): \(again.widened) channel(s) left the \(options.scheme.weightLevels ?? 0) non-uniform levels to fit the \(bits)-bit accumulator; the layer has \(levels!.count) values")
                        }
                    }
                }
            }
            g.setInitializer(qName, grid.tensor(q, shape: w.shape, packed: packed))
        }
        var corrected = false
        if let bv = biasValues, let mean = options.inputMeans[n.name] {
            let dequantized = q.enumerated().map { i, v in Float(Double(v - zps[channel(i)]) * scales[channel(i)]) }
            if let shift = BiasCorrection.shift(opType: n.opType, weight: values, quantized: dequantized, shape: w.shape,
                                                transposed: (n.attribute("transB")?.int ?? 0) == 1, inputMeans: mean), shift.count == bv.count {
                biasValues = zip(bv, shift).map { Float(Double($0) + $1) }
                corrected = true
            }
        }
        g.setInitializer(sName, axis == nil ? Tensor(shape: [], floats: [Float(scales[0])]) : Tensor(shape: [channels], floats: scales.map(Float.init)))
        g.setInitializer(zName, grid.zeroPointTensor(zps, perChannel: axis != nil, packed: packed))
        let dq = names.fresh(wName + Suffix.dq)
        let dqNode = Node(name: names.fresh(wName + "_DequantizeLinear"), opType: "DequantizeLinear", domain: wDomain, inputs: [qName, sName, zName], outputs: [dq])
        if let axis { dqNode.setAttribute(.int("axis", axis)) }
        g.nodes.append(dqNode)
        n.inputs[wi] = dq
        result.dequantized[dq] = wName
        result.parameters[wName] = TensorQuantParameters(
            role: .weight, dtype: (packed ? grid.packedDType : grid.dtype).name, scale: scales, zeroPoint: zps, axis: axis,
            threshold: (0..<channels).map { max(abs(lo[$0]), abs(hi[$0])) }, method: weightMethod(compensated: compensated != nil, levels: levels),
            levels: levels)

        guard let bv = biasValues, let bi = biasIndex, let s_in = inputScale else { return }
        emitBias(n, in: g, biasIndex: bi, values: bv, scales: (0..<bv.count).map { s_in * scales[channels == 1 ? 0 : $0] },
                 perChannel: channels > 1, corrected: corrected, domain: domain, opset: opset, names: &names, result: &result)
    }

    /// With `--weight-levels L`: restricts the layer's integers `q` to at most L values
    /// (``NonUniformLevels``, each weight weighted by its scale squared); returns the levels.
    func restrictLevels(_ q: inout [Int], grid: QuantGrid, scaleOf: (Int) -> Double) -> [Int]? {
        guard let l = options.scheme.weightLevels else { return nil }
        let r = NonUniformLevels.restrict(q, levels: l, qmin: grid.qmin, qmax: grid.qmax) { let s = scaleOf($0); return s * s }
        q = r.q
        return r.levels
    }

    /// The record's method for a weight: minmax, then how it was rounded and restricted.
    func weightMethod(compensated: Bool, levels: [Int]?) -> String {
        (compensated ? (options.adaRound == nil ? "minmax+gptq" : "minmax+adaround") : "minmax") + (levels.map { "+nuq\($0.count)" } ?? "")
    }

    /// Writes bias `values` as int32 with `scales` (one per element; per tensor unless
    /// `perChannel`) and zero point 0 behind a DequantizeLinear that node `n` reads.
    /// `shape` keeps a bias of shape [1, ..., 1, N] so (per channel along its last axis).
    func emitBias(_ n: Node, in g: Graph, biasIndex bi: Int, values bv: [Float], scales biasScales: [Double], perChannel perChannelBias: Bool,
                  corrected: Bool, domain: String, opset: Int, names: inout NameAllocator, result: inout Result, shape: [Int]? = nil) {
        let bName = n.inputs[bi]
        let bq = Tensor(dtype: .int32, shape: shape ?? [bv.count])
        bq.withUnsafeMutableBufferPointer(as: Int32.self) { out in
            for k in 0..<bv.count {
                out[k] = Int32(min(max((Double(bv[k]) / biasScales[k]).rounded(.toNearestOrEven), -Double(Int32.max)), Double(Int32.max)))
            }
        }
        let bqName = names.fresh(bName + "_quantized")
        let bsName = names.fresh(bName + "_scale")
        let bzName = names.fresh(bName + "_zero_point")
        g.setInitializer(bqName, bq)
        g.setInitializer(bsName, perChannelBias ? Tensor(shape: [bv.count], floats: biasScales.map(Float.init)) : Tensor(shape: [], floats: [Float(biasScales[0])]))
        g.setInitializer(bzName, perChannelBias ? Tensor(shape: [bv.count], values: [Int32](repeating: 0, count: bv.count)) : Tensor(shape: [], values: [Int32(0)]))
        let bdq = names.fresh(bName + Suffix.dq)
        let bDomain = perChannelBias && opset < 13 ? "com.microsoft" : domain
        let bNode = Node(name: names.fresh(bName + "_DequantizeLinear"), opType: "DequantizeLinear", domain: bDomain, inputs: [bqName, bsName, bzName], outputs: [bdq])
        if perChannelBias { bNode.setAttribute(.int("axis", max(0, (shape?.count ?? 1) - 1))) }
        g.nodes.append(bNode)
        n.inputs[bi] = bdq
        result.parameters[bName] = TensorQuantParameters(
            role: .bias, dtype: "int32", scale: biasScales, zeroPoint: [Int](repeating: 0, count: bv.count),
            axis: perChannelBias ? max(0, (shape?.count ?? 1) - 1) : nil, threshold: [], method: corrected ? "s_input*s_weight+bias_correction" : "s_input*s_weight")
    }
}

extension QDQRewriter {
    /// ONNX Runtime (1.20 and later, its `WeightBiasQuantization` optimizer) quantizes the float
    /// weight of a Conv, ConvTranspose or Gemm itself, per tensor, when the node reads a
    /// DequantizeLinear with one scale and its output goes to a QuantizeLinear alone (Relu/Clip
    /// in between allowed), and then fuses it into an integer kernel. A node kept float between
    /// quantized tensors would so run int8 after all, with a coarser weight grid than ours.
    /// Giving it its own DequantizeLinear along the input-channel axis, with the same scale and
    /// zero point repeated per channel (the same values), puts it outside that rule (and outside
    /// the QLinearConv/QGemm selectors): it runs float, as asked.
    ///
    /// Below opset 13 (DequantizeLinear without `axis`) that DequantizeLinear is ONNX Runtime's
    /// com.microsoft one, which has the axis. Returns the nodes this cannot protect (one input
    /// channel: a one-element scale counts as per tensor there; or a weight whose shape is
    /// unknown here) and whether a com.microsoft node was added.
    func keepFloatComputeOutOfRuntimeQuantization(_ g: Graph, floatRun: Set<ObjectIdentifier>, opset: Int,
                                                  names: inout NameAllocator) -> (unprotected: [Node], usesMicrosoftDomain: Bool) {
        var usesMicrosoftDomain = false
        let index = GraphIndex(g)
        var unprotected: [Node] = []
        /// The path ONNX Runtime follows: single readers through Relu/Clip to a QuantizeLinear.
        func leadsToQuantize(_ n: Node) -> Bool {
            var current = n
            while true {
                guard current.outputs.count == 1 else { return false }
                let readers = index.consumers(of: current.outputs[0])
                guard readers.count == 1 else { return false }
                if readers[0].opType == "QuantizeLinear" { return true }
                guard OpRules.traits(of: readers[0]).absorbable else { return false }
                current = readers[0]
            }
        }
        for n in g.nodes where floatRun.contains(ObjectIdentifier(n)) && n.isStandard
            && OpRules.traits(of: n).runtimeQuantizesWeight && n.inputs.count >= 2 {
            guard let dq = index.producer[n.inputs[0]], dq.opType == "DequantizeLinear", dq.inputs.count >= 2,
                  let scale = g.initializer(dq.inputs[1]), scale.count == 1, leadsToQuantize(n) else { continue }
            let zp = dq.inputs.count > 2 && !dq.inputs[2].isEmpty ? g.initializer(dq.inputs[2]) : nil
            guard let w = g.initializer(n.inputs[1]), w.shape.count >= 2 else {
                unprotected.append(n)
                continue
            }
            let channels: Int, axis: Int
            switch n.opType {
            case "Conv":
                channels = w.shape[1] * (n.attribute("group")?.int ?? 1)
                axis = 1
            case "ConvTranspose":
                channels = w.shape[0]
                axis = 1
            default:  // Gemm
                channels = (n.attribute("transB")?.int ?? 0) == 1 ? w.shape[1] : w.shape[0]
                axis = (n.attribute("transA")?.int ?? 0) == 1 ? 0 : 1
            }
            guard channels > 1 else {
                unprotected.append(n)
                continue
            }
            func repeated(_ t: Tensor) -> Tensor {
                let one = Array(t.bytes)
                let all = Array([[UInt8]](repeating: one, count: channels).joined())
                return all.withUnsafeBytes { try! Tensor(dtype: t.dtype, shape: [channels], copying: $0) }
            }
            let base = n.inputs[0]
            let scaleName = names.fresh(base + "_scale_per_channel")
            g.setInitializer(scaleName, repeated(scale))
            var inputs = [dq.inputs[0], scaleName]
            if let zp {
                let zpName = names.fresh(base + "_zero_point_per_channel")
                g.setInitializer(zpName, repeated(zp))
                inputs.append(zpName)
            }
            let out = names.fresh(base + "_float_input")
            let domain = opset < 13 ? "com.microsoft" : dq.domain
            usesMicrosoftDomain = usesMicrosoftDomain || !domain.isEmpty
            let node = Node(name: names.fresh(n.name.isEmpty ? base + "_DequantizeLinear" : n.name + "_input_DequantizeLinear"),
                            opType: "DequantizeLinear", domain: domain, inputs: inputs, outputs: [out])
            node.setAttribute(.int("axis", axis))
            g.nodes.append(node)
            n.inputs[0] = out
        }
        return (unprotected, usesMicrosoftDomain)
    }
}
