import Foundation
import QuantCore
import QuantIR

/// ONNX Runtime's contrib operators (domain `com.microsoft`) that its graph optimizers and
/// transformer optimizer write into models users then bring to QuantKit: fused activations,
/// fused Conv/Gemm/MatMul, the BERT-style EmbedLayerNormalization,
/// SkipLayerNormalization and Attention, and RMS normalization (`SimplifiedLayerNormalization`,
/// which ONNX Runtime registers in the ONNX domain). Semantics follow ONNX Runtime's operator
/// documentation; the interop tests compare each with ONNX Runtime itself. They run float and
/// the quantizer leaves them float (their inputs and outputs may still be quantized).
enum ContribKernels {
    static let all: [String: KernelFactory] = [
        "com.microsoft::Gelu": { pointwise($0, bias: false, Activation.gelu) },
        "com.microsoft::BiasGelu": { pointwise($0, bias: true, Activation.gelu) },
        "com.microsoft::FastGelu": { pointwise($0, bias: true, Activation.geluTanh) },
        "com.microsoft::QuickGelu": { ctx in
            let alpha = ctx.float("alpha", 1.702)
            return pointwise(ctx, bias: false) { $0 * FastMath.sigmoid(alpha * $0) }
        },
        "com.microsoft::SkipLayerNormalization": { try skipLayerNormalization($0, rms: false) },
        "com.microsoft::SkipSimplifiedLayerNormalization": { try skipLayerNormalization($0, rms: true) },
        "SimplifiedLayerNormalization": { NormalizationKernels.layerNormalization($0, rms: true, rmsInvStdDev: true) },
        "com.microsoft::EmbedLayerNormalization": embedLayerNormalization,
        "com.microsoft::Attention": ContribAttention.make,
        "com.microsoft::MultiHeadAttention": ContribAttention.multiHead,
        "com.microsoft::FusedMatMul": fusedMatMul,
        "com.microsoft::FusedConv": fusedConv,
        "com.microsoft::FusedGemm": fusedGemm,
        "com.microsoft::MatMulNBits": matMulNBits,
        "com.microsoft::GatherBlockQuantized": gatherBlockQuantized,
    ]

    /// `f(x (+ bias))`, the bias a 1-D input along the last dimension.
    static func pointwise(_ ctx: KernelContext, bias: Bool, _ f: @escaping (Float) -> Float) -> Kernel {
        ClosureKernel { inputs, env in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
            guard bias, inputs.count > 1, let b = inputs[1] else { return [ElementwiseKernels.fmap(x, env.threads, f)] }
            let bv = try lastAxisVector(b, of: x, "bias", ctx)
            return [Tensor.makeFloat(x.shape) { out in
                x.withUnsafeBufferPointer(as: Float.self) { xp in
                    for i in 0..<out.count { out[i] = f(xp[i] + bv[i % bv.count]) }
                }
            }]
        }
    }

    /// A 1-D float input whose length is `x`'s last dimension.
    static func lastAxisVector(_ t: Tensor, of x: Tensor, _ name: String, _ ctx: KernelContext) throws -> [Float] {
        guard t.dtype == .float, t.rank == 1, x.rank >= 1, t.shape[0] == x.shape[x.rank - 1], t.count > 0 else {
            throw ctx.invalid("\(name) \(t.shape) must be 1-D with the last dimension of \(x.shape)")
        }
        return t.floats()
    }

