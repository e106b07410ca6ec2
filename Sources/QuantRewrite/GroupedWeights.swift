import QuantAlgorithms
import QuantCalibration
import QuantCore
import QuantIR

/// A constant weight seen as rows, one per output channel, of its fan-in: channel axis 0 (Conv
/// [O, I/g, kh, kw] with fan-in I/g·kh·kw in storage order, Gemm with transB [N, K]) or a 2-D
/// weight with channels on axis 1 (MatMul and Gemm [K, N]: rows are the columns).
struct WeightRows: Equatable {
    let shape: [Int]
    let channelAxis: Int
    let rows: Int
    let fanIn: Int

    init?(shape: [Int], channelAxis a: Int) {
        guard shape.count >= 2, shape.allSatisfy({ $0 > 0 }) else { return nil }
        switch a {
        case 0: (rows, fanIn) = (shape[0], shape.dropFirst().reduce(1, *))
        case 1 where shape.count == 2: (rows, fanIn) = (shape[1], shape[0])
        default: return nil
        }
        self.shape = shape
        channelAxis = a
    }

    /// Storage is [fanIn, rows]: a row is a column.
    var transposed: Bool { channelAxis == 1 }

    /// `values` in storage order as a row-major rows × fanIn matrix.
    func matrix<T>(_ values: [T]) -> [T] {
        guard transposed else { return values }
        return (0..<values.count).map { i in values[(i % fanIn) * rows + i / fanIn] }
    }

    /// The inverse of `matrix`: a rows × fanIn matrix in storage order.
    func storage<T>(_ m: [T]) -> [T] {
        guard transposed else { return m }
        return (0..<m.count).map { i in m[(i % rows) * fanIn + i / rows] }
    }
}

