import Foundation
import QuantExecutor

/// H = E[x xᵀ] of the inputs that each output row of a weight sees: per group for a grouped
/// Conv (im2col patches in (channel, kh, kw) order), one matrix for Gemm/MatMul.
public struct WeightHessian: Sendable {
    /// Inputs per row (C/group·kh·kw for Conv, K for Gemm/MatMul).
    public var k: Int
    /// The weight axis along which rows (output channels) run: 0 for Conv and Gemm with
    /// transB, 1 for MatMul's [K, N] and Gemm without transB.
    public var rowAxis: Int
    /// One k×k row-major matrix per group, each the mean over all samples and positions.
    public var matrices: [[Double]]
    /// E[x_f x_qᵀ] and E[x_f x_fᵀ] per group, x_f the float model's inputs (nil: not collected);
    /// AdaRound then targets the float model's layer output.
    public var cross: [[Double]]? = nil
    public var floatMatrices: [[Double]]? = nil

    public init(k: Int, rowAxis: Int, matrices: [[Double]]) {
        self.k = k
        self.rowAxis = rowAxis
        self.matrices = matrices
    }
}

/// Weight rounding that pushes each rounding error onto the weights of the same row not yet
/// rounded, so the layer's output error E‖(W − Ŵ)x‖² is what gets small, not each weight's own
/// error (GPTQ: Frantar, Ashkboos, Hoefler, Alistarh 2022, Algorithm 1, after Optimal Brain
/// Quantization; the column order is the natural one, H gets 1% of its mean diagonal as
/// dampening). With H = I it is round-to-nearest. Every result is exactly q·scale with q on the
/// grid (round half to even), so quantizing it again with the same scale gives q back.
public enum ErrorCompensatedRounding {
    /// Rounds `rows` rows of `k` weights (row-major) to `q·scales[row]`, q in `qmin...qmax`;
    /// with `groupSize` > 0 each row has ⌈k/groupSize⌉ scales, one per group of consecutive
    /// columns (`scales[row·groups + column/groupSize]`, chosen beforehand: GPTQ's static groups).
    /// `hessianOfRow(r)` is the index into `hessian.matrices` row r uses. Returns nil when a
    /// matrix is not positive definite even after more dampening (the caller rounds to nearest).
    /// `zeroPoints` (one per scale) make the grid asymmetric: q in `qmin...qmax` stands for
    /// (q − z)·scale.
    public static func round(_ w: [Float], rows: Int, hessian: WeightHessian, groupOfRow: (Int) -> Int, scales: [Double],
                             qmin: Double, qmax: Double, groupSize: Int = 0, zeroPoints: [Double]? = nil, damping: Double = 0.01) -> [Float]? {
        let k = hessian.k
        let gs = groupSize > 0 ? groupSize : k, groups = (k + gs - 1) / gs
        precondition(w.count == rows * k && scales.count == rows * groups && (zeroPoints?.count ?? scales.count) == scales.count)
        // Columns go in order of decreasing H_ii (the inputs with the most energy first, so the
        // later, smaller ones absorb the compensation: GPTQ's "act order").
        var factors: [[Double]] = [], orders: [[Int]] = []
        for h in hessian.matrices {
            let order = (0..<k).sorted { (h[$0 * k + $0], $1) > (h[$1 * k + $1], $0) }
            var p = [Double](repeating: 0, count: k * k)
            for i in 0..<k { for j in 0..<k { p[i * k + j] = h[order[i] * k + order[j]] } }
            guard let u = upperFactorOfInverse(p, k: k, damping: damping) else { return nil }
            factors.append(u)
            orders.append(order)
        }
        var out = [Float](repeating: 0, count: w.count)
        out.withUnsafeMutableBufferPointer { o in
            let o = o
            parallelFor(rows, threads: ProcessInfo.processInfo.activeProcessorCount) { range in for r in range {
                let u = factors[groupOfRow(r)], order = orders[groupOfRow(r)]
                var row = order.map { Double(w[r * k + $0]) }
                u.withUnsafeBufferPointer { u in
                    row.withUnsafeMutableBufferPointer { x in
                        for i in 0..<k {
                            let s = scales[r * groups + order[i] / gs], z = zeroPoints?[r * groups + order[i] / gs] ?? 0
                            let q = min(max((x[i] / s).rounded(.toNearestOrEven) + z, qmin), qmax) - z
                            o[r * k + order[i]] = Float(q * s)
                            // x_j -= (x_i - q_i)/U_ii · U_ij for the columns not rounded yet.
                            let err = (x[i] - q * s) / u[i * k + i]
                            if err != 0 { for j in (i + 1)..<k { x[j] -= err * u[i * k + j] } }
                        }
                    }
                }
            } }
        }
        return out
    }

