import QuantCore
import QuantIR

/// ScatterND and ScatterElements (and the deprecated Scatter): a copy of `data` with the
/// `updates` written (reduction none) or combined (add, mul, max, min) at the indexed places,
/// in index order.
enum Scatter {
    enum Reduction: String { case none, add, mul, max, min }

    static func reduction(_ ctx: KernelContext) throws -> Reduction {
        let r = ctx.string("reduction", "none")
        guard let v = Reduction(rawValue: r) else { throw ctx.invalid("unknown reduction '\(r)'") }
        return v
    }

    /// Combines `block` elements of `updates` at `src` into `out` at `dst`, for each pair.
    struct Apply: ScalarVisitor {
        let out: Tensor, updates: Tensor, pairs: [(dst: Int, src: Int)], block: Int, reduction: Reduction
        func visit<T: ExecScalar>(_: T.Type) -> Void {
            let o = out.storage.pointer.assumingMemoryBound(to: T.self)
            let u = updates.storage.pointer.assumingMemoryBound(to: T.self)
            for (d, s) in pairs {
                for j in 0..<block {
                    let a = o[d + j], b = u[s + j]
                    switch reduction {
                    case .none: o[d + j] = b
                    case .add: o[d + j] = a.wrappingAdd(b)
                    case .mul: o[d + j] = a.wrappingMul(b)
                    case .max: o[d + j] = Swift.max(a, b)
                    case .min: o[d + j] = Swift.min(a, b)
                    }
                }
            }
        }
    }

    static func run(_ x: Tensor, _ updates: Tensor, _ pairs: [(dst: Int, src: Int)], block: Int, _ r: Reduction, _ ctx: KernelContext) throws -> Tensor {
        guard updates.dtype == x.dtype else { throw ctx.invalid("updates type \(updates.dtype) differs from data type \(x.dtype)") }
        try Movement.requireFixedWidth(x, ctx)
        let out = Tensor(dtype: x.dtype, shape: x.shape, storage: TensorStorage(copying: x.bytes))
        if r == .none {
            let esize = x.dtype.bitWidth / 8
            for (d, s) in pairs {
                (out.storage.pointer + d * esize).copyMemory(from: updates.storage.pointer + s * esize, byteCount: block * esize)
            }
            return out
        }
        guard try Apply(out: out, updates: updates, pairs: pairs, block: block, reduction: r)(x.dtype) != nil else {
            throw ctx.unsupported("reduction on \(x.dtype)")
        }
        return out
    }

    /// `ScatterND(data, indices, updates)`.
    static func nd(_ ctx: KernelContext) throws -> Kernel {
        let r = try reduction(ctx)
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let it = inputs[1], let u = inputs[2], it.rank >= 1 else { throw ctx.invalid("three inputs are required") }
            let idx = try IndexingKernels.indices(it, ctx)
            let k = it.shape[it.rank - 1]
            guard k <= x.rank, Array(u.shape) == Array(it.shape.dropLast()) + Array(x.shape[k...]) else {
                throw ctx.invalid("updates \(u.shape) do not fit indices \(it.shape) into data \(x.shape)")
            }
            let st = Shapes.strides(x.shape)
            let block = x.shape[k...].reduce(1, *)
            let tuples = k == 0 ? 1 : idx.count / k
            var pairs: [(dst: Int, src: Int)] = []
            for t in 0..<tuples {
                var off = 0
                for j in 0..<k { off += try IndexingKernels.wrap(idx[t * k + j], x.shape[j], ctx) * st[j] }
                pairs.append((off, t * block))
            }
            return [try run(x, u, pairs, block: block, r, ctx)]
        }
    }

    /// `ScatterElements(data, indices, updates, axis)`.
    static func elements(_ ctx: KernelContext) throws -> Kernel {
        let r = try reduction(ctx)
        let axis = ctx.int("axis", 0)
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let it = inputs[1], let u = inputs[2] else { throw ctx.invalid("three inputs are required") }
            let idx = try IndexingKernels.indices(it, ctx)
            guard let a = Shapes.axis(axis, rank: x.rank), it.rank == x.rank, u.shape == it.shape else {
                throw ctx.invalid("indices \(it.shape) and updates \(u.shape) do not fit data \(x.shape) on axis \(axis)")
            }
            var st = Shapes.strides(x.shape)
            let axisStride = st[a]
            st[a] = 0
            var base = [Int](repeating: 0, count: it.count)
            Strided.forEach(it.shape, [st], threads: 1, grain: Int.max) { i, off in base[i] = off[0] }
            let pairs = try (0..<it.count).map { i in (dst: base[i] + (try IndexingKernels.wrap(idx[i], x.shape[a], ctx)) * axisStride, src: i) }
            return [try run(x, u, pairs, block: 1, r, ctx)]
        }
    }
}
