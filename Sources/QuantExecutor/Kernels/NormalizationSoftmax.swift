import Foundation
import QuantCore
import QuantIR

/// Softmax, LogSoftmax and Hardmax. Before opset 13 the input is flattened to 2-D at `axis`
/// (default 1) and the operator applies to each row; from opset 13 it applies along `axis`
/// (default -1) alone.
enum SoftmaxKernels {
    enum Kind { case softmax, logSoftmax, hardmax }

    static func make(_ kind: Kind) -> KernelFactory {
        { ctx in
            let flatten = ctx.opset < 13
            let axisAttr = ctx.int("axis", flatten ? 1 : -1)
            return ClosureKernel { inputs, env in
                let x = try MatrixKernels.floatInput(inputs[0], ctx, "input")
                guard let axis = Shapes.axis(axisAttr, rank: x.rank) else {
                    throw ctx.invalid("axis \(axisAttr) is out of range for shape \(x.shape)")
                }
                let outer = Tensor.elementCount(Array(x.shape[..<min(axis, x.rank)]))
                let n = flatten ? Tensor.elementCount(Array(x.shape[min(axis, x.rank)...])) : (x.rank == 0 ? 1 : x.shape[axis])
                let inner = flatten || x.rank == 0 ? 1 : Tensor.elementCount(Array(x.shape[(axis + 1)...]))
                let y = Tensor.makeFloat(x.shape) { out in
                    guard out.count > 0 else { return }
                    let src = x.storage.pointer.assumingMemoryBound(to: Float.self)
                    let dst = out.baseAddress!
                    parallelFor(outer * inner, threads: env.threads, grain: max(1, 8192 / max(n, 1))) { r in
                        var lo = r.lowerBound
                        while lo < r.upperBound {
                            let o = lo / inner, i0 = lo % inner
                            let cnt = min(inner - i0, r.upperBound - lo)
                            // `cnt` adjacent columns of one outer block, processed together.
                            apply(kind, src + o * n * inner + i0, dst + o * n * inner + i0, n: n, stride: inner, columns: cnt)
                            lo += cnt
                        }
                    }
                }
                return [y]
            }
        }
    }

    /// Applies the operator to `columns` adjacent vectors of length `n` and element stride
    /// `stride`.
    static func apply(_ kind: Kind, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, n: Int, stride: Int, columns: Int) {
        for c in 0..<columns {
            let xs = x + c, ys = y + c
            guard n > 0 else { return }
            var m = xs[0]
            var at = 0
            for j in 1..<max(n, 1) where xs[j * stride] > m {
                m = xs[j * stride]
                at = j
            }
            switch kind {
            case .hardmax:
                for j in 0..<n { ys[j * stride] = j == at ? 1 : 0 }
            case .softmax:
                var sum: Float = 0
                for j in 0..<n {
                    let e = exp(xs[j * stride] - m)
                    ys[j * stride] = e
                    sum += e
                }
                let inv = 1 / sum
                for j in 0..<n { ys[j * stride] *= inv }
            case .logSoftmax:
                var sum: Float = 0
                for j in 0..<n { sum += exp(xs[j * stride] - m) }
                let l = log(sum) + m
                for j in 0..<n { ys[j * stride] = xs[j * stride] - l }
            }
        }
    }
}
