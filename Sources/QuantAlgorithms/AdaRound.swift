import Foundation
import QuantExecutor

/// AdaRound (Nagel, Amjad, van Baalen, Louizos, Blankevoort 2020, "Up or Down? Adaptive
/// Rounding for Post-Training Quantization"): each weight is rounded up or down, chosen by
/// minimizing the layer's output error rather than each weight's own error.
///
/// With W̃ = s·clip(⌊W/s⌋ + h(V), qmin, qmax) and the rectified sigmoid
/// h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1, the objective is
///
///     L(V) = (1/rows) Σ_r (W̃_r − W_r) H (W̃_r − W_r)ᵀ + λ Σ (1 − |2h(V) − 1|^β)
///
/// where H = E[x xᵀ] over the layer's inputs (``WeightHessian``: inputs of the quantized model,
/// as AIMET takes them), so the first term is the mean squared output error of the layer over
/// every calibration position, without keeping any input. The layer is linear in its weights, so
/// the gradient is exact: ∂L/∂W̃_r = (2/rows)·(W̃_r − W_r)·H (a GEMM per group), times s and
/// h'(V); the regularizer's is −2βλ·|2h − 1|^(β−1)·sign(2h − 1). Adam minimizes it; the first
/// 20% of the iterations without the regularizer, then β anneals from 20 to 2 (cosine) so that
/// every h ends at 0 or 1. The result is rounded by the sign of V, and kept only if its output
/// error is not above round-to-nearest's (it never is worse on the layer objective).
public enum AdaRound {
    public struct Options: Sendable, Equatable, Codable {
        public var iterations = 1000
        /// λ, the weight of the rounding regularizer (AIMET's default 0.01).
        public var regularization = 0.01
        public var betaStart = 20.0
        public var betaEnd = 2.0
        /// Share of the iterations before the regularizer starts.
        public var warmStart = 0.2
        public var learningRate = 0.01
        public init() {}
    }

    static let zeta = 1.1, gamma = -0.1

    /// One layer's rounding problem: `rows` rows of `k` weights (row-major), each row's scale,
    /// the grid, and the input second moment of the group each row belongs to.
    public struct Problem {
        public var w: [Float]
        public var rows: Int
        public var k: Int
        public var scales: [Double]
        /// Each weight's scale (its row's, or its group's with a group size).
        var elementScales: [Double]
        public var qmin: Double
        public var qmax: Double
        /// k×k matrices (row-major, Float), one per group; rows of a group are contiguous.
        public var hessians: [[Float]]

        /// With the float model's inputs x_f as the target (E‖W·x_f − W̃·x_q‖², which also undoes
        /// error earlier layers left in x_q): U = W·(C − H) per row, C = E[x_f x_qᵀ], and the
        /// constant (1/rows)·Σ W_r (H_f − C − Cᵀ + H) W_rᵀ. Nil: the target is W·x_q.
        var shift: [Float]? = nil
        var constant = 0.0

        /// `cross` (C = E[x_f x_qᵀ]) and `floatHessians` (H_f = E[x_f x_fᵀ]) per group make the
        /// float model's layer output the target.
        /// `scales`: one per row, or with `groupSize` > 0 one per group of that many consecutive
        /// weights of a row (⌈k/groupSize⌉ per row, row-major).
        public init(w: [Float], rows: Int, k: Int, scales: [Double], qmin: Double, qmax: Double, hessians: [[Float]],
                    cross: [[Float]]? = nil, floatHessians: [[Float]]? = nil, groupSize: Int = 0) {
            let gs = groupSize > 0 ? groupSize : k, groups = (k + gs - 1) / gs
            precondition(w.count == rows * k && scales.count == rows * groups && !hessians.isEmpty && rows % hessians.count == 0)
            self.w = w
            self.rows = rows
            self.k = k
            self.scales = scales
            self.elementScales = (0..<w.count).map { scales[($0 / k) * groups + ($0 % k) / gs] }
            self.qmin = qmin
            self.qmax = qmax
            self.hessians = hessians
            guard let cross, let floatHessians, cross.count == hessians.count, floatHessians.count == hessians.count else { return }
            let u = times(w, by: zip(cross, hessians).map { c, h in zip(c, h).map { $0 - $1 } })
            let wf = times(w, by: floatHessians), wh = times(w, by: hessians)
            var c = 0.0
            // W Hf Wᵀ − 2 W C Wᵀ + W H Wᵀ = W·(W Hf) − 2 W·U − W·(W H).
            for i in w.indices { c += Double(w[i]) * (Double(wf[i]) - 2 * Double(u[i]) - Double(wh[i])) }
            shift = u
            constant = c / Double(rows)
        }

        var rowsPerGroup: Int { rows / hessians.count }

        /// ⌊W/s⌋ per weight.
        func floors() -> [Double] { (0..<w.count).map { (Double(w[$0]) / elementScales[$0]).rounded(.down) } }

