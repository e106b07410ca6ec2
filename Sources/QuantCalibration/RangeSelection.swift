import Foundation

/// Chooses clipping ranges from `TensorStatistics`.
///
/// Symmetric grids search a threshold T on the |x| histogram and return [-T, T] (or [0, T]
/// when the tensor has no negative values); asymmetric grids return [lo, hi] within the
/// observed range. A method that needs histograms on statistics that have none (imported
/// ranges) falls back to min/max and says so in `Selection.note`.
public enum RangeSelection {
    public struct Selection: Sendable, Equatable {
        public var range: ClipRange
        /// The method that produced the range (for `auto`, the winning candidate).
        public var method: RangeMethod
        public var note: String?
    }

    public static func select(_ s: TensorStatistics, method: RangeMethod, grid: QuantGrid) -> Selection {
        guard s.batchCount > 0 else { return Selection(range: ClipRange(lo: 0, hi: 0), method: .minMax, note: "no finite data observed") }
        if method.needsHistogram && s.absHistogram == nil {
            return Selection(range: minMax(s, grid), method: .minMax, note: "\(method) needs histograms; the statistics have none, min/max used")
        }
        switch method {
        case .minMax: return Selection(range: minMax(s, grid), method: method)
        case .average: return Selection(range: shape(lo: s.averageMin, hi: s.averageMax, s, grid), method: method)
        case .standardDeviations(let n):
            let lo = max(s.min, s.mean - n * s.standardDeviation), hi = min(s.max, s.mean + n * s.standardDeviation)
            return Selection(range: shape(lo: lo, hi: hi, s, grid), method: method)
        case .percentile(let p): return Selection(range: percentile(s, p, grid), method: method)
        case .kl(let stride):
            let t = klThreshold(s.absHistogram!, levels: magnitudeLevels(s, grid), stride: max(1, stride), smooth: false)
            return Selection(range: shape(lo: -t, hi: t, s, grid), method: method)
        case .klV2: return Selection(range: klV2(s, grid), method: method)
        case .mse: return Selection(range: mse(s, grid), method: method)
        case .auto: return auto(s, grid)
        }
    }

    /// Levels available to |x| in [0, T]: half the grid when it is symmetric around 0 (or the
    /// data has negatives), all of it for non-negative data on an asymmetric grid.
    static func magnitudeLevels(_ s: TensorStatistics, _ grid: QuantGrid) -> Int {
        grid.symmetric || s.min < 0 ? 1 << (grid.bits - 1) : 1 << grid.bits
    }

    static func minMax(_ s: TensorStatistics, _ grid: QuantGrid) -> ClipRange { shape(lo: s.min, hi: s.max, s, grid) }

    /// Fits [lo, hi] to the grid: symmetric grids get ±max(|lo|, |hi|) (or [0, T] for
    /// non-negative data); everything is kept inside the observed range and contains 0.
    static func shape(lo: Double, hi: Double, _ s: TensorStatistics, _ grid: QuantGrid) -> ClipRange {
        if grid.symmetric {
            let t = min(max(abs(lo), abs(hi)), s.absMax)
            return s.min >= 0 ? ClipRange(lo: 0, hi: t) : ClipRange(lo: -t, hi: t)
        }
        return ClipRange(lo: min(max(lo, s.min), 0), hi: max(min(hi, s.max), 0))
    }

    static func percentile(_ s: TensorStatistics, _ p: Double, _ grid: QuantGrid) -> ClipRange {
        if grid.symmetric || s.min >= 0 {
            let t = s.absHistogram!.quantile(p)
            return shape(lo: -t, hi: t, s, grid)
        }
        let h = s.histogram!
        return shape(lo: h.quantile(1 - p), hi: h.quantile(p), s, grid)
    }