    /// `SkipLayerNormalization` / `SkipSimplifiedLayerNormalization`: s = input + skip (+ bias),
    /// then layer (or RMS) normalization over the last dimension with gamma (and beta).
    /// Outputs: output, mean, inv_std_var (both [.., 1]) and input_skip_bias_sum. The skip may be
    /// the input's shape or a suffix of it ([S, H], [1, S, H]).
    static func skipLayerNormalization(_ ctx: KernelContext, rms: Bool) throws -> Kernel {
        let epsilon = ctx.float("epsilon", 1e-12)
        let outputs = ctx.node.outputs.count
        return ClosureKernel { inputs, _ in
            func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
            let x = try MatrixKernels.floatInput(input(0), ctx, "input")
            let skip = try MatrixKernels.floatInput(input(1), ctx, "skip")
            guard x.rank >= 2, skip.rank >= 1, skip.rank <= x.rank, let h = x.shape.last,
                  Shapes.broadcast([skip.shape, x.shape]) == x.shape, skip.count > 0, x.count % skip.count == 0,
                  skip.shape.drop(while: { $0 == 1 }).elementsEqual(x.shape.suffix(skip.shape.drop(while: { $0 == 1 }).count)) else {
                throw ctx.invalid("input \(input(0)?.shape ?? []) and skip \(input(1)?.shape ?? []) do not fit")
            }
            let gamma = try lastAxisVector(try MatrixKernels.floatInput(input(2), ctx, "gamma"), of: x, "gamma", ctx)
            let betaIndex = rms ? -1 : 3, biasIndex = rms ? 3 : 4
            let beta = try betaIndex >= 0 ? input(betaIndex).map { try lastAxisVector($0, of: x, "beta", ctx) } : nil
            let bias = try input(biasIndex).map { try lastAxisVector($0, of: x, "bias", ctx) }
            let xs = x.floats(), ss = skip.floats(), rows = x.count / h
            var sum = [Float](repeating: 0, count: x.count), y = sum
            var means = [Float](repeating: 0, count: rows), invs = means
            for r in 0..<rows {
                let base = r * h
                var total: Double = 0, squares: Double = 0
                for i in 0..<h {
                    let v = xs[base + i] + ss[(base + i) % ss.count] + (bias?[i] ?? 0)
                    sum[base + i] = v
                    total += Double(v)
                    squares += Double(v) * Double(v)
                }
                let mean = rms ? 0 : total / Double(h)
                let variance = rms ? squares / Double(h) : max(0, squares / Double(h) - mean * mean)
                let inv = 1 / (variance + Double(epsilon)).squareRoot()
                means[r] = Float(mean)
                invs[r] = Float(inv)
                for i in 0..<h { y[base + i] = Float((Double(sum[base + i]) - mean) * inv) * gamma[i] + (beta?[i] ?? 0) }
            }
            let statShape = Array(x.shape.dropLast()) + [1]
            let all: [Tensor?] = [Tensor(shape: x.shape, floats: y), Tensor(shape: statShape, floats: means),
                                  Tensor(shape: statShape, floats: invs), Tensor(shape: x.shape, floats: sum)]
            return Array(all.prefix(max(outputs, 1)))
        }
    }

