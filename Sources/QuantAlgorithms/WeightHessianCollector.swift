import Foundation
import QuantCore
import QuantExecutor
import QuantIR

/// An execution hook that accumulates, for every Conv/Gemm/MatMul with a constant 2-D (or
/// Conv 1-D/2-D) weight, H = E[x xᵀ] of the inputs its output rows see: im2col patches per group
/// for Conv ((channel, kh, kw) order, zero padding included), the last axis for Gemm/MatMul.
/// Memory is one k×k matrix per weight group, independent of the number of batches.
public final class WeightHessianCollector: ExecutionHook {
    struct Site {
        var node: String
        var conv: ConvShape?
        var rowAxis: Int
        var k: Int
    }

    struct ConvShape {
        var group: Int
        var kernel: [Int]      // [kh, kw]
        var strides: [Int]
        var dilations: [Int]
        var pads: [Int]?       // [top, left, bottom, right]; nil: SAME_* resolved per input
        var autoPad: String
    }

    private var sites: [String: [Site]] = [:]
    private var sums: [String: [[Double]]] = [:]
    private var counts: [String: Int] = [:]
    /// Σ x per group and input row (im2col row for Conv), for the means bias correction reads.
    private var rowSums: [String: [[Double]]] = [:]
    private let collectHessians: Bool
    private let threads: Int
    /// The float model's value of a site's input for the current batch, by the site tensor's
    /// name; with it, E[x_f x_qᵀ] and E[x_f x_fᵀ] are collected too (AdaRound's float target).
    public var reference: ((String) -> [Float]?)? = nil
    private var crossSums: [String: [[Double]]] = [:]
    private var floatSums: [String: [[Double]]] = [:]
    private var complete = Set<String>()
    private var batchesSeen: [String: Int] = [:]
    private var referenceBatches: [String: Int] = [:]

    /// Sites for the constant-weight Conv, Gemm and MatMul nodes of `graph` that `include` accepts.
    /// `weight` gives a node's weight tensor (only its shape is read): by default a float
    /// initializer; for a QDQ graph, the integer initializer behind the weight's DequantizeLinear.
    /// With `hessians` false only the input means are collected (no k×k products), on `threads`.
    public init(graph: Graph, include: (Node) -> Bool = { _ in true }, weight: ((Node) -> Tensor?)? = nil, hessians: Bool = true,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        collectHessians = hessians
        self.threads = threads
        let weightOf = weight ?? { n in graph.initializer(n.inputs[1]).flatMap { $0.dtype == .float ? $0 : nil } }
        for n in graph.nodes where n.isStandard && include(n) {
            guard n.inputs.count >= 2, let w = weightOf(n) else { continue }
            switch n.opType {
            case "Conv" where w.rank == 4 || w.rank == 3:
                let spatial = w.rank - 2
                let kernel = spatial == 2 ? [w.shape[2], w.shape[3]] : [1, w.shape[2]]
                func pair(_ name: String, _ d: Int) -> [Int] {
                    let v = n.attribute(name)?.ints ?? [Int](repeating: d, count: spatial)
                    return spatial == 2 ? v : [d, v.first ?? d]
                }
                let autoPad = n.attribute("auto_pad")?.string ?? "NOTSET"
                var pads: [Int]? = nil
                if autoPad == "NOTSET" || autoPad == "VALID" {
                    let p = n.attribute("pads")?.ints ?? [Int](repeating: 0, count: 2 * spatial)
                    pads = autoPad == "VALID" ? [0, 0, 0, 0] : (spatial == 2 ? p : [0, p[0], 0, p[1]])
                }
                let shape = ConvShape(group: n.attribute("group")?.int ?? 1, kernel: kernel, strides: pair("strides", 1),
                                      dilations: pair("dilations", 1), pads: pads, autoPad: autoPad)
                sites[n.inputs[0], default: []].append(Site(node: n.name, conv: shape, rowAxis: 0, k: w.count / w.shape[0]))
            case "Gemm" where w.rank == 2 && (n.attribute("transA")?.int ?? 0) == 0:
                let transB = (n.attribute("transB")?.int ?? 0) == 1
                sites[n.inputs[0], default: []].append(Site(node: n.name, conv: nil, rowAxis: transB ? 0 : 1, k: transB ? w.shape[1] : w.shape[0]))
            case "MatMul" where w.rank == 2:
                sites[n.inputs[0], default: []].append(Site(node: n.name, conv: nil, rowAxis: 1, k: w.shape[0]))
            default:
                continue
            }
        }
    }

