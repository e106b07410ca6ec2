import Foundation
import QuantCore
import QuantIR

/// Operators that build tensors: ConstantOfShape, Range, EyeLike, Trilu, OneHot.
enum Generate {
    /// `ConstantOfShape(shape)`: the one-element `value` attribute (default float 0) repeated.
    static func constantOfShape(_ ctx: KernelContext) throws -> Kernel {
        let value = try ctx.tensor("value") ?? Tensor(shape: [1], floats: [0])
        guard value.count == 1, value.dtype != .string, value.dtype.bitWidth >= 8 else { throw ctx.invalid("value must hold one element") }
        return ClosureKernel { inputs, env in
            guard let s = try ShapeKernels.ints(inputs[0], "shape", ctx), s.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("shape is required") }
            try ctx.checkOutput(value.dtype, s)
            let one = ShapeKernels.view(value, [])
            return [Strided.gather(one, shape: s, strides: [Int](repeating: 0, count: s.count), threads: env.threads)]
        }
    }

    struct RangeVisitor: ScalarVisitor {
        let start: Tensor, limit: Tensor, delta: Tensor
        let ctx: KernelContext
        func visit<T: ExecScalar>(_: T.Type) throws -> Tensor {
            let s = start.storage.pointer.load(as: T.self), l = limit.storage.pointer.load(as: T.self)
            let d = delta.storage.pointer.load(as: T.self)
            let count = ((l.asDouble - s.asDouble) / d.asDouble).rounded(.up)
            guard !count.isNaN else { throw ctx.invalid("start, limit and delta give no element count") }
            guard count < 0x1p62 else { throw ExecutorError.tooLarge(ctx.node, [Int.max], start.dtype, limit: ctx.options.maxTensorBytes) }
            let n = max(0, Int(count))
            try ctx.checkOutput(start.dtype, [n])
            // Computed as start + i·delta (the spec's iterative sum, without accumulating error).
            let values = (0..<n).map { T.fromDouble(s.asDouble + Double($0) * d.asDouble) }
            return Tensor(shape: [n], values: values)
        }
    }

    /// `Range(start, limit, delta)`: ceil((limit - start) / delta) elements.
    static func range(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, _ in
            guard let s = inputs[0], let l = inputs[1], let d = inputs[2], s.count == 1, l.count == 1, d.count == 1,
                  s.dtype == l.dtype, s.dtype == d.dtype else { throw ctx.invalid("start, limit and delta must be scalars of one type") }
            guard d.scalarAsDouble(at: 0) != 0 else { throw ctx.invalid("delta is 0") }
            guard let r = try RangeVisitor(start: s, limit: l, delta: d, ctx: ctx)(s.dtype) else { throw ctx.unsupported("element type \(s.dtype)") }
            return [r]
        }
    }

    /// A tensor of `dtype` with ones at the given flat indices and zeros elsewhere.
    static func ones(_ dtype: DType, shape: [Int], at indices: [Int], _ ctx: KernelContext) throws -> Tensor {
        var f = [Float](repeating: 0, count: Tensor.elementCount(shape))
        for i in indices { f[i] = 1 }
        return try CastKernels.convert(Tensor(shape: shape, floats: f), to: dtype, ctx)
    }

    /// HannWindow, HammingWindow, BlackmanWindow (opset 17): `size` points of
    /// Σ a_k·cos(2πk·n/N) with N = size (`periodic`, the default) or size − 1, of
    /// `output_datatype` (default float). Hann: a = (0.5, −0.5); Hamming: (25/46, −21/46);
    /// Blackman: (0.42, −0.5, 0.08).
    static func window(_ a: [Double]) -> KernelFactory {
        { ctx in
            let periodic = ctx.int("periodic", 1) != 0
            guard let dtype = DType(rawValue: Int32(ctx.int("output_datatype", 1))) else { throw ctx.unsupported("output_datatype \(ctx.int("output_datatype", 1))") }
            return ClosureKernel { inputs, _ in
                guard let s = inputs[0], s.count == 1 else { throw ctx.invalid("size must be a scalar") }
                let size = Int(s.scalarAsDouble(at: 0))
                guard size >= 0 else { throw ctx.invalid("size \(size) is negative") }
                let n = Double(periodic ? size : size - 1)
                let w = (0..<size).map { i in Float(a.enumerated().reduce(0.0) { $0 + $1.element * cos(2 * Double.pi * Double($1.offset) * Double(i) / n) }) }
                return [try CastKernels.convert(Tensor(shape: [size], floats: w), to: dtype, ctx)]
            }
        }
    }

    /// `MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz,
    /// upper_edge_hertz)` (opset 17): [dft_length/2 + 1, num_mel_bins] triangular filters on
    /// the mel scale (2595·log10(1 + f/700)), num_mel_bins + 2 edges evenly spaced in mel
    /// between the two frequencies, each edge at spectrogram bin ⌊(dft_length + 1)·f / rate⌋.
    static func melWeightMatrix(_ ctx: KernelContext) throws -> Kernel {
        guard let dtype = DType(rawValue: Int32(ctx.int("output_datatype", 1))) else { throw ctx.unsupported("output_datatype") }
        return ClosureKernel { inputs, _ in
            let values = inputs.prefix(5).compactMap { $0.flatMap { $0.count > 0 ? $0.scalarAsDouble(at: 0) : nil } }
            guard values.count == 5 else {
                throw ctx.invalid("num_mel_bins, dft_length, sample_rate, lower_edge_hertz and upper_edge_hertz are required")
            }
            let (mels, n, rate, lo, hi) = (Int(values[0]), Int(values[1]), values[2], values[3], values[4])
            guard mels > 0, n > 0, rate > 0 else { throw ctx.invalid("num_mel_bins, dft_length and sample_rate must be positive") }
            let bins = n / 2 + 1
            let loMel = 2595 * log10(1 + lo / 700), hiMel = 2595 * log10(1 + hi / 700)
            let step = (hiMel - loMel) / Double(mels + 2)
            let edges = (0..<(mels + 2)).map { k -> Int in
                let f = 700 * (pow(10, (Double(k) * step + loMel) / 2595) - 1)
                return Int((Double(n + 1) * f / rate).rounded(.down))
            }
            var w = [Float](repeating: 0, count: bins * mels)
            func set(_ j: Int, _ i: Int, _ v: Double) { if j >= 0 && j < bins { w[j * mels + i] = Float(v) } }
            for i in 0..<mels {
                let (l, c, r) = (edges[i], edges[i + 1], edges[i + 2])
                if c == l { set(c, i, 1) } else { for j in l...max(l, c) { set(j, i, Double(j - l) / Double(c - l)) } }
                if r > c { for j in c..<r { set(j, i, Double(r - j) / Double(r - c)) } }
            }
            return [try CastKernels.convert(Tensor(shape: [bins, mels], floats: w), to: dtype, ctx)]
        }
    }

    /// `EyeLike(input)`: ones on diagonal k of a 2-D tensor, of `dtype` (default: input type).
    static func eyeLike(_ ctx: KernelContext) throws -> Kernel {
        let k = ctx.int("k", 0)
        let dtype = ctx.int("dtype").flatMap { DType(rawValue: Int32($0)) }
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.rank == 2 else { throw ctx.invalid("input must be 2-D") }
            let (r, c) = (x.shape[0], x.shape[1])
            let idx = (0..<r).compactMap { i in i + k >= 0 && i + k < c ? i * c + i + k : nil }
            return [try ones(ComputeType.internalType(dtype ?? x.dtype), shape: x.shape, at: idx, ctx)]
        }
    }

    /// `Trilu(input, k?)`: keeps the upper (j - i >= k) or lower (j - i <= k) triangle of the
    /// last two dimensions and zeroes the rest.
    static func trilu(_ ctx: KernelContext) throws -> Kernel {
        let upper = ctx.int("upper", 1) != 0
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.rank >= 2 else { throw ctx.invalid("input must have rank >= 2") }
            try Movement.requireFixedWidth(x, ctx)
            let k = inputs.count > 1 ? inputs[1].map { Int($0.scalarAsDouble(at: 0)) } ?? 0 : 0
            let (r, c) = (x.shape[x.rank - 2], x.shape[x.rank - 1])
            let out = Tensor(dtype: x.dtype, shape: x.shape, storage: TensorStorage(copying: x.bytes))
            let esize = x.dtype.bitWidth / 8
            let mats = r * c == 0 ? 0 : x.count / (r * c)
            for m in 0..<mats {
                for i in 0..<r {
                    let row = out.storage.pointer + (m * r * c + i * c) * esize
                    for j in 0..<c where upper ? j - i < k : j - i > k {
                        (row + j * esize).initializeMemory(as: UInt8.self, repeating: 0, count: esize)
                    }
                }
            }
            return [out]
        }
    }

    /// `OneHot(indices, depth, values)`: `values[1]` where the index along `axis` equals the
    /// (negative-wrapped) index, `values[0]` elsewhere.
    static func oneHot(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", -1)
        return ClosureKernel { inputs, env in
            guard let ind = inputs[0], let dep = inputs[1], let vals = inputs[2], vals.count == 2, dep.count == 1 else {
                throw ctx.invalid("indices, depth and a two-element values are required")
            }
            try Movement.requireFixedWidth(vals, ctx)
            let depth = Int(dep.scalarAsDouble(at: 0))
            let rank = ind.rank + 1
            guard let a = Shapes.axis(axis, rank: rank), depth >= 0 else { throw ctx.invalid("axis \(axis) is out of range for rank \(rank)") }
            var shape = ind.shape
            shape.insert(depth, at: a)
            try ctx.checkOutput(vals.dtype, shape)
            let inner = ind.shape[a...].reduce(1, *)
            // Select between the two values by a per-element 0/1 code.
            var code = [UInt8](repeating: 0, count: Tensor.elementCount(shape))
            for i in 0..<ind.count {
                var v = Int(ind.scalarAsDouble(at: i))
                if v < 0 { v += depth }
                guard v >= 0 && v < depth else { continue }
                let o = i / inner, n = i % inner
                code[(o * depth + v) * inner + n] = 1
            }
            let cond = Tensor(shape: shape, values: code).retyped(.bool)
            let on = Strided.gather(vals, shape: [], strides: [], base: 1, threads: 1)
            let off = Strided.gather(vals, shape: [], strides: [], base: 0, threads: 1)
            guard let r = Broadcast.select(cond, on, off, threads: env.threads) else { throw ctx.invalid("internal broadcast failure") }
            return [r]
        }
    }
}
