import Foundation
import QuantCalibration
import QuantCore
import Testing

/// The vectorized statistics loops (qk_summarize, qk_histogram2) against the definitions
/// written out per element: bin = floor(x / w) - first clamped to the bins, min/max over
/// finite values, sums in double.
struct Reference {
    var min = Double.infinity, max = -Double.infinity, sum = 0.0, squares = 0.0, finite = 0, nonFinite = 0

    init(_ x: [Float]) {
        for v in x {
            guard v.isFinite else { nonFinite += 1; continue }
            min = Swift.min(min, Double(v))
            max = Swift.max(max, Double(v))
            sum += Double(v)
            squares += Double(v) * Double(v)
            finite += 1
        }
    }

    static func counts(_ x: [Float], _ h: Histogram, abs: Bool) -> [Double] {
        var c = [Double](repeating: 0, count: h.bins)
        for v in x where v.isFinite {
            let d = abs ? Swift.abs(Double(v)) : Double(v)
            c[Swift.min(Swift.max(Int((d / h.width).rounded(.down)) - h.first, 0), h.bins - 1)] += 1
        }
        return c
    }
}

/// Values shaped like activations: runs of exact zeros (Relu), ±0, tails that are not a
/// multiple of the vector width, NaN/±inf when `special`.
func activationLike(_ n: Int, seed: UInt64, special: Bool) -> [Float] {
    var rng = Sampler(seed: seed)
    var x = [Float](repeating: 0, count: n)
    for i in 0..<n {
        let block = (i / 13) % 4
        switch block {
        case 0: x[i] = 0
        case 1: x[i] = Float(Swift.max(0, Swift.min(6, 2 * rng.gaussian())))
        case 2: x[i] = Float(rng.laplace() * 0.3)
        default: x[i] = i % 7 == 0 ? -0.0 : Float(rng.gaussian() * 1e-3)
        }
        if special && i % 997 == 5 { x[i] = [Float.nan, .infinity, -.infinity][i % 3] }
    }
    return x
}

@Test(arguments: [(1, UInt64(1), false), (7, 2, true), (8, 3, false), (1001, 4, true), (70_003, 5, false), (200_000, 6, true)])
func vectorizedStatisticsMatchTheDefinitions(n: Int, seed: UInt64, special: Bool) {
    let x = activationLike(n, seed: seed, special: special)
    for threads in [1, 3] {
        var s = TensorStatistics(bins: 128)
        s.update(Tensor(shape: [n], floats: x), threads: threads)
        let r = Reference(x)
        #expect(s.nanOrInfCount == r.nonFinite)
        guard r.finite > 0 else { continue }
        #expect(s.elementCount == r.finite && s.min == r.min && s.max == r.max)
        #expect(abs(s.sum - r.sum) <= 1e-9 * Swift.max(1, abs(r.squares)))
        #expect(abs(s.sumOfSquares - r.squares) <= 1e-12 * Swift.max(1, r.squares))
        let h = s.histogram!, a = s.absHistogram!
        #expect(h.counts == Reference.counts(x, h, abs: false))
        #expect(a.counts == Reference.counts(x, a, abs: true))
        #expect(h.total == Double(r.finite) && a.total == Double(r.finite))
    }
}

@Test func negativeZeroMinimumIsReportedAsZero() {
    var s = TensorStatistics(bins: 16)
    s.update(Tensor(shape: [10], floats: [-0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))
    #expect(s.min == 0 && s.min.sign == .plus)
}
