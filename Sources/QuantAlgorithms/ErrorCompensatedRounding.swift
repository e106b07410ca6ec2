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
            guard let u = upperFactorOfInverse(h, order: order, k: k, damping: damping) else { return nil }
            factors.append(u)
            orders.append(order)
        }
        var out = [Float](repeating: 0, count: w.count)
        // Rows of each group, in chunks of at most `chunkValues` weights: a chunk's rows are
        // rounded together column block by column block (GPTQ's lazy batch updates: inside a block
        // each rounded column updates the block's later columns; the block's errors then update
        // every later column in one GEMM), which reads the k×k factor once per chunk and block
        // instead of once per row.
        let block = 128, chunkValues = 1 << 24
        for (gi, u) in factors.enumerated() {
            let order = orders[gi]
            let members = (0..<rows).filter { groupOfRow($0) == gi }
            let chunkRows = max(1, min(members.count, chunkValues / max(k, 1)))
            for c0 in stride(from: 0, to: members.count, by: chunkRows) {
                let chunk = Array(members[c0..<min(c0 + chunkRows, members.count)])
                let m = chunk.count
                var x = [Double](repeating: 0, count: m * k)
                for (ri, r) in chunk.enumerated() { for i in 0..<k { x[ri * k + i] = Double(w[r * k + order[i]]) } }
                var errors = [Double](repeating: 0, count: m * block)
                u.withUnsafeBufferPointer { ub in
                    x.withUnsafeMutableBufferPointer { xb in
                        errors.withUnsafeMutableBufferPointer { eb in
                            out.withUnsafeMutableBufferPointer { ob in
                                let (u, x, e, o) = (ub.baseAddress!, xb.baseAddress!, eb.baseAddress!, ob)
                                for b in stride(from: 0, to: k, by: block) {
                                    let end = min(b + block, k)
                                    parallelFor(m, threads: ProcessInfo.processInfo.activeProcessorCount) { range in for ri in range {
                                        let r = chunk[ri], xr = x + ri * k, er = e + ri * block
                                        for i in b..<end {
                                            let col = order[i]
                                            let s = scales[r * groups + col / gs], z = zeroPoints?[r * groups + col / gs] ?? 0
                                            let q = min(max((xr[i] / s).rounded(.toNearestOrEven) + z, qmin), qmax) - z
                                            o[r * k + col] = Float(q * s)
                                            // x_j -= (x_i − q_i)/U_ii · U_ij for the block's columns not rounded yet.
                                            let err = (xr[i] - q * s) / u[i * k + i]
                                            er[i - b] = err
                                            if err != 0 { for j in (i + 1)..<end { xr[j] -= err * u[i * k + j] } }
                                        }
                                    } }
                                    // The later columns: X[:, end...] −= E · U[b..<end, end...].
                                    if end < k {
                                        BLAS.dgemm(m: m, n: k - end, k: end - b, alpha: -1, a: e, lda: block, b: u + b * k + end, ldb: k,
                                                   beta: 1, c: x + end, ldc: k)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// U with Uᵀ·U = (H' + λI)⁻¹, row-major, H' = H with rows and columns in `order`; columns
    /// whose input never fires (H_ii = 0) get H_ii = 1 so they round to nearest. λ starts at
    /// `damping`·mean(diag H) and grows tenfold while the factorization fails; nil when it keeps
    /// failing or H is not finite. One k×k buffer besides H.
    ///
    /// With P the index reversal, P·H'·P = L·Lᵀ gives H' = R·Rᵀ with R = P·L·P upper triangular,
    /// so H'⁻¹ = (R⁻¹)ᵀ·R⁻¹ and U = R⁻¹ = P·L⁻¹·P: one Cholesky and one triangular inverse
    /// (LAPACK's where linked).
    static func upperFactorOfInverse(_ h: [Double], order: [Int], k: Int, damping: Double) -> [Double]? {
        // A NaN or infinity (data with non-finite values, an overflow in the model) passes
        // LAPACK's positivity test: no factor, so the caller rounds to nearest.
        guard h.allSatisfy(\.isFinite) else { return nil }
        let diagonal = (0..<k).map { i in h[order[i] * k + order[i]] > 1e-12 ? h[order[i] * k + order[i]] : 1 }
        let mean = diagonal.reduce(0, +) / Double(k)
        var lambda = damping * mean
        var a = [Double](repeating: 0, count: k * k)
        for _ in 0..<4 {
            // a = P·(H' + λI)·P: element (i, j) of H' lands at (k−1−i, k−1−j).
            a.withUnsafeMutableBufferPointer { ab in
                let a = ab.baseAddress!
                parallelFor(k, threads: ProcessInfo.processInfo.activeProcessorCount) { range in for i in range {
                    let src = order[i] * k, dst = (k - 1 - i) * k + (k - 1)
                    for j in 0..<k { a[dst - j] = h[src + order[j]] }
                    a[dst - i] = diagonal[i] + lambda
                } }
            }
            let done = a.withUnsafeMutableBufferPointer { BLAS.inverseCholeskyLower($0.baseAddress!, k: k) }
            if done {
                a.reverse()
                return a
            }
            if !BLAS.hasLAPACK, let l = cholesky(a, k: k) {
                return Array(invertLower(l, k: k).reversed())
            }
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
