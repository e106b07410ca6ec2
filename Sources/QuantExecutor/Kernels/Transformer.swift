import Foundation
import QuantCore
import QuantIR

/// Transformer building blocks of opsets 23–24: RotaryEmbedding, SwiGLU, TensorScatter (a
/// key/value cache write). Computed in float, results in the input's type.
enum TransformerKernels {
    static let all: [String: KernelFactory] = ["RotaryEmbedding": rotary, "SwiGLU": swiGLU, "TensorScatter": tensorScatter]

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
