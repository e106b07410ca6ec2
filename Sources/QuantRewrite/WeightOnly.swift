import Foundation
import QuantAlgorithms
import QuantCalibration
import QuantCore
import QuantExecutor
import QuantIR

/// Weight-only quantization for decoders (`--weight-only int4`): every MatMul whose second
/// input is a constant 2-D float weight [K, N] becomes ONNX Runtime's com.microsoft
/// `MatMulNBits`. Activations stay float. The weight is stored as [N, K] in blocks of
/// `blockSize` consecutive K values; each block has a scale and, when asymmetric, a zero point.
/// Codes are unsigned `bits`-bit values packed low bits first; dequantized as
/// (code − zero point)·scale. Without zero points, ONNX Runtime's default 2^(bits−1) applies.
public enum WeightOnly {
    /// How the codes are chosen.
    public enum Rounding: String, Codable, Sendable, CaseIterable {
        /// Round to nearest with each block's min/max (absmax when symmetric) range.
        case rtn
        /// GPTQ with the layer inputs' Hessians, blocks' scales fixed beforehand (static groups).
        case gptq
        /// AWQ: per-input-channel factors chosen on the calibration activations, folded into
        /// the producer (or an explicit Mul), then round to nearest.
        case awq
    }

    public struct Options: Codable, Sendable, Equatable {
        public var bits: Int
        public var blockSize: Int
        public var symmetric: Bool
        public var rounding: Rounding
        /// `accuracy_level` of MatMulNBits (0: ONNX Runtime's default; 4: int8 compute of A).
        public var accuracyLevel: Int
        /// Gather embedding tables to `GatherBlockQuantized` too (4 and 8 bits; off by default,
        /// as in ONNX Runtime's quantizer: on the GPT fixture int4 tables cost 2 % perplexity).
        public var embeddings: Bool

        public init(bits: Int = 4, blockSize: Int = 32, symmetric: Bool = false, rounding: Rounding = .rtn, accuracyLevel: Int = 0,
                    embeddings: Bool = false) {
            self.embeddings = embeddings
            self.bits = bits
            self.blockSize = blockSize
            self.symmetric = symmetric
            self.rounding = rounding
            self.accuracyLevel = accuracyLevel
        }
    }

    /// What one MatMul became.
    public struct Layer: Codable, Sendable, Equatable {
        public var node: String
        /// `MatMulNBits`, or `GatherBlockQuantized` for an embedding table [V, D] (then k is D
        /// and n is V).
        public var op: String
        public var k: Int
        public var n: Int
        /// Mean squared weight error ‖W − Ŵ‖²/(K·N), and with a Hessian the output error
        /// tr(ΔWᵀHΔW)/N (per output, per sample) of this rounding.
        public var weightError: Double
        public var outputError: Double?
    }

    /// The MatMuls of `g` with a constant 2-D float weight whose K is at least one block.
    public static func sites(_ g: Graph, blockSize: Int) -> [Node] {
        g.nodes.filter { n in
            guard n.isStandard, n.opType == "MatMul", n.inputs.count == 2, let w = g.initializer(n.inputs[1]) else { return false }
            return w.dtype == .float && w.rank == 2 && w.shape[0] >= blockSize && w.shape[1] > 0
        }
    }

    /// Per row block: scale and zero point (symmetric: zero point 2^(bits−1), the larger-magnitude
    /// side mapped to the end of the grid it reaches).
    static func blockParameters(_ row: ArraySlice<Float>, bits: Int, symmetric: Bool) -> (scale: Double, zero: Int) {
        let qmax = (1 << bits) - 1, mid = 1 << (bits - 1)
        let lo = Double(min(row.min() ?? 0, 0)), hi = Double(max(row.max() ?? 0, 0))
        let tiny = Double(Float.leastNormalMagnitude) * 1024
        if symmetric {
            // Codes mid−mid ... qmax−mid = −2^(b−1) ... 2^(b−1)−1: a negative extreme can use
            // the extra level.
            let s = -lo > hi ? -lo / Double(mid) : hi / Double(qmax - mid)
            return (max(s, tiny), mid)
        }
        let s = max((hi - lo) / Double(qmax), tiny)
        return (s, min(max(Int((-lo / s).rounded(.toNearestOrEven)), 0), qmax))
    }

