import CKernels
import QuantCore
import QuantExecutor

/// Streaming statistics of one tensor over all calibration batches, in memory independent of
/// the number of batches:
/// - min/max (and per-channel min/max along `channelAxis` when asked);
/// - the running mean of per-batch min and max ("avg" clipping);
/// - mean and standard deviation ("n_std" clipping: mean ± n·std), from sums in Double;
/// - a histogram of x and one of |x| (`bins` bins each, growing by re-binning).
///
/// Two `TensorStatistics` of the same tensor merge into the statistics of the union of their
/// data (`merge`): min/max, counts and histograms (``Histogram``: nested power-of-two bins) merge
/// exactly, and the sums behind the moments and batch averages are exact (``ExactSum``), so
/// shards merged give the one-pass statistics bit for bit. Each batch's own sums are computed in
/// fixed chunks, independent of the thread count.
public struct TensorStatistics: Codable, Sendable, Equatable {
    public private(set) var elementCount: Int = 0
    public private(set) var batchCount: Int = 0
    public private(set) var min: Double = .infinity
    public private(set) var max: Double = -.infinity
    public private(set) var sumOfBatchMin: Double = 0
    public private(set) var sumOfBatchMax: Double = 0
    public private(set) var sum: Double = 0
    public private(set) var sumOfSquares: Double = 0
    public private(set) var nanOrInfCount: Int = 0
    /// The exact sums behind `sumOfBatchMin`, `sumOfBatchMax`, `sum` and `sumOfSquares` (nil in
    /// statistics files written before they existed: those merge by adding the doubles).
    public struct ExactSums: Codable, Sendable, Equatable {
        public var batchMin = ExactSum(), batchMax = ExactSum(), sum = ExactSum(), squares = ExactSum()
    }
    public private(set) var exactSums: ExactSums? = ExactSums()
    public private(set) var histogram: Histogram?
    public private(set) var absHistogram: Histogram?
    public let channelAxis: Int?
    public private(set) var channelMin: [Double]?
    public private(set) var channelMax: [Double]?
    public let bins: Int

    public init(bins: Int = 2048, channelAxis: Int? = nil) {
        self.bins = bins
        self.channelAxis = channelAxis
    }

    public var mean: Double { elementCount > 0 ? sum / Double(elementCount) : 0 }
    public var standardDeviation: Double {
        guard elementCount > 0 else { return 0 }
        return (Swift.max(0, sumOfSquares / Double(elementCount) - mean * mean)).squareRoot()
    }
    public var averageMin: Double { batchCount > 0 ? sumOfBatchMin / Double(batchCount) : 0 }
    public var averageMax: Double { batchCount > 0 ? sumOfBatchMax / Double(batchCount) : 0 }
    public var absMax: Double { Swift.max(abs(min), abs(max)) }

    /// Adds one batch (a float32 tensor). NaN and infinite elements are counted and ignored.
    public mutating func update(_ t: Tensor, threads: Int = 1) {
        guard t.count > 0 else { return }
        let x: Tensor = t.dtype == .float ? t : Tensor(shape: t.shape, floats: t.floats())
        let summary = x.withUnsafeBufferPointer(as: Float.self) { Self.summarize($0, threads: threads) }
        guard summary.finite > 0 else {
            nanOrInfCount += summary.nonFinite
            return
        }
        elementCount += summary.finite
        nanOrInfCount += summary.nonFinite
        batchCount += 1
        min = Swift.min(min, summary.min)
        max = Swift.max(max, summary.max)
        addSums(batchMin: summary.min, batchMax: summary.max, sum: summary.sum, squares: summary.sumSquares)
        updateHistograms(x, batchMin: summary.min, batchMax: summary.max, threads: threads)
        if let axis = channelAxis { updateChannels(x, axis: axis) }
    }