    /// U with Uᵀ·U = (H + λI)⁻¹, row-major; columns whose input never fires (H_ii = 0) get
    /// H_ii = 1 so they round to nearest. λ starts at `damping`·mean(diag H) and grows tenfold
    /// while the factorization fails.
    ///
    /// With P the index reversal, P·H·P = L·Lᵀ gives H = R·Rᵀ with R = P·L·P upper triangular,
    /// so H⁻¹ = (R⁻¹)ᵀ·R⁻¹ and U = R⁻¹ = P·L⁻¹·P: one Cholesky and one triangular inverse.
    static func upperFactorOfInverse(_ h: [Double], k: Int, damping: Double) -> [Double]? {
        var base = h
        for i in 0..<k where !(base[i * k + i] > 1e-12) { base[i * k + i] = 1 }
        let mean = (0..<k).reduce(0.0) { $0 + base[$1 * k + $1] } / Double(k)
        var lambda = damping * mean
        func reversed(_ a: [Double]) -> [Double] { Array(a.reversed()) }   // (i, j) -> (k-1-i, k-1-j)
        for _ in 0..<4 {
            var a = base
            for i in 0..<k { a[i * k + i] += lambda }
            if let l = cholesky(reversed(a), k: k) { return reversed(invertLower(l, k: k)) }
            lambda *= 10
        }
        return nil
    }

    /// Lower-triangular L with L·Lᵀ = A (row-major), or nil when A is not positive definite.
    static func cholesky(_ a: [Double], k: Int) -> [Double]? {
        var l = a
        let ok = l.withUnsafeMutableBufferPointer { l -> Bool in
            let l = l.baseAddress!
            for j in 0..<k {
                // Row j: l[j][p] for p < j are final; the diagonal, then column j below it.
                var d = l[j * k + j]
                for p in 0..<j { d -= l[j * k + p] * l[j * k + p] }
                guard d > 0, d.isFinite else { return false }
                let ljj = d.squareRoot()
                l[j * k + j] = ljj
                for i in (j + 1)..<k {
                    var s = l[i * k + j]
                    let ri = l + i * k, rj = l + j * k
                    for p in 0..<j { s -= ri[p] * rj[p] }
                    l[i * k + j] = s / ljj
                }
                for p in (j + 1)..<k { l[j * k + p] = 0 }
            }
            return true
        }
        return ok ? l : nil
    }

    /// M = L⁻¹ for a lower-triangular L (row-major): M[i,:] = (e_i − Σ_{p<i} L[i,p]·M[p,:]) / L[i,i].
    static func invertLower(_ l: [Double], k: Int) -> [Double] {
        var m = [Double](repeating: 0, count: k * k)
        l.withUnsafeBufferPointer { lb in
            m.withUnsafeMutableBufferPointer { mb in
                let l = lb.baseAddress!, m = mb.baseAddress!
                for i in 0..<k {
                    let mi = m + i * k
                    mi[i] = 1
                    for p in 0..<i {
                        let c = l[i * k + p]
                        if c == 0 { continue }
                        let mp = m + p * k
                        for j in 0...p { mi[j] -= c * mp[j] }
                    }
                    let inv = 1 / l[i * k + i]
                    for j in 0...i { mi[j] *= inv }
                }
            }
        }
        return m
    }
}