    /// The code of `x` on a block's grid (scale `s`, zero point `z`, codes 0...qmax).
    static func code(_ x: Double, scale s: Double, zero z: Double, qmax: Double) -> Double {
        min(max((x / s).rounded(.toNearestOrEven) + z, 0), qmax)
    }

    /// Σ_r d_rᵀ·H·d_r over `count` rows d_r of k values (each a row's rounding error) for H k×k
    /// row-major: the rows' output error. `fill(r, row)` writes d_r. In chunks of rows, one GEMM
    /// each, holding one chunk of d at a time.
    static func outputError(count: Int, hessian h: [Double], k: Int, fill: (Int, UnsafeMutablePointer<Double>) -> Void) -> Double {
        guard count > 0, k > 0 else { return 0 }
        let chunk = max(1, min(count, (1 << 20) / k))
        var d = [Double](repeating: 0, count: chunk * k), product = [Double](repeating: 0, count: chunk * k)
        var total = 0.0
        d.withUnsafeMutableBufferPointer { db in
            h.withUnsafeBufferPointer { hb in
                product.withUnsafeMutableBufferPointer { pb in
                    for r0 in stride(from: 0, to: count, by: chunk) {
                        let m = min(chunk, count - r0), rows = db.baseAddress!
                        for r in 0..<m { fill(r0 + r, rows + r * k) }
                        BLAS.dgemm(m: m, n: k, k: k, alpha: 1, a: rows, lda: k, b: hb.baseAddress!, ldb: k, beta: 0, c: pb.baseAddress!, ldc: k)
                        for i in 0..<(m * k) { total += rows[i] * pb[i] }
                    }
                }
            }
        }
        return total
    }

    /// Rewrites every site of `model`'s main graph (`only`: the sites of these names, and no
    /// embeddings), then, with `options.embeddings`, its embedding tables. `hessians` (by node
    /// name) feed GPTQ and the output errors reported.
    public static func rewrite(_ model: Model, options: Options, hessians: [String: WeightHessian] = [:], only: Set<String>? = nil) throws -> [Layer] {
        let g = model.graph
        let bits = options.bits, bs = options.blockSize
        guard [2, 4, 8].contains(bits) else {
            throw QuantKitError("QK7004", "--weight-only int\(bits) is not one of int2, int4, int8", fix: "use int4 (MatMulNBits also takes 2 and 8 bits)")
        }
        guard bs >= 16, bs & (bs - 1) == 0 else {
            throw QuantKitError("QK7004", "--block-size \(bs) is not a power of two of 16 or more", fix: "use 32, 64 or 128")
        }
        var names = NameAllocator(g)
        var layers: [Layer] = []
        for n in sites(g, blockSize: bs) where only?.contains(n.name) ?? true {
            let w = g.initializer(n.inputs[1])!
            let k = w.shape[0], cols = w.shape[1]
            let blocks = (k + bs - 1) / bs
            // Row-major [N, K]: row r holds the weights of output r.
            var rows = [Float](repeating: 0, count: cols * k)
            do {
                let wf = w.floats()
                for i in 0..<k { for j in 0..<cols { rows[j * k + i] = wf[i * cols + j] } }
            }
            // A model over 2 GB is mapped: drop this weight's pages once read (one weight's
            // pages at a time, not all of them).
            w.storage.releaseMappedPages()
            let h = hessians[n.name]
            let q = quantizeRows(rows, count: cols, k: k, options: options, hessian: options.rounding == .gptq ? h : nil)
            let (codes, scales, zeros) = (q.codes, q.scales, q.zeros)
            // Packed [N, blocks, blob], the last block padded with codes equal to its zero point.
            let blob = bs * bits / 8
            var packed = [UInt8](repeating: 0, count: cols * blocks * blob)
            for r in 0..<cols {
                for b in 0..<blocks {
                    for j in 0..<bs {
                        let i = b * bs + j
                        let code = i < k ? codes[r * k + i] : UInt8(zeros[r * blocks + b])
                        let bit = j * bits
                        packed[(r * blocks + b) * blob + bit / 8] |= code << UInt8(bit % 8)
                    }
                }
            }
            let base = n.name.isEmpty ? n.outputs[0] : n.name
            let bName = names.fresh(n.inputs[1] + "_q\(bits)"), sName = names.fresh(n.inputs[1] + "_scales")
            g.setInitializer(bName, Tensor(shape: [cols, blocks, blob], values: packed))
            g.setInitializer(sName, Tensor(shape: [cols * blocks], floats: scales.map { Float($0) }))
            var inputs = [n.inputs[0], bName, sName]
            if !options.symmetric {
                let perRow = (blocks * bits + 7) / 8
                var zp = [UInt8](repeating: 0, count: cols * perRow)
                for r in 0..<cols { for b in 0..<blocks {
                    let bit = b * bits
                    zp[r * perRow + bit / 8] |= UInt8(zeros[r * blocks + b]) << UInt8(bit % 8)
                } }
                let zName = names.fresh(n.inputs[1] + "_zero_points")
                g.setInitializer(zName, Tensor(shape: [cols * perRow], values: zp))
                inputs.append(zName)
            }
            let node = Node(name: names.fresh(base + "_Q\(bits)"), opType: "MatMulNBits", domain: "com.microsoft", inputs: inputs, outputs: n.outputs,
                            attributes: [.int("K", k), .int("N", cols), .int("bits", bits), .int("block_size", bs), .int("accuracy_level", options.accuracyLevel)])
            let weightName = n.inputs[1]
            g.replace(n, with: [node])
            if !g.nodes.contains(where: { $0.inputs.contains(weightName) }) { g.removeInitializer(weightName) }
            var outputError: Double? = nil
            if let h, h.k == k, let m = h.matrices.first {
                outputError = WeightOnly.outputError(count: cols, hessian: m, k: k) { r, d in
                    for i in 0..<k { d[i] = Double(rows[r * k + i]) - q.dequantized(r, i, k: k, blockSize: bs) }
                } / Double(cols)
            }
            layers.append(Layer(node: n.name, op: "MatMulNBits", k: k, n: cols, weightError: q.weightError, outputError: outputError))
        }
        if options.embeddings && only == nil { layers += try rewriteEmbeddings(model, options: options, names: &names) }
        if !layers.isEmpty { model.declareDomain("com.microsoft") }
        return layers
    }

