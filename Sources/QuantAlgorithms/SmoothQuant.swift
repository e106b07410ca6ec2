import Foundation
import QuantCalibration
import QuantCore
import QuantExecutor
import QuantIR

/// SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training
/// Quantization for Large Language Models"): activation outlier channels are divided by a
/// per-channel factor and the weight rows that read them multiplied by it, moving the
/// quantization difficulty from activations to weights:
/// `X·W = (X·diag(s)⁻¹)·(diag(s)·W)`, s_j = max|X_j|^α / max|W_j|^(1−α).
///
/// A site is a tensor X (channels on its last axis) read by MatMuls (constant 2-D weight as
/// input B) or Gemms (transA 0, constant B); all of them share X's factors (the Q, K and V
/// projections of one LayerNorm output). Or X in NCHW read by 2-D Convs of group 1 with one kernel
/// size (channels on axis 1; the objective's rows are input patches), the division folded into
/// a producing Conv's output channels or BatchNormalization, through a Relu/LeakyRelu. The division goes where it costs nothing when X has
/// only those readers: into the producer (`LayerNormalization` scale and bias; a Mul by a
/// constant, and the Mul by a constant before an Add of one, as exporters write LayerNorm and
/// GELU; a MatMul/Gemm's weight columns and bias). Otherwise, when X's producer runs float (a
/// LayerNormalization whose output also feeds a residual Add), an explicit `Mul(X, 1/s)` that
/// stays float goes in front of the smoothed readers. A site whose producer is quantized and
/// cannot absorb is left alone: the extra rounding of X would undo the gain.
///
/// α per site (`auto`, as Intel Neural Compressor does) is chosen on the site's output error:
/// for α in 0.3 … 0.9 and for no smoothing, X rows sampled in calibration are quantized per
/// tensor (the activation grid, min-max), the weights per the scheme, and the α with the
/// smallest ‖XW − Q(X/s)·Q(sW)‖² over all readers wins; so `auto` never raises that error.
public enum SmoothQuant {
    /// α fixed for every site, or chosen per site.
    public enum Alpha: Sendable, Equatable, Codable, CustomStringConvertible {
        case fixed(Double)
        case auto

        public var description: String {
            switch self {
            case .auto: "auto"
            case .fixed(let a): String(format: "%g", a)
            }
        }