    /// E[x] of the inputs each output row sees, per node name: per group, one value per weight
    /// column (Conv: im2col rows in (channel, kh, kw) order, zero padding included; Gemm/MatMul:
    /// the last axis), for ``BiasCorrection``.
    public var inputMeans: [String: [[Double]]] {
        var out: [String: [[Double]]] = [:]
        for (node, groups) in rowSums {
            guard let c = counts[node], c > 0 else { continue }
            out[node] = groups.map { $0.map { $0 / Double(c) } }
        }
        return out
    }

    /// The mean Hessians collected so far, per node name.
    public var hessians: [String: WeightHessian] {
        var out: [String: WeightHessian] = [:]
        for list in sites.values {
            for s in list {
                guard let m = sums[s.node], let c = counts[s.node], c > 0 else { continue }
                var h = WeightHessian(k: s.k, rowAxis: s.rowAxis, matrices: m.map { $0.map { $0 / Double(c) } })
                // The float-input moments only when the float input came with every batch.
                if let x = crossSums[s.node], let f = floatSums[s.node], complete.contains(s.node) {
                    h.cross = x.map { $0.map { $0 / Double(c) } }
                    h.floatMatrices = f.map { $0.map { $0 / Double(c) } }
                }
                out[s.node] = h
            }
        }
        return out
    }

    /// The mean Hessians (no float-input moments), moved out of the collector: its sums become
    /// the result, so the peak holds one k×k matrix per site, not two.
    public func takeHessians() -> [String: WeightHessian] {
        var out: [String: WeightHessian] = [:]
        for list in sites.values {
            for s in list {
                guard let c = counts[s.node], c > 0, var m = sums.removeValue(forKey: s.node) else { continue }
                for g in m.indices { m[g].withUnsafeMutableBufferPointer { b in for i in b.indices { b[i] /= Double(c) } } }
                out[s.node] = WeightHessian(k: s.k, rowAxis: s.rowAxis, matrices: m)
            }
        }
        return out
    }

