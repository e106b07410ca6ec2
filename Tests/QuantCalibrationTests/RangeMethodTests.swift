import Foundation
import QuantCalibration
import QuantCore
import Testing

@Test func percentileOnHandHistogram() {
    // 100 values 0..99 + one outlier 1000: |x| histogram of width 2 over [0, 1002).
    var s = TensorStatistics(bins: 1000)
    s.update(Tensor(shape: [101], floats: (0..<100).map(Float.init) + [1000]))
    let r = RangeSelection.select(s, method: .percentile(0.99), grid: .int8Symmetric).range
    // 99% of 101 values = 99.99 values: within the bin of value 99 ([99, 100)).
    #expect(r.lo == 0 && r.hi > 99 && r.hi <= 100)
    #expect(RangeSelection.select(s, method: .minMax, grid: .int8Symmetric).range.hi == 1000)
}

@Test func klHandComputedTwoLevels() {
    // Counts [4, 0, 2, 2] over [0, 4), quantized to 2 levels. Candidates i = 2, 3, 4:
    // i=2: P=[4, 4] (outliers 4 folded), Q groups {0},{1}: [4, 0] -> Q=0 where P>0: rejected.
    // i=3: P=[4,0,4], Q groups {0},{1,2}: [4, 0, 2] -> KL = .5 ln(.5/(2/3)) + .5 ln(.5/(1/3)) ≈ 0.0589
    // i=4: P=[4,0,2,2], Q groups {0,1},{2,3}: [4,0,2,2] -> KL = 0: wins, threshold 4.
    let h = Histogram(exponent: 0, first: 0, counts: [4, 0, 2, 2])
    #expect(RangeSelection.klThreshold(h, levels: 2, stride: 1, smooth: false) == 4)
    // Counts [8, 8, 1, 0, 0, 0, 0, 1]: i=2: P=[8,10], Q=[8,8] -> KL ≈ 0.0062; i=3: P=[8,8,2],
    // Q=[8,4.5,4.5] -> ≈ 0.107; i=4..7: the folded tail lands on an empty bin -> rejected;
    // i=8: Q=[17/3,17/3,17/3,0,0,0,0,1] -> ≈ 0.209. Threshold 2.
    let tail = Histogram(exponent: 0, first: 0, counts: [8, 8, 1, 0, 0, 0, 0, 1])
    #expect(RangeSelection.klThreshold(tail, levels: 2, stride: 1, smooth: false) == 2)
}

@Test func mseHandComputed() {
    // Two values at ±1 and a far outlier at 100 (|x| histogram, 100 bins of width 1).
    var s = TensorStatistics(bins: 100)
    s.update(Tensor(shape: [201], floats: [Float](repeating: 1, count: 100) + [Float](repeating: -1, count: 100) + [100]))
    let r = RangeSelection.select(s, method: .mse, grid: .int8Symmetric).range
    // Keeping the outlier costs 200·Δ²/12 with Δ = 200/254 (≈ 10.3); clipping at T ≈ 2 costs
    // (100 - T)² ≈ 9604 for the outlier: keeping it wins (its bin centre is 99.5, so the
    // edge at 99 is as good as 100 up to rounding noise).
    #expect(r.hi >= 99)
    // At 2 bits (±1 levels) rounding noise dominates: Δ = 100 → 200·100²/12 ≈ 166,667 > 9604.
    let r2 = RangeSelection.select(s, method: .mse, grid: QuantGrid(bits: 2, signed: true, symmetric: true)).range
    #expect(r2.hi < 10, "got \(r2)")
}

/// Expected MSE of clipping a symmetric density at α with uniform rounding noise Δ²/12, Δ =
/// 2α/steps (Banner et al. 2018, ACIQ, with the grid's step count): closed forms for the
/// tails. Returns the α minimizing it by golden-section search.
func analyticOptimum(laplace: Bool, steps: Double) -> Double {
    func q(_ a: Double) -> Double { 0.5 * erfc(a / 2.0.squareRoot()) }
    func phi(_ a: Double) -> Double { exp(-a * a / 2) / (2 * Double.pi).squareRoot() }
    func e(_ a: Double) -> Double {
        let noise = pow(2 * a / steps, 2) / 12
        if laplace { return 2 * exp(-a) + noise * (1 - exp(-a)) }
        return 2 * ((1 + a * a) * q(a) - a * phi(a)) + noise * (1 - 2 * q(a))
    }
    var lo = 0.1, hi = 20.0
    let g = (5.0.squareRoot() - 1) / 2
    for _ in 0..<200 {
        let a = hi - g * (hi - lo), b = lo + g * (hi - lo)
        if e(a) < e(b) { hi = b } else { lo = a }
    }
    return (lo + hi) / 2
}