    /// Codes of a row-major [count, k] matrix in blocks of `blockSize` along each row, rounded to
    /// nearest, or by GPTQ with `hessian`.
    struct RoundedRows {
        var codes: [UInt8]
        var scales: [Double]
        var zeros: [Double]
        /// ‖W − Ŵ‖² / (count·k).
        var weightError: Double

        /// Ŵ of row `r`, column `i`: (q − z)·s as the float the model stores.
        func dequantized(_ r: Int, _ i: Int, k: Int, blockSize: Int) -> Double {
            let blocks = (k + blockSize - 1) / blockSize, j = r * blocks + i / blockSize
            return Double(Float((Double(codes[r * k + i]) - zeros[j]) * scales[j]))
        }
    }

    static func quantizeRows(_ rows: [Float], count: Int, k: Int, options: Options, hessian: WeightHessian?) -> RoundedRows {
        let bits = options.bits, bs = options.blockSize, blocks = (k + bs - 1) / bs
        let qmax = Double((1 << bits) - 1)
        var scales = [Double](repeating: 0, count: count * blocks), zeros = [Double](repeating: 0, count: count * blocks)
        for r in 0..<count {
            for b in 0..<blocks {
                let lo = r * k + b * bs, hi = r * k + min((b + 1) * bs, k)
                let (s, z) = blockParameters(rows[lo..<hi], bits: bits, symmetric: options.symmetric)
                scales[r * blocks + b] = s
                zeros[r * blocks + b] = Double(z)
            }
        }
        var rounded: [Float]? = nil
        if let h = hessian, h.k == k {
            rounded = ErrorCompensatedRounding.round(rows, rows: count, hessian: h, groupOfRow: { _ in 0 }, scales: scales,
                                                     qmin: 0, qmax: qmax, groupSize: bs, zeroPoints: zeros)
        }
        // Codes from the rounded values (exactly (q − z)·s), or rounded to nearest.
        var codes = [UInt8](repeating: 0, count: count * k)
        var err = 0.0
        for r in 0..<count {
            for i in 0..<k {
                let j = r * blocks + i / bs, s = scales[j], z = zeros[j]
                let x = Double(rounded?[r * k + i] ?? rows[r * k + i])
                let q = code(x, scale: s, zero: z, qmax: qmax)
                codes[r * k + i] = UInt8(q)
                let d = Double(rows[r * k + i]) - Double(Float((q - z) * s))
                err += d * d
            }
        }
        return RoundedRows(codes: codes, scales: scales, zeros: zeros, weightError: err / Double(max(count * k, 1)))
    }

