import Foundation
import QuantCore
import QuantIR

/// ONNX Runtime's `com.microsoft::Attention` (BERT/GPT-2 style, as its transformer optimizer
/// writes it): Q, K, V = input · weights + bias split by `qkv_hidden_sizes` (equal thirds by
/// default) into `num_heads` heads; K and V follow the optional `past` [2, B, N, P, H]; scores
/// Q·Kᵀ · scale (1/√head size by default) plus the mask (`mask_filter_value` where it masks:
/// 1-D end positions [B] or end and start positions [2B], raw 0/1 masks [B, T] or [B, S, T]),
/// the causal mask (`unidirectional`) and `attention_bias` [B or 1, N or 1, S, T]; softmax over
/// the keys; output [B, S, N·head size of V] and `present` [2, B, N, P + S, H].
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
            // present [2, B, N, T, H]: past keys/values, then this call's.
            let pastValues = past?.floats() ?? []
            var present = [Float](repeating: 0, count: 2 * b * heads * t * d)
            var values = [Float](repeating: 0, count: b * heads * t * dv)
            for bi in 0..<b {
                for h in 0..<heads {
                    for j in 0..<t {
                        let kOut = ((bi * heads + h) * t + j) * d, vOut = ((b + bi) * heads + h) * t * d + j * d
                        for e in 0..<d {
                            present[kOut + e] = j < p ? pastValues[((bi * heads + h) * p + j) * d + e] : qkv[(bi * s + j - p) * width + hq + h * d + e]
                        }
                        for e in 0..<dv {
                            let v = j < p ? pastValues[(((b + bi) * heads + h) * p + j) * d + e] : qkv[(bi * s + j - p) * width + hq + hk + h * dv + e]
                            values[((bi * heads + h) * t + j) * dv + e] = v
                            if dv == d { present[vOut + e] = v }
                        }
                    }
                }
            }
            let mask = try maskValues(input(3), b: b, s: s, p: p, filter: filter, causal: causal, ctx)
            let bias = try input(5).map { try MatrixKernels.floatInput($0, ctx, "attention_bias") }
            guard bias == nil || bias!.rank == 4 && [bias!.shape[0], bias!.shape[1]].enumerated().allSatisfy({ $1 == 1 || $1 == [b, heads][$0] }) && bias!.shape[2] == s && bias!.shape[3] == t else {
                throw ctx.invalid("attention_bias \(bias!.shape) must be [\(b) or 1, \(heads) or 1, \(s), \(t)]")
            }
            let biasValues = bias?.floats()
            let scale = scaleAttr == 0 ? 1 / Float(d).squareRoot() : scaleAttr
            let (qkvValues, keys, vs) = (qkv, present, values)
            var y = [Float](repeating: 0, count: b * s * hv)
            y.withUnsafeMutableBufferPointer { out in
                let yp = out.baseAddress!
                parallelFor(b * heads, threads: env.threads, grain: 1) { r in
                    var row = [Float](repeating: 0, count: t)
                    for bh in r {
                        let (bi, h) = (bh / heads, bh % heads)
                        for i in 0..<s {
                            for j in 0..<t {
                                var dot: Float = 0
                                let qBase = (bi * s + i) * width + h * d, kBase = ((bi * heads + h) * t + j) * d
                                for e in 0..<d { dot += qkvValues[qBase + e] * keys[kBase + e] }
                                var v = dot * scale + (mask?[(bi * s + i) * t + j] ?? 0)
                                if let biasValues, let bias {
                                    v += biasValues[(((bias.shape[0] == 1 ? 0 : bi) * bias.shape[1] + (bias.shape[1] == 1 ? 0 : h)) * s + i) * t + j]
                                }
                                row[j] = v
                            }
                            let m = row.max() ?? 0
                            var sum: Float = 0
                            for j in 0..<t { row[j] = Foundation.exp(row[j] - m); sum += row[j] }
                            for e in 0..<dv {
                                var acc: Float = 0
                                for j in 0..<t { acc += row[j] * vs[((bi * heads + h) * t + j) * dv + e] }
                                yp[(bi * s + i) * hv + h * dv + e] = acc / sum
                            }
                        }
                    }
                }
            }
            let all: [Tensor?] = [Tensor(shape: [b, s, hv], floats: y), dv == d ? Tensor(shape: [2, b, heads, t, d], floats: present) : nil]
            return Array(all.prefix(max(outputs, 1)))
        }
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
