import Foundation
import QuantCore
import QuantIR

/// Transformer building blocks of opsets 23–24: RotaryEmbedding, SwiGLU, TensorScatter (a
/// key/value cache write). Computed in float, results in the input's type.
enum TransformerKernels {
    static let all: [String: KernelFactory] = ["RotaryEmbedding": rotary, "SwiGLU": swiGLU, "TensorScatter": tensorScatter,
                                               "Attention": AttentionKernel.make]

    /// `RotaryEmbedding(X, cos_cache, sin_cache, position_ids?)`: X is [B, H, S, D] or
    /// [B, S, H·D] (`num_heads`). The first `rotary_embedding_dim` (0: D) values of each head
    /// are rotated in pairs, (x1, x2) → (cos·x1 − sin·x2, sin·x1 + cos·x2), pairs being
    /// (2j, 2j + 1) with `interleaved`, else (j, j + half); cos/sin are cache[position_ids[b, s], j]
    /// or, without position ids, cache[b, s, j].
    static func rotary(_ ctx: KernelContext) throws -> Kernel {
        let interleaved = ctx.int("interleaved", 0) != 0, rotaryAttr = ctx.int("rotary_embedding_dim", 0), heads = ctx.int("num_heads", 0)
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let cosT = inputs.count > 1 ? inputs[1] : nil, let sinT = inputs.count > 2 ? inputs[2] : nil,
                  x.rank == 3 || x.rank == 4 else { throw ctx.invalid("X [B, H, S, D] or [B, S, hidden], cos_cache and sin_cache are required") }
            let positions = inputs.count > 3 ? inputs[3]?.int64s().map(Int.init) : nil
            let (b, s) = (x.shape[0], x.rank == 4 ? x.shape[2] : x.shape[1])
            let h = x.rank == 4 ? x.shape[1] : heads
            guard h > 0, x.rank == 4 || x.shape[2] % h == 0 else { throw ctx.invalid("num_heads \(h) does not divide the hidden size of \(x.shape)") }
            let d = x.rank == 4 ? x.shape[3] : x.shape[2] / h
            let rot = rotaryAttr > 0 ? rotaryAttr : d, half = rot / 2
            let cs = cosT.floats(), sn = sinT.floats(), v = x.floats()
            guard rot <= d, rot % 2 == 0, cosT.shape.last == half, sinT.shape == cosT.shape,
                  positions.map({ $0.count == b * s }) ?? (cosT.count == b * s * half) else {
                throw ctx.invalid("cos/sin caches \(cosT.shape) and position ids do not fit X \(x.shape) with rotary_embedding_dim \(rot)")
            }
            var out = v
            for bi in 0..<b {
                for si in 0..<s {
                    let row: Int
                    if let positions {
                        row = positions[bi * s + si]
                        guard row >= 0, (row + 1) * half <= cs.count else { throw ctx.invalid("position id \(row) is outside the caches") }
                    } else {
                        row = bi * s + si
                    }
                    for hi in 0..<h {
                        let base = x.rank == 4 ? ((bi * h + hi) * s + si) * d : (bi * s + si) * h * d + hi * d
                        for j in 0..<half {
                            let (i1, i2) = interleaved ? (base + 2 * j, base + 2 * j + 1) : (base + j, base + half + j)
                            let c = cs[row * half + j], sv = sn[row * half + j]
                            out[i1] = c * v[i1] - sv * v[i2]
                            out[i2] = sv * v[i1] + c * v[i2]
                        }
                    }
                }
            }
            return [try CastKernels.convert(Tensor(shape: x.shape, floats: out), to: x.dtype, ctx)]
        }
    }

    /// `SwiGLU(A, B)` = A·sigmoid(alpha·A)·B, A and B of one shape (`alpha` default 1).
    static func swiGLU(_ ctx: KernelContext) throws -> Kernel {
        let alpha = ctx.float("alpha", 1)
        return ClosureKernel { inputs, _ in
            guard let a = inputs[0], let g = inputs.count > 1 ? inputs[1] : nil, a.shape == g.shape else { throw ctx.invalid("A and B of one shape are required") }
            let av = a.floats(), gv = g.floats()
            let out = (0..<av.count).map { i in av[i] / (1 + exp(-alpha * av[i])) * gv[i] }
            return [try CastKernels.convert(Tensor(shape: a.shape, floats: out), to: a.dtype, ctx)]
        }
    }

    /// `TensorScatter(past_cache, update, write_indices?)`: the cache with update written along
    /// `axis` (default −2) from write_indices[batch] (default 0) on; `circular` wraps around.
    static func tensorScatter(_ ctx: KernelContext) throws -> Kernel {
        let axisAttr = ctx.int("axis", -2), mode = ctx.string("mode", "linear")
        guard mode == "linear" || mode == "circular" else { throw ctx.unsupported("mode '\(mode)'") }
        return ClosureKernel { inputs, _ in
            guard let cache = inputs[0], let update = inputs.count > 1 ? inputs[1] : nil, cache.dtype == update.dtype, cache.dtype != .string,
                  cache.rank == update.rank, let axis = Shapes.axis(axisAttr, rank: cache.rank), axis > 0 else {
                throw ctx.invalid("past_cache and update of one type and rank, and an axis after the batch axis, are required")
            }
            guard (0..<cache.rank).allSatisfy({ $0 == axis ? update.shape[$0] <= cache.shape[$0] : update.shape[$0] == cache.shape[$0] }) else {
                throw ctx.invalid("update \(update.shape) does not fit past_cache \(cache.shape) along axis \(axis)")
            }
            let starts = (inputs.count > 2 ? inputs[2]?.int64s().map(Int.init) : nil) ?? [Int](repeating: 0, count: cache.shape[0])
            let size = cache.dtype.bitWidth / 8
            let out = Tensor(dtype: cache.dtype, shape: cache.shape)
            out.storage.pointer.copyMemory(from: cache.storage.pointer, byteCount: cache.byteCount)
            let outer = cache.shape[..<axis].reduce(1, *), inner = cache.shape[(axis + 1)...].reduce(1, *) * size
            let (maxLen, len) = (cache.shape[axis], update.shape[axis])
            let perBatch = outer / cache.shape[0]
            for o in 0..<outer {
                let start = starts[o / perBatch]
                for t in 0..<len {
                    var dst = start + t
                    if mode == "circular" { dst = ((dst % maxLen) + maxLen) % maxLen }
                    guard dst >= 0 && dst < maxLen else { throw ctx.invalid("write index \(start + t) is outside the cache's \(maxLen)") }
                    (out.storage.pointer + (o * maxLen + dst) * inner).copyMemory(from: update.storage.pointer + (o * len + t) * inner, byteCount: inner)
                }
            }
            return [out]
        }
    }
}