    /// `EmbedLayerNormalization`: LayerNorm(word[input_ids] + position[position_ids or s] +
    /// segment[segment_ids]) · gamma + beta, with mask_index = the number of ones in each row of
    /// the mask (0 without one) and optionally the sum before normalization.
    static func embedLayerNormalization(_ ctx: KernelContext) throws -> Kernel {
        let epsilon = ctx.float("epsilon", 1e-12)
        let outputs = ctx.node.outputs.count
        return ClosureKernel { inputs, _ in
            func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
            guard let idsT = input(0), idsT.rank == 2, !idsT.dtype.isFloatingPoint else { throw ctx.invalid("input_ids must be an integer [batch, sequence] tensor") }
            let (b, s) = (idsT.shape[0], idsT.shape[1])
            let word = try MatrixKernels.floatInput(input(2), ctx, "word_embedding")
            let position = try MatrixKernels.floatInput(input(3), ctx, "position_embedding")
            guard word.rank == 2, position.rank == 2, position.shape[1] == word.shape[1] else {
                throw ctx.invalid("word_embedding \(word.shape) and position_embedding \(position.shape) must be [*, hidden]")
            }
            let h = word.shape[1]
            let segment = try input(4).map { try MatrixKernels.floatInput($0, ctx, "segment_embedding") }
            let segmentIds = input(1)?.int64s()
            guard segment == nil || segmentIds != nil && segment!.rank == 2 && segment!.shape[1] == h && segmentIds!.count == b * s else {
                throw ctx.invalid("segment_ids and segment_embedding [*, \(h)] go together")
            }
            let gamma = try MatrixKernels.floatInput(input(5), ctx, "gamma").floats()
            let beta = try MatrixKernels.floatInput(input(6), ctx, "beta").floats()
            guard gamma.count == h, beta.count == h else { throw ctx.invalid("gamma and beta must have \(h) values") }
            let positionIds = input(8)?.int64s()
            guard positionIds == nil || positionIds!.count == b * s || positionIds!.count == s else {
                throw ctx.invalid("position_ids must be [batch, sequence] or [1, sequence]")
            }
            let ids = idsT.int64s(), wv = word.floats(), pv = position.floats(), sv = segment?.floats()
            var y = [Float](repeating: 0, count: b * s * h), sum = y
            for bi in 0..<b {
                for si in 0..<s {
                    let id = Int(ids[bi * s + si])
                    let pos = positionIds.map { Int($0.count == s ? $0[si] : $0[bi * s + si]) } ?? si
                    let seg = segmentIds.map { Int($0[bi * s + si]) } ?? 0
                    guard id >= 0, id < word.shape[0], pos >= 0, pos < position.shape[0],
                          segment == nil || seg >= 0 && seg < segment!.shape[0] else {
                        throw ctx.invalid("an index is outside its embedding table (token \(id), position \(pos), segment \(seg))")
                    }
                    let base = (bi * s + si) * h
                    var total: Double = 0
                    for i in 0..<h {
                        let v = wv[id * h + i] + pv[pos * h + i] + (sv?[seg * h + i] ?? 0)
                        sum[base + i] = v
                        total += Double(v)
                    }
                    let mean = total / Double(h)
                    var q: Double = 0
                    for i in 0..<h { let d = Double(sum[base + i]) - mean; q += d * d }
                    let inv = 1 / (q / Double(h) + Double(epsilon)).squareRoot()
                    for i in 0..<h { y[base + i] = Float((Double(sum[base + i]) - mean) * inv) * gamma[i] + beta[i] }
                }
            }
            var maskIndex = [Int32](repeating: 0, count: b)
            if let mask = input(7)?.int64s() {
                guard mask.count == b * s else { throw ctx.invalid("mask must be [batch, sequence]") }
                for bi in 0..<b { maskIndex[bi] = Int32(mask[(bi * s)..<(bi * s + s)].filter { $0 != 0 }.count) }
            }
            let all: [Tensor?] = [Tensor(shape: [b, s, h], floats: y), Tensor(shape: [b], values: maskIndex), Tensor(shape: [b, s, h], floats: sum)]
            return Array(all.prefix(max(outputs, 1)))
        }
    }

    /// An activation by ONNX Runtime's fused-kernel name and parameters.
    static func activation(_ name: String, _ params: [Float], _ ctx: KernelContext) throws -> ((Float) -> Float)? {
        func p(_ i: Int, _ fallback: Float) -> Float { i < params.count ? params[i] : fallback }
        switch name {
        case "": return nil
        case "Relu": return { max(0, $0) }
        case "Tanh": return { Foundation.tanh($0) }
        case "Sigmoid": return { FastMath.sigmoid($0) }
        case "LeakyRelu": let a = p(0, 0.01); return { $0 < 0 ? a * $0 : $0 }
        case "Clip": let lo = p(0, -Float.greatestFiniteMagnitude), hi = p(1, Float.greatestFiniteMagnitude); return { min(max($0, lo), hi) }
        case "HardSigmoid": let a = p(0, 0.2), b = p(1, 0.5); return { max(0, min(1, a * $0 + b)) }
        default: throw ctx.unsupported("fused activation '\(name)'")
        }
    }