extension QDQRewriter {
    /// Quantizes node `n`'s constant weight with one scale (and zero point) per group of
    /// `groupSize` consecutive weights of each output channel's fan-in (the last group of a row
    /// may be shorter). GPTQ and AdaRound round with the group scales when their statistics exist.
    ///
    /// Written as ONNX Runtime runs it: packed int4/uint4 at opset 21 and later, a
    /// DequantizeLinear with `block_size` (a Conv's over [O, fan-in], then a Reshape to the
    /// weight's shape); otherwise (8-bit storage, which ONNX Runtime 1.23 would wrongly fuse into
    /// QLinearConv/QLinearMatMul and then fail on, or below opset 21) the integers are stored as
    /// [rows·groups, groupSize] (rows padded with the zero point to whole groups) behind a
    /// per-axis DequantizeLinear (axis 0), then Reshape, Slice off the padding, and Reshape or
    /// Transpose back to the weight's shape. Either way the op reads float weights: ONNX Runtime
    /// runs it as a float kernel (a 2-D int4 MatMul weight at opset 21 becomes its MatMulNBits).
    /// The bias stays float (there is no one weight scale per channel for an int32 bias) and
    /// absorbs bias correction when that is on.
    func quantizeGroupedWeights(_ n: Node, in g: Graph, weightIndex wi: Int, layout: WeightRows, groupSize gs: Int, grid: QuantGrid, biasIndex: Int?,
                                opset: Int, names: inout NameAllocator, result: inout Result) throws {
        let wName = n.inputs[wi]
        guard let w = g.initializer(wName) else { return }
        let packed = options.scheme.packedWeights == true && grid.packedDType != grid.dtype
        let (rows, fanIn) = (layout.rows, layout.fanIn)
        let groups = (fanIn + gs - 1) / gs
        let values = w.floats()
        let m = layout.matrix(values)
        var scales = [Double](), zps = [Int](), thresholds = [Double](repeating: 0, count: rows)
        scales.reserveCapacity(rows * groups)
        for r in 0..<rows {
            for k in 0..<groups {
                var lo = 0.0, hi = 0.0
                for f in (k * gs)..<min(fanIn, (k + 1) * gs) {
                    let v = Double(m[r * fanIn + f])
                    lo = min(lo, v)
                    hi = max(hi, v)
                }
                let (s, z) = grid.parameters(for: ClipRange(lo: lo, hi: hi))
                scales.append(s)
                zps.append(z)
                thresholds[r] = max(thresholds[r], -lo, hi)
            }
        }
        try formatWeightScales(&scales, zeroPoints: &zps, grid: grid, what: "weight '\(wName)' of \(n.label)", values: { c in
            let (r, k) = (c / groups, c % groups)
            return Array(m[(r * fanIn + k * gs)..<(r * fanIn + min(fanIn, (k + 1) * gs))])
        }, result: &result)
        let compensated = compensatedRounding(n, values: values, shape: w.shape, axis: layout.channelAxis, scales: scales, grid: grid,
                                              groupSize: gs, result: &result)
        let rounded = compensated.map(layout.matrix) ?? m
        func group(_ i: Int) -> Int { (i / fanIn) * groups + (i % fanIn) / gs }
        var q = rounded.indices.map { i in
            Int(min(max((Double(rounded[i]) / scales[group(i)]).rounded(.toNearestOrEven) + Double(zps[group(i)]), Double(grid.qmin)), Double(grid.qmax)))
        }
        let levels = restrictLevels(&q, grid: grid) { scales[group($0)] }
        let dequantized = q.indices.map { i in Float(Double(q[i] - zps[group(i)]) * scales[group(i)]) }
        // Bias correction moves the float bias by the mean output shift of the rounding.
        var corrected = false
        if let bi = biasIndex, bi < n.inputs.count, let b = g.initializer(n.inputs[bi]), b.dtype == .float, b.count == rows,
           let mean = options.inputMeans[n.name],
           let shift = BiasCorrection.shift(opType: n.opType, weight: values, quantized: layout.storage(dequantized), shape: w.shape,
                                            transposed: (n.attribute("transB")?.int ?? 0) == 1, inputMeans: mean), shift.count == b.count {
            let name = names.fresh(n.inputs[bi] + "_corrected")
            g.setInitializer(name, Tensor(shape: b.shape, floats: zip(b.floats(), shift).map { Float(Double($0) + $1) }))
            n.inputs[bi] = name
            corrected = true
        }
        if packed { model.extras.irVersion = max(model.extras.irVersion, 10) }  // int4 tensors need IR 10
        let dtype = packed ? grid.packedDType : grid.dtype
        func constant(_ suffix: String, _ t: Tensor) -> String {
            let name = names.fresh(wName + suffix)
            g.setInitializer(name, t)
            return name
        }
        func node(_ op: String, _ inputs: [String], domain: String = "", _ attributes: [Attribute] = []) -> String {
            let out = names.fresh(wName + "_\(op)_Output")
            let nd = Node(name: names.fresh(wName + "_" + op), opType: op, domain: domain, inputs: inputs, outputs: [out])
            for a in attributes { nd.setAttribute(a) }
            g.nodes.append(nd)
            return out
        }
        func int64s(_ v: [Int]) -> Tensor { Tensor(shape: [v.count], values: v.map(Int64.init)) }
        var output: String
        if opset >= 21 && packed {
            // DequantizeLinear-21 with block_size: the scale has the weight's rank, ⌈dim/block⌉ along the blocked axis.
            let quantized: Tensor, scale: Tensor, zero: Tensor, axis: Int
            if layout.transposed {
                // [K, N] blocked along axis 0: scale [groups, N].
                let t = (0..<(rows * groups)).map { i in (i % rows) * groups + i / rows }
                quantized = grid.tensor(layout.storage(q), shape: w.shape, packed: packed)
                scale = Tensor(shape: [groups, rows], floats: t.map { Float(scales[$0]) })
                zero = grid.tensor(t.map { zps[$0] }, shape: [groups, rows], packed: packed)
                axis = 0
            } else {
                let direct = w.rank == 2
                let shape = direct ? w.shape : [rows, fanIn]
                let pshape = [rows, groups] + [Int](repeating: 1, count: shape.count - 2)
                quantized = grid.tensor(q, shape: shape, packed: packed)
                scale = Tensor(shape: pshape, floats: scales.map(Float.init))
                zero = grid.tensor(zps, shape: pshape, packed: packed)
                axis = 1
            }
            output = node("DequantizeLinear", [constant("_quantized", quantized), constant("_scale", scale), constant("_zero_point", zero)], [
                .int("axis", axis), .int("block_size", gs)])
            if quantized.shape != w.shape { output = node("Reshape", [output, constant("_shape", int64s(w.shape))]) }
        } else {
            // Per-axis DequantizeLinear over [rows·groups, groupSize].
            var padded = [Int](repeating: 0, count: rows * groups * gs)
            for r in 0..<rows {
                for k in 0..<groups {
                    for j in 0..<gs {
                        let f = k * gs + j
                        padded[(r * groups + k) * gs + j] = f < fanIn ? q[r * fanIn + f] : zps[r * groups + k]
                    }
                }
            }
            let domain = packed || opset < 13 ? "com.microsoft" : ""
            if !domain.isEmpty { model.declareDomain(domain) }
            output = node("DequantizeLinear", [constant("_quantized", grid.tensor(padded, shape: [rows * groups, gs], packed: packed)),
                                               constant("_scale", Tensor(shape: [rows * groups], floats: scales.map(Float.init))),
                                               constant("_zero_point", grid.tensor(zps, shape: [rows * groups], packed: packed))],
                          domain: domain, [.int("axis", 0)])
            output = node("Reshape", [output, constant("_rows", int64s([rows, groups * gs]))])
            if groups * gs != fanIn {
                output = node("Slice", [output, constant("_starts", int64s([0])), constant("_ends", int64s([fanIn])), constant("_axes", int64s([1]))])
            }
            if layout.transposed {
                output = node("Transpose", [output], [.ints("perm", [1, 0])])
            } else if w.rank != 2 {
                output = node("Reshape", [output, constant("_shape", int64s(w.shape))])
            }
        }
        n.inputs[wi] = output
        result.dequantized[output] = wName
        let method = weightMethod(compensated: compensated != nil, levels: levels)
        result.parameters[wName] = TensorQuantParameters(
            role: .weight, dtype: dtype.name, scale: scales, zeroPoint: zps, axis: layout.channelAxis, blockSize: gs,
            threshold: thresholds, method: corrected ? method + "+bias_correction" : method, levels: levels)
    }
}
