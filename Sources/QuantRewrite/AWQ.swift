import Foundation
import QuantAlgorithms
import QuantCore
import QuantIR

/// Activation-aware weight quantization (Lin et al. 2023, "AWQ"): before rounding a MatMul's
/// weight W [K, N] in blocks along K, scale its input channels, x' = x / s and W' = diag(s)·W, so
/// that the weights of the channels with large activations get a finer grid. s_j = m_j^α with m_j
/// the channel's RMS over the calibration data (√H_jj), normalized to a geometric mean of 1;
/// α in {0, 0.1, ..., 1} is chosen per input tensor as the one with the least output error
/// Σ_readers Σ_n (w_n − ŵ_n)ᵀ H (w_n − ŵ_n), ŵ = diag(1/s)·RTN(diag(s)·W). α = 0 is plain RTN,
/// so the choice is never worse than RTN on this measure. The division by s goes where
/// SmoothQuant puts it (the producer, or an explicit Mul).
public enum AWQ {
    static let alphas = stride(from: 0.0, through: 1.0, by: 0.1).map { $0 }

    /// Factors per input tensor (every reader a weight-only site), the α chosen, and the factors
    /// each reader's input is divided by (by node name).
    public static func choose(_ g: Graph, sites: [Node], hessians: [String: WeightHessian], options: WeightOnly.Options)
        -> (factors: [String: [Double]], alphas: [String: Double], readers: [String: [Double]]) {
        let siteNames = Set(sites.map(\.name))
        var factors: [String: [Double]] = [:], chosen: [String: Double] = [:], byReader: [String: [Double]] = [:]
        for site in SmoothQuant.sites(g) {
            let readers = site.readers.filter { siteNames.contains($0.node.name) && !$0.transposed }
            guard !readers.isEmpty, readers.count == site.readers.count,
                  let h = hessians[readers[0].node.name], let m = h.matrices.first, h.k == site.channels else { continue }
            let k = h.k
            let rms = (0..<k).map { Swift.max(m[$0 * k + $0], 0).squareRoot() }
            guard rms.contains(where: { $0 > 0 }) else { continue }
            let weights = readers.compactMap { g.initializer($0.weight)?.floats() }
            guard weights.count == readers.count else { continue }
            var best = (error: Double.infinity, alpha: 0.0, s: [Double](repeating: 1, count: k))
            for a in alphas {
                var s = rms.map { Foundation.pow(Swift.max($0, 1e-8), a) }
                let logMean = s.map { Foundation.log($0) }.reduce(0, +) / Double(k)
                let g0 = Foundation.exp(logMean)
                s = s.map { $0 / g0 }
                var err = 0.0
                for w in weights { err += outputError(w, k: k, s: s, h: m, options: options) }
                if err < best.error { best = (err, a, s) }
            }
            guard best.alpha > 0 else { chosen[site.tensor] = 0; continue }
            factors[site.tensor] = best.s
            chosen[site.tensor] = best.alpha
            for r in readers { byReader[r.node.name] = best.s }
        }
        return (factors, chosen, byReader)
    }

    /// Σ_n dᵀHd of W [k, n] row-major against diag(1/s)·RTN(diag(s)·W), blocks along k.
    static func outputError(_ w: [Float], k: Int, s: [Double], h: [Double], options: WeightOnly.Options) -> Double {
        let n = w.count / k, bs = options.blockSize, qmax = Double((1 << options.bits) - 1)
        var col = [Float](repeating: 0, count: k)
        // d of output column c: its k rounding errors.
        return WeightOnly.outputError(count: n, hessian: h, k: k) { c, d in
            for i in 0..<k { col[i] = Float(Double(w[i * n + c]) * s[i]) }
            var b = 0
            while b < k {
                let hi = Swift.min(b + bs, k)
                let (sc, z) = WeightOnly.blockParameters(col[b..<hi], bits: options.bits, symmetric: options.symmetric)
                for i in b..<hi {
                    let q = WeightOnly.code(Double(col[i]), scale: sc, zero: Double(z), qmax: qmax)
                    d[i] = Double(w[i * n + c]) - (q - Double(z)) * sc / s[i]
                }
                b = hi
            }
        }
    }

    /// The Hessians of the readers of scaled inputs (`readers`: node name → the factors its input
    /// is divided by), as the scaled model sees them: H' = diag(1/s) H diag(1/s).
    public static func scaled(_ hessians: [String: WeightHessian], readers: [String: [Double]]) -> [String: WeightHessian] {
        var out = hessians
        for (node, s) in readers {
            guard var h = out[node], let m = h.matrices.first, h.k == s.count else { continue }
            let k = h.k
            var scaledM = m
            for i in 0..<k { for j in 0..<k { scaledM[i * k + j] = m[i * k + j] / (s[i] * s[j]) } }
            h.matrices = [scaledM]
            out[node] = h
        }
        return out
    }
}
