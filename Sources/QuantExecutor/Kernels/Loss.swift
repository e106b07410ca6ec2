import Foundation
import QuantCore
import QuantIR

/// NegativeLogLikelihoodLoss (opsets 12, 13, 22) and SoftmaxCrossEntropyLoss (12, 13): the
/// training losses some exported graphs keep. Computed in double as the ONNX reference does,
/// including its handling of `mean` with ignored targets (below).
enum LossKernels {
    static let all: [String: KernelFactory] = ["NegativeLogLikelihoodLoss": { try make($0, softmax: false) },
                                               "SoftmaxCrossEntropyLoss": { try make($0, softmax: true) }]

    /// loss[n, d] = −x[n, target[n, d], d] (0 where target is `ignore_index`), times
    /// weight[target] when weights are given. `mean` divides by the sum of the applied weights
    /// (1 per target not ignored without weights), except that NegativeLogLikelihoodLoss with
    /// ignore_index −1 and no weights divides by the element count, ignored ones included, as
    /// the reference does. SoftmaxCrossEntropyLoss applies it to log_softmax(x) over axis 1
    /// and can also output that.
    static func make(_ ctx: KernelContext, softmax: Bool) throws -> Kernel {
        let reduction = ctx.string("reduction", "mean"), ignore = ctx.int("ignore_index")
        guard ["none", "sum", "mean"].contains(reduction) else { throw ctx.unsupported("reduction '\(reduction)'") }
        let logProbOut = softmax && ctx.node.outputs.count > 1 && !ctx.node.outputs[1].isEmpty
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let t = inputs.count > 1 ? inputs[1] : nil, x.rank >= 2, x.dtype.isFloatingPoint,
                  t.shape == [x.shape[0]] + Array(x.shape[2...]) else {
                throw ctx.invalid("input [N, C, ...] and target [N, ...] are required")
            }
            let weight = inputs.count > 2 ? inputs[2]?.doubles() : nil
            let (n, c) = (x.shape[0], x.shape[1]), d = x.shape[2...].reduce(1, *)
            var v = x.doubles()
            if softmax {
                for i in 0..<n {
                    for k in 0..<d {
                        let m = (0..<c).map { v[(i * c + $0) * d + k] }.max() ?? 0
                        let s = (0..<c).reduce(0.0) { $0 + exp(v[(i * c + $1) * d + k] - m) }
                        for j in 0..<c { v[(i * c + j) * d + k] = v[(i * c + j) * d + k] - m - log(s) }
                    }
                }
            }
            let targets = t.int64s().map(Int.init)
            let weighted = weight != nil || (softmax ? ignore != nil : ignore != -1)
            var loss = [Double](repeating: 0, count: n * d), applied = [Double](repeating: 0, count: n * d)
            for i in 0..<n {
                for k in 0..<d {
                    let target = targets[i * d + k]
                    if target == ignore { continue }
                    guard target >= 0 && target < c else { throw ctx.invalid("target \(target) is outside [0, \(c))") }
                    let w = weight.map { $0[target] } ?? 1
                    loss[i * d + k] = -v[(i * c + target) * d + k] * (weight == nil ? 1 : w)
                    applied[i * d + k] = w
                }
            }
            let value: [Double]
            let shape: [Int]
            switch reduction {
            case "none": (value, shape) = (loss, t.shape)
            case "sum": (value, shape) = ([loss.reduce(0, +)], [])
            default:
                let total = loss.reduce(0, +)
                (value, shape) = ([weighted ? total / applied.reduce(0, +) : total / Double(loss.count)], [])
            }
            var out = [try CastKernels.convert(Tensor(shape: shape, floats: value.map { Float($0) }), to: x.dtype, ctx)]
            if logProbOut { out.append(try CastKernels.convert(Tensor(shape: x.shape, floats: v.map { Float($0) }), to: x.dtype, ctx)) }
            return out
        }
    }
}