    mutating func addSums(batchMin: Double, batchMax: Double, sum s: Double, squares: Double) {
        guard var e = exactSums else {
            sumOfBatchMin += batchMin
            sumOfBatchMax += batchMax
            sum += s
            sumOfSquares += squares
            return
        }
        e.batchMin.add(batchMin); e.batchMax.add(batchMax); e.sum.add(s); e.squares.add(squares)
        exactSums = e
        setSums(e)
    }

    mutating func setSums(_ e: ExactSums) {
        sumOfBatchMin = e.batchMin.value
        sumOfBatchMax = e.batchMax.value
        sum = e.sum.value
        sumOfSquares = e.squares.value
    }

    struct Summary {
        var min = Double.infinity, max = -Double.infinity, sum = 0.0, sumSquares = 0.0
        var finite = 0, nonFinite = 0
    }

    /// Min, max, sums and counts of the finite elements, in parallel chunks of ≥ 64 Ki
    /// elements (`qk_summarize`: vectorized, sums in double).
    static func summarize(_ p: UnsafeBufferPointer<Float>, threads: Int) -> Summary {
        // Chunks of 64 Ki elements whatever the thread count, combined in order: a batch's
        // sums do not depend on how many threads computed them.
        let chunks = Swift.max(1, p.count / (1 << 16))
        var parts = [Summary](repeating: Summary(), count: chunks)
        parts.withUnsafeMutableBufferPointer { parts in
            parallelFor(chunks, threads: Swift.min(threads, chunks)) { r in
                for c in r {
                    let lo = p.count * c / chunks, hi = p.count * (c + 1) / chunks
                    var q = qk_summary()
                    qk_summarize(p.baseAddress! + lo, hi - lo, &q)
                    parts[c] = Summary(min: Double(q.min), max: Double(q.max), sum: q.sum, sumSquares: q.sum_squares,
                                       finite: q.finite, nonFinite: hi - lo - q.finite)
                }
            }
        }
        return parts.dropFirst().reduce(parts[0]) { a, b in
            Summary(min: Swift.min(a.min, b.min), max: Swift.max(a.max, b.max), sum: a.sum + b.sum,
                    sumSquares: a.sumSquares + b.sumSquares, finite: a.finite + b.finite, nonFinite: a.nonFinite + b.nonFinite)
        }
    }

    mutating func updateHistograms(_ x: Tensor, batchMin: Double, batchMax: Double, threads: Int) {
        // x over [min(0, lo), max(0, hi)] so 0 is a bin edge; |x| over [0, max|x|].
        let lo = Swift.min(0, batchMin), hi = Swift.max(0, batchMax)
        let amax = Swift.max(abs(batchMin), abs(batchMax))
        if histogram == nil {
            histogram = Histogram(covering: lo, hi, maxBins: bins)
            absHistogram = Histogram(covering: 0, amax, maxBins: bins)
        } else {
            histogram!.cover(lo, hi)
            absHistogram!.cover(0, amax)
        }
        let h = histogram!, a = absHistogram!
        let hn = h.bins, an = a.bins
        // Bin k holds [k·w, (k+1)·w): index = floor(x / w) - first (w a power of 2, so x / w is
        // exact), computed as trunc(clamp(x / w - first, 0, bins - 1)) in double by
        // `qk_histogram2`; the clamp to ≥ 0 comes first, so truncation is floor.
        let hGrid = qk_bin_grid(inv: 1 / h.width, first: Double(h.first), top: Double(hn - 1))
        let aGrid = qk_bin_grid(inv: 1 / a.width, first: Double(a.first), top: Double(an - 1))
        let chunks = Swift.max(1, Swift.min(threads, x.count / (1 << 16)))
        let scratch = qk_histogram2_scratch(hn, an)
        var local = [[Double]](repeating: [], count: chunks)
        x.withUnsafeBufferPointer(as: Float.self) { p in
            local.withUnsafeMutableBufferPointer { local in
                parallelFor(chunks, threads: chunks) { r in
                    let counters = UnsafeMutablePointer<UInt32>.allocate(capacity: scratch)
                    counters.initialize(repeating: 0, count: scratch)
                    defer { counters.deallocate() }
                    for c in r {
                        let s = p.count * c / chunks, e = p.count * (c + 1) / chunks
                        var counts = [Double](repeating: 0, count: hn + an)
                        counts.withUnsafeMutableBufferPointer { cnt in
                            qk_histogram2(p.baseAddress! + s, e - s, hGrid, aGrid, cnt.baseAddress!, cnt.baseAddress! + hn, counters)
                        }
                        local[c] = counts
                    }
                }
            }
        }
        var hc = local[0].count == hn + an ? Array(local[0][..<hn]) : [Double](repeating: 0, count: hn)
        var ac = local[0].count == hn + an ? Array(local[0][hn...]) : [Double](repeating: 0, count: an)
        for l in local.dropFirst() {
            for i in 0..<hn { hc[i] += l[i] }
            for i in 0..<an { ac[i] += l[hn + i] }
        }
        histogram!.accumulate(hc)
        absHistogram!.accumulate(ac)
    }

