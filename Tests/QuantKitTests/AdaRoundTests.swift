import Foundation
import QuantCore
@testable import QuantAlgorithms
import QuantKit
import Testing

/// A layer of 6 rows × 5 inputs in 2 groups, inputs correlated (H far from diagonal), a 4-bit grid.
private func problem(seed: UInt64) -> AdaRound.Problem {
    var rng = SplitMix64(seed: seed)
    let rows = 6, k = 5
    let w = (0..<(rows * k)).map { _ in Float.random(in: -1...1, using: &rng) }
    var hs: [[Float]] = []
    for _ in 0..<2 {
        // H = A Aᵀ / n for random correlated inputs.
        let n = 40
        var x = [[Double]](repeating: [Double](repeating: 0, count: k), count: n)
        for i in 0..<n {
            let common = Double.random(in: -1...1, using: &rng)
            for j in 0..<k { x[i][j] = common + 0.3 * Double.random(in: -1...1, using: &rng) }
        }
        var h = [Float](repeating: 0, count: k * k)
        for a in 0..<k { for b in 0..<k { h[a * k + b] = Float((0..<n).reduce(0.0) { $0 + x[$1][a] * x[$1][b] } / Double(n)) } }
        hs.append(h)
    }
    let scales = (0..<rows).map { r in Double(w[(r * k)..<((r + 1) * k)].map { abs($0) }.max()!) / 7 }
    return AdaRound.Problem(w: w, rows: rows, k: k, scales: scales, qmin: -7, qmax: 7, hessians: hs)
}

@Test func adaRoundGradientMatchesFiniteDifferences() {
    let p = problem(seed: 2)
    var rng = SplitMix64(seed: 3)
    let floors = p.floors()
    let v = (0..<p.w.count).map { _ in Double.random(in: -1.5...1.5, using: &rng) }
    for beta in [0.0, 3.0] {
        let (_, g) = AdaRound.lossAndGradient(p, v: v, floors: floors, lambda: 0.01, beta: beta)
        for i in stride(from: 0, to: v.count, by: 3) {
            var up = v, down = v
            let eps = 1e-4
            up[i] += eps
            down[i] -= eps
            let numeric = (AdaRound.lossAndGradient(p, v: up, floors: floors, lambda: 0.01, beta: beta).0
                - AdaRound.lossAndGradient(p, v: down, floors: floors, lambda: 0.01, beta: beta).0) / (2 * eps)
            #expect(abs(numeric - g[i]) <= 1e-3 * max(1, abs(numeric)) + 1e-5, "β \(beta) weight \(i): \(numeric) vs \(g[i])")
        }
    }
}

@Test func adaRoundIsNeverWorseThanNearestAndRoundsOntoTheGrid() {
    var improved = 0
    for seed in 1...6 {
        let p = problem(seed: UInt64(seed))
        var options = AdaRound.Options()
        options.iterations = 400
        let o = AdaRound.round(p, options: options)
        #expect(o.errorAfter <= o.errorNearest)
        if o.errorAfter < 0.9 * o.errorNearest { improved += 1 }
        // Every value is q·s with q an integer in [-7, 7], at most one step from W/s.
        for i in p.w.indices {
            let s = p.scales[i / p.k], q = Double(o.values[i]) / s
            #expect(abs(q - q.rounded()) < 1e-4 && abs(q) <= 7 + 1e-6 && abs(q - Double(p.w[i]) / s) < 1 + 1e-6)
        }
    }
    // On correlated inputs at 4 bits, choosing up or down per weight beats nearest clearly.
    #expect(improved >= 4, "\(improved) of 6")
}

/// With the float inputs as target: the gradient still matches finite differences, and with
/// x_f = x_q (C = H_f = H) the objective is the plain one.
@Test func adaRoundFloatTargetGradientAndConsistency() {
    let p = problem(seed: 4)
    var rng = SplitMix64(seed: 5)
    // C = E[x_f x_qᵀ] and H_f for x_f = x_q + noise correlated with x_q: C = H + N, H_f = H + N + Nᵀ + M.
    let k = p.k
    let cross = p.hessians.map { h in h.enumerated().map { $0.element + 0.05 * Float(($0.offset % (k + 1)) == 0 ? 1 : 0) + 0.01 * Float.random(in: -1...1, using: &rng) } }
    let floatH = zip(p.hessians, cross).map { h, c in (0..<(k * k)).map { i in c[i] + c[(i % k) * k + i / k] - h[i] + 0.02 * Float(i % (k + 1) == 0 ? 1 : 0) } }
    let target = AdaRound.Problem(w: p.w, rows: p.rows, k: k, scales: p.scales, qmin: p.qmin, qmax: p.qmax, hessians: p.hessians,
                                  cross: cross, floatHessians: floatH)
    let floors = target.floors()
    let v = (0..<p.w.count).map { _ in Double.random(in: -1.5...1.5, using: &rng) }
    let (_, g) = AdaRound.lossAndGradient(target, v: v, floors: floors, lambda: 0.01, beta: 2)
    for i in stride(from: 1, to: v.count, by: 4) {
        var up = v, down = v
        up[i] += 1e-3
        down[i] -= 1e-3
        let numeric = (AdaRound.lossAndGradient(target, v: up, floors: floors, lambda: 0.01, beta: 2).0
            - AdaRound.lossAndGradient(target, v: down, floors: floors, lambda: 0.01, beta: 2).0) / 2e-3
        #expect(abs(numeric - g[i]) <= 2e-2 * max(1, abs(numeric)), "weight \(i): \(numeric) vs \(g[i])")
    }
    let same = AdaRound.Problem(w: p.w, rows: p.rows, k: k, scales: p.scales, qmin: p.qmin, qmax: p.qmax, hessians: p.hessians,
                                cross: p.hessians, floatHessians: p.hessians)
    let q = floors.map { $0 + 1 }
    #expect(abs(same.outputError(integers: q) - p.outputError(integers: q)) <= 1e-6 * max(1, p.outputError(integers: q)))
    // The float-target error of W itself is E‖W(x_f − x_q)‖²: not zero when the inputs differ.
    let exact = (0..<p.w.count).map { Double(p.w[$0]) / p.scales[$0 / k] }
    #expect(abs(p.outputError(integers: exact)) < 1e-9 && target.outputError(integers: exact) > 1e-6)
}

@Test func adaRoundWithGroupScalesRoundsOntoEachGroupsGrid() {
    // --group-size: rows of 5 weights in groups of 2 (2 + 2 + 1), each group its own scale.
    let base = problem(seed: 4)
    let (rows, k, gs, groups) = (base.rows, base.k, 2, 3)
    var scales = [Double]()
    for r in 0..<rows {
        for g in 0..<groups {
            scales.append(Double((g * gs..<min(k, (g + 1) * gs)).map { abs(base.w[r * k + $0]) }.max()!) / 7)
        }
    }
    let p = AdaRound.Problem(w: base.w, rows: rows, k: k, scales: scales, qmin: -7, qmax: 7, hessians: base.hessians, groupSize: gs)
    var options = AdaRound.Options()
    options.iterations = 300
    let o = AdaRound.round(p, options: options)
    #expect(o.errorAfter <= o.errorNearest)
    for i in p.w.indices {
        let s = scales[(i / k) * groups + (i % k) / gs], q = Double(o.values[i]) / s
        #expect(abs(q - q.rounded()) < 1e-4 && abs(q) <= 7 + 1e-6 && abs(q - Double(p.w[i]) / s) < 1 + 1e-6, "weight \(i)")
    }
}
