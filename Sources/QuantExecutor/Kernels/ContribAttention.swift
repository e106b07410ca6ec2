import Foundation
import QuantCore
import QuantIR

/// ONNX Runtime's `com.microsoft::Attention` (BERT/GPT-2 style, as its transformer optimizer
/// writes it): Q, K, V = input · weights + bias split by `qkv_hidden_sizes` (equal thirds by
/// default) into `num_heads` heads; K and V follow the optional `past` [2, B, N, P, H]; scores
/// Q·Kᵀ · scale (1/√head size by default) plus the mask (`mask_filter_value` where it masks:
/// 1-D end positions [B] or end and start positions [2B], raw 0/1 masks [B, T] or [B, S, T]),
/// the causal mask (`unidirectional`) and `attention_bias` [B or 1, N or 1, S, T]; softmax over
/// the keys; output [B, S, N·head size of V] and `present` [2, B, N, P + S, H]. Also
/// `MultiHeadAttention` on separate Q, K, V (``multiHead(_:)``), sharing the attention core.
enum ContribAttention {
    static func make(_ ctx: KernelContext) throws -> Kernel {
        let heads = ctx.int("num_heads", 0)
        guard heads > 0 else { throw ctx.invalid("num_heads must be positive") }
        guard ctx.int("do_rotary", 0) == 0 else { throw ctx.unsupported("do_rotary") }
        guard ctx.int("past_present_share_buffer", 0) == 0 else { throw ctx.unsupported("past_present_share_buffer") }
        let causal = ctx.int("unidirectional", 0) != 0
        let filter = ctx.float("mask_filter_value", -10000)
        let scaleAttr = ctx.float("scale", 0)
        let sizes = ctx.ints("qkv_hidden_sizes")
        let outputs = ctx.node.outputs.count
        return ClosureKernel { inputs, env in
            func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
            let x = try MatrixKernels.floatInput(input(0), ctx, "input")
            let w = try MatrixKernels.floatInput(input(1), ctx, "weights")
            guard x.rank == 3, w.rank == 2, w.shape[0] == x.shape[2] else { throw ctx.invalid("input \(x.shape) and weights \(w.shape) do not fit") }
            let (b, s) = (x.shape[0], x.shape[1])
            let (hq, hk, hv) = sizes.map { ($0.count == 3 ? ($0[0], $0[1], $0[2]) : (-1, -1, -1)) } ?? (w.shape[1] / 3, w.shape[1] / 3, w.shape[1] / 3)
            guard hq > 0, hq == hk, hq + hk + hv == w.shape[1], hq % heads == 0, hv % heads == 0 else {
                throw ctx.invalid("weights \(w.shape) do not split into Q, K, V of \(heads) heads (qkv_hidden_sizes \(sizes ?? []))")
            }
            let (d, dv) = (hq / heads, hv / heads)
            // QKV = input · weights (+ bias): [B·S, Hq + Hk + Hv].
            var qkv = try MatrixKernels.matmul(x.reshaped([b * s, x.shape[2]]), w, ctx, threads: env.threads).floats()
            let width = hq + hk + hv
            if let bias = input(2) {
                let bv = try ContribKernels.lastAxisVector(bias, of: w, "bias", ctx)
                for i in 0..<qkv.count { qkv[i] += bv[i % width] }
            }
            let past = try input(4).map { try MatrixKernels.floatInput($0, ctx, "past") }
            let p = past?.shape[3] ?? 0, t = p + s
            guard past == nil || past!.shape == [2, b, heads, p, d] && dv == d else {
                throw ctx.invalid("past \(past!.shape) must be [2, \(b), \(heads), P, \(d)]")
            }
            // Keys and values [B, N, T, H]: past ones, then this call's.
            let pastValues = past?.floats() ?? [], half = b * heads * p * d
            let keys = cache(b: b, heads: heads, p: p, s: s, d: d, past: pastValues.isEmpty ? nil : Array(pastValues[..<half])) { bi, h, j, e in
                qkv[(bi * s + j) * width + hq + h * d + e]
            }
            let values = cache(b: b, heads: heads, p: p, s: s, d: dv, past: pastValues.isEmpty ? nil : Array(pastValues[half...])) { bi, h, j, e in
                qkv[(bi * s + j) * width + hq + hk + h * dv + e]
            }
            let mask = try maskValues(input(3), b: b, s: s, p: p, filter: filter, causal: causal, ctx)
            let y = try attend(q: qkv, qStride: width, keys: keys, values: values, b: b, s: s, t: t, heads: heads, d: d, dv: dv, mask: mask,
                               bias: input(5), scale: scaleAttr == 0 ? 1 / Float(d).squareRoot() : scaleAttr, threads: env.threads, ctx)
            let all: [Tensor?] = [Tensor(shape: [b, s, hv], floats: y), dv == d ? Tensor(shape: [2, b, heads, t, d], floats: keys + values) : nil]
            return Array(all.prefix(max(outputs, 1)))
        }
    }