    /// KL threshold search (Migacz 2017, "8-bit Inference with TensorRT"). For each candidate
    /// i (number of leading bins kept, from `levels` to the bin count, every `stride` bins):
    /// P = counts[0..<i] with the mass of bins ≥ i added to bin i-1; Q = counts[0..<i] merged
    /// into `levels` groups, each group's sum spread evenly over its non-empty bins; both
    /// normalised; the candidate minimising KL(P‖Q) wins and the threshold is the upper edge of
    /// bin i-1 (i·width). Without smoothing, a candidate where Q is 0 but P is not is rejected.
    /// With `smooth` (kl_v2), empty bins of P and Q get ε = 1e-4 taken evenly from the others.
    public static func klThreshold(_ h: Histogram, levels: Int, stride: Int, smooth: Bool) -> Double {
        let n = h.bins
        let c = h.counts
        guard n > levels else { return h.hi }
        precondition(h.first == 0, "threshold search runs on histograms starting at 0")
        if !smooth { return klThresholdUnsmoothed(h, levels: levels, stride: stride) }
        var suffix = [Double](repeating: 0, count: n + 1)
        for k in (0..<n).reversed() { suffix[k] = suffix[k + 1] + c[k] }
        var best = Double.infinity
        var bestI = n
        var i = levels
        var p = [Double](repeating: 0, count: n)
        var q = [Double](repeating: 0, count: n)
        while i <= n {
            for k in 0..<i { p[k] = c[k] }
            p[i - 1] += suffix[i]
            for g in 0..<levels {
                let start = g * i / levels, end = (g + 1) * i / levels
                var sum = 0.0, nonzero = 0
                for k in start..<end {
                    sum += c[k]
                    if c[k] != 0 { nonzero += 1 }
                }
                let v = nonzero > 0 ? sum / Double(nonzero) : 0
                for k in start..<end { q[k] = c[k] != 0 ? v : 0 }
            }
            if smooth {
                smoothInPlace(&p, count: i)
                smoothInPlace(&q, count: i)
            }
            let kl = divergence(p, q, count: i)
            if kl < best {
                best = kl
                bestI = i
            }
            i += stride
        }
        return Double(bestI) * h.width
    }

    /// The same search without smoothing, in O(levels) per candidate instead of O(bins) logs:
    /// Q is constant (v_g = group mass / non-empty bins) on the non-empty bins of group g and
    /// P equals the counts except in the last kept bin, so with prefix sums
    ///   KL = (Σ p log p − Σ_g log v_g · P(g)) / sp + log(sq / sp),
    /// sp = total mass, sq = mass of the kept bins, P(g) = p's mass in group g. A candidate whose
    /// last kept bin is empty while mass lies beyond it has Q = 0 where P > 0 and is rejected.
    static func klThresholdUnsmoothed(_ h: Histogram, levels: Int, stride: Int) -> Double {
        let n = h.bins
        let c = h.counts
        var mass = [Double](repeating: 0, count: n + 1)      // Σ c[<k]
        var nonzero = [Int](repeating: 0, count: n + 1)      // #{c[<k] > 0}
        var plogp = [Double](repeating: 0, count: n + 1)     // Σ c log c over c[<k]
        for k in 0..<n {
            mass[k + 1] = mass[k] + c[k]
            nonzero[k + 1] = nonzero[k] + (c[k] > 0 ? 1 : 0)
            plogp[k + 1] = plogp[k] + (c[k] > 0 ? c[k] * log(c[k]) : 0)
        }
        let sp = mass[n]
        guard sp > 0 else { return h.hi }
        var best = Double.infinity
        var bestI = n
        var i = levels
        while i <= n {
            defer { i += stride }
            let tail = sp - mass[i]
            let last = c[i - 1]
            if last == 0 && tail > 0 { continue }
            let sq = mass[i]
            guard sq > 0 else { continue }
            let pLast = last + tail
            var spl = plogp[i - 1] + (pLast > 0 ? pLast * log(pLast) : 0)
            for g in 0..<levels {
                let start = g * i / levels, end = (g + 1) * i / levels
                let nz = nonzero[end] - nonzero[start]
                guard nz > 0 else { continue }
                let sum = mass[end] - mass[start]
                let pg = sum + (end == i ? tail : 0)
                spl -= log(sum / Double(nz)) * pg
            }
            let kl = spl / sp + log(sq / sp)
            if kl < best {
                best = kl
                bestI = i
            }
        }
        return Double(bestI) * h.width
    }

