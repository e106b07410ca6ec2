import Foundation
import QuantAlgorithms
import QuantData
import Testing

/// The weighted squared error of mapping `q` to its nearest value in `levels`.
private func cost(_ q: [Int], _ w: [Double], _ levels: [Int]) -> Double {
    zip(q, w).reduce(0) { e, p in
        let l = levels.min { abs($0 - p.0) < abs($1 - p.0) }!
        return e + p.1 * Double((p.0 - l) * (p.0 - l))
    }
}

@Test func levelsAreFewAndOptimalAgainstBruteForce() {
    var rng = SplitMix64(seed: 5)
    // Bell-shaped integers in [-20, 20] with per-element weights (channel scales squared).
    let q = (0..<400).map { _ in Int((Double.random(in: -1...1, using: &rng) + Double.random(in: -1...1, using: &rng)) * 10) }
    let w = (0..<400).map { i in i % 2 == 0 ? 1.0 : 4.0 }
    let r = NonUniformLevels.restrict(q, levels: 3, qmin: -127, qmax: 127) { w[$0] }
    #expect(r.levels.count == 3 && Set(r.q).isSubset(of: Set(r.levels)))
    // Every element sits on its nearest level.
    for (a, b) in zip(q, r.q) { #expect(r.levels.allSatisfy { abs($0 - a) >= abs(b - a) }) }
    // No other choice of 3 integer levels in [-20, 20] does better.
    let mine = cost(q, w, r.levels)
    var best = Double.infinity
    for a in -20...20 { for b in (a + 1)...21 { for c in (b + 1)...22 { best = min(best, cost(q, w, [a, b, c])) } } }
    #expect(mine <= best + 1e-9, "\(mine) vs brute force \(best)")
}

@Test func fewerDistinctValuesThanLevelsAreKept() {
    let q = [-3, 0, 0, 5, 5, 5]
    let r = NonUniformLevels.restrict(q, levels: 4, qmin: -7, qmax: 7) { _ in 1 }
    #expect(r.q == q && r.levels == [-3, 0, 5])
}
