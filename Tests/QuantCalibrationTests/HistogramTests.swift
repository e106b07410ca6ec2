import Foundation
import QuantCalibration
import QuantCore
import Testing

@Test func histogramCountsAndQuantiles() {
    var s = TensorStatistics(bins: 10)
    // Values 0.5, 1.5, ..., 9.5 need width 1 (width 0.5 would take 20 bins): one per bin.
    s.update(Tensor(shape: [10], floats: (0..<10).map { Float($0) + 0.5 }))
    let h = s.histogram!
    #expect(h.lo == 0 && h.hi == 10 && h.width == 1)
    #expect(h.counts == [Double](repeating: 1, count: 10))
    #expect(h.total == 10)
    #expect(s.min == 0.5 && s.max == 9.5)
    #expect(abs(s.mean - 5) < 1e-12)
    #expect(abs(s.standardDeviation - (99.0 / 12).squareRoot()) < 1e-9)  // var of 0.5..9.5
    // Median of the uniform bins lies at the middle of the range.
    #expect(abs(h.quantile(0.5) - 5) < 1e-9)
}

@Test func histogramGrowsByMergingBinPairs() {
    var h = Histogram(exponent: 0, first: 0, counts: [1, 2, 3, 4], maxBins: 4)
    h.cover(0, 6)
    // 7 bins of width 1 would be needed: width 2, bins [0,2) [2,4) [4,6) [6,8).
    #expect(h.width == 2 && h.lo == 0 && h.hi == 8)
    #expect(h.counts == [3, 7, 0, 0])
    h.cover(-1, 8)
    // Width 4: bins [-4,0) [0,4) [4,8) [8,12).
    #expect(h.width == 4 && h.lo == -4 && h.counts == [0, 10, 0, 0])
}

@Test func histogramsOfShardsMergeExactly() {
    var rng = Sampler(seed: 5)
    let parts = (0..<4).map { k in rng.tensor(20_000) { Double(k + 1) * $0.laplace() } }
    var whole = TensorStatistics(bins: 512)
    for p in parts { whole.update(p) }
    var a = TensorStatistics(bins: 512), b = TensorStatistics(bins: 512)
    a.update(parts[3])
    a.update(parts[0])
    b.update(parts[1])
    b.update(parts[2])
    a.merge(b)
    #expect(a.histogram == whole.histogram)
    #expect(a.absHistogram == whole.absHistogram)
}

@Test func statisticsOfShardsMergeBitForBit() {
    // Every field, sums included: shards in any order and grouping equal one pass, and the
    // threads a batch is summarized with do not matter (sums over fixed chunks, exact totals).
    var rng = Sampler(seed: 11)
    let parts = (0..<5).map { k in rng.tensor(70_000 + 1_000 * k) { Double(k + 1) * $0.gaussian() + 0.1 } }
    var whole = TensorStatistics(bins: 256)
    for p in parts { whole.update(p, threads: 2) }
    var a = TensorStatistics(bins: 256), b = TensorStatistics(bins: 256), c = TensorStatistics(bins: 256)
    a.update(parts[4], threads: 1)
    b.update(parts[0], threads: 1)
    b.update(parts[2], threads: 1)
    c.update(parts[1], threads: 3)
    c.update(parts[3], threads: 1)
    c.merge(a)
    b.merge(c)
    #expect(b == whole)
    #expect(b.sum == whole.sum && b.sumOfSquares == whole.sumOfSquares && b.sumOfBatchMax == whole.sumOfBatchMax)
    // Through JSON, as `quantkit calibrate --merge` reads the shards' files.
    let round = try? JSONDecoder().decode(TensorStatistics.self, from: JSONEncoder().encode(whole))
    #expect(round == whole)
}

@Test func exactSumsDoNotDependOnOrder() {
    let values: [Double] = [1e300, 3.5, -1e300, 1e-300, 2.0.ulp, -7.25, 5e-324, 1 / 3, -1e-10, 123_456_789.123]
    var forward = ExactSum(), backward = ExactSum()
    for v in values { forward.add(v) }
    for v in values.reversed() { backward.add(v) }
    #expect(forward == backward)
    // 1e300 − 1e300 cancels exactly; the double sum loses the small terms.
    let expected = 3.5 - 7.25 + 1.0 / 3 - 1e-10 + 123_456_789.123
    #expect(abs(forward.value - expected) <= expected.ulp * 4)
    var halves = ExactSum(), other = ExactSum()
    for v in values.prefix(4) { halves.add(v) }
    for v in values.dropFirst(4) { other.add(v) }
    halves.add(other)
    #expect(halves == forward && halves.value == forward.value)
    #expect(ExactSum(-2.5).value == -2.5 && ExactSum().value == 0)
}

