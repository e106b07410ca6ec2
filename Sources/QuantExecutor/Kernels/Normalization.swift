import Foundation
import QuantCore
import QuantIR

/// Normalizations (inference): BatchNormalization, InstanceNormalization, LayerNormalization,
/// GroupNormalization, RMSNormalization, LpNormalization, MeanVarianceNormalization, LRN, and
/// the Softmax family (NormalizationSoftmax.swift).
enum NormalizationKernels {
    static let all: [String: KernelFactory] = [
        "BatchNormalization": batchNormalization,
        "InstanceNormalization": instanceNormalization,
        "LayerNormalization": { layerNormalization($0, rms: false) },
        "RMSNormalization": { layerNormalization($0, rms: true) },
        "GroupNormalization": groupNormalization,
        "LpNormalization": lpNormalization,
        "MeanVarianceNormalization": NormalizationReduce.meanVarianceNormalization,
        "LRN": lrn,
        "Softmax": SoftmaxKernels.make(.softmax),
        "LogSoftmax": SoftmaxKernels.make(.logSoftmax),
        "Hardmax": SoftmaxKernels.make(.hardmax),
    ]

    static func pointer(_ t: Tensor) -> UnsafePointer<Float> { UnsafePointer(t.storage.pointer.assumingMemoryBound(to: Float.self)) }

    /// `BatchNormalization` in inference mode: `y = scale·(x − mean)/√(var + ε) + B` per channel
    /// (per element of [C, D...] for opset < 9 `spatial = 0`). `training_mode = 1` is rejected.
    static func batchNormalization(_ ctx: KernelContext) throws -> Kernel {
        let epsilon = ctx.float("epsilon", 1e-5)
        if ctx.int("training_mode", 0) != 0 { throw ctx.unsupported("training_mode = 1 (batch statistics)") }
        return ClosureKernel { inputs, env in
            let names = ["X", "scale", "B", "input_mean", "input_var"]
            let t = try (0..<5).map { try MatrixKernels.floatInput($0 < inputs.count ? inputs[$0] : nil, ctx, names[$0]) }
            let x = t[0]
            guard x.rank >= 2 else { throw ctx.invalid("X \(x.shape) must have rank >= 2") }
            let c = x.shape[1], n = x.shape[0]
            let plane = Tensor.elementCount(Array(x.shape.dropFirst(2)))
            let params = t[1].count
            guard params == c || params == c * plane, t[2...].allSatisfy({ $0.count == params }) else {
                throw ctx.invalid("scale, B, mean and var must hold \(c) values (shapes \(t[1...].map(\.shape)))")
            }
            // Fold into y = a·x + b.
            var a = [Float](repeating: 0, count: params), b = a
            let s = pointer(t[1]), bb = pointer(t[2]), m = pointer(t[3]), v = pointer(t[4])
            for i in 0..<params {
                a[i] = s[i] / (v[i] + epsilon).squareRoot()
                b[i] = bb[i] - m[i] * a[i]
            }
            let perElement = params != c
            let y = Tensor.makeFloat(x.shape) { out in
                let xp = pointer(x)
                parallelFor(n * c, threads: env.threads, grain: max(1, 16384 / max(plane, 1))) { r in
                    for p in r {
                        let ch = p % c
                        let xs = xp + p * plane, ys = out.baseAddress! + p * plane
                        if perElement {
                            for i in 0..<plane { ys[i] = a[ch * plane + i] * xs[i] + b[ch * plane + i] }
                        } else {
                            let ac = a[ch], bc = b[ch]
                            for i in 0..<plane { ys[i] = ac * xs[i] + bc }
                        }
                    }
                }
            }
            return [y] + [Tensor?](repeating: nil, count: max(0, ctx.node.outputs.count - 1))
        }
    }

    /// Mean and 1/√(variance + ε) of `n` contiguous values (two passes, float64 sums).
    @inline(__always)
    static func moments(_ x: UnsafePointer<Float>, _ n: Int, epsilon: Float) -> (Float, Float) {
        var s: Double = 0
        for i in 0..<n { s += Double(x[i]) }
        let mean = n > 0 ? s / Double(n) : 0
        var q: Double = 0
        for i in 0..<n { let d = Double(x[i]) - mean; q += d * d }
        let variance = n > 0 ? q / Double(n) : 0
        return (Float(mean), Float(1 / (variance + Double(epsilon)).squareRoot()))
    }