        /// "auto" or a number in [0, 1].
        public init?(_ text: String) {
            if text.lowercased() == "auto" { self = .auto; return }
            guard let a = Double(text), a >= 0, a <= 1 else { return nil }
            self = .fixed(a)
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let a = try? c.decode(Double.self), let v = Alpha(String(a)) { self = v; return }
            let s = try c.decode(String.self)
            guard let v = Alpha(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(s)' is not auto or a number in [0, 1]")
            }
            self = v
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .auto: try c.encode("auto")
            case .fixed(let a): try c.encode(a)
            }
        }
    }

    /// α values `auto` tries (besides no smoothing).
    static let alphaGrid: [Double] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    /// Rows of X kept per site for `auto` (a reservoir sample over all calibration data).
    public static let sampleRows = 512

    /// One smoothing site.
    public struct Site {
        public var tensor: String
        /// The MatMul/Gemm readers and how each reads channel j of X: its weight initializer and
        /// whether the weight is stored [N, K] (Gemm transB) instead of [K, N].
        public var readers: [(node: Node, weight: String, transposed: Bool)]
        public var channels: Int
        /// For Conv readers (group 1, 2-D, channels on axis 1): their kernel [kh, kw] and
        /// dilations; a row of the objective is then one input patch of channels·kh·kw values.
        public var kernel: [Int]? = nil
        public var dilations: [Int] = [1, 1]

        /// Values per channel in a row of the objective (kh·kw for Conv, 1 for MatMul/Gemm).
        var patch: Int { kernel.map { $0[0] * $0[1] } ?? 1 }
    }

    /// What smoothing did at one site.
    public struct SiteReport: Codable, Sendable, Equatable {
        public var tensor: String
        public var readers: [String]
        /// The α chosen (nil: no smoothing was better, so the factors are all 1 and nothing changed).
        public var alpha: Double?
        /// How the division went in: "LayerNormalization", "Mul", "Add", "MatMul", "Gemm" (folded
        /// into that producer), "inserted Mul" (explicit, float) or "" (nothing applied).
        public var folded: String
        /// Largest max|X_j| / median over channels before and after (the outlier ratio).
        public var outlierBefore: Double
        public var outlierAfter: Double
        /// The sites' output error ‖XW − Q(X/s)Q(sW)‖² / ‖XW‖² on the sampled rows, without and with smoothing.
        public var errorBefore: Double?
        public var errorAfter: Double?
    }

    public struct Report: Codable, Sendable, Equatable {
        public var sites: [SiteReport] = []
        public init() {}
    }

    /// Whether `n` reads X as its data input and a constant float weight (no other use): a 2-D
    /// MatMul/Gemm weight, or a 2-D Conv's [O, C, kh, kw] with group 1 (`kernel` then set; the
    /// weight is read as [O, C·kh·kw], "transposed").
    static func reader(_ n: Node, of x: String, _ g: Graph, uses: [String: Int]) -> (weight: String, transposed: Bool, k: Int, kernel: [Int]?, dilations: [Int])? {
        guard n.isStandard, n.inputs.count >= 2, n.inputs[0] == x, n.inputs[1] != x, let w = g.initializer(n.inputs[1]),
              w.dtype == .float, uses[n.inputs[1]] == 1 else { return nil }
        if n.opType == "Conv" {
            guard w.rank == 4, (n.attribute("group")?.int ?? 1) == 1 else { return nil }
            return (n.inputs[1], true, w.shape[1], [w.shape[2], w.shape[3]], n.attribute("dilations")?.ints ?? [1, 1])
        }
        guard w.rank == 2 else { return nil }
        func plain(_ t: (String, Bool, Int)) -> (weight: String, transposed: Bool, k: Int, kernel: [Int]?, dilations: [Int]) { (t.0, t.1, t.2, nil, [1, 1]) }
        switch n.opType {
        case "MatMul": return plain((n.inputs[1], false, w.shape[0]))
        case "Gemm":
            guard (n.attribute("transA")?.int ?? 0) == 0 else { return nil }
            let t = (n.attribute("transB")?.int ?? 0) == 1
            return plain((n.inputs[1], t, t ? w.shape[1] : w.shape[0]))
        default: return nil
        }
    }

    /// The sites of `g`: tensors read by at least one qualifying MatMul/Gemm, every such reader
    /// seeing the same channel count.
    public static func sites(_ g: Graph) -> [Site] {
        let index = GraphIndex(g)
        var uses: [String: Int] = [:]
        for n in g.allNodes { for i in n.inputs where !i.isEmpty { uses[i, default: 0] += 1 } }
        var result: [Site] = []
        var seen = Set<String>()
        for n in g.nodes {
            guard let x = n.inputs.first, !x.isEmpty, !g.isInitializer(x), !seen.contains(x) else { continue }
            seen.insert(x)
            var readers: [(node: Node, weight: String, transposed: Bool)] = []
            var k: Int? = nil
            var kernel: [Int]? = nil, dilations = [1, 1]
            var consistent = true
            // Every reader must read the channels the same way: all MatMul/Gemm, or all Conv with one kernel.
            for r in index.consumers(of: x) {
                guard let (w, t, kk, kern, dil) = reader(r, of: x, g, uses: uses) else { continue }
                if let k, k != kk || kernel != kern || dilations != dil { consistent = false }
                k = kk
                kernel = kern
                dilations = dil
                readers.append((r, w, t))
            }
            if consistent, let k, !readers.isEmpty, k > 1 {
                result.append(Site(tensor: x, readers: readers, channels: k, kernel: kernel, dilations: dilations))
            }
        }
        return result
    }

    /// Collects, per site, max|X_j| per channel and a reservoir sample of X's rows.
    public final class Collector: ExecutionHook {
        let channels: [String: Int]
        let kernels: [String: (kernel: [Int], dilations: [Int])]
        public private(set) var absMax: [String: [Double]] = [:]
        public private(set) var rows: [String: [[Float]]] = [:]
        var seen: [String: Int] = [:]
        /// A fixed-seed generator (SplitMix64 steps): the same data gives the same sample.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let keep: Int

        public init(sites: [Site], keepRows: Int = SmoothQuant.sampleRows) {
            var c: [String: Int] = [:]
            var kk: [String: (kernel: [Int], dilations: [Int])] = [:]
            for s in sites {
                c[s.tensor] = s.channels
                if let k = s.kernel { kk[s.tensor] = (k, s.dilations) }
            }
            channels = c
            kernels = kk
            keep = keepRows
        }

        public func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
            let name = executor.name(of: value)
            guard tensor.dtype == .float, let k = channels[name] else { return nil }
            if let conv = kernels[name] {
                guard tensor.rank == 4, tensor.shape[1] == k else { return nil }
                observeConv(name, tensor.floats(), shape: tensor.shape, kernel: conv.kernel, dilations: conv.dilations)
                return nil
            }
            guard tensor.shape.last == k else { return nil }
            let x = tensor.floats()
            let n = x.count / k
            var m = absMax[name] ?? [Double](repeating: 0, count: k)
            var r = rows[name] ?? []
            var count = seen[name] ?? 0
            for i in 0..<n {
                let row = x[(i * k)..<((i + 1) * k)]
                for j in 0..<k { m[j] = max(m[j], Double(abs(row[row.startIndex + j]))) }
                count += 1
                if r.count < keep {
                    r.append(Array(row))
                } else {
                    let slot = Int(next() % UInt64(count))
                    if slot < keep { r[slot] = Array(row) }
                }
            }
            absMax[name] = m
            rows[name] = r
            seen[name] = count
            return nil
        }

        /// NCHW input of Conv readers: the maximum per channel (axis 1), and sampled patches
        /// (channels·kh·kw values in (c, i, j) order, as the weight [O, C, kh, kw] reads them) at
        /// positions where the kernel lies inside the input.
        func observeConv(_ name: String, _ x: [Float], shape: [Int], kernel: [Int], dilations: [Int]) {
            let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
            var m = absMax[name] ?? [Double](repeating: 0, count: c)
            for b in 0..<n { for ch in 0..<c {
                let plane = (b * c + ch) * h * w
                var a: Float = 0
                for i in 0..<(h * w) { a = max(a, abs(x[plane + i])) }
                m[ch] = max(m[ch], Double(a))
            } }
            absMax[name] = m
            let eh = (kernel[0] - 1) * dilations[0] + 1, ew = (kernel[1] - 1) * dilations[1] + 1
            guard h >= eh, w >= ew else { return }
            var r = rows[name] ?? []
            var count = seen[name] ?? 0
            // As many patches per image as the reservoir holds rows, at random positions.
            let perImage = max(1, keep / max(n, 1))
            for b in 0..<n {
                for _ in 0..<perImage {
                    let y = Int(next() % UInt64(h - eh + 1)), xx = Int(next() % UInt64(w - ew + 1))
                    var patch = [Float](repeating: 0, count: c * kernel[0] * kernel[1])
                    for ch in 0..<c { for i in 0..<kernel[0] { for j in 0..<kernel[1] {
                        patch[(ch * kernel[0] + i) * kernel[1] + j] = x[((b * c + ch) * h + y + i * dilations[0]) * w + xx + j * dilations[1]]
                    } } }
                    count += 1
                    if r.count < keep {
                        r.append(patch)
                    } else {
                        let slot = Int(next() % UInt64(count))
                        if slot < keep { r[slot] = patch }
                    }
                }
            }
            rows[name] = r
            seen[name] = count
        }
    }

    /// Largest |W_j| over row j (the weights reading channel j), over every reader.
    static func weightRowMax(_ site: Site, _ g: Graph) -> [Double] {
        var m = [Double](repeating: 0, count: site.channels)
        let patch = site.patch
        for r in site.readers {
            let w = g.initializer(r.weight)!
            let v = w.floats()
            let k = site.channels * patch, n = v.count / k
            for j in 0..<k {
                for c in 0..<n {
                    let x = r.transposed ? v[c * k + j] : v[j * n + c]
                    m[j / patch] = max(m[j / patch], Double(abs(x)))
                }
            }
        }
        return m
    }

    /// s_j = max|X_j|^α / max|W_j|^(1−α), 1 where either is 0, kept within [1e-4, 1e4].
    public static func factors(activationMax a: [Double], weightMax w: [Double], alpha: Double) -> [Double] {
        zip(a, w).map { x, y in
            guard x > 0, y > 0 else { return 1 }
            return min(max(pow(x, alpha) / pow(y, 1 - alpha), 1e-4), 1e4)
        }
    }

    /// ‖XW − Q(X/s)·Q(sW)‖² / ‖XW‖² summed over the site's readers, for sampled rows `x`.
    static func relativeError(rows x: [[Float]], site: Site, g: Graph, factors s: [Double], activation: QuantGrid, weight: QuantGrid,
                              perChannel: Bool) -> Double {
        let patch = site.patch, k = site.channels * patch, m = x.count
        guard m > 0 else { return 0 }
        var flat = [Float](repeating: 0, count: m * k)
        var scaled = flat
        var lo = 0.0, hi = 0.0
        for i in 0..<m {
            for j in 0..<k {
                flat[i * k + j] = x[i][j]
                let v = Double(x[i][j]) / s[j / patch]
                scaled[i * k + j] = Float(v)
                lo = min(lo, v)
                hi = max(hi, v)
            }
        }
        let (sa, za) = activation.parameters(for: ClipRange(lo: lo, hi: hi))
        let xq = scaled.map { Float(activation.fakeQuantize(Double($0), scale: sa, zeroPoint: za)) }
        var num = 0.0, den = 0.0
        for r in site.readers {
            let wt = g.initializer(r.weight)!
            let v = wt.floats()
            let n = v.count / k
            // W as [K, N] row-major, and sW quantized per output column (per channel) or per tensor.
            var w = [Float](repeating: 0, count: k * n)
            for j in 0..<k { for c in 0..<n { w[j * n + c] = r.transposed ? v[c * k + j] : v[j * n + c] } }
            var ws = w
            for j in 0..<k { for c in 0..<n { ws[j * n + c] = Float(Double(w[j * n + c]) * s[j / patch]) } }
            var colMax = [Double](repeating: 0, count: perChannel ? n : 1)
            for j in 0..<k { for c in 0..<n { let i = perChannel ? c : 0; colMax[i] = max(colMax[i], Double(abs(ws[j * n + c]))) } }
            let scales = colMax.map { weight.parameters(for: ClipRange(lo: -$0, hi: $0)).scale }
            for j in 0..<k { for c in 0..<n { ws[j * n + c] = Float(weight.fakeQuantize(Double(ws[j * n + c]), scale: scales[perChannel ? c : 0], zeroPoint: 0)) } }
            var y = [Float](repeating: 0, count: m * n), yq = y
            flat.withUnsafeBufferPointer { a in w.withUnsafeBufferPointer { b in y.withUnsafeMutableBufferPointer { c in
                BLAS.sgemm(m: m, n: n, k: k, a: a.baseAddress!, lda: k, b: b.baseAddress!, ldb: n, c: c.baseAddress!, ldc: n)
            } } }
            xq.withUnsafeBufferPointer { a in ws.withUnsafeBufferPointer { b in yq.withUnsafeMutableBufferPointer { c in
                BLAS.sgemm(m: m, n: n, k: k, a: a.baseAddress!, lda: k, b: b.baseAddress!, ldb: n, c: c.baseAddress!, ldc: n)
            } } }
            for i in y.indices {
                let d = Double(y[i] - yq[i])
                num += d * d
                den += Double(y[i]) * Double(y[i])
            }
        }
        return den > 0 ? num / den : 0
    }

    /// Chooses each site's factors from the collected statistics: α fixed, or per site the best
    /// of ``alphaGrid`` and no smoothing on the sampled rows' output error. Sites whose best
    /// choice is no smoothing (or that have no statistics) are left out of the result.
    public static func choose(_ g: Graph, sites: [Site], collector: Collector, alpha: Alpha, activation: QuantGrid, weight: QuantGrid,
                              perChannel: Bool) -> (factors: [String: [Double]], report: Report) {
        var out: [String: [Double]] = [:]
        var report = Report()
        for site in sites {
            guard let a = collector.absMax[site.tensor], a.count == site.channels else { continue }
            let w = weightRowMax(site, g)
            let rows = collector.rows[site.tensor] ?? []
            let none = [Double](repeating: 1, count: site.channels)
            var best: (alpha: Double?, s: [Double]) = (nil, none)
            var before: Double? = nil, after: Double? = nil
            switch alpha {
            case .fixed(let al):
                best = (al, factors(activationMax: a, weightMax: w, alpha: al))
            case .auto:
                let e0 = relativeError(rows: rows, site: site, g: g, factors: none, activation: activation, weight: weight, perChannel: perChannel)
                before = e0
                var bestError = e0
                for al in alphaGrid {
                    let s = factors(activationMax: a, weightMax: w, alpha: al)
                    let e = relativeError(rows: rows, site: site, g: g, factors: s, activation: activation, weight: weight, perChannel: perChannel)
                    if e < bestError * (1 - 1e-9) {
                        bestError = e
                        best = (al, s)
                    }
                }
                after = bestError
            }
            func outlier(_ v: [Double]) -> Double {
                let sorted = v.sorted()
                let median = sorted[sorted.count / 2]
                return median > 0 ? (sorted.last ?? 0) / median : 0
            }
            let smoothed = zip(a, best.s).map { $0 / $1 }
            report.sites.append(SiteReport(tensor: site.tensor, readers: site.readers.map(\.node.name), alpha: best.alpha, folded: "",
                                           outlierBefore: outlier(a), outlierAfter: outlier(smoothed), errorBefore: before, errorAfter: after))
            if best.alpha != nil { out[site.tensor] = best.s }
        }
        return (out, report)
    }

    /// Applies `factors` (by tensor) to `g`: weights rows multiplied, the division folded into
    /// the producer or an explicit Mul inserted (see the type's documentation). Returns, per
    /// tensor, where the division went ("" when the site was left alone), and the names of the
    /// Mul nodes inserted (they must stay float).
    @discardableResult
    public static func apply(_ g: Graph, factors: [String: [Double]]) -> (folded: [String: String], floatNodes: [String]) {
        var folded: [String: String] = [:]
        var floatNodes: [String] = []
        var names = NameAllocator(g)
        let sitesByTensor = Dictionary(uniqueKeysWithValues: sites(g).map { ($0.tensor, $0) })
        for (x, s) in factors.sorted(by: { $0.key < $1.key }) {
            guard let site = sitesByTensor[x], site.channels == s.count else { folded[x] = ""; continue }
            let index = GraphIndex(g)
            let readers = index.consumers(of: x)
            let onlySmoothed = !g.outputs.contains { $0.name == x } && readers.allSatisfy { r in site.readers.contains { $0.node === r } }
            let inv = s.map { 1 / $0 }
            var how = ""
            let folder = site.kernel == nil ? fold : foldChannels
            if onlySmoothed, let p = index.producer[x], let f = folder(inv, p, g, index, &names) {
                how = f
            } else if index.producer[x].map({ OpRules.rule(for: $0, isConstant: g.isInitializer, constant: g.initializer) == nil }) ?? true {
                // Explicit division, kept float by the caller.
                let c = names.fresh(x + "_smooth_scale")
                g.setInitializer(c, Tensor(shape: site.kernel == nil ? [s.count] : [s.count, 1, 1], floats: inv.map(Float.init)))
                let y = names.fresh(x + "_smoothed")
                let mul = Node(name: names.fresh(x + "_SmoothQuant_Mul"), opType: "Mul", inputs: [x, c], outputs: [y])
                g.insert(mul, before: site.readers.map(\.node).first)
                for r in site.readers { r.node.inputs[0] = y }
                floatNodes.append(mul.name)
                how = "inserted Mul"
            }
            guard !how.isEmpty else { folded[x] = ""; continue }
            // The node's current weight: a fold of an earlier site may have replaced it.
            for r in site.readers { scaleRows(g, r.node, weight: r.node.inputs[1], transposed: r.transposed, by: s, patch: site.patch, names: &names) }
            folded[x] = how
        }
        Preparation.removeUnusedInitializers(g)
        return (folded, floatNodes)
    }

    /// Folds the per-channel factor `f` (X·f) into X's producer `p`, when it is a
    /// LayerNormalization, a Mul by a constant, an Add of a constant after such a Mul, or a
    /// MatMul/Gemm with a constant weight (with its bias). Returns what absorbed it, or nil.
    static func fold(_ f: [Double], _ p: Node, _ g: Graph, _ index: GraphIndex, _ names: inout NameAllocator) -> String? {
        guard p.isStandard else { return nil }
        let k = f.count
        func lastAxis(_ name: String) -> [Float]? {
            guard let t = g.initializer(name), t.dtype == .float, t.count == k || t.count == 1, t.shape.dropLast().allSatisfy({ $0 == 1 }) else { return nil }
            return t.count == k ? t.floats() : [Float](repeating: t.floats()[0], count: k)
        }
        func replace(_ node: Node, input i: Int, with v: [Float]) {
            let name = names.fresh(node.inputs[i] + "_smoothed")
            g.setInitializer(name, Tensor(shape: [k], floats: v))
            node.inputs[i] = name
        }
        func scaled(_ v: [Float]) -> [Float] { zip(v, f).map { Float(Double($0) * $1) } }
        func soleReader(_ value: String, _ n: Node) -> Bool { SmoothQuant.soleReader(value, n, g, index) }
        func constantOperand(_ n: Node) -> Int? {
            guard n.inputs.count == 2 else { return nil }
            if lastAxis(n.inputs[1]) != nil, !g.isInitializer(n.inputs[0]) { return 1 }
            if lastAxis(n.inputs[0]) != nil, !g.isInitializer(n.inputs[1]) { return 0 }
            return nil
        }
        switch p.opType {
        case "LayerNormalization":
            guard (p.attribute("axis")?.int ?? -1) == -1, p.inputs.count >= 2, let scale = lastAxis(p.inputs[1]) else { return nil }
            var bias: [Float]? = nil
            if p.inputs.count > 2, !p.inputs[2].isEmpty {
                guard let b = lastAxis(p.inputs[2]) else { return nil }
                bias = b
            }
            replace(p, input: 1, with: scaled(scale))
            if let bias { replace(p, input: 2, with: scaled(bias)) }
            return "LayerNormalization"
        case "Mul":
            guard let c = constantOperand(p) else { return nil }
            replace(p, input: c, with: scaled(lastAxis(p.inputs[c])!))
            return "Mul"
        case "Add":
            // y = Mul(z, g) + b  ==>  Mul(z, g·f) + b·f (a LayerNorm's tail as exporters write
            // it), and y = MatMul(z, W) + b  ==>  MatMul(z, W·f) + b·f (a linear layer's bias).
            guard let c = constantOperand(p), let m = index.producer[p.inputs[1 - c]], ["Mul", "MatMul", "Gemm"].contains(m.opType),
                  soleReader(p.inputs[1 - c], p), let inner = fold(f, m, g, index, &names) else { return nil }
            replace(p, input: c, with: scaled(lastAxis(p.inputs[c])!))
            return "Add after \(inner)"
        case "MatMul", "Gemm":
            guard p.inputs.count >= 2, let w = g.initializer(p.inputs[1]), w.dtype == .float, w.rank == 2,
                  index.consumers(of: p.inputs[1]).count == 1 else { return nil }
            let transB = p.opType == "Gemm" && (p.attribute("transB")?.int ?? 0) == 1
            guard (transB ? w.shape[0] : w.shape[1]) == k, p.opType == "MatMul" || (p.attribute("transA")?.int ?? 0) == 0 else { return nil }
            if p.inputs.count > 2, !p.inputs[2].isEmpty {
                guard let b = lastAxis(p.inputs[2]) else { return nil }
                replace(p, input: 2, with: scaled(b))
            }
            var v = w.floats()
            for i in v.indices { v[i] = Float(Double(v[i]) * f[transB ? i / w.shape[1] : i % k]) }
            let name = names.fresh(p.inputs[1] + "_smoothed")
            g.setInitializer(name, Tensor(shape: w.shape, floats: v))
            p.inputs[1] = name
            return p.opType
        default:
            return nil
        }
    }

    /// Whether `n` is the only reader of `value`, which is no graph output.
    static func soleReader(_ value: String, _ n: Node, _ g: Graph, _ index: GraphIndex) -> Bool {
        index.consumers(of: value).count == 1 && index.consumers(of: value)[0] === n && !g.outputs.contains { $0.name == value }
    }

    /// Folds the per-channel factor `f` (X·f, channels on axis 1) into X's producer `p`: a Conv's
    /// output channels (weight and bias), a BatchNormalization's scale and bias, or through a
    /// Relu/LeakyRelu (positive homogeneous) that is its producer's only reader.
    static func foldChannels(_ f: [Double], _ p: Node, _ g: Graph, _ index: GraphIndex, _ names: inout NameAllocator) -> String? {
        guard p.isStandard else { return nil }
        let c = f.count
        func scaled(_ name: String) -> String? {
            guard let t = g.initializer(name), t.dtype == .float, t.count == c, index.consumers(of: name).count == 1 else { return nil }
            let v = t.floats()
            let fresh = names.fresh(name + "_smoothed")
            g.setInitializer(fresh, Tensor(shape: t.shape, floats: (0..<c).map { Float(Double(v[$0]) * f[$0]) }))
            return fresh
        }
        switch p.opType {
        case "Relu", "LeakyRelu":
            guard let y = p.inputs.first, let q = index.producer[y], soleReader(y, p, g, index), let inner = foldChannels(f, q, g, index, &names) else { return nil }
            return "\(inner) through \(p.opType)"
        case "Conv":
            // Conv(x, W, b)·f  ==>  Conv(x, W·f, b·f), f along the output channels.
            guard p.inputs.count >= 2, let w = g.initializer(p.inputs[1]), w.dtype == .float, w.rank >= 3, w.shape[0] == c,
                  index.consumers(of: p.inputs[1]).count == 1, let b = Preparation.outputBias(of: p, in: g, channels: c),
                  p.inputs.count < 3 || p.inputs[2].isEmpty || index.consumers(of: p.inputs[2]).count == 1 else { return nil }
            Preparation.replaceWeightAndBias(g, p, weight: w, axis: 0, scale: f, bias: (0..<c).map { Float(Double(b[$0]) * f[$0]) }, suffix: "smoothed")
            return "Conv"
        case "BatchNormalization":
            guard p.inputs.count == 5, let sc = g.initializer(p.inputs[1]), sc.count == c, g.initializer(p.inputs[2])?.count == c else { return nil }
            guard let a = scaled(p.inputs[1]), let b = scaled(p.inputs[2]) else { return nil }
            p.inputs[1] = a
            p.inputs[2] = b
            return "BatchNormalization"
        default:
            return nil
        }
    }

    /// Multiplies row j (the weights reading input channel j) of `node`'s weight by s_j.
    static func scaleRows(_ g: Graph, _ node: Node, weight: String, transposed: Bool, by s: [Double], patch: Int, names: inout NameAllocator) {
        let w = g.initializer(weight)!
        var v = w.floats()
        let k = s.count * patch
        for i in v.indices { v[i] = Float(Double(v[i]) * s[(transposed ? i % k : i / (v.count / k)) / patch]) }
        let name = names.fresh(weight + "_smoothed")
        g.setInitializer(name, Tensor(shape: w.shape, floats: v))
        node.inputs[1] = name
    }
}
