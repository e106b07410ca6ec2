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