    /// `InstanceNormalization`: per (image, channel) over the spatial dimensions.
    static func instanceNormalization(_ ctx: KernelContext) throws -> Kernel {
        let epsilon = ctx.float("epsilon", 1e-5)
        return ClosureKernel { inputs, env in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "input")
            let scale = try MatrixKernels.floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "scale")
            let bias = try MatrixKernels.floatInput(inputs.count > 2 ? inputs[2] : nil, ctx, "B")
            guard x.rank >= 2, scale.count == x.shape[1], bias.count == x.shape[1] else {
                throw ctx.invalid("input \(x.shape), scale \(scale.shape) and B \(bias.shape) do not fit")
            }
            let c = x.shape[1], plane = Tensor.elementCount(Array(x.shape.dropFirst(2)))
            let y = Tensor.makeFloat(x.shape) { out in
                let xp = pointer(x), sp = pointer(scale), bp = pointer(bias)
                parallelFor(x.shape[0] * c, threads: env.threads, grain: max(1, 8192 / max(plane, 1))) { r in
                    for p in r {
                        let xs = xp + p * plane, ys = out.baseAddress! + p * plane
                        let (mean, inv) = moments(xs, plane, epsilon: epsilon)
                        let a = sp[p % c] * inv, b = bp[p % c] - mean * a
                        for i in 0..<plane { ys[i] = a * xs[i] + b }
                    }
                }
            }
            return [y]
        }
    }

    /// `LayerNormalization` (opset 17) and `RMSNormalization` (opset 23): normalize over the
    /// dimensions from `axis` on, then `· Scale (+ B)` broadcast to those dimensions. Layer norm
    /// also returns Mean and InvStdDev (shape of X with the normalized dimensions set to 1); RMS
    /// normalization returns InvStdDev second with `rmsInvStdDev` (ONNX Runtime's
    /// SimplifiedLayerNormalization).
    static func layerNormalization(_ ctx: KernelContext, rms: Bool, rmsInvStdDev: Bool = false) -> Kernel {
        let axisAttr = ctx.int("axis", -1)
        let epsilon = ctx.float("epsilon", 1e-5)
        return ClosureKernel { inputs, env in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
            let scale = try MatrixKernels.floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "Scale")
            let bias = rms ? nil : (inputs.count > 2 ? inputs[2] : nil)
            guard let axis = Shapes.axis(axisAttr, rank: x.rank) else { throw ctx.invalid("axis \(axisAttr) is out of range for \(x.shape)") }
            let normShape = Array(x.shape[axis...])
            let rows = Tensor.elementCount(Array(x.shape[..<axis])), n = Tensor.elementCount(normShape)
            func expanded(_ t: Tensor, _ name: String) throws -> [Float] {
                guard t.dtype == .float, t.rank <= normShape.count, Shapes.broadcast([t.shape, normShape]) == normShape else {
                    throw ctx.invalid("\(name) \(t.shape) does not broadcast to \(normShape)")
                }
                if t.count == n { return t.floats() }
                let st = Shapes.broadcastStrides(t.shape, to: normShape), full = Shapes.strides(normShape)
                let v = t.floats()
                return (0..<n).map { i in
                    var off = 0, rem = i
                    for d in 0..<normShape.count { off += (rem / full[d]) * st[d]; rem %= full[d] }
                    return v[off]
                }
            }
            let s = try expanded(scale, "Scale")
            let b = try bias.map { try expanded($0, "B") }
            let statShape = Array(x.shape[..<axis]) + [Int](repeating: 1, count: x.rank - axis)
            let meanT = Tensor(dtype: .float, shape: statShape), invT = Tensor(dtype: .float, shape: statShape)
            let y = Tensor.makeFloat(x.shape) { out in
                let xp = pointer(x)
                let mp = meanT.storage.pointer.assumingMemoryBound(to: Float.self)
                let ip = invT.storage.pointer.assumingMemoryBound(to: Float.self)
                parallelFor(rows, threads: env.threads, grain: max(1, 8192 / max(n, 1))) { r in
                    for row in r {
                        let xs = xp + row * n, ys = out.baseAddress! + row * n
                        var mean: Float = 0, inv: Float
                        if rms {
                            var q: Double = 0
                            for i in 0..<n { q += Double(xs[i]) * Double(xs[i]) }
                            inv = Float(1 / (q / Double(max(n, 1)) + Double(epsilon)).squareRoot())
                        } else {
                            (mean, inv) = moments(xs, n, epsilon: epsilon)
                        }
                        mp[row] = mean
                        ip[row] = inv
                        if let b {
                            for i in 0..<n { ys[i] = (xs[i] - mean) * inv * s[i] + b[i] }
                        } else {
                            for i in 0..<n { ys[i] = (xs[i] - mean) * inv * s[i] }
                        }
                    }
                }
            }
            return rms ? (rmsInvStdDev ? [y, invT] : [y]) : [y, meanT, invT]
        }
    }

    /// `GroupNormalization`: statistics per (image, group of C/num_groups channels); scale and
    /// bias per group (opset 18) or per channel (opset 21).
    static func groupNormalization(_ ctx: KernelContext) throws -> Kernel {
        let epsilon = ctx.float("epsilon", 1e-5)
        guard let groups = ctx.int("num_groups"), groups > 0 else { throw ctx.invalid("num_groups must be a positive integer") }
        return ClosureKernel { inputs, env in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
            let scale = try MatrixKernels.floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "scale")
            let bias = try MatrixKernels.floatInput(inputs.count > 2 ? inputs[2] : nil, ctx, "bias")
            guard x.rank >= 2, x.shape[1] % groups == 0 else { throw ctx.invalid("X \(x.shape) channels are not divisible into \(groups) groups") }
            let c = x.shape[1], cpg = c / groups
            let perChannel = scale.count == c
            guard (scale.count == c || scale.count == groups), bias.count == scale.count else {
                throw ctx.invalid("scale \(scale.shape) and bias \(bias.shape) must hold \(groups) or \(c) values")
            }
            let plane = Tensor.elementCount(Array(x.shape.dropFirst(2)))
            let n = cpg * plane
            let y = Tensor.makeFloat(x.shape) { out in
                let xp = pointer(x), sp = pointer(scale), bp = pointer(bias)
                parallelFor(x.shape[0] * groups, threads: env.threads, grain: max(1, 8192 / max(n, 1))) { r in
                    for p in r {
                        let grp = p % groups
                        let xs = xp + p * n, ys = out.baseAddress! + p * n
                        let (mean, inv) = moments(xs, n, epsilon: epsilon)
                        for k in 0..<cpg {
                            let ch = grp * cpg + k
                            let sc = perChannel ? sp[ch] : sp[grp], bc = perChannel ? bp[ch] : bp[grp]
                            let a = sc * inv, b = bc - mean * a
                            for i in k * plane..<(k + 1) * plane { ys[i] = a * xs[i] + b }
                        }
                    }
                }
            }
            return [y]
        }
    }

    /// `LpNormalization`: `x / ‖x‖_p` along `axis` (p = 1 or 2); a zero norm gives 0.
    static func lpNormalization(_ ctx: KernelContext) throws -> Kernel {
        let axisAttr = ctx.int("axis", -1)
        let p = ctx.int("p", 2)
        guard p == 1 || p == 2 else { throw ctx.invalid("p must be 1 or 2, not \(p)") }
        return ClosureKernel { inputs, env in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "input")
            guard let axis = Shapes.axis(axisAttr, rank: x.rank) else { throw ctx.invalid("axis \(axisAttr) is out of range for \(x.shape)") }
            let n = x.shape[axis]
            let inner = Tensor.elementCount(Array(x.shape[(axis + 1)...]))
            let outer = Tensor.elementCount(Array(x.shape[..<axis]))
            let y = Tensor.makeFloat(x.shape) { out in
                let xp = pointer(x)
                parallelFor(outer * inner, threads: env.threads, grain: max(1, 8192 / max(n, 1))) { r in
                    for q in r {
                        let base = (q / inner) * n * inner + q % inner
                        var acc: Float = 0
                        for j in 0..<n {
                            let v = xp[base + j * inner]
                            acc += p == 1 ? abs(v) : v * v
                        }
                        let norm = p == 1 ? acc : acc.squareRoot()
                        for j in 0..<n { out[base + j * inner] = norm == 0 ? 0 : xp[base + j * inner] / norm }
                    }
                }
            }
            return [y]
        }
    }

    /// `LRN`: `y = x / (bias + alpha/size · Σ x²)^beta`, the sum over channels
    /// `c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉`.
    static func lrn(_ ctx: KernelContext) throws -> Kernel {
        let alpha = ctx.float("alpha", 1e-4), beta = ctx.float("beta", 0.75), bias = ctx.float("bias", 1)
        guard let size = ctx.int("size"), size > 0 else { throw ctx.invalid("size must be a positive integer") }
        return ClosureKernel { inputs, env in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
            guard x.rank >= 2 else { throw ctx.invalid("X \(x.shape) must have rank >= 2") }
            let c = x.shape[1], plane = Tensor.elementCount(Array(x.shape.dropFirst(2)))
            let before = (size - 1) / 2, after = size - 1 - before
            let y = Tensor.makeFloat(x.shape) { out in
                let xp = pointer(x)
                parallelFor(x.shape[0] * c, threads: env.threads, grain: max(1, 4096 / max(plane * size, 1))) { r in
                    var sq = [Float](repeating: 0, count: plane)
                    for p in r {
                        let img = p / c, ch = p % c
                        for i in 0..<plane { sq[i] = 0 }
                        for k in max(0, ch - before)...min(c - 1, ch + after) {
                            let s = xp + (img * c + k) * plane
                            for i in 0..<plane { sq[i] += s[i] * s[i] }
                        }
                        let xs = xp + p * plane, ys = out.baseAddress! + p * plane
                        let scale = alpha / Float(size)
                        for i in 0..<plane { ys[i] = xs[i] / powf(bias + scale * sq[i], beta) }
                    }
                }
            }
            return [y]
        }
    }
}

