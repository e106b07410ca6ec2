import Foundation
import QuantCore
import QuantIR

/// CenterCropPad and ReverseSequence: element rearrangements of any fixed-width type, each
/// output element copied from one input element (or zero).
enum Rearrange {
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
