import Foundation
import QuantCore

/// A part of a model output measured on its own: the channels (entries along `axis`) whose
/// float values are of one order of magnitude, when the output joins channels of far
/// different magnitudes (a YOLO-style head's 0-320 pixel boxes and 0-1 class scores in one
/// tensor). Whole-tensor SNR and cosine are dominated by the large channels; a slice's are not.
public struct OutputSlice: Codable, Sendable, Equatable {
    public var axis: Int
    /// The channel indices, as ranges: "4-83" or "0-3, 7".
    public var channels: String
    public var count: Int
    /// The largest |float value| in the slice.
    public var range: Double
    public var snr: Double
    public var cosine: Double

    /// "axis 1 channels 4-83 (float values up to 0.98)".
    public var label: String { "axis \(axis) channels \(channels) (float values up to \(AnalysisReport.format(range)))" }
}

/// Per-channel error sums of an output along its candidate channel axes: axis 1 and, for rank
/// 2 and 3 ([N, C], [N, A, C]), the last axis, each when it has 2 to `maxChannels` entries
/// that stay the same in every batch (an axis whose length changes, a sequence length, is
/// dropped). Memory: 5 doubles per channel.
public struct SliceSums: Codable, Sendable, Equatable {
    public struct Axis: Codable, Sendable, Equatable {
        public var axis: Int
        public var length: Int
        var signal: [Double]
        var noise: [Double]
        var dot: [Double]
        var testPower: [Double]
        var refMax: [Double]

        init(axis: Int, length: Int) {
            self.axis = axis
            self.length = length
            signal = Array(repeating: 0, count: length)
            noise = signal; dot = signal; testPower = signal; refMax = signal
        }
    }

    public var axes: [Axis]
    public static let maxChannels = 4096
    /// Channels whose float ranges are more than this factor apart are measured apart.
    public static let splitRatio = 100.0

    public init?(shape: [Int]) {
        guard shape.count >= 2 else { return nil }
        var candidates = [1]
        if shape.count <= 3 { candidates.append(shape.count - 1) }
        var axes: [Axis] = []
        for a in Set(candidates).sorted() where (2...Self.maxChannels).contains(shape[a]) { axes.append(Axis(axis: a, length: shape[a])) }
        guard !axes.isEmpty else { return nil }
        self.axes = axes
    }

    /// Adds one batch (reference and test of `shape`).
    mutating func add(_ r: UnsafeBufferPointer<Float>, _ t: UnsafeBufferPointer<Float>, shape: [Int]) {
        axes.removeAll { $0.axis >= shape.count || shape[$0.axis] != $0.length }
        for k in axes.indices {
            let a = axes[k].axis, length = axes[k].length
            let inner = shape[(a + 1)...].reduce(1, *)
            guard inner > 0, r.count % (length * inner) == 0 else { continue }
            let outer = r.count / (length * inner)
            var x = axes[k]
            for o in 0..<outer {
                for c in 0..<length {
                    let base = (o * length + c) * inner
                    var s = 0.0, n = 0.0, d = 0.0, tp = 0.0, m = x.refMax[c]
                    for i in base..<(base + inner) {
                        let rv = Double(r[i]), tv = Double(t[i])
                        s += rv * rv; n += (tv - rv) * (tv - rv); d += rv * tv; tp += tv * tv
                        m = max(m, abs(rv))
                    }
                    x.signal[c] += s; x.noise[c] += n; x.dot[c] += d; x.testPower[c] += tp; x.refMax[c] = m
                }
            }
            axes[k] = x
        }
    }

    /// Adds another data set's sums; an axis either side lacks (or of another length) is dropped.
    mutating func merge(_ o: SliceSums) {
        axes = axes.compactMap { a in
            guard let b = o.axes.first(where: { $0.axis == a.axis && $0.length == a.length }) else { return nil }
            var x = a
            for c in 0..<a.length {
                x.signal[c] += b.signal[c]; x.noise[c] += b.noise[c]; x.dot[c] += b.dot[c]; x.testPower[c] += b.testPower[c]
                x.refMax[c] = max(x.refMax[c], b.refMax[c])
            }
            return x
        }
    }

    /// The slices of every axis whose channels fall into two or more magnitude groups: channels
    /// sorted by their largest |float value| split wherever two neighbours are more than
    /// `splitRatio` apart. Channels that are 0 throughout are left out. Empty when no axis splits.
    public var slices: [OutputSlice] {
        var out: [OutputSlice] = []
        for a in axes {
            let live = (0..<a.length).filter { a.refMax[$0] > 0 && a.refMax[$0].isFinite }.sorted { (a.refMax[$0], $0) < (a.refMax[$1], $1) }
            guard live.count >= 2 else { continue }
            var groups: [[Int]] = [[live[0]]]
            for (p, c) in zip(live, live.dropFirst()) {
                if a.refMax[c] > a.refMax[p] * Self.splitRatio { groups.append([c]) } else { groups[groups.count - 1].append(c) }
            }
            guard groups.count >= 2 else { continue }
            for g in groups {
                let s = g.reduce(0) { $0 + a.signal[$1] }, n = g.reduce(0) { $0 + a.noise[$1] }
                let d = g.reduce(0) { $0 + a.dot[$1] }, tp = g.reduce(0) { $0 + a.testPower[$1] }
                let snr = s > 0 ? n / s : (n > 0 ? .infinity : 0)
                let denom = (s * tp).squareRoot()
                let cosine = denom > 0 ? d / denom : (s == 0 && tp == 0 ? 1 : 0)
                out.append(OutputSlice(axis: a.axis, channels: Self.ranges(g.sorted()), count: g.count,
                                       range: g.map { a.refMax[$0] }.max() ?? 0, snr: snr, cosine: cosine))
            }
        }
        return out
    }

    /// "0-3, 7, 9-11" for sorted indices.
    static func ranges(_ xs: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < xs.count {
            var j = i
            while j + 1 < xs.count && xs[j + 1] == xs[j] + 1 { j += 1 }
            parts.append(i == j ? "\(xs[i])" : "\(xs[i])-\(xs[j])")
            i = j + 1
        }
        return parts.count > 6 ? parts.prefix(6).joined(separator: ", ") + ", ... (\(xs.count) channels)" : parts.joined(separator: ", ")
    }
}
