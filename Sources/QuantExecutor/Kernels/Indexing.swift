import QuantCore
import QuantIR

/// Gathers, scatters and index-producing operators. Negative indices count from the end of
/// their axis; out-of-range indices are rejected with QK3004.
enum IndexingKernels {
    static let all: [String: KernelFactory] = [
        "Gather": gather, "GatherElements": gatherElements, "GatherND": gatherND,
        "ScatterND": Scatter.nd, "ScatterElements": Scatter.elements, "Scatter": Scatter.elements,
        "TopK": Selection.topK, "NonMaxSuppression": Selection.nonMaxSuppression, "Unique": Selection.unique, "ArgMax": Selection.arg(max: true), "ArgMin": Selection.arg(max: false),
        "CumSum": Selection.cumulative(product: false), "CumProd": Selection.cumulative(product: true), "NonZero": Selection.nonZero, "Compress": Selection.compress,
    ]

    /// Index `v` wrapped into `0..<n`, or an error.
    @inline(__always)
    static func wrap(_ v: Int, _ n: Int, _ ctx: KernelContext) throws -> Int {
        let i = v < 0 ? v + n : v
        guard i >= 0 && i < n else { throw ctx.invalid("index \(v) is out of range for a dimension of \(n)") }
        return i
    }

    static func indices(_ t: Tensor?, _ ctx: KernelContext) throws -> [Int] {
        guard let t, t.dtype == .int64 || t.dtype == .int32 else { throw ctx.invalid("indices must be int32 or int64") }
        return t.intValues()
    }

    /// `Gather(data, indices, axis)`: whole slices of `data` along `axis`, one per index.
    static func gather(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", 0)
        return ClosureKernel { inputs, env in
            guard let x = inputs[0] else { throw ctx.invalid("data is missing") }
            try Movement.requireFixedWidth(x, ctx)
            let idxT = inputs[1]
            let idx = try indices(idxT, ctx)
            guard let a = Shapes.axis(axis, rank: x.rank) else { throw ctx.invalid("axis \(axis) is out of range for rank \(x.rank)") }
            let n = x.shape[a]
            let wrapped = try idx.map { try wrap($0, n, ctx) }
            let esize = x.dtype.bitWidth / 8
            let outer = x.shape[..<a].reduce(1, *)
            let block = x.shape[(a + 1)...].reduce(1, *) * esize
            let shape = Array(x.shape[..<a]) + idxT!.shape + Array(x.shape[(a + 1)...])
            let out = Tensor(dtype: x.dtype, shape: shape, storage: TensorStorage(uninitialized: outer * wrapped.count * block))
            let src = x.storage.pointer, dst = out.storage.pointer
            let k = wrapped.count
            parallelFor(outer * k, threads: env.threads, grain: max(1, 32768 / max(block, 1))) { r in
                for t in r {
                    let o = t / k, j = t % k
                    (dst + t * block).copyMemory(from: src + (o * n + wrapped[j]) * block, byteCount: block)
                }
            }
            return [out]
        }
    }

    /// `GatherElements(data, indices, axis)`: out[i] = data[i with i[axis] = indices[i]].
    static func gatherElements(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", 0)
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], let it = inputs[1] else { throw ctx.invalid("two inputs are required") }
            try Movement.requireFixedWidth(x, ctx)
            let idx = try indices(it, ctx)
            guard let a = Shapes.axis(axis, rank: x.rank), it.rank == x.rank else { throw ctx.invalid("axis \(axis) or index rank does not fit \(x.shape)") }
            let n = x.shape[a]
            let wrapped = try idx.map { try wrap($0, n, ctx) }
            var st = Shapes.strides(x.shape)
            let axisStride = st[a]
            st[a] = 0
            let offsets = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(it.count, 1))
            defer { offsets.deallocate() }
            Strided.forEach(it.shape, [st], threads: 1, grain: Int.max) { i, off in offsets[i] = off[0] + wrapped[i] * axisStride }
            return [copyElements(x, offsets: offsets, shape: it.shape)]
        }
    }

    /// A tensor of `shape` whose element i is element `offsets[i]` of `x`.
    static func copyElements(_ x: Tensor, offsets: UnsafeMutableBufferPointer<Int>, shape: [Int]) -> Tensor {
        let out = Tensor(dtype: x.dtype, shape: shape, storage: TensorStorage(uninitialized: x.dtype.byteCount(elements: Tensor.elementCount(shape))))
        let esize = x.dtype.bitWidth / 8
        for i in 0..<out.count {
            (out.storage.pointer + i * esize).copyMemory(from: x.storage.pointer + offsets[i] * esize, byteCount: esize)
        }
        return out
    }

    /// `GatherND(data, indices, batch_dims)`: slices addressed by the last index dimension.
    static func gatherND(_ ctx: KernelContext) throws -> Kernel {
        let b = ctx.int("batch_dims", 0)
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let it = inputs[1], it.rank >= 1 else { throw ctx.invalid("two inputs are required") }
            try Movement.requireFixedWidth(x, ctx)
            let idx = try indices(it, ctx)
            let k = it.shape[it.rank - 1]
            guard b >= 0, b + k <= x.rank, b < it.rank, Array(x.shape[..<b]) == Array(it.shape[..<b]) else {
                throw ctx.invalid("indices \(it.shape) do not address data \(x.shape) with batch_dims \(b)")
            }
            let esize = x.dtype.bitWidth / 8
            let batches = x.shape[..<b].reduce(1, *)
            let batchSize = x.shape[b...].reduce(1, *)
            let sliceShape = Array(x.shape[(b + k)...])
            let block = sliceShape.reduce(1, *)
            let st = Shapes.strides(Array(x.shape[b...]))
            let tuples = it.count / max(k, 1) / max(batches, 1)
            let shape = Array(it.shape.dropLast()) + sliceShape
            let out = Tensor(dtype: x.dtype, shape: shape, storage: TensorStorage(uninitialized: x.dtype.byteCount(elements: Tensor.elementCount(shape))))
            for bi in 0..<batches {
                for t in 0..<tuples {
                    var off = bi * batchSize
                    for j in 0..<k { off += try wrap(idx[(bi * tuples + t) * k + j], x.shape[b + j], ctx) * st[j] }
                    (out.storage.pointer + (bi * tuples + t) * block * esize).copyMemory(from: x.storage.pointer + off * esize, byteCount: block * esize)
                }
            }
            return [out]
        }
    }
}