    mutating func updateChannels(_ x: Tensor, axis: Int) {
        guard let ax = Shapes.axis(axis, rank: x.rank) else { return }
        let c = x.shape[ax]
        let inner = x.shape[(ax + 1)...].reduce(1, *)
        let outer = x.shape[..<ax].reduce(1, *)
        var mn = channelMin ?? [Double](repeating: .infinity, count: c)
        var mx = channelMax ?? [Double](repeating: -.infinity, count: c)
        guard mn.count == c else { return }
        x.withUnsafeBufferPointer(as: Float.self) { p in
            for o in 0..<outer {
                for ch in 0..<c {
                    let base = (o * c + ch) * inner
                    var a = Float.infinity, b = -Float.infinity
                    for k in base..<(base + inner) where p[k].isFinite {
                        a = Swift.min(a, p[k])
                        b = Swift.max(b, p[k])
                    }
                    mn[ch] = Swift.min(mn[ch], Double(a))
                    mx[ch] = Swift.max(mx[ch], Double(b))
                }
            }
        }
        channelMin = mn
        channelMax = mx
    }

    /// The statistics of the union of both data sets.
    public mutating func merge(_ o: TensorStatistics) {
        guard o.batchCount > 0 else { return }
        guard batchCount > 0 else {
            self = o
            return
        }
        elementCount += o.elementCount
        batchCount += o.batchCount
        min = Swift.min(min, o.min)
        max = Swift.max(max, o.max)
        if var e = exactSums, let f = o.exactSums {
            e.batchMin.add(f.batchMin); e.batchMax.add(f.batchMax); e.sum.add(f.sum); e.squares.add(f.squares)
            exactSums = e
            setSums(e)
        } else {
            exactSums = nil
            sumOfBatchMin += o.sumOfBatchMin
            sumOfBatchMax += o.sumOfBatchMax
            sum += o.sum
            sumOfSquares += o.sumOfSquares
        }
        nanOrInfCount += o.nanOrInfCount
        if let h = histogram, let oh = o.histogram { histogram = Histogram.merged(h, oh) }
        if let h = absHistogram, let oh = o.absHistogram { absHistogram = Histogram.merged(h, oh) }
        if let a = channelMin, let b = o.channelMin, a.count == b.count { channelMin = zip(a, b).map { Swift.min($0, $1) } }
        if let a = channelMax, let b = o.channelMax, a.count == b.count { channelMax = zip(a, b).map { Swift.max($0, $1) } }
    }

    /// Statistics known only by their range (imported from CSV or another tool).
    public static func imported(min: Double, max: Double) -> TensorStatistics {
        var s = TensorStatistics(bins: 0)
        s.min = min
        s.max = max
        s.batchCount = 1
        s.addSums(batchMin: min, batchMax: max, sum: 0, squares: 0)
        return s
    }
}
