import Foundation
import QuantCore
import QuantIR

extension Movement {
    /// `Pad`: pads/value/mode attributes before opset 11; pads, constant_value and (opset 18)
    /// axes inputs from 11. Modes constant, reflect (mirror without the edge), edge, wrap.
    /// Negative pads crop.
    static func pad(_ ctx: KernelContext) throws -> Kernel {
        let mode = ctx.string("mode", "constant")
        guard ["constant", "reflect", "edge", "wrap"].contains(mode) else { throw ctx.invalid("unknown mode '\(mode)'") }
        let attrPads = ctx.opset < 11 ? ctx.ints("pads") : nil
        let attrValue = ctx.opset < 11 ? ctx.float("value", 0) : nil
        return ClosureKernel { inputs, env in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            try requireFixedWidth(x, ctx)
            guard let pads = try attrPads ?? ShapeKernels.ints(inputs.count > 1 ? inputs[1] : nil, "pads", ctx) else {
                throw ctx.invalid("pads are required")
            }
            let axes = try ShapeKernels.axes(
                ShapeKernels.ints(inputs.count > 3 ? inputs[3] : nil, "axes", ctx) ?? Array(0..<x.rank), rank: x.rank, ctx)
            guard pads.count == 2 * axes.count else { throw ctx.invalid("pads \(pads) do not fit \(axes.count) axes") }
            var begin = [Int](repeating: 0, count: x.rank), end = begin
            for (k, a) in axes.enumerated() {
                begin[a] = pads[k]
                end[a] = pads[k + axes.count]
            }
            var value = Tensor(dtype: x.dtype, shape: [1])
            if let v = attrValue {
                value = try CastKernels.convert(Tensor(shape: [1], floats: [v]), to: x.dtype, ctx)
            } else if inputs.count > 2, let v = inputs[2], v.count >= 1 {
                value = try CastKernels.convert(ShapeKernels.view(v, [v.count]), to: x.dtype, ctx)
            }
            let shape = (0..<x.rank).map { x.shape[$0] + begin[$0] + end[$0] }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("pads \(pads) crop more than \(x.shape)") }
            // Source index for each output index along each axis (-1: the constant).
            var maps: [[Int]] = []
            for d in 0..<x.rank {
                let n = x.shape[d]
                maps.append((0..<shape[d]).map { o in
                    let i = o - begin[d]
                    if i >= 0 && i < n { return i }
                    if n == 0 { return -1 }
                    switch mode {
                    case "edge": return min(max(i, 0), n - 1)
                    case "wrap": return ((i % n) + n) % n
                    case "reflect":
                        if n == 1 { return 0 }
                        let period = 2 * (n - 1)
                        var m = ((i % period) + period) % period
                        if m >= n { m = period - m }
                        return m
                    default: return -1
                    }
                })
            }
            let out = Tensor(dtype: x.dtype, shape: shape, storage: TensorStorage(uninitialized: x.dtype.byteCount(elements: Tensor.elementCount(shape))))
            switch x.dtype.bitWidth {
            case 8: fill(x, out, value, maps, UInt8.self, env.threads)
            case 16: fill(x, out, value, maps, UInt16.self, env.threads)
            case 32: fill(x, out, value, maps, UInt32.self, env.threads)
            default: fill(x, out, value, maps, UInt64.self, env.threads)
            }
            return [out]
        }
    }

    static func fill<T>(_ x: Tensor, _ out: Tensor, _ value: Tensor, _ maps: [[Int]], _: T.Type, _ threads: Int) {
        guard out.count > 0 else { return }
        let rank = out.rank
        let src = x.storage.pointer.assumingMemoryBound(to: T.self)
        let dst = out.storage.pointer.assumingMemoryBound(to: T.self)
        let c = value.storage.pointer.load(as: T.self)
        if rank == 0 {
            dst[0] = src[0]
            return
        }
        let st = Shapes.strides(x.shape)
        let inner = out.shape[rank - 1]
        let lastMap = maps[rank - 1]
        let outerShape = Array(out.shape.dropLast())
        let rows = outerShape.reduce(1, *)
        parallelFor(rows, threads: threads, grain: max(1, 16384 / max(inner, 1))) { r in
            for row in r {
                var rem = row, base = 0, inside = true
                for d in stride(from: rank - 2, through: 0, by: -1) {
                    let o = rem % outerShape[d]
                    rem /= outerShape[d]
                    let i = maps[d][o]
                    if i < 0 { inside = false } else { base += i * st[d] }
                }
                let w = dst + row * inner
                if !inside {
                    w.update(repeating: c, count: inner)
                    continue
                }
                let s = src + base
                for k in 0..<inner {
                    let i = lastMap[k]
                    w[k] = i < 0 ? c : s[i]
                }
            }
        }
    }
}