/// Attention (opsets 23–24): scaled dot-product attention with optional mask, causal and
/// sliding-window masks aligned bottom-right by the cache offset, key/value cache, GQA/MQA,
/// softcap and the qk_matmul_output modes, as the ONNX reference computes them (in double).
enum AttentionKernel {
    static func make(_ ctx: KernelContext) throws -> Kernel {
        let causal = ctx.int("is_causal", 0) != 0
        let qHeadsAttr = ctx.int("q_num_heads"), kvHeadsAttr = ctx.int("kv_num_heads")
        let scaleAttr = ctx.node.attribute("scale")?.float.map(Double.init)
        let softcap = Double(ctx.float("softcap", 0)), mode = ctx.int("qk_matmul_output_mode", 0)
        let left = ctx.int("left_window_size", -1), right = ctx.int("right_window_size", -1)
        let outputs = ctx.node.outputs.count
        return ClosureKernel { inputs, _ in
            func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
            guard let q = input(0), let k = input(1), let v = input(2), q.rank == k.rank, k.rank == v.rank, q.rank == 3 || q.rank == 4 else {
                throw ctx.invalid("Q, K and V of rank 3 or 4 are required")
            }
            let mask = input(3), pastK = input(4), pastV = input(5), nonpad = input(6)?.int64s().map(Int.init)
            guard (pastK == nil) == (pastV == nil), nonpad == nil || pastK == nil else { throw ctx.invalid("past_key and past_value go together, and not with nonpad_kv_seqlen") }
            let b = q.shape[0]
            // [B, H, S, D] views of Q, K, V (3-D inputs split by the head counts).
            func heads(_ t: Tensor, _ h: Int?) throws -> (h: Int, s: Int, d: Int, at: (Int, Int, Int, Int) -> Int) {
                if t.rank == 4 { let (h, s, d) = (t.shape[1], t.shape[2], t.shape[3]); return (h, s, d, { ((($0 * h) + $1) * s + $2) * d + $3 }) }
                guard let h, h > 0, t.shape[2] % h == 0 else { throw ctx.invalid("q_num_heads/kv_num_heads must divide the hidden sizes of 3-D inputs") }
                let (s, d) = (t.shape[1], t.shape[2] / h)
                return (h, s, d, { (($0 * s + $2) * h + $1) * d + $3 })
            }
            let qv = try heads(q, qHeadsAttr), kv0 = try heads(k, kvHeadsAttr), vv0 = try heads(v, kvHeadsAttr)
            let (hq, sq, dq) = (qv.h, qv.s, qv.d), (hk, dk, dv) = (kv0.h, kv0.d, vv0.d)
            let past = pastK?.shape[2] ?? 0, total = past + kv0.s
            guard dq == dk, hk == vv0.h, kv0.s == vv0.s, hk > 0, hq % hk == 0 else { throw ctx.invalid("Q \(q.shape), K \(k.shape), V \(v.shape) do not fit together") }
            let qd = q.doubles(), kd = k.doubles(), vd = v.doubles(), pkd = pastK?.doubles() ?? [], pvd = pastV?.doubles() ?? []
            // Present key/value: [B, Hkv, total, D].
            var presentK = [Double](repeating: 0, count: b * hk * total * dk), presentV = [Double](repeating: 0, count: b * hk * total * dv)
            for bi in 0..<b {
                for h in 0..<hk {
                    for s in 0..<total {
                        for d in 0..<dk { presentK[((bi * hk + h) * total + s) * dk + d] = s < past ? pkd[((bi * hk + h) * past + s) * dk + d] : kd[kv0.at(bi, h, s - past, d)] }
                        for d in 0..<dv { presentV[((bi * hk + h) * total + s) * dv + d] = s < past ? pvd[((bi * hk + h) * past + s) * dv + d] : vd[vv0.at(bi, h, s - past, d)] }
                    }
                }
            }
            // The mask, broadcast right-aligned to [B, Hq, Sq, total]; a shorter last axis pads with "masked".
            let maskShape = mask?.shape ?? [], maskValues = mask.map { $0.dtype == .bool ? $0.doubles().map { $0 != 0 ? 0 : -Double.infinity } : $0.doubles() }
            let full = [b, hq, sq, total]
            func maskValue(_ bi: Int, _ h: Int, _ i: Int, _ j: Int) -> Double {
                guard let maskValues, !maskShape.isEmpty else { return 0 }
                let r = maskShape.count
                if j >= maskShape[r - 1] { return -Double.infinity }
                var idx = 0
                for a in 0..<r {
                    let dim = maskShape[a], axis = 4 - r + a
                    let coord = axis == 0 ? bi : axis == 1 ? h : axis == 2 ? i : j
                    idx = idx * dim + (dim == 1 ? 0 : coord)
                }
                return maskValues[idx]
            }
            guard maskShape.isEmpty || maskShape.count <= 4 && zip(maskShape.dropLast(), full[(4 - maskShape.count)..<3]).allSatisfy({ $0 == 1 || $0 == $1 }) else {
                throw ctx.invalid("attn_mask \(maskShape) does not broadcast to \(full)")
            }
            let scale = (scaleAttr ?? 1 / Double(dq).squareRoot()).squareRoot()
            var y = [Double](repeating: 0, count: b * hq * sq * dv), qkOut = [Double](repeating: 0, count: b * hq * sq * total)
            var row = [Double](repeating: 0, count: total), bias = row
            for bi in 0..<b {
                let offset = past > 0 ? past : (nonpad.map { $0[bi] - sq } ?? 0)
                for h in 0..<hq {
                    let kh = h / (hq / hk)
                    for i in 0..<sq {
                        for j in 0..<total {
                            var bv = maskValue(bi, h, i, j)
                            if causal && j > i + offset { bv = -Double.infinity }
                            let diff = i + offset - j
                            if left >= 0 && diff > left || right >= 0 && -diff > right { bv = -Double.infinity }
                            if let nonpad, j >= nonpad[bi] { bv = -Double.infinity }
                            var dot = 0.0
                            for d in 0..<dq { dot += (qd[qv.at(bi, h, i, d)] * scale) * (presentK[((bi * hk + kh) * total + j) * dk + d] * scale) }
                            if softcap > 0 { dot = tanh(dot / softcap) * softcap }
                            bias[j] = bv
                            row[j] = dot + bv
                            let o = ((bi * hq + h) * sq + i) * total + j
                            qkOut[o] = mode == 2 ? row[j] : dot
                        }
                        // Softmax; a row whose bias masks everything gives zeros.
                        let m = row.max() ?? 0
                        let masked = (bias.max() ?? 0) == -Double.infinity
                        let safe = m == -Double.infinity ? 0 : m
                        let e = row.map { exp($0 - safe) }
                        var sum = e.reduce(0, +)
                        if sum == 0 { sum = 1 }
                        let p = e.map { masked ? 0 : $0 / sum }
                        if mode == 3 { for j in 0..<total { qkOut[((bi * hq + h) * sq + i) * total + j] = p[j] } }
                        for d in 0..<dv {
                            var acc = 0.0
                            for j in 0..<total where p[j] != 0 { acc += p[j] * presentV[((bi * hk + kh) * total + j) * dv + d] }
                            y[((bi * hq + h) * sq + i) * dv + d] = acc
                        }
                    }
                }
            }
            func out(_ values: [Double], _ shape: [Int]) throws -> Tensor {
                try CastKernels.convert(Tensor(shape: shape, floats: values.map { Float($0) }), to: q.dtype, ctx)
            }
            var yShape = [b, hq, sq, dv]
            if q.rank == 3 {
                // [B, Hq, Sq, Dv] -> [B, Sq, Hq·Dv]
                var t = [Double](repeating: 0, count: y.count)
                for bi in 0..<b { for h in 0..<hq { for i in 0..<sq { for d in 0..<dv { t[((bi * sq + i) * hq + h) * dv + d] = y[((bi * hq + h) * sq + i) * dv + d] } } } }
                y = t
                yShape = [b, sq, hq * dv]
            }
            let all = [try out(y, yShape), try out(presentK, [b, hk, total, dk]), try out(presentV, [b, hk, total, dv]), try out(qkOut, [b, hq, sq, total])]
            return Array(all.prefix(max(outputs, 1)))
        }
    }
}
