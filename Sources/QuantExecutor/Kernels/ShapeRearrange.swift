import Foundation
import QuantCore
import QuantIR

/// CenterCropPad and ReverseSequence: element rearrangements of any fixed-width type, each
/// output element copied from one input element (or zero). Col2Im, which sums.
enum Rearrange {
    /// `Col2Im(input[N, C·∏block, L], image_shape, block_shape)` (opset 18): the inverse of
    /// im2col. Block position l (row-major over the grid of positions the image, `pads`,
    /// `strides` and `dilations` allow) and block offset k add input[n, c·∏block + k, l] at
    /// image coordinate position·stride − pad_begin + k·dilation, when inside the image.
    static func col2Im(_ ctx: KernelContext) throws -> Kernel {
        let dilAttr = ctx.ints("dilations"), padAttr = ctx.ints("pads"), strideAttr = ctx.ints("strides")
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.rank == 3, x.dtype.isFloatingPoint,
                  let image = try ShapeKernels.ints(inputs.count > 1 ? inputs[1] : nil, "image_shape", ctx),
                  let block = try ShapeKernels.ints(inputs.count > 2 ? inputs[2] : nil, "block_shape", ctx), image.count == block.count else {
                throw ctx.invalid("input [N, C·∏block, L], image_shape and block_shape of one length are required")
            }
            let r = image.count, kSize = block.reduce(1, *)
            let dil = dilAttr ?? [Int](repeating: 1, count: r), strides = strideAttr ?? [Int](repeating: 1, count: r)
            let pads = padAttr ?? [Int](repeating: 0, count: 2 * r)
            guard dil.count == r, strides.count == r, pads.count == 2 * r, kSize > 0, x.shape[1] % kSize == 0 else {
                throw ctx.invalid("dilations, pads, strides or block_shape do not fit")
            }
            let grid = (0..<r).map { a -> Int in
                let span = image[a] + pads[a] + pads[r + a] - dil[a] * (block[a] - 1) - 1
                return span / strides[a] + 1
            }
            guard grid.reduce(1, *) == x.shape[2] else { throw ctx.invalid("L = \(x.shape[2]) does not match the \(grid) block positions") }
            let (n, c, l) = (x.shape[0], x.shape[1] / kSize, x.shape[2])
            let v = x.doubles(), plane = image.reduce(1, *)
            var out = [Double](repeating: 0, count: n * c * plane)
            func coords(_ i: Int, _ dims: [Int]) -> [Int] {
                var rest = i, cs = [Int](repeating: 0, count: dims.count)
                for a in stride(from: dims.count - 1, through: 0, by: -1) { cs[a] = rest % dims[a]; rest /= dims[a] }
                return cs
            }
            for k in 0..<kSize {
                let kc = coords(k, block)
                for p in 0..<l {
                    let pc = coords(p, grid)
                    var at = 0, inside = true
                    for a in 0..<r {
                        let y = pc[a] * strides[a] - pads[a] + kc[a] * dil[a]
                        if y < 0 || y >= image[a] { inside = false; break }
                        at = at * image[a] + y
                    }
                    guard inside else { continue }
                    for b in 0..<n { for ch in 0..<c { out[(b * c + ch) * plane + at] += v[(b * x.shape[1] + ch * kSize + k) * l + p] } }
                }
            }
            return [try CastKernels.convert(Tensor(shape: [n, c] + image, floats: out.map { Float($0) }), to: x.dtype, ctx)]
        }
    }

    /// `out` of `shape` and x's type, element o = x[source(coordinates of o)] or 0 (nil).
    static func map(_ x: Tensor, to shape: [Int], _ ctx: KernelContext, source: ([Int]) -> [Int]?) throws -> Tensor {
        guard x.dtype != .string, x.dtype.bitWidth % 8 == 0 else { throw ctx.unsupported("element type \(x.dtype)") }
        let size = x.dtype.bitWidth / 8
        let out = Tensor(dtype: x.dtype, shape: shape)
        let count = out.count
        guard count > 0 else { return out }
        memset(out.storage.pointer, 0, out.byteCount)
        var inStrides = [Int](repeating: 1, count: x.rank)
        for k in stride(from: x.rank - 2, through: 0, by: -1) { inStrides[k] = inStrides[k + 1] * x.shape[k + 1] }
        var c = [Int](repeating: 0, count: shape.count)
        for o in 0..<count {
            if let s = source(c) {
                let i = zip(s, inStrides).reduce(0) { $0 + $1.0 * $1.1 }
                (out.storage.pointer + o * size).copyMemory(from: x.storage.pointer + i * size, byteCount: size)
            }
            var k = shape.count - 1
            while k >= 0 {
                c[k] += 1
                if c[k] < shape[k] { break }
                c[k] = 0
                k -= 1
            }
        }
        return out
    }

    /// `CenterCropPad(input, shape)` (opset 18): along `axes` (default all), a centred window of
    /// the new size; a longer axis loses ⌊(d − s)/2⌋ leading elements, a shorter one gets
    /// ⌊(s − d)/2⌋ leading zeros.
    static func centerCropPad(_ ctx: KernelContext) throws -> Kernel {
        let axesAttr = ctx.ints("axes")
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let sizes = try ShapeKernels.ints(inputs.count > 1 ? inputs[1] : nil, "shape", ctx) else {
                throw ctx.invalid("input and shape are required")
            }
            let axes = try ShapeKernels.axes(axesAttr ?? Array(0..<x.rank), rank: x.rank, ctx)
            guard axes.count == sizes.count, sizes.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("shape \(sizes) does not fit axes \(axes)") }
            var shape = x.shape, shift = [Int](repeating: 0, count: x.rank)
            for (a, s) in zip(axes, sizes) {
                shape[a] = s
                shift[a] = s < x.shape[a] ? (x.shape[a] - s) / 2 : -((s - x.shape[a]) / 2)
            }
            return [try map(x, to: shape, ctx) { c in
                var i = c
                for k in 0..<c.count {
                    i[k] = c[k] + shift[k]
                    if i[k] < 0 || i[k] >= x.shape[k] { return nil }
                }
                return i
            }]
        }
    }

    /// `ReverseSequence(input, sequence_lens)` (opset 10): for each batch entry b, the first
    /// sequence_lens[b] steps along `time_axis` reversed, the rest copied.
    static func reverseSequence(_ ctx: KernelContext) throws -> Kernel {
        let batchAxis = ctx.int("batch_axis", 1), timeAxis = ctx.int("time_axis", 0)
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let lens = inputs.count > 1 ? inputs[1]?.int64s().map(Int.init) : nil else {
                throw ctx.invalid("input and sequence_lens are required")
            }
            guard x.rank >= 2, [batchAxis, timeAxis].allSatisfy({ (0...1).contains($0) }), batchAxis != timeAxis,
                  lens.count == x.shape[batchAxis], lens.allSatisfy({ $0 >= 0 && $0 <= x.shape[timeAxis] }) else {
                throw ctx.invalid("batch_axis \(batchAxis), time_axis \(timeAxis) or sequence_lens \(lens) do not fit \(x.shape)")
            }
            return [try map(x, to: x.shape, ctx) { c in
                var i = c
                let n = lens[c[batchAxis]]
                if c[timeAxis] < n { i[timeAxis] = n - 1 - c[timeAxis] }
                return i
            }]
        }
    }
}