    /// `FusedConv`: activation(Conv(X, W, B) + Z).
    static func fusedConv(_ ctx: KernelContext) throws -> Kernel {
        let conv = try ConvKernel(ctx)
        let act = try activation(ctx.string("activation", ""), ctx.floats("activation_params") ?? [], ctx)
        return ClosureKernel { inputs, env in
            guard var y = try conv.run(Array(inputs.prefix(3)), env).first ?? nil else { throw ctx.invalid("Conv gave no output") }
            if inputs.count > 3, let z = inputs[3] {
                guard z.dtype == .float, z.shape == y.shape else { throw ctx.invalid("Z \(z.shape) differs from the Conv output \(y.shape)") }
                let (yv, zv) = (y.floats(), z.floats())
                y = Tensor(shape: y.shape, floats: zip(yv, zv).map { $0 + $1 })
            }
            return [act.map { ElementwiseKernels.fmap(y, env.threads, $0) } ?? y]
        }
    }

    /// `FusedGemm`: activation(Gemm(A, B, C)), the activation's parameters as activation_alpha,
    /// _beta, _gamma.
    static func fusedGemm(_ ctx: KernelContext) throws -> Kernel {
        let gemm = try MatrixKernels.gemm(ctx)
        let params = ["activation_alpha", "activation_beta"].compactMap { ctx.node.attribute($0)?.float }
        let act = try activation(ctx.string("activation", ""), params, ctx)
        return ClosureKernel { inputs, env in
            guard let y = try gemm.run(inputs, env).first ?? nil else { throw ctx.invalid("Gemm gave no output") }
            return [act.map { ElementwiseKernels.fmap(y, env.threads, $0) } ?? y]
        }
    }

    /// `MatMulNBits`: A · dequant(B)ᵀ (+ bias), B the [N, K] weight in blocks of `block_size`
    /// along K, each block `bits`-bit codes packed low bits first (uint8 [N, blocks, blob]),
    /// dequantized as (code − zero point)·scale; scales [N·blocks] (or [N, blocks]); zero points
    /// packed like the codes (uint8 [N·⌈blocks·bits/8⌉]) or float like the scales, 2^(bits−1)
    /// when absent. g_idx (act-order) is refused.
    static func matMulNBits(_ ctx: KernelContext) throws -> Kernel {
        guard let k = ctx.int("K"), let n = ctx.int("N"), let blockSize = ctx.int("block_size"), k > 0, n > 0, blockSize >= 16 else {
            throw ctx.invalid("attributes K, N and block_size (16 or more) are required")
        }
        let bits = ctx.int("bits", 4)
        guard [2, 4, 8].contains(bits) else { throw ctx.unsupported("bits \(bits)") }
        let blocks = (k + blockSize - 1) / blockSize, blob = blockSize * bits / 8, mask = (1 << bits) - 1
        return ClosureKernel { inputs, env in
            let a = try MatrixKernels.floatInput(inputs[0], ctx, "A")
            guard inputs.count > 2, let b = inputs[1], let sc = inputs[2], b.dtype == .uint8, b.count == n * blocks * blob,
                  sc.dtype == .float, sc.count == n * blocks else {
                throw ctx.invalid("B must be uint8 [\(n), \(blocks), \(blob)] and scales float [\(n * blocks)]")
            }
            if inputs.count > 4, inputs[4] != nil { throw ctx.unsupported("g_idx") }
            let codes = b.withUnsafeBufferPointer(as: UInt8.self) { Array($0) }
            let scales = sc.floats()
            var zeros = [Float](repeating: Float(1 << (bits - 1)), count: n * blocks)
            if inputs.count > 3, let z = inputs[3] {
                if z.dtype == .float, z.count == n * blocks {
                    zeros = z.floats()
                } else if z.dtype == .uint8, z.count == n * ((blocks * bits + 7) / 8) {
                    let zb = z.withUnsafeBufferPointer(as: UInt8.self) { Array($0) }, perRow = (blocks * bits + 7) / 8
                    for r in 0..<n { for blk in 0..<blocks {
                        let bit = blk * bits
                        zeros[r * blocks + blk] = Float((Int(zb[r * perRow + bit / 8]) >> (bit % 8)) & mask)
                    } }
                } else {
                    throw ctx.invalid("zero_points must be uint8 [\(n * ((blocks * bits + 7) / 8))] or float [\(n * blocks)], not \(z.dtype) \(z.shape)")
                }
            }
            // W as the [K, N] matrix MatMul reads.
            var w = [Float](repeating: 0, count: k * n)
            for r in 0..<n { for blk in 0..<blocks {
                let s = scales[r * blocks + blk], z = zeros[r * blocks + blk], base = (r * blocks + blk) * blob
                for j in 0..<blockSize {
                    let col = blk * blockSize + j
                    guard col < k else { break }
                    let bit = j * bits
                    let q = (Int(codes[base + bit / 8]) >> (bit % 8)) & mask
                    w[col * n + r] = (Float(q) - z) * s
                }
            } }
            var y = try MatrixKernels.matmul(a, Tensor(shape: [k, n], floats: w), ctx, threads: env.threads)
            if inputs.count > 5, let bias = inputs[5] {
                let bv = try lastAxisVector(bias, of: y, "bias", ctx)
                y = Tensor.makeFloat(y.shape) { out in
                    y.withUnsafeBufferPointer(as: Float.self) { yp in for i in 0..<out.count { out[i] = yp[i] + bv[i % n] } }
                }
            }
            return [y]
        }
    }