/// Normalizations over an arbitrary set of axes.
enum NormalizationReduce {
    /// `MeanVarianceNormalization`: `(x − E[x]) / (√(E[x²] − E[x]²) + 1e-9)` over `axes`
    /// (default [0, 2, 3]), as in the operator's function body.
    static func meanVarianceNormalization(_ ctx: KernelContext) throws -> Kernel {
        let axesAttr = ctx.ints("axes") ?? [0, 2, 3]
        return ClosureKernel { inputs, _ in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
            var reduced = [Bool](repeating: false, count: x.rank)
            for a in axesAttr {
                guard let v = Shapes.axis(a, rank: x.rank) else { throw ctx.invalid("axis \(a) is out of range for \(x.shape)") }
                reduced[v] = true
            }
            let keptShape = x.shape.enumerated().map { reduced[$0.offset] ? 1 : $0.element }
            let keptStrides = Shapes.broadcastStrides(keptShape, to: x.shape)
            let full = Shapes.strides(x.shape)
            let keptCount = Tensor.elementCount(keptShape)
            let perGroup = Double(x.count / max(keptCount, 1))
            var index = [Int](repeating: 0, count: x.count)
            for i in 0..<x.count {
                var rem = i, k = 0
                for d in 0..<x.rank { k += (rem / full[d]) * keptStrides[d]; rem %= full[d] }
                index[i] = k
            }
            var s1 = [Double](repeating: 0, count: keptCount), s2 = s1
            let xp = NormalizationKernels.pointer(x)
            for i in 0..<x.count {
                let v = Double(xp[i])
                s1[index[i]] += v
                s2[index[i]] += v * v
            }
            let mean = s1.map { $0 / perGroup }
            let std = (0..<keptCount).map { (max(s2[$0] / perGroup - mean[$0] * mean[$0], 0)).squareRoot() }
            let y = Tensor.makeFloat(x.shape) { out in
                for i in 0..<x.count { out[i] = Float((Double(xp[i]) - mean[index[i]]) / (std[index[i]] + 1e-9)) }
            }
            return [y]
        }
    }
}