    /// The Gathers of `g` on axis 0 of a constant 2-D float table [V, D] whose rows hold at least
    /// one block (token and position embeddings). A table another node reads too (an output
    /// layer tied to the embedding) stays float: quantizing it would add a copy.
    public static func embeddingSites(_ g: Graph, blockSize: Int) -> [Node] {
        var readers: [String: Int] = [:]
        for n in g.nodes { for i in Set(n.inputs) where !i.isEmpty { readers[i, default: 0] += 1 } }
        return g.nodes.filter { n in
            guard n.isStandard, n.opType == "Gather", n.inputs.count == 2, (n.attribute("axis")?.int ?? 0) == 0,
                  readers[n.inputs[0]] == 1, !g.outputs.contains(where: { $0.name == n.inputs[0] }),
                  let t = g.initializer(n.inputs[0]) else { return false }
            return t.dtype == .float && t.rank == 2 && t.shape[0] > 0 && t.shape[1] >= blockSize
        }
    }

    /// Every embedding site to com.microsoft `GatherBlockQuantized`, rounded to nearest in blocks
    /// along D: 4 bits as uint4 with uint4 zero points (int4 codes q − 8 without them when
    /// symmetric), 8 bits as uint8 with `bits` 8. int2 tables stay float (no such kernel).
    public static func rewriteEmbeddings(_ model: Model, options: Options) throws -> [Layer] {
        var names = NameAllocator(model.graph)
        let layers = try rewriteEmbeddings(model, options: options, names: &names)
        if !layers.isEmpty { model.declareDomain("com.microsoft") }
        return layers
    }

    static func rewriteEmbeddings(_ model: Model, options: Options, names: inout NameAllocator) throws -> [Layer] {
        let g = model.graph, bits = options.bits, bs = options.blockSize
        guard bits == 4 || bits == 8 else { return [] }
        var layers: [Layer] = []
        for n in embeddingSites(g, blockSize: bs) {
            let table = g.initializer(n.inputs[0])!
            let v = table.shape[0], d = table.shape[1], blocks = (d + bs - 1) / bs
            let q = quantizeRows(table.floats(), count: v, k: d, options: options, hessian: nil)
            table.storage.releaseMappedPages()
            let dName = names.fresh(n.inputs[0] + "_q\(bits)"), sName = names.fresh(n.inputs[0] + "_scales")
            var inputs = [dName, n.inputs[1], sName]
            let mid = 1 << (bits - 1)
            if bits == 4 {
                let signed = options.symmetric
                let codes = signed ? q.codes.map { Int($0) - mid } : q.codes.map { Int($0) }
                g.setInitializer(dName, QuantGrid.packed(codes, dtype: signed ? .int4 : .uint4, shape: [v, d]))
                if !signed {
                    let zName = names.fresh(n.inputs[0] + "_zero_points")
                    g.setInitializer(zName, QuantGrid.packed(q.zeros.map { Int($0) }, dtype: .uint4, shape: [v, blocks]))
                    inputs.append(zName)
                }
                model.extras.irVersion = max(model.extras.irVersion, 10)  // int4 tensors need IR 10
            } else {
                g.setInitializer(dName, Tensor(shape: [v, d], values: q.codes))
                if !options.symmetric {
                    let zName = names.fresh(n.inputs[0] + "_zero_points")
                    g.setInitializer(zName, Tensor(shape: [v, blocks], values: q.zeros.map { UInt8($0) }))
                    inputs.append(zName)
                }
            }
            g.setInitializer(sName, Tensor(shape: [v, blocks], floats: q.scales.map { Float($0) }))
            let base = n.name.isEmpty ? n.outputs[0] : n.name
            let node = Node(name: names.fresh(base + "_Q\(bits)"), opType: "GatherBlockQuantized", domain: "com.microsoft", inputs: inputs,
                            outputs: n.outputs,
                            attributes: [.int("bits", bits), .int("block_size", bs), .int("gather_axis", 0), .int("quantize_axis", 1)])
            let tableName = n.inputs[0]
            g.replace(n, with: [node])
            if !g.nodes.contains(where: { $0.inputs.contains(tableName) }) { g.removeInitializer(tableName) }
            layers.append(Layer(node: n.name, op: "GatherBlockQuantized", k: d, n: v, weightError: q.weightError, outputError: nil))
        }
        return layers
    }
}