    /// `GatherBlockQuantized`: Gather along `gather_axis` of a constant quantized in blocks of
    /// `block_size` along `quantize_axis`, dequantized as (q − z)·s. `data` is int4/uint4 (logical
    /// shape), or uint8 holding `bits` 8 or 4 (two codes per byte along the last axis, low nibble
    /// first); `zero_points` has the data's type with the scales' logical shape (default 0 for
    /// int4/uint4, 2^(bits−1) for uint8); the output has the scales' type (float).
    static func gatherBlockQuantized(_ ctx: KernelContext) throws -> Kernel {
        let bits = ctx.int("bits", 4), bs = ctx.int("block_size", 128)
        let gatherAxis = ctx.int("gather_axis", 0), quantizeAxis = ctx.int("quantize_axis", 1)
        guard bits == 4 || bits == 8 else { throw ctx.unsupported("bits \(bits)") }
        guard bs >= 16, bs & (bs - 1) == 0 else { throw ctx.invalid("block_size \(bs) must be a power of two of 16 or more") }
        return ClosureKernel { inputs, env in
            guard let data = inputs[0], let sc = inputs[2] else { throw ctx.invalid("data and scales are required") }
            let idxT = inputs[1]
            let idx = try IndexingKernels.indices(idxT, ctx)
            let nibbles = data.dtype == .uint8 && bits == 4
            guard data.dtype == .int4 || data.dtype == .uint4 || data.dtype == .uint8, data.rank >= 1 else {
                throw ctx.invalid("data must be int4, uint4 or uint8, not \(data.dtype)")
            }
            guard sc.dtype == .float else { throw ctx.unsupported("scales of \(sc.dtype) (float only)") }
            var logical = data.shape
            if nibbles { logical[logical.count - 1] *= 2 }
            let r = logical.count
            guard let ga = Shapes.axis(gatherAxis, rank: r), let qa = Shapes.axis(quantizeAxis, rank: r) else {
                throw ctx.invalid("gather_axis \(gatherAxis) or quantize_axis \(quantizeAxis) is out of range for rank \(r)")
            }
            guard !nibbles || qa == r - 1 else { throw ctx.unsupported("uint8 data with 4 bits blocked along axis \(qa), not the last") }
            var sShape = logical
            sShape[qa] = (logical[qa] + bs - 1) / bs
            guard sc.shape == sShape else { throw ctx.invalid("scales \(sc.shape) must be \(sShape) for data \(logical) in blocks of \(bs)") }
            let zp = inputs.count > 3 ? inputs[3] : nil
            if let zp {
                let expect = nibbles ? Array(sShape.dropLast()) + [(sShape[r - 1] + 1) / 2] : sShape
                guard zp.dtype == data.dtype, zp.shape == expect, !nibbles || sShape[r - 1] % 2 == 0 else {
                    throw ctx.invalid("zero_points must be \(data.dtype) \(expect), not \(zp.dtype) \(zp.shape)")
                }
            }
            // Element i (logical, row-major) of a block-quantized tensor of this layout.
            func code(_ t: Tensor, _ i: Int, lastDim: Int) -> Int {
                if nibbles {
                    let row = i / lastDim, col = i % lastDim
                    let byte = t.storage.pointer.load(fromByteOffset: row * ((lastDim + 1) / 2) + col / 2, as: UInt8.self)
                    return Int(col % 2 == 0 ? byte & 0x0F : byte >> 4)
                }
                return Int(t.scalarAsDouble(at: i))
            }
            let defaultZero = data.dtype == .uint8 ? 1 << (bits - 1) : 0
            let n = logical[ga], outer = logical[..<ga].reduce(1, *), inner = logical[(ga + 1)...].reduce(1, *)
            let st = logical[(qa + 1)...].reduce(1, *), len = logical[qa]
            let wrapped = try idx.map { try IndexingKernels.wrap($0, n, ctx) }
            let scales = sc.floats()
            let shape = Array(logical[..<ga]) + idxT!.shape + Array(logical[(ga + 1)...])
            let k = wrapped.count
            return [Tensor.makeFloat(shape) { out in
                parallelFor(outer * k, threads: env.threads, grain: max(1, 32768 / max(inner, 1))) { range in
                    for t in range {
                        let o = t / k, j = t % k
                        let base = (o * n + wrapped[j]) * inner
                        for e in 0..<inner {
                            let i = base + e
                            let c = (i / st) % len
                            let si = (i / (st * len)) * (sShape[qa] * st) + (c / bs) * st + i % st
                            let z = zp.map { code($0, si, lastDim: sShape[r - 1]) } ?? defaultZero
                            out[t * inner + e] = Float(code(data, i, lastDim: logical[r - 1]) - z) * scales[si]
                        }
                    }
                }
            }]
        }
    }