@Test(arguments: [(true, 4), (true, 8), (false, 4), (false, 8)])
func mseMatchesAnalyticOptimum(_ laplace: Bool, _ bits: Int) {
    var rng = Sampler(seed: UInt64(bits) + (laplace ? 100 : 0))
    var s = TensorStatistics(bins: 2048)
    for _ in 0..<10 { s.update(rng.tensor(200_000) { laplace ? $0.laplace() : $0.gaussian() }, threads: 2) }
    let grid = QuantGrid(bits: bits, signed: true, symmetric: true)
    let got = RangeSelection.select(s, method: .mse, grid: grid).range.hi
    let want = analyticOptimum(laplace: laplace, steps: Double(grid.qmax - grid.qmin))
    #expect(abs(got - want) / want < 0.02, "\(laplace ? "Laplace" : "Gaussian") \(bits)-bit: mse \(got), analytic \(want)")
}

@Test func sweepsGiveSensibleOrderings() {
    var rng = Sampler(seed: 3)
    // Uniform data: nothing to clip, every method keeps (nearly) the whole range.
    var u = TensorStatistics()
    u.update(rng.tensor(200_000) { 2 * $0.uniform() - 1 })
    for m in [RangeMethod.mse, .kl(stride: 1), .klV2] {
        let r = RangeSelection.select(u, method: m, grid: .int8Symmetric).range
        #expect(r.hi > 0.9, "\(m) on uniform: \(r)")
    }
    // ReLU-clipped Gaussian: non-negative, so ranges start at 0 and asymmetric grids use [0, T].
    var relu = TensorStatistics()
    relu.update(rng.tensor(200_000) { max(0, $0.gaussian()) })
    for m in [RangeMethod.minMax, .percentile(0.9999), .kl(stride: 1), .klV2, .mse, .auto] {
        let r = RangeSelection.select(relu, method: m, grid: .uint8Asymmetric).range
        #expect(r.lo == 0 && r.hi > 1.5 && r.hi <= relu.max, "\(m) on ReLU: \(r)")
    }
    // Heavy tails: clipping methods clip below the max.
    var lap = TensorStatistics()
    lap.update(rng.tensor(500_000) { $0.laplace() })
    for m in [RangeMethod.percentile(0.999), .kl(stride: 1), .mse] {
        #expect(RangeSelection.select(lap, method: m, grid: .int8Symmetric).range.hi < lap.absMax * 0.9, "\(m)")
    }
    // auto never does worse (grid error) than any of its candidates, and KL is none of them.
    let best = RangeSelection.select(lap, method: .auto, grid: .int8Symmetric)
    let err = RangeSelection.gridError(lap, best.range, .int8Symmetric)
    #expect(!best.method.description.hasPrefix("kl"))
    for m in [RangeMethod.minMax, .percentile(0.9999), .mse] {
        let r = RangeSelection.select(lap, method: m, grid: .int8Symmetric).range
        #expect(err <= RangeSelection.gridError(lap, r, .int8Symmetric) + 1e-9)
    }
    // Skewed data: kl_v2's per-side search leaves the short side near its extent.
    var skew = TensorStatistics()
    skew.update(rng.tensor(200_000) { -0.5 + $0.laplace().magnitude })
    let r = RangeSelection.select(skew, method: .klV2, grid: .uint8Asymmetric).range
    #expect(r.lo <= -0.45 && r.hi < skew.max, "kl_v2 asym: \(r)")
}

@Test func methodNames() {
    #expect(RangeMethod(name: "null") == .minMax)
    #expect(RangeMethod(name: "kld") == .kl(stride: 128))
    #expect(RangeMethod(name: "EMS") == .mse)
    #expect(RangeMethod(name: "percentile", percentile: 0.999) == .percentile(0.999))
    #expect(RangeMethod(name: "default") == .auto)
    #expect(RangeMethod(name: "bogus") == nil)
}