    public func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        let name = executor.name(of: value)
        guard tensor.dtype == .float, let list = sites[name] else { return nil }
        let x = tensor.floats()
        let xf = collectHessians ? reference?(name).flatMap { $0.count == x.count ? $0 : nil } : nil
        // Gemm/MatMul sites reading this tensor (Q, K and V projections) share one XᵀX.
        var lastAxisGram: [Float]? = nil
        for s in list {
            if let c = s.conv {
                accumulateConv(s, c, x, shape: tensor.shape, reference: xf)
            } else {
                guard let last = tensor.shape.last, last == s.k else { continue }
                let n = x.count / s.k
                var sum = [Double](repeating: 0, count: s.k)
                for r in 0..<n { for i in 0..<s.k { sum[i] += Double(x[r * s.k + i]) } }
                addRowSums(sum, to: s.node, group: 0, groups: 1)
                if collectHessians {
                    let h = lastAxisGram ?? gram(x, k: s.k, count: n, rowMajorSamples: true)
                    lastAxisGram = h
                    add(h, to: s.node, group: 0, groups: 1, k: s.k)
                    if let xf {
                        add(cross(xf, x, k: s.k, count: n, rowMajorSamples: true), to: s.node, group: 0, groups: 1, k: s.k, store: &crossSums)
                        add(gram(xf, k: s.k, count: n, rowMajorSamples: true), to: s.node, group: 0, groups: 1, k: s.k, store: &floatSums)
                    }
                    noteReference(s.node, given: xf != nil)
                }
                counts[s.node, default: 0] += n
            }
        }
        return nil
    }

    /// Σ M of group `group` of `node` in `store` += m.
    private func add(_ m: [Float], to node: String, group: Int, groups: Int, k: Int, store: inout [String: [[Double]]]) {
        var all = store.removeValue(forKey: node) ?? [[Double]](repeating: [Double](repeating: 0, count: k * k), count: groups)
        all[group].withUnsafeMutableBufferPointer { sum in
            m.withUnsafeBufferPointer { m in for i in 0..<(k * k) { sum[i] += Double(m[i]) } }
        }
        store[node] = all
    }

    /// Aᵀ·B for samples stored as rows ([n × k] each), or A·Bᵀ for samples as columns ([k × n]).
    private func cross(_ a: [Float], _ b: [Float], k: Int, count n: Int, rowMajorSamples: Bool) -> [Float] {
        var h = [Float](repeating: 0, count: k * k)
        a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in h.withUnsafeMutableBufferPointer { h in
            if rowMajorSamples {
                BLAS.sgemm(transA: true, m: k, n: k, k: n, a: a.baseAddress!, lda: k, b: b.baseAddress!, ldb: k, c: h.baseAddress!, ldc: k)
            } else {
                BLAS.sgemm(transB: true, m: k, n: k, k: n, a: a.baseAddress!, lda: n, b: b.baseAddress!, ldb: n, c: h.baseAddress!, ldc: k)
            }
        } } }
        return h
    }

    private func noteReference(_ node: String, given: Bool) {
        batchesSeen[node, default: 0] += 1
        if given { referenceBatches[node, default: 0] += 1 }
        if batchesSeen[node] == referenceBatches[node] { complete.insert(node) } else { complete.remove(node) }
    }

    /// A·Aᵀ for A [k × n], or Aᵀ·A for samples stored as rows ([n × k]).
    private func gram(_ a: [Float], k: Int, count n: Int, rowMajorSamples: Bool) -> [Float] {
        var h = [Float](repeating: 0, count: k * k)
        a.withUnsafeBufferPointer { a in
            h.withUnsafeMutableBufferPointer { h in
                if rowMajorSamples {
                    BLAS.sgemm(transA: true, m: k, n: k, k: n, a: a.baseAddress!, lda: k, b: a.baseAddress!, ldb: k, c: h.baseAddress!, ldc: k)
                } else {
                    BLAS.sgemm(transB: true, m: k, n: k, k: n, a: a.baseAddress!, lda: n, b: a.baseAddress!, ldb: n, c: h.baseAddress!, ldc: k)
                }
            }
        }
        return h
    }

    /// H_g of `node` += h.
    private func add(_ h: [Float], to node: String, group: Int, groups: Int, k: Int) {
        var all = sums.removeValue(forKey: node) ?? [[Double]](repeating: [Double](repeating: 0, count: k * k), count: groups)
        all[group].withUnsafeMutableBufferPointer { sum in
            h.withUnsafeBufferPointer { h in for i in 0..<(k * k) { sum[i] += Double(h[i]) } }
        }
        sums[node] = all
    }

    /// Σx of group `group` of `node` += `sum` (one value per input row).
    private func addRowSums(_ sum: [Double], to node: String, group: Int, groups: Int) {
        var all = rowSums.removeValue(forKey: node) ?? [[Double]](repeating: [Double](repeating: 0, count: sum.count), count: groups)
        for i in 0..<sum.count { all[group][i] += sum[i] }
        rowSums[node] = all
    }

    private func accumulateConv(_ s: Site, _ c: ConvShape, _ x: [Float], shape: [Int], reference xf: [Float]?) {
        guard shape.count == 3 || shape.count == 4 else { return }
        let n = shape[0], channels = shape[1]
        let (h, w) = shape.count == 4 ? (shape[2], shape[3]) : (1, shape[2])
        guard c.group > 0, channels % c.group == 0 else { return }
        let cpg = channels / c.group
        let (kh, kw) = (c.kernel[0], c.kernel[1])
        guard cpg * kh * kw == s.k else { return }
        let (ekh, ekw) = ((kh - 1) * c.dilations[0] + 1, (kw - 1) * c.dilations[1] + 1)
        var pads = c.pads ?? [0, 0, 0, 0]
        if c.pads == nil {
            // SAME_UPPER / SAME_LOWER: output = ceil(input / stride), the extra pad at the end (upper) or start.
            for (d, size, ek, st) in [(0, h, ekh, c.strides[0]), (1, w, ekw, c.strides[1])] {
                let out = (size + st - 1) / st
                let total = max(0, (out - 1) * st + ek - size)
                let small = total / 2, big = total - small
                (pads[d], pads[d + 2]) = c.autoPad == "SAME_LOWER" ? (big, small) : (small, big)
            }
        }
        let oh = (h + pads[0] + pads[2] - ekh) / c.strides[0] + 1
        let ow = (w + pads[1] + pads[3] - ekw) / c.strides[1] + 1
        guard oh > 0, ow > 0 else { return }
        let positions = n * oh * ow
        if !collectHessians {
            accumulateConvMeans(s, c, x, n: n, channels: channels, h: h, w: w, oh: oh, ow: ow, pads: pads)
            counts[s.node, default: 0] += positions
            return
        }
        func im2col(_ x: [Float], group g: Int) -> [Float] {
            var cols = [Float](repeating: 0, count: s.k * positions)
            cols.withUnsafeMutableBufferPointer { col in
                x.withUnsafeBufferPointer { x in
                    for ci in 0..<cpg {
                        for i in 0..<kh {
                            for j in 0..<kw {
                                let row = (ci * kh + i) * kw + j
                                let base = row * positions
                                for b in 0..<n {
                                    let plane = ((b * channels) + g * cpg + ci) * h * w
                                    for oy in 0..<oh {
                                        let y = oy * c.strides[0] - pads[0] + i * c.dilations[0]
                                        let dst = base + (b * oh + oy) * ow
                                        guard y >= 0 && y < h else {
                                            for ox in 0..<ow { col[dst + ox] = 0 }
                                            continue
                                        }
                                        for ox in 0..<ow {
                                            let xx = ox * c.strides[1] - pads[1] + j * c.dilations[1]
                                            col[dst + ox] = xx >= 0 && xx < w ? x[plane + y * w + xx] : 0
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return cols
        }
        noteReference(s.node, given: xf != nil)
        for g in 0..<c.group {
            let cols = im2col(x, group: g)
            var sum = [Double](repeating: 0, count: s.k)
            cols.withUnsafeBufferPointer { col in
                for r in 0..<s.k {
                    var acc = 0.0
                    for p in 0..<positions { acc += Double(col[r * positions + p]) }
                    sum[r] = acc
                }
            }
            addRowSums(sum, to: s.node, group: g, groups: c.group)
            if collectHessians {
                add(gram(cols, k: s.k, count: positions, rowMajorSamples: false), to: s.node, group: g, groups: c.group, k: s.k)
                if let xf {
                    let colsF = im2col(xf, group: g)
                    add(cross(colsF, cols, k: s.k, count: positions, rowMajorSamples: false), to: s.node, group: g, groups: c.group, k: s.k, store: &crossSums)
                    add(gram(colsF, k: s.k, count: positions, rowMajorSamples: false), to: s.node, group: g, groups: c.group, k: s.k, store: &floatSums)
                }
            }
        }
        counts[s.node, default: 0] += positions
    }

    /// The im2col row sums alone (bias correction without GPTQ), without building im2col:
    /// a row (c, i, j) sums x[c] over the input rows kernel row i reaches and the input columns
    /// kernel column j reaches, so per channel plane the column selections are summed once per
    /// input row (kw · h · ow adds) and then combined per kernel row (kh · kw · oh adds), instead
    /// of kh · kw · oh · ow reads and writes. Planes run in parallel.
    private func accumulateConvMeans(_ s: Site, _ c: ConvShape, _ x: [Float], n: Int, channels: Int, h: Int, w: Int, oh: Int, ow: Int,
                                     pads: [Int]) {
        let (kh, kw) = (c.kernel[0], c.kernel[1])
        let cpg = channels / c.group
        // Per channel, per (i, j): Σ over images.
        var perChannel = [Double](repeating: 0, count: channels * kh * kw)
        perChannel.withUnsafeMutableBufferPointer { out in
            x.withUnsafeBufferPointer { x in
                let outBase = out.baseAddress!, xBase = x.baseAddress!
                parallelFor(channels, threads: threads) { range in
                    var rowSel = [Double](repeating: 0, count: h * kw)  // [y][j]: Σ over the columns kernel column j reaches
                    for ch in range {
                        rowSel.withUnsafeMutableBufferPointer { r in r.update(repeating: 0) }
                        for b in 0..<n {
                            let plane = xBase + (b * channels + ch) * h * w
                            for y in 0..<h {
                                let line = plane + y * w
                                for j in 0..<kw {
                                    var acc = 0.0
                                    for ox in 0..<ow {
                                        let xx = ox * c.strides[1] - pads[1] + j * c.dilations[1]
                                        if xx >= 0 && xx < w { acc += Double(line[xx]) }
                                    }
                                    rowSel[y * kw + j] += acc
                                }
                            }
                        }
                        for i in 0..<kh {
                            for oy in 0..<oh {
                                let y = oy * c.strides[0] - pads[0] + i * c.dilations[0]
                                guard y >= 0 && y < h else { continue }
                                for j in 0..<kw { outBase[(ch * kh + i) * kw + j] += rowSel[y * kw + j] }
                            }
                        }
                    }
                }
            }
        }
        for g in 0..<c.group {
            addRowSums(Array(perChannel[(g * cpg * kh * kw)..<((g + 1) * cpg * kh * kw)]), to: s.node, group: g, groups: c.group)
        }
    }
}
