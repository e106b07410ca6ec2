import Foundation
import QuantCore

/// Bias correction (Nagel et al. 2019, "Data-Free Quantization", empirical form): rounding the
/// weights shifts each output channel's mean by (W_q − W)·E[x]; subtracting that from the bias
/// removes the shift. E[x] is the mean of each input a weight multiplies (per im2col row for a
/// Conv), collected by ``WeightHessianCollector`` over calibration data: one pass, no
/// optimisation.
public enum BiasCorrection {
    /// Per output channel −(W_q − W)·E[x]: for a Conv (weight [O, C/group, k…]) `inputMeans`
    /// holds per group E[x] of each im2col row ((channel, kh, kw) order, zero padding included,
    /// so border positions count as they are computed); for a Gemm one group of K means, the
    /// weight being [N, K] when `transposed` (transB = 1), else [K, N]. Nil when shapes differ.
    public static func shift(opType: String, weight w: [Float], quantized q: [Float], shape: [Int], transposed: Bool = false,
                             inputMeans means: [[Double]]) -> [Double]? {
        guard w.count == q.count, shape.count >= 2, shape.reduce(1, *) == w.count, !means.isEmpty else { return nil }
        if opType == "Gemm" {
            let (n, k) = transposed ? (shape[0], shape[1]) : (shape[1], shape[0])
            guard means.count == 1, means[0].count == k else { return nil }
            return (0..<n).map { j in
                var s = 0.0
                for i in 0..<k {
                    let at = transposed ? j * k + i : i * n + j
                    s += Double(q[at] - w[at]) * means[0][i]
                }
                return -s
            }
        }
        let outputs = shape[0], row = w.count / outputs, groups = means.count
        guard outputs % groups == 0, means.allSatisfy({ $0.count == row }) else { return nil }
        let perGroup = outputs / groups
        return (0..<outputs).map { o in
            let m = means[o / perGroup]
            var s = 0.0
            for r in 0..<row { s += Double(q[o * row + r] - w[o * row + r]) * m[r] }
            return -s
        }
    }
}