    /// `com.microsoft::MultiHeadAttention` with separate 3-D query [B, S, D], key [B, L, D] and
    /// value [B, L, Dv]: the optional bias [D + D + Dv] is added to them, past_key/past_value
    /// [B, N, P, H] go before the keys and values, then attention as above (key_padding_mask in
    /// the mask formats above, attention_bias, `unidirectional`). Outputs: output [B, S, Dv],
    /// present_key and present_value [B, N, P + L, H]. The packed and cross-attention-cache
    /// layouts are refused.
    static func multiHead(_ ctx: KernelContext) throws -> Kernel {
        let heads = ctx.int("num_heads", 0)
        guard heads > 0 else { throw ctx.invalid("num_heads must be positive") }
        let causal = ctx.int("unidirectional", 0) != 0
        let filter = ctx.float("mask_filter_value", -10000)
        let scaleAttr = ctx.float("scale", 0)
        let outputs = ctx.node.outputs.count
        return ClosureKernel { inputs, env in
            func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
            let q = try MatrixKernels.floatInput(input(0), ctx, "query")
            guard let kT = input(1), let vT = input(2), q.rank == 3, kT.rank == 3, vT.rank == 3 else {
                throw ctx.unsupported("query, key and value other than three [batch, sequence, hidden] tensors (packed layouts)")
            }
            let k = try MatrixKernels.floatInput(kT, ctx, "key"), v = try MatrixKernels.floatInput(vT, ctx, "value")
            let (b, s, hq, l, hv) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1], v.shape[2])
            guard k.shape == [b, l, hq], v.shape[0] == b, v.shape[1] == l, hq % heads == 0, hv % heads == 0 else {
                throw ctx.invalid("query \(q.shape), key \(k.shape) and value \(v.shape) do not fit \(heads) heads")
            }
            let (d, dv) = (hq / heads, hv / heads)
            var (qv, kv, vv) = (q.floats(), k.floats(), v.floats())
            if let bias = input(3) {
                let bv = bias.floats()
                guard bias.dtype == .float, bias.rank == 1, bv.count == 2 * hq + hv else { throw ctx.invalid("bias \(bias.shape) must be [\(2 * hq + hv)]") }
                for i in 0..<qv.count { qv[i] += bv[i % hq] }
                for i in 0..<kv.count { kv[i] += bv[hq + i % hq] }
                for i in 0..<vv.count { vv[i] += bv[2 * hq + i % hv] }
            }
            let pastK = try input(6).map { try MatrixKernels.floatInput($0, ctx, "past_key") }
            let pastV = try input(7).map { try MatrixKernels.floatInput($0, ctx, "past_value") }
            let p = pastK?.shape[2] ?? 0, t = p + l
            guard (pastK == nil) == (pastV == nil), pastK == nil || pastK!.shape == [b, heads, p, d] && pastV!.shape == [b, heads, p, dv] else {
                throw ctx.invalid("past_key and past_value must be [\(b), \(heads), P, \(d)] and [\(b), \(heads), P, \(dv)]")
            }
            let (kNew, vNew) = (kv, vv)
            let keys = cache(b: b, heads: heads, p: p, s: l, d: d, past: pastK?.floats()) { bi, h, j, e in kNew[(bi * l + j) * hq + h * d + e] }
            let values = cache(b: b, heads: heads, p: p, s: l, d: dv, past: pastV?.floats()) { bi, h, j, e in vNew[(bi * l + j) * hv + h * dv + e] }
            let mask = try maskValues(input(4), b: b, s: s, p: t - s, filter: filter, causal: causal, ctx)
            let y = try attend(q: qv, qStride: hq, keys: keys, values: values, b: b, s: s, t: t, heads: heads, d: d, dv: dv, mask: mask,
                               bias: input(5), scale: scaleAttr == 0 ? 1 / Float(d).squareRoot() : scaleAttr, threads: env.threads, ctx)
            let all: [Tensor?] = [Tensor(shape: [b, s, hv], floats: y), Tensor(shape: [b, heads, t, d], floats: keys), Tensor(shape: [b, heads, t, dv], floats: values)]
            return Array(all.prefix(max(outputs, 1)))
        }
    }

    /// Keys or values [B, N, P + S, H]: `past` [B, N, P, H] (if any), then `new(b, head, row, e)`.
    static func cache(b: Int, heads: Int, p: Int, s: Int, d: Int, past: [Float]?, _ new: (Int, Int, Int, Int) -> Float) -> [Float] {
        let t = p + s
        var out = [Float](repeating: 0, count: b * heads * t * d)
        for bi in 0..<b {
            for h in 0..<heads {
                for j in 0..<t {
                    let o = ((bi * heads + h) * t + j) * d
                    for e in 0..<d { out[o + e] = j < p ? past![((bi * heads + h) * p + j) * d + e] : new(bi, h, j - p, e) }
                }
            }
        }
        return out
    }

    /// softmax(Q·Kᵀ · scale + mask + attention_bias) · V per batch item and head. Q row (b, i) of
    /// head h starts at q[(b·S + i)·qStride + h·d]; keys and values are [B, N, T, H]; `mask` is
    /// [B, S, T]; the result is [B, S, N·dv].
    static func attend(q: [Float], qStride: Int, keys: [Float], values: [Float], b: Int, s: Int, t: Int, heads: Int, d: Int, dv: Int,
                       mask: [Float]?, bias: Tensor?, scale: Float, threads: Int, _ ctx: KernelContext) throws -> [Float] {
        if let bias {
            guard bias.dtype == .float, bias.rank == 4, bias.shape[0] == 1 || bias.shape[0] == b, bias.shape[1] == 1 || bias.shape[1] == heads,
                  bias.shape[2] == s, bias.shape[3] == t else {
                throw ctx.invalid("attention_bias \(bias.shape) must be [\(b) or 1, \(heads) or 1, \(s), \(t)]")
            }
        }
        let biasValues = bias?.floats(), biasShape = bias?.shape ?? []
        var y = [Float](repeating: 0, count: b * s * heads * dv)
        y.withUnsafeMutableBufferPointer { out in
            let yp = out.baseAddress!
            parallelFor(b * heads, threads: threads, grain: 1) { r in
                var row = [Float](repeating: 0, count: t)
                for bh in r {
                    let (bi, h) = (bh / heads, bh % heads)
                    for i in 0..<s {
                        let qBase = (bi * s + i) * qStride + h * d
                        for j in 0..<t {
                            var dot: Float = 0
                            let kBase = ((bi * heads + h) * t + j) * d
                            for e in 0..<d { dot += q[qBase + e] * keys[kBase + e] }
                            var v = dot * scale + (mask?[(bi * s + i) * t + j] ?? 0)
                            if let biasValues {
                                v += biasValues[(((biasShape[0] == 1 ? 0 : bi) * biasShape[1] + (biasShape[1] == 1 ? 0 : h)) * s + i) * t + j]
                            }
                            row[j] = v
                        }
                        let m = row.max() ?? 0
                        var sum: Float = 0
                        for j in 0..<t { row[j] = Foundation.exp(row[j] - m); sum += row[j] }
                        for e in 0..<dv {
                            var acc: Float = 0
                            for j in 0..<t { acc += row[j] * values[((bi * heads + h) * t + j) * dv + e] }
                            yp[(bi * s + i) * heads * dv + h * dv + e] = acc / sum
                        }
                    }
                }
            }
        }
        return y
    }

    /// The additive mask [B, S, T] (0 to keep, `filter` to mask), or nil without any mask.
    static func maskValues(_ maskT: Tensor?, b: Int, s: Int, p: Int, filter: Float, causal: Bool, _ ctx: KernelContext) throws -> [Float]? {
        let t = p + s
        guard maskT != nil || causal else { return nil }
        var mask = [Float](repeating: 0, count: b * s * t)
        if let maskT {
            let m = maskT.int64s()
            switch maskT.shape {
            case [b], [2 * b]:
                for bi in 0..<b {
                    let end = Int(m[bi]), start = maskT.count == 2 * b ? min(Int(m[b + bi]), t) : 0
                    for i in 0..<s { for j in 0..<t where j >= end || j < start { mask[(bi * s + i) * t + j] = filter } }
                }
            case [b, t]:
                for bi in 0..<b { for i in 0..<s { for j in 0..<t where m[bi * t + j] <= 0 { mask[(bi * s + i) * t + j] = filter } } }
            case [b, s, t]:
                for k in 0..<mask.count where m[k] <= 0 { mask[k] = filter }
            default:
                throw ctx.unsupported("mask_index of shape \(maskT.shape) (supported: [\(b)], [\(2 * b)], [\(b), \(t)], [\(b), \(s), \(t)])")
            }
        }
        if causal {
            for bi in 0..<b { for i in 0..<s { for j in (p + i + 1)..<max(t, p + i + 1) { mask[(bi * s + i) * t + j] = -Float.greatestFiniteMagnitude } } }
        }
        return mask
    }
}
