import Foundation

/// A histogram whose bins have a power-of-two width w = 2^exponent and edges at integer
/// multiples of w: bin k covers [k·w, (k+1)·w). At most `maxBins` bins are kept; when the data
/// needs more, the width doubles and neighbouring bins merge pairwise, exactly.
///
/// Because the width is always the smallest power of two that fits the observed extent in
/// `maxBins` bins, and bins nest, the histogram depends only on the multiset of values seen:
/// growing batch by batch, or merging the histograms of two shards, gives exactly the histogram
/// of one pass over all the data. The price is resolution: between maxBins/2 and maxBins bins
/// span the extent.
public struct Histogram: Codable, Sendable, Equatable {
    public private(set) var exponent: Int
    /// Index of the first kept bin (lo = first · w).
    public private(set) var first: Int
    public private(set) var counts: [Double]
    public let maxBins: Int

    /// An empty histogram sized for data in [lo, hi].
    public init(covering lo: Double, _ hi: Double, maxBins: Int) {
        precondition(maxBins >= 2 && lo <= hi)
        self.maxBins = maxBins
        let span = hi - lo
        let mag = max(abs(lo), abs(hi))
        exponent = span > 0 ? Int(Foundation.log2(span / Double(maxBins)).rounded(.down)) : (mag > 0 ? Int(Foundation.log2(mag).rounded(.down)) - 20 : -60)
        exponent = max(exponent, -1000)
        first = 0
        counts = []
        cover(lo, hi)
    }

    /// A histogram with given bins (tests).
    public init(exponent: Int, first: Int, counts: [Double], maxBins: Int? = nil) {
        self.exponent = exponent
        self.first = first
        self.counts = counts
        self.maxBins = maxBins ?? max(counts.count, 2)
    }

    public var width: Double { Foundation.pow(2.0, Double(exponent)) }
    public var lo: Double { Double(first) * width }
    public var hi: Double { Double(first + counts.count) * width }
    public var bins: Int { counts.count }
    public var total: Double { counts.reduce(0, +) }
    public func center(_ i: Int) -> Double { (Double(first + i) + 0.5) * width }

    /// Index into `counts` of the bin holding `x` (clamped).
    public func bin(_ x: Double) -> Int {
        min(max(Int((x / width).rounded(.down)) - first, 0), counts.count - 1)
    }

    /// Extends the bins to hold [lo, hi], doubling the width while more than `maxBins` are needed.
    public mutating func cover(_ lo: Double, _ hi: Double) {
        while true {
            let w = width
            var b0 = Int((lo / w).rounded(.down)), b1 = Int((hi / w).rounded(.down))
            if !counts.isEmpty {
                b0 = min(b0, first)
                b1 = max(b1, first + counts.count - 1)
            }
            if b1 - b0 + 1 <= maxBins {
                if counts.isEmpty {
                    first = b0
                    counts = [Double](repeating: 0, count: b1 - b0 + 1)
                } else {
                    counts = [Double](repeating: 0, count: first - b0) + counts + [Double](repeating: 0, count: b1 - (first + counts.count - 1))
                    first = b0
                }
                return
            }
            coarsen()
        }
    }

    /// Doubles the width: bins 2j and 2j+1 (in absolute index) merge into bin j.
    mutating func coarsen() {
        let newFirst = floorDiv(first, 2)
        let newLast = floorDiv(first + counts.count - 1, 2)
        var out = [Double](repeating: 0, count: max(newLast - newFirst + 1, 0))
        for (i, c) in counts.enumerated() { out[floorDiv(first + i, 2) - newFirst] += c }
        counts = out
        first = newFirst
        exponent += 1
    }

    func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// Adds counts given for the current bins (used by the observers' parallel update).
    mutating func accumulate(_ local: [Double]) {
        for i in counts.indices { counts[i] += local[i] }
    }

    /// The histogram of the union of both data sets (exact).
    public static func merged(_ a: Histogram, _ b: Histogram) -> Histogram {
        var x = a, y = b
        while x.exponent < y.exponent { x.coarsen() }
        while y.exponent < x.exponent { y.coarsen() }
        x.cover(y.lo, y.hi - y.width / 2)
        while y.exponent < x.exponent { y.coarsen() }
        for (i, c) in y.counts.enumerated() where c != 0 { x.counts[y.first + i - x.first] += c }
        return x
    }

    /// The value below which a fraction `q` (0...1) of the mass lies, interpolating within a bin.
    public func quantile(_ q: Double) -> Double {
        let total = self.total
        guard total > 0 else { return lo }
        let target = q * total
        var acc = 0.0
        for (i, c) in counts.enumerated() {
            if acc + c >= target && c > 0 {
                return lo + (Double(i) + (target - acc) / c) * width
            }
            acc += c
        }
        return hi
    }

    /// The mass of the bins whose centre lies outside [lo, hi] (what a clipping range cuts off).
    public func mass(outside lo: Double, _ hi: Double) -> Double {
        var m = 0.0
        for (i, c) in counts.enumerated() where c != 0 {
            let x = center(i)
            if x < lo || x > hi { m += c }
        }
        return m
    }

    /// Bins [from, to) as a histogram (same width), for searches over one side.
    public func slice(_ from: Int, _ to: Int) -> Histogram {
        Histogram(exponent: exponent, first: first + from, counts: Array(counts[from..<to]), maxBins: maxBins)
    }
}