        /// The layer's mean squared output error (1/rows)·E‖W·x − W̃·x_q‖² of weights `q·s` (q per
        /// weight, clipped to the grid), x the float model's inputs when given, else x_q.
        public func outputError(integers q: [Double]) -> Double {
            var delta = [Float](repeating: 0, count: w.count)
            for i in w.indices { delta[i] = Float(min(max(q[i], qmin), qmax) * elementScales[i] - Double(w[i])) }
            let g = times(delta)
            var e = 0.0
            for i in delta.indices { e += Double(delta[i]) * (Double(g[i]) - 2 * Double(shift?[i] ?? 0)) }
            return e / Double(rows) + constant
        }

        /// Δ·H per group (BLAS).
        func times(_ delta: [Float]) -> [Float] { times(delta, by: hessians) }

        /// Δ·M per group (BLAS), M one k×k matrix per group.
        func times(_ delta: [Float], by matrices: [[Float]]) -> [Float] {
            var out = [Float](repeating: 0, count: delta.count)
            let m = rows / matrices.count
            delta.withUnsafeBufferPointer { d in
                out.withUnsafeMutableBufferPointer { o in
                    for (gi, h) in matrices.enumerated() {
                        h.withUnsafeBufferPointer { hp in
                            BLAS.sgemm(m: m, n: k, k: k, a: d.baseAddress! + gi * m * k, lda: k, b: hp.baseAddress!, ldb: k,
                                       c: o.baseAddress! + gi * m * k, ldc: k)
                        }
                    }
                }
            }
            return out
        }
    }

    static func sigmoid(_ v: Double) -> Double { 1 / (1 + exp(-v)) }
    static func rectified(_ v: Double) -> Double { min(max(sigmoid(v) * (zeta - gamma) + gamma, 0), 1) }

    /// Chunks of the weights the element-wise parts run on in parallel.
    static let grain = 4096

    /// The element-wise state of one evaluation: h(V), the clip mask, Δ = W̃ − W and ΔH.
    struct Evaluation {
        var h: [Float]
        var inside: [Bool]
        var delta: [Float]
        var dh: [Float]
    }

    /// h(V), Δ and ΔH at `v` (Float, in parallel; the GEMM in BLAS).
    static func evaluate(_ p: Problem, v: [Float], floors: [Float], threads: Int) -> Evaluation {
        let n = v.count
        var e = Evaluation(h: [Float](repeating: 0, count: n), inside: [Bool](repeating: true, count: n),
                           delta: [Float](repeating: 0, count: n), dh: [])
        let z = Float(zeta - gamma), g0 = Float(gamma), lo = Float(p.qmin), hi = Float(p.qmax), k = p.k
        let scales = p.elementScales.map(Float.init)
        e.h.withUnsafeMutableBufferPointer { h in e.inside.withUnsafeMutableBufferPointer { ins in e.delta.withUnsafeMutableBufferPointer { d in
            let (h, ins, d) = (h, ins, d)
            parallelFor(n, threads: threads, grain: grain) { range in
                for i in range {
                    let hv = min(max(1 / (1 + expf(-v[i])) * z + g0, 0), 1)
                    h[i] = hv
                    let q = floors[i] + hv, c = min(max(q, lo), hi)
                    ins[i] = c == q
                    d[i] = c * scales[i] - p.w[i]
                }
            }
        } } }
        e.dh = p.times(e.delta)
        // ∂/∂Δ of Δ·H·Δᵀ − 2Δ·U is 2(ΔH − U).
        if let u = p.shift { for i in 0..<n { e.dh[i] -= u[i] } }
        return e
    }

    /// L(V) and ∂L/∂V at `v` for regularizer weight `lambda` and exponent `beta` (0: no regularizer).
    public static func lossAndGradient(_ p: Problem, v: [Double], floors: [Double], lambda: Double, beta: Double) -> (Double, [Double]) {
        let vf = v.map(Float.init), ff = floors.map(Float.init)
        let e = evaluate(p, v: vf, floors: ff, threads: 1)
        var grad = [Float](repeating: 0, count: v.count)
        let loss = gradient(p, e, v: vf, lambda: Float(lambda), beta: Float(beta), into: &grad, threads: 1)
        return (loss, grad.map(Double.init))
    }

    /// ∂L/∂V into `grad`; returns L.
    @discardableResult
    static func gradient(_ p: Problem, _ e: Evaluation, v: [Float], lambda: Float, beta: Float, into grad: inout [Float], threads: Int) -> Double {
        let n = v.count, k = p.k
        let rows = Float(p.rows), z = Float(zeta - gamma), g0 = Float(gamma)
        let scales = p.elementScales.map(Float.init)
        let chunks = (n + grain - 1) / grain
        var partial = [Double](repeating: 0, count: chunks)
        grad.withUnsafeMutableBufferPointer { gp in partial.withUnsafeMutableBufferPointer { pp in
            let (gp, pp) = (gp, pp)
            parallelFor(n, threads: threads, grain: grain) { range in
                var loss = 0.0
                for i in range {
                    loss += Double(e.delta[i]) * (Double(e.dh[i]) - Double(p.shift?[i] ?? 0)) / Double(rows)
                    var dh: Float = e.inside[i] ? 2 * e.dh[i] / rows * scales[i] : 0
                    if beta > 0 {
                        let t = 2 * e.h[i] - 1, a = abs(t)
                        let pb1 = powf(a, beta - 1)
                        loss += Double(lambda * (1 - pb1 * a))
                        dh -= lambda * beta * pb1 * (t >= 0 ? 2 : -2)
                    }
                    // h'(V) = (ζ − γ)σ(1 − σ) where the clip of h is not active.
                    let s = 1 / (1 + expf(-v[i])), raw = s * z + g0
                    gp[i] = raw > 0 && raw < 1 ? dh * z * s * (1 - s) : 0
                }
                pp[range.lowerBound / grain] += loss
            }
        } }
        return partial.reduce(0, +) + p.constant
    }