    static func smoothInPlace(_ d: inout [Double], count: Int, eps: Double = 1e-4) {
        var zeros = 0
        var sum = 0.0
        for k in 0..<count {
            if d[k] == 0 { zeros += 1 }
            sum += d[k]
        }
        guard sum > 0, zeros > 0, zeros < count else { return }
        let take = eps * Double(zeros) / Double(count - zeros)
        for k in 0..<count { d[k] = d[k] == 0 ? eps : d[k] / sum - take }
        // After this the distribution sums to 1 with every entry positive (when take < min p).
        for k in 0..<count where d[k] <= 0 { d[k] = eps }
    }

    /// KL(P‖Q) of the first `count` entries, each normalised to sum 1; ∞ when Q is 0 where P is not.
    static func divergence(_ p: [Double], _ q: [Double], count: Int) -> Double {
        var sp = 0.0, sq = 0.0
        for k in 0..<count {
            sp += p[k]
            sq += q[k]
        }
        guard sp > 0, sq > 0 else { return .infinity }
        var kl = 0.0
        for k in 0..<count where p[k] > 0 {
            let pk = p[k] / sp, qk = q[k] / sq
            if qk <= 0 { return .infinity }
            kl += pk * log(pk / qk)
        }
        return kl
    }

    /// kl_v2: symmetric grids search |x| with smoothing; asymmetric grids search each side of 0
    /// separately on the signed histogram, with the grid's levels shared in proportion to the
    /// side's extent.
    static func klV2(_ s: TensorStatistics, _ grid: QuantGrid) -> ClipRange {
        if grid.symmetric || s.min >= 0 {
            let t = klThreshold(s.absHistogram!, levels: magnitudeLevels(s, grid), stride: 1, smooth: true)
            return shape(lo: -t, hi: t, s, grid)
        }
        let h = s.histogram!
        let zero = -h.first  // 0 is a bin edge: bins ≥ zero hold x ≥ 0
        let total = 1 << grid.bits
        // Levels split by the observed extent (exact under merging), not the histogram bounds.
        let posShare = s.max / (s.max - s.min)
        let posLevels = max(2, Int((Double(total) * posShare).rounded()))
        let negLevels = max(2, total - posLevels)
        let pos = h.slice(zero, h.bins)
        let neg = Histogram(exponent: h.exponent, first: 0, counts: Array(h.counts[..<zero].reversed()), maxBins: h.maxBins)
        let hi = pos.bins > posLevels ? klThreshold(pos, levels: posLevels, stride: 1, smooth: true) : h.hi
        let lo = neg.bins > negLevels ? -klThreshold(neg, levels: negLevels, stride: 1, smooth: true) : h.lo
        return shape(lo: lo, hi: hi, s, grid)
    }

    /// Expected squared error of clipping to [lo, hi] on `grid`, over the histogram (values at
    /// bin centres): (x - edge)² outside the range, Δ²/12 inside (uniform rounding noise, the
    /// model of Banner et al. 2018, ACIQ), with Δ the grid step for that range.
    static func expectedError(_ h: Histogram, lo: Double, hi: Double, grid: QuantGrid) -> Double {
        let steps = Double(grid.qmax - grid.qmin)
        let delta = grid.symmetric ? 2 * max(abs(lo), abs(hi)) / steps : (hi - lo) / steps
        let noise = delta * delta / 12
        var e = 0.0
        for (k, n) in h.counts.enumerated() where n > 0 {
            let x = h.center(k)
            if x > hi { e += n * (x - hi) * (x - hi) } else if x < lo { e += n * (lo - x) * (lo - x) } else { e += n * noise }
        }
        return e
    }

    /// Prefix sums of n, n·x and n·x² over a histogram's bins (x the bin centre), so that the
    /// expected error of one clipping range costs O(1) instead of O(bins).
    struct ErrorTable {
        let h: Histogram
        var s0: [Double], s1: [Double], s2: [Double]

        init(_ h: Histogram) {
            self.h = h
            let n = h.bins
            s0 = [Double](repeating: 0, count: n + 1)
            s1 = s0
            s2 = s0
            for k in 0..<n {
                let c = h.counts[k], x = h.center(k)
                s0[k + 1] = s0[k] + c
                s1[k + 1] = s1[k] + c * x
                s2[k + 1] = s2[k] + c * x * x
            }
        }

