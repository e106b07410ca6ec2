import Foundation
import QuantCore
import QuantIR

/// Data movement: Transpose, Expand, Tile, Concat, Split, Slice, Pad, DepthToSpace,
/// SpaceToDepth. All work on any fixed-width element type.
enum Movement {
    static func requireFixedWidth(_ x: Tensor, _ ctx: KernelContext) throws {
        guard x.dtype != .string, x.dtype.bitWidth >= 8 else { throw ctx.unsupported("element type \(x.dtype)") }
    }

    /// `Transpose(data, perm)`; no perm reverses the axes.
    static func transpose(_ ctx: KernelContext) throws -> Kernel {
        let perm = ctx.ints("perm")
        return ClosureKernel { inputs, env in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            try requireFixedWidth(x, ctx)
            let p = perm ?? Array((0..<x.rank).reversed())
            guard p.count == x.rank, Set(p) == Set(0..<x.rank) else { throw ctx.invalid("perm \(p) does not permute rank \(x.rank)") }
            return [Strided.transpose(x, perm: p, threads: env.threads)]
        }
    }

    /// `Expand(input, shape)`: bidirectional broadcast of input and shape.
    static func expand(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], let s = try ShapeKernels.ints(inputs[1], "shape", ctx) else { throw ctx.invalid("two inputs are required") }
            try requireFixedWidth(x, ctx)
            guard let out = Shapes.broadcast([x.shape, s]) else { throw ctx.invalid("\(x.shape) does not broadcast to \(s)") }
            try ctx.checkOutput(x.dtype, out)
            return [Strided.gather(x, shape: out, strides: Shapes.broadcastStrides(x.shape, to: out), threads: env.threads)]
        }
    }

    /// `Tile(input, repeats)`: viewed as [r0, d0, r1, d1, ...] with zero strides on repeats.
    static func tile(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], let reps = try ShapeKernels.ints(inputs[1], "repeats", ctx) else { throw ctx.invalid("two inputs are required") }
            try requireFixedWidth(x, ctx)
            guard reps.count == x.rank, reps.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("repeats \(reps) do not fit rank \(x.rank)") }
            try ctx.checkOutput(x.dtype, zip(reps, x.shape).flatMap { [$0, $1] })
            let st = Shapes.strides(x.shape)
            var shape: [Int] = [], strides: [Int] = []
            for d in 0..<x.rank {
                shape += [reps[d], x.shape[d]]
                strides += [0, st[d]]
            }
            let t = Strided.gather(x, shape: shape, strides: strides, threads: env.threads)
            return [ShapeKernels.view(t, zip(reps, x.shape).map { $0 * $1 })]
        }
    }

    /// `Concat(inputs..., axis)`: block copies.
    static func concat(_ ctx: KernelContext) throws -> Kernel {
        guard let axis = ctx.int("axis") else { throw ctx.invalid("attribute 'axis' is required") }
        return ClosureKernel { inputs, env in
            let xs = inputs.compactMap { $0 }
            guard let first = xs.first else { throw ctx.invalid("at least one input is required") }
            try requireFixedWidth(first, ctx)
            guard let a = Shapes.axis(axis, rank: first.rank) else { throw ctx.invalid("axis \(axis) is out of range for rank \(first.rank)") }
            var shape = first.shape
            shape[a] = 0
            for x in xs {
                guard x.dtype == first.dtype, x.rank == first.rank,
                      (0..<x.rank).allSatisfy({ $0 == a || x.shape[$0] == first.shape[$0] }) else {
                    throw ctx.invalid("inputs \(xs.map(\.shape)) do not concatenate on axis \(a)")
                }
                shape[a] += x.shape[a]
            }
            let esize = first.dtype.bitWidth / 8
            let outer = shape[..<a].reduce(1, *)
            let innerOut = shape[a...].reduce(1, *) * esize
            let out = Tensor(dtype: first.dtype, shape: shape, storage: TensorStorage(uninitialized: outer * innerOut))
            var offset = 0
            for x in xs {
                let chunk = x.shape[a...].reduce(1, *) * esize
                let src = x.storage.pointer, dst = out.storage.pointer + offset
                parallelFor(outer, threads: env.threads, grain: max(1, 65536 / max(chunk, 1))) { r in
                    for o in r { (dst + o * innerOut).copyMemory(from: src + o * chunk, byteCount: chunk) }
                }
                offset += chunk
            }
            return [out]
        }
    }

    /// `Split(input, split?)`: sizes from the attribute (< 13), the input (>= 13), or equal
    /// parts (`num_outputs` from opset 18; the last part may be smaller).
    static func split(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", 0)
        let attr = ctx.opset < 13 ? ctx.ints("split") : nil
        let numOutputs = ctx.int("num_outputs") ?? ctx.node.outputs.count
        return ClosureKernel { inputs, env in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            try requireFixedWidth(x, ctx)
            guard let a = Shapes.axis(axis, rank: x.rank) else { throw ctx.invalid("axis \(axis) is out of range for rank \(x.rank)") }
            let dim = x.shape[a]
            var sizes = try attr ?? ShapeKernels.ints(inputs.count > 1 ? inputs[1] : nil, "split", ctx) ?? []
            if sizes.isEmpty {
                let n = max(numOutputs, 1)
                let part = (dim + n - 1) / n
                sizes = (0..<n).map { min(part, max(0, dim - $0 * part)) }
            }
            guard sizes.reduce(0, +) == dim, sizes.allSatisfy({ $0 >= 0 }) else {
                throw ctx.invalid("split \(sizes) does not sum to dimension \(dim)")
            }
            let esize = x.dtype.bitWidth / 8
            let outer = x.shape[..<a].reduce(1, *)
            let inner = x.shape[(a + 1)...].reduce(1, *) * esize
            var start = 0
            var outs: [Tensor?] = []
            for s in sizes {
                var shape = x.shape
                shape[a] = s
                let chunk = s * inner
                let out = Tensor(dtype: x.dtype, shape: shape, storage: TensorStorage(uninitialized: outer * chunk))
                let src = x.storage.pointer + start * inner, dst = out.storage.pointer
                parallelFor(outer, threads: env.threads, grain: max(1, 65536 / max(chunk, 1))) { r in
                    for o in r { (dst + o * chunk).copyMemory(from: src + o * dim * inner, byteCount: chunk) }
                }
                start += s
                outs.append(out)
            }
            return outs
        }
    }

    /// `Slice`: starts/ends/axes/steps as attributes before opset 10 and inputs from 10.
    /// Indices clamp as in numpy; negative steps walk backwards.
    static func slice(_ ctx: KernelContext) throws -> Kernel {
        let attrs = ctx.opset < 10 ? (ctx.ints("starts"), ctx.ints("ends"), ctx.ints("axes")) : nil
        return ClosureKernel { inputs, env in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            try requireFixedWidth(x, ctx)
            let starts: [Int], ends: [Int], axesRaw: [Int]?, steps: [Int]?
            if let attrs {
                guard let s = attrs.0, let e = attrs.1 else { throw ctx.invalid("starts and ends are required") }
                (starts, ends, axesRaw, steps) = (s, e, attrs.2, nil)
            } else {
                guard let s = try ShapeKernels.ints(inputs[1], "starts", ctx), let e = try ShapeKernels.ints(inputs[2], "ends", ctx) else {
                    throw ctx.invalid("starts and ends are required")
                }
                starts = s
                ends = e
                axesRaw = try ShapeKernels.ints(inputs.count > 3 ? inputs[3] : nil, "axes", ctx)
                steps = try ShapeKernels.ints(inputs.count > 4 ? inputs[4] : nil, "steps", ctx)
            }
            let axes = try ShapeKernels.axes(axesRaw ?? Array(0..<starts.count), rank: x.rank, ctx)
            guard starts.count == axes.count, ends.count == axes.count, steps.map({ $0.count == axes.count }) ?? true else {
                throw ctx.invalid("starts, ends, axes and steps differ in length")
            }
            let st = Shapes.strides(x.shape)
            var shape = x.shape, strides = st, base = 0
            for (k, a) in axes.enumerated() {
                let dim = x.shape[a]
                let step = steps?[k] ?? 1
                guard step != 0 else { throw ctx.invalid("slice step is 0") }
                var s = starts[k], e = ends[k]
                if s < 0 { s += dim }
                if e < 0 { e += dim }
                let count: Int
                if step > 0 {
                    s = min(max(s, 0), dim)
                    e = min(max(e, 0), dim)
                    count = e > s ? (e - s + step - 1) / step : 0
                } else {
                    s = min(max(s, 0), dim - 1)
                    e = min(max(e, -1), dim - 1)
                    count = s > e ? (s - e - step - 1) / -step : 0
                }
                shape[a] = count
                strides[a] = st[a] * step
                if count > 0 { base += s * st[a] }
            }
            return [Strided.gather(x, shape: shape, strides: strides, base: base, threads: env.threads)]
        }
    }

    /// `DepthToSpace`: DCR (depth-column-row, default) or CRD ordering of the channel blocks.
    static func depthToSpace(_ ctx: KernelContext) throws -> Kernel {
        guard let b = ctx.int("blocksize"), b > 0 else { throw ctx.invalid("blocksize is required") }
        let crd = ctx.string("mode", "DCR") == "CRD"
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], x.rank == 4, x.shape[1] % (b * b) == 0 else { throw ctx.invalid("input must be [N, C·b², H, W]") }
            try requireFixedWidth(x, ctx)
            let (n, c, h, w) = (x.shape[0], x.shape[1] / (b * b), x.shape[2], x.shape[3])
            let t: Tensor
            if crd {
                t = Strided.transpose(ShapeKernels.view(x, [n, c, b, b, h, w]), perm: [0, 1, 4, 2, 5, 3], threads: env.threads)
            } else {
                t = Strided.transpose(ShapeKernels.view(x, [n, b, b, c, h, w]), perm: [0, 3, 4, 1, 5, 2], threads: env.threads)
            }
            return [ShapeKernels.view(t, [n, c, h * b, w * b])]
        }
    }

    /// `SpaceToDepth`: output channel (bh·b + bw)·C + c (DCR, default) or c·b² + bh·b + bw (CRD).
    static func spaceToDepth(_ ctx: KernelContext) throws -> Kernel {
        guard let b = ctx.int("blocksize"), b > 0 else { throw ctx.invalid("blocksize is required") }
        let perm = ctx.string("mode", "DCR") == "CRD" ? [0, 1, 3, 5, 2, 4] : [0, 3, 5, 1, 2, 4]
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], x.rank == 4, x.shape[2] % b == 0, x.shape[3] % b == 0 else { throw ctx.invalid("input must be [N, C, H·b, W·b]") }
            try requireFixedWidth(x, ctx)
            let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2] / b, x.shape[3] / b)
            let t = Strided.transpose(ShapeKernels.view(x, [n, c, h, b, w, b]), perm: perm, threads: env.threads)
            return [ShapeKernels.view(t, [n, c * b * b, h, w])]
        }
    }
}