@Test func statisticsFileRoundTripMergeAndCSV() throws {
    var rng = Sampler(seed: 11)
    var s = TensorStatistics(bins: 64)
    s.update(rng.tensor(1000) { $0.gaussian() })
    let f = StatisticsFile(model: "m.onnx", samples: 10, tensors: ["a": .init(statistics: s, range: ClipRange(lo: -1, hi: 1), method: "minmax")])
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qk-stats-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("s.json").path
    try f.write(to: path)
    let back = try StatisticsFile.read(path: path)
    #expect(back.tensors["a"]?.statistics == s && back.samples == 10)
    let m = try StatisticsFile.merged(back, back)
    #expect(m.samples == 20 && m.tensors["a"]?.statistics.elementCount == 2000 && m.tensors["a"]?.range == nil)
    let other = StatisticsFile(model: "other.onnx", samples: 1, tensors: [:])
    #expect(throws: QuantKitError.self) { try StatisticsFile.merged(back, other) }
    let csv = dir.appendingPathComponent("r.csv").path
    try "tensor,min,max\nconv1_out,-1.5,2.25\n# comment\n".write(toFile: csv, atomically: true, encoding: .utf8)
    let imported = try StatisticsFile.read(path: csv)
    #expect(imported.tensors["conv1_out"]?.range == ClipRange(lo: -1.5, hi: 2.25))
    let sel = RangeSelection.select(imported.tensors["conv1_out"]!.statistics, method: .kl(stride: 1), grid: .uint8Asymmetric)
    #expect(sel.range == ClipRange(lo: -1.5, hi: 2.25) && sel.note != nil)
    try "conv1_out,3,2\n".write(toFile: csv, atomically: true, encoding: .utf8)
    #expect(throws: QuantKitError.self) { try StatisticsFile.read(path: csv) }
}

/// The mse search uses prefix sums; it must pick the threshold a direct O(bins²) evaluation of
/// the same error model picks (seeded Laplace/ReLU-like data, symmetric and asymmetric grids).
@Test(arguments: [0, 1, 2])
func mseMatchesDirectEvaluation(seed: Int) {
    var g = Sampler(seed: UInt64(seed) + 11)
    var values = [Float]()
    for _ in 0..<20_000 {
        let x = Float(g.laplace())
        values.append(seed == 2 ? max(0, x) : x + (seed == 1 ? 0.7 : 0))
    }
    var s = TensorStatistics(bins: 256)
    s.update(Tensor(shape: [values.count], floats: values))
    for grid in [QuantGrid.int8Symmetric, .uint8Asymmetric, QuantGrid(bits: 4, signed: true, symmetric: true)] {
        let got = RangeSelection.select(s, method: .mse, grid: grid).range
        // Direct evaluation, written out independently.
        func err(_ h: Histogram, _ lo: Double, _ hi: Double, _ gr: QuantGrid) -> Double {
            let steps = Double(gr.qmax - gr.qmin)
            let d = gr.symmetric ? 2 * max(abs(lo), abs(hi)) / steps : (hi - lo) / steps
            var e = 0.0
            for k in 0..<h.bins where h.counts[k] > 0 {
                let x = h.center(k), n = h.counts[k]
                e += x > hi ? n * (x - hi) * (x - hi) : x < lo ? n * (lo - x) * (lo - x) : n * d * d / 12
            }
            return e
        }
        var want: ClipRange
        if grid.symmetric || s.min >= 0 {
            let h = s.absHistogram!
            let gr = grid.symmetric ? grid : QuantGrid(bits: grid.bits, signed: false, symmetric: false)
            var best = (Double.infinity, 0.0)
            for i in 1...h.bins {
                let t = Double(i) * h.width
                let e = err(h, grid.symmetric ? -t : 0, t, gr)
                if e < best.0 { best = (e, t) }
            }
            let t = min(best.1, s.absMax)
            want = s.min >= 0 ? ClipRange(lo: 0, hi: t) : ClipRange(lo: grid.symmetric ? -t : 0, hi: t)
        } else {
            let h = s.histogram!
            var best = (Double.infinity, 1.0)
            for k in 1...h.bins {
                let f = Double(k) / Double(h.bins)
                let e = err(h, f * s.min, f * s.max, grid)
                if e < best.0 { best = (e, f) }
            }
            want = ClipRange(lo: min(max(best.1 * s.min, s.min), 0), hi: max(min(best.1 * s.max, s.max), 0))
        }
        #expect(abs(got.hi - want.hi) <= 1e-9 * max(1, abs(want.hi)), "seed \(seed) \(grid): \(got) vs \(want)")
        if !grid.symmetric && s.min < 0 { #expect(abs(got.lo - want.lo) <= 1e-9 * max(1, abs(want.lo))) }
    }
}