        /// Equals `expectedError(h, lo:, hi:, grid:)`: bins whose centre is above hi (below lo)
        /// pay (x - hi)² ((lo - x)²), the others Δ²/12.
        func error(lo: Double, hi: Double, grid: QuantGrid) -> Double {
            let n = h.bins
            let steps = Double(grid.qmax - grid.qmin)
            let delta = grid.symmetric ? 2 * max(abs(lo), abs(hi)) / steps : (hi - lo) / steps
            let offset = Double(h.first) + 0.5                        // centre(k) = (k + offset)·w
            let a = (hi / h.width - offset).rounded(.down) + 1        // first centre > hi
            let b = (lo / h.width - offset).rounded(.up)              // centres < lo: k < b
            let kHi = Int(min(max(a, 0), Double(n)))
            let kLo = Int(min(max(b, 0), Double(kHi)))
            let above = (s2[n] - s2[kHi]) - 2 * hi * (s1[n] - s1[kHi]) + hi * hi * (s0[n] - s0[kHi])
            let below = s2[kLo] - 2 * lo * s1[kLo] + lo * lo * s0[kLo]
            return max(0, above) + max(0, below) + delta * delta / 12 * (s0[kHi] - s0[kLo])
        }
    }

    /// mse (Icraft `ems`): symmetric grids try every bin edge of the |x| histogram as threshold;
    /// asymmetric grids scale the observed [min, max] by k/n for k = 1...n.
    static func mse(_ s: TensorStatistics, _ grid: QuantGrid) -> ClipRange {
        if grid.symmetric || s.min >= 0 {
            let h = s.absHistogram!
            let table = ErrorTable(h)
            // A symmetric signed grid spends half its levels on negatives; for non-negative
            // data on an unsigned grid all levels cover [0, T].
            let g = grid.symmetric ? grid : QuantGrid(bits: grid.bits, signed: false, symmetric: false)
            var best = (Double.infinity, h.hi)
            for i in 1...h.bins {
                let t = Double(i) * h.width
                let e = grid.symmetric ? table.error(lo: -t, hi: t, grid: g) : table.error(lo: 0, hi: t, grid: g)
                if e < best.0 { best = (e, t) }
            }
            return shape(lo: -best.1, hi: best.1, s, grid)
        }
        let h = s.histogram!
        let table = ErrorTable(h)
        var best = (Double.infinity, 1.0)
        let n = h.bins
        for k in 1...n {
            let f = Double(k) / Double(n)
            let e = table.error(lo: f * s.min, hi: f * s.max, grid: grid)
            if e < best.0 { best = (e, f) }
        }
        return shape(lo: best.1 * s.min, hi: best.1 * s.max, s, grid)
    }

    /// Quantize-dequantize squared error of the histogram's bin centres on the real grid.
    public static func gridError(_ s: TensorStatistics, _ range: ClipRange, _ grid: QuantGrid) -> Double {
        let (scale, zp) = grid.parameters(for: range)
        return gridError(s, scale: scale, zeroPoint: zp, grid: grid) ?? 0
    }

    /// The same for a given scale and zero point; nil without histograms (imported ranges).
    public static func gridError(_ s: TensorStatistics, scale: Double, zeroPoint zp: Int, grid: QuantGrid) -> Double? {
        guard let h = grid.symmetric || s.min >= 0 ? s.absHistogram : s.histogram else { return nil }
        var e = 0.0
        for (k, n) in h.counts.enumerated() where n > 0 {
            let x = h.center(k)
            let d = x - grid.fakeQuantize(x, scale: scale, zeroPoint: zp)
            e += n * d * d
        }
        return e
    }

    /// The `default` method: per tensor the lowest grid error of mse, percentile 0.9999 and
    /// minmax. KL is no candidate: on the 16-model zoo it wins the grid error on some tensors
    /// while costing the task metric (removing it is as good or better on 15 of 16 models and on
    /// both halves of the zoo, docs/BENCHMARKS.md), and on its own it collapses four of them.
    static func auto(_ s: TensorStatistics, _ grid: QuantGrid) -> Selection {
        let candidates: [RangeMethod] = [.mse, .percentile(0.9999), .minMax]
        var best: Selection?
        var bestErr = Double.infinity
        for m in candidates {
            let sel = select(s, method: m, grid: grid)
            let e = gridError(s, sel.range, grid)
            if e < bestErr {
                bestErr = e
                best = sel
            }
        }
        return best!
    }
}
