/// Non-uniform weight quantization (NUQ, as Huawei AMCT offers): a layer's integer weights,
/// already on the uniform grid (int8 per channel), are restricted to `levels` distinct integers
/// chosen for that layer, so a runtime can store each weight as a log2(levels)-bit index into a
/// table while the model stays an ordinary int8 QDQ model that ONNX Runtime runs unchanged.
///
/// The levels are the optimal weighted 1-D k-means of the integers (exact, by dynamic
/// programming over the at most 2^bits distinct values, levels restricted to integers): each
/// weight counts with its channel's scale squared, so the objective is the layer's squared error
/// in real units Σ s_c²·(q − level)². Every weight then moves to its nearest level (ties to the
/// smaller magnitude).
public enum NonUniformLevels {
    /// Restricts `q` (integers in `qmin...qmax`; `weightOf(i)` the importance of element i) to at
    /// most `levels` values. Returns the new integers and the levels, ascending.
    public static func restrict(_ q: [Int], levels: Int, qmin: Int, qmax: Int, weightOf: (Int) -> Double) -> (q: [Int], levels: [Int]) {
        precondition(levels >= 1 && qmax >= qmin)
        let n = qmax - qmin + 1
        var mass = [Double](repeating: 0, count: n)
        for (i, v) in q.enumerated() { mass[v - qmin] += weightOf(i) }
        let values = (0..<n).filter { mass[$0] > 0 }
        guard values.count > levels else { return (q, values.map { $0 + qmin }) }
        let m = values.count
        // Prefix sums of w, w·v, w·v² over the distinct values (v relative to qmin).
        var pw = [Double](repeating: 0, count: m + 1), pv = pw, pvv = pw
        for (k, v) in values.enumerated() {
            let w = mass[v], x = Double(v)
            pw[k + 1] = pw[k] + w
            pv[k + 1] = pv[k] + w * x
            pvv[k + 1] = pvv[k] + w * x * x
        }
        // Cost of values[a..<b] at their best integer level: the nearest integer to their mean.
        func cluster(_ a: Int, _ b: Int) -> (cost: Double, level: Int) {
            let w = pw[b] - pw[a], s = pv[b] - pv[a], ss = pvv[b] - pvv[a]
            let c = (s / w).rounded()
            return (max(ss - 2 * c * s + c * c * w, 0), Int(c))
        }
        // best[j][b]: the least cost of values[0..<b] in j clusters; from[j][b] where the last starts.
        let inf = Double.infinity
        var best = [[Double]](repeating: [Double](repeating: inf, count: m + 1), count: levels + 1)
        var from = [[Int]](repeating: [Int](repeating: 0, count: m + 1), count: levels + 1)
        best[0][0] = 0
        for j in 1...levels {
            for b in j...m {
                for a in (j - 1)..<b where best[j - 1][a] < inf {
                    let c = best[j - 1][a] + cluster(a, b).cost
                    if c < best[j][b] {
                        best[j][b] = c
                        from[j][b] = a
                    }
                }
            }
        }
        var chosen: [Int] = []
        var b = m
        for j in stride(from: levels, through: 1, by: -1) {
            let a = from[j][b]
            chosen.append(cluster(a, b).level + qmin)
            b = a
        }
        chosen = Array(Set(chosen)).sorted()
        // Every integer value maps to its nearest level.
        var map = [Int](repeating: 0, count: n)
        for v in 0..<n {
            let x = v + qmin
            var pick = chosen[0]
            for l in chosen where abs(l - x) < abs(pick - x) || (abs(l - x) == abs(pick - x) && abs(l) < abs(pick)) { pick = l }
            map[v] = pick
        }
        return (q.map { map[$0 - qmin] }, chosen)
    }
}