    /// `FusedMatMul`: alpha · op(A) · op(B), op transposing the last two dimensions (transA,
    /// transB). The batch-transposing variants (transBatchA/B) are refused.
    static func fusedMatMul(_ ctx: KernelContext) throws -> Kernel {
        let transA = ctx.int("transA", 0) != 0, transB = ctx.int("transB", 0) != 0, alpha = ctx.float("alpha", 1)
        guard ctx.int("transBatchA", 0) == 0, ctx.int("transBatchB", 0) == 0 else { throw ctx.unsupported("transBatchA/transBatchB") }
        func transposedLast(_ t: Tensor) throws -> Tensor {
            guard t.rank >= 2 else { throw ctx.invalid("a transposed operand needs rank >= 2, not \(t.shape)") }
            let (r, c) = (t.shape[t.rank - 2], t.shape[t.rank - 1]), batch = t.count / max(r * c, 1), v = t.floats()
            var out = v
            for bi in 0..<batch { for i in 0..<r { for j in 0..<c { out[bi * r * c + j * r + i] = v[bi * r * c + i * c + j] } } }
            return Tensor(shape: Array(t.shape.dropLast(2)) + [c, r], floats: out)
        }
        return ClosureKernel { inputs, env in
            var a = try MatrixKernels.floatInput(inputs[0], ctx, "A")
            var b = try MatrixKernels.floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "B")
            if transA { a = try transposedLast(a) }
            if transB { b = try transposedLast(b) }
            let y = try MatrixKernels.matmul(a, b, ctx, threads: env.threads)
            return [alpha == 1 ? y : ElementwiseKernels.fmap(y, env.threads) { $0 * alpha }]
        }
    }
}