    /// What rounding one layer did.
    public struct Outcome: Sendable {
        /// The rounded weights (q·s, q on the grid).
        public var values: [Float]
        /// Weights rounded the other way than to nearest.
        public var flips: Int
        /// The output error term of round-to-nearest and of the result.
        public var errorNearest: Double
        public var errorAfter: Double
    }

    /// Rounds the problem's weights adaptively. Returns round-to-nearest (no flips) when that is
    /// not worse on the output error.
    public static func round(_ p: Problem, options: Options = Options(), threads: Int = ProcessInfo.processInfo.activeProcessorCount) -> Outcome {
        let floors = p.floors()
        let n = p.w.count
        let nearest = (0..<n).map { (Double(p.w[$0]) / p.elementScales[$0]).rounded(.toNearestOrEven) }
        let errorNearest = p.outputError(integers: nearest)
        // V starts where h(V) is the fractional part: the first iterate is W itself.
        var v = (0..<n).map { i -> Float in
            let rest = min(max(Double(p.w[i]) / p.elementScales[i] - floors[i], 0.01), 0.99)
            return Float(-log((zeta - gamma) / (rest - gamma) - 1))
        }
        let floorsF = floors.map(Float.init)
        var m1 = [Float](repeating: 0, count: n), m2 = m1, grad = m1
        let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8, lr = Float(options.learningRate)
        let warm = Int(Double(options.iterations) * options.warmStart)
        for t in 1...max(options.iterations, 1) {
            var beta = 0.0
            if t > warm {
                let rel = Double(t - warm) / Double(max(options.iterations - warm, 1))
                beta = options.betaEnd + 0.5 * (options.betaStart - options.betaEnd) * (1 + cos(rel * Double.pi))
            }
            let e = evaluate(p, v: v, floors: floorsF, threads: threads)
            gradient(p, e, v: v, lambda: Float(options.regularization), beta: Float(beta), into: &grad, threads: threads)
            let c1 = 1 - pow(b1, Float(t)), c2 = 1 - pow(b2, Float(t))
            v.withUnsafeMutableBufferPointer { vp in m1.withUnsafeMutableBufferPointer { a in m2.withUnsafeMutableBufferPointer { b in
                let (vp, a, b) = (vp, a, b)
                parallelFor(n, threads: threads, grain: grain) { range in
                    for i in range {
                        a[i] = b1 * a[i] + (1 - b1) * grad[i]
                        b[i] = b2 * b[i] + (1 - b2) * grad[i] * grad[i]
                        vp[i] -= lr * (a[i] / c1) / ((b[i] / c2).squareRoot() + eps)
                    }
                }
            } } }
        }
        let chosen = (0..<n).map { floors[$0] + (v[$0] >= 0 ? 1 : 0) }
        let errorAfter = p.outputError(integers: chosen)
        let final = errorAfter <= errorNearest ? chosen : nearest
        var flips = 0
        var values = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let q = min(max(final[i], p.qmin), p.qmax)
            if q != min(max(nearest[i], p.qmin), p.qmax) { flips += 1 }
            values[i] = Float(q * p.elementScales[i])
        }
        return Outcome(values: values, flips: flips, errorNearest: errorNearest, errorAfter: min(errorAfter, errorNearest))
    }

    /// Outcomes of earlier roundings in this process, by node and problem: a tuning loop
    /// quantizes the same weights with the same statistics once per round.
    public final class Cache: @unchecked Sendable {
        private var outcomes: [String: Outcome] = [:]
        private let lock = NSLock()
        public init() {}

        /// The node's outcome for this exact problem (weights, scales, grid, second moments).
        public func outcome(node: String, problem p: Problem, options: Options, compute: () -> Outcome) -> Outcome {
            var h = Hasher()
            h.combine(node)
            h.combine(p.w.count)
            for x in p.w { h.combine(x) }
            for x in p.scales { h.combine(x) }
            h.combine(p.qmin)
            h.combine(p.qmax)
            for m in p.hessians { for x in m { h.combine(x) } }
            h.combine(options.iterations)
            let key = "\(node)#\(h.finalize())"
            lock.lock()
            if let o = outcomes[key] {
                lock.unlock()
                return o
            }
            lock.unlock()
            let o = compute()
            lock.lock()
            outcomes[key] = o
            lock.unlock()
            return o
        }
    }
}