@Test func averageAndNStdClipping() {
    var s = TensorStatistics(bins: 16)
    s.update(Tensor(shape: [3], floats: [-1, 0, 3]))
    s.update(Tensor(shape: [3], floats: [-3, 0, 1]))
    #expect(s.averageMin == -2 && s.averageMax == 2)
    let g = QuantGrid.uint8Asymmetric
    #expect(RangeSelection.select(s, method: .average, grid: g).range == ClipRange(lo: -2, hi: 2))
    #expect(RangeSelection.select(s, method: .minMax, grid: g).range == ClipRange(lo: -3, hi: 3))
    // mean 0, std sqrt(20/6): one std.
    let r = RangeSelection.select(s, method: .standardDeviations(1), grid: g).range
    #expect(abs(r.hi - (20.0 / 6).squareRoot()) < 1e-9 && abs(r.lo + (20.0 / 6).squareRoot()) < 1e-9)
}

@Test func nanAndInfAreCountedNotObserved() {
    var s = TensorStatistics(bins: 8)
    s.update(Tensor(shape: [4], floats: [1, .nan, -.infinity, 2]))
    #expect(s.nanOrInfCount == 2 && s.elementCount == 2 && s.max == 2 && s.min == 1)
}

@Test func mergingHalvesEqualsOnePassWithinOneBin() {
    var rng = Sampler(seed: 7)
    let a = rng.tensor(50_000) { $0.gaussian() }
    let b = rng.tensor(50_000) { 3 * $0.gaussian() + 1 }  // wider: forces growth on merge
    var whole = TensorStatistics()
    whole.update(a)
    whole.update(b)
    var sa = TensorStatistics(), sb = TensorStatistics()
    sa.update(a)
    sb.update(b)
    sa.merge(sb)
    #expect(sa.min == whole.min && sa.max == whole.max && sa.elementCount == whole.elementCount)
    #expect(abs(sa.mean - whole.mean) < 1e-9 && abs(sa.standardDeviation - whole.standardDeviation) < 1e-9)
    let width = max(whole.absHistogram!.width, sa.absHistogram!.width)
    for method in [RangeMethod.percentile(0.999), .kl(stride: 1), .klV2, .mse] {
        for grid in [QuantGrid.int8Symmetric, .uint8Asymmetric] {
            let x = RangeSelection.select(whole, method: method, grid: grid).range
            let y = RangeSelection.select(sa, method: method, grid: grid).range
            #expect(abs(x.hi - y.hi) <= width && abs(x.lo - y.lo) <= width, "\(method) \(grid): \(x) vs \(y), bin \(width)")
        }
    }
}

@Test func gridParameters() {
    let s8 = QuantGrid.int8Symmetric
    #expect(s8.qmin == -127 && s8.qmax == 127)
    let (scale, zp) = s8.parameters(for: ClipRange(lo: -2, hi: 1.27))
    #expect(abs(scale - 2.0 / 127) < 1e-15 && zp == 0)
    let u8 = QuantGrid.uint8Asymmetric
    let (s2, z2) = u8.parameters(for: ClipRange(lo: -1, hi: 3))
    #expect(abs(s2 - 4.0 / 255) < 1e-15 && z2 == 64)  // round(255/4) = 63.75 -> 64
    // Ranges not containing 0 are widened to contain it; all-zero tensors get a positive scale.
    #expect(u8.parameters(for: ClipRange(lo: 2, hi: 4)).zeroPoint == 0)
    let (s0, z0) = u8.parameters(for: ClipRange(lo: 0, hi: 0))
    #expect(s0 > 0 && s0.isFinite && z0 == 0)
    #expect(s8.parameters(for: ClipRange(lo: 0, hi: 0)).scale > 0)
    // Half-to-even rounding: 0.5 -> 0, 1.5 -> 2.
    #expect(s8.fakeQuantize(0.5, scale: 1, zeroPoint: 0) == 0 && s8.fakeQuantize(1.5, scale: 1, zeroPoint: 0) == 2)
    #expect(QuantGrid(bits: 4, signed: true, symmetric: true).qmax == 7)
}
