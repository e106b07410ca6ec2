import CKernels
import Foundation
import QuantCore
import QuantExecutor

/// The error of a tensor computed with quantization (`test`) against the same tensor of the float
/// model (`reference`), over every element of every analysis batch.
///
/// - `snr`: noise power over signal power, Σ(t−r)² / Σr² (lower is better; 0.1 is the warning
///   level, PPQ's convention, not a decibel SNR);
/// - `cosine`: Σrt / √(Σr²·Σt²) over the whole data set as one vector (1 when both are zero);
/// - `mse` = Σ(t−r)²/n, `mae` = Σ|t−r|/n, `relativeEuclidean` = ‖t−r‖/‖r‖ = √snr,
///   `maxAbsError` = max|t−r|;
/// - `top1Agreement`: for class scores (rank ≥ 2, last axis ≥ 2), the fraction of rows whose
///   argmax along the last axis agrees;
/// - `maskIoU`: for probability maps (rank ≥ 4, float values within [0, 1], e.g. a text
///   detector's or a segmenter's sigmoid output), the intersection over union of the elements
///   above 0.5 in the float and the quantized output (1 when neither has any). A map's SNR is
///   dominated by its background, which post-processing thresholds away; this is what decides
///   the masks and boxes;
/// - `medianItemSNR`, `worstItemSNR`: the SNR of each analysis item (sample; each Loop/Scan
///   iteration of it) on its own, median and largest (nil for fewer than 2 items). The `snr`
///   over all items is dominated by the loud ones; an error that only hurts quiet inputs (a
///   speech model's silence, a dark photo) shows here;
/// - `slices`: for model outputs that join channels of far different magnitudes (``SliceSums``),
///   the metrics of each magnitude group on its own; `worstSlice` is the one with the largest SNR.
public struct TensorErrorMetrics: Codable, Sendable, Equatable {
    public var elements: Int
    public var snr: Double
    public var cosine: Double
    public var mse: Double
    public var mae: Double
    public var relativeEuclidean: Double
    public var maxAbsError: Double
    public var top1Agreement: Double?
    public var maskIoU: Double?
    public var medianItemSNR: Double?
    public var worstItemSNR: Double?
    public var slices: [OutputSlice]?

    /// The slice with the largest SNR (nil when the tensor was not split).
    public var worstSlice: OutputSlice? { slices?.max { ($0.snr, $1.cosine) < ($1.snr, $0.cosine) } }

    /// Whether the tensor or its worst slice is over a warning level.
    public func bad(snrWarning: Double, cosineWarning: Double) -> Bool {
        let parts = [(snr, cosine)] + (worstSlice.map { [($0.snr, $0.cosine)] } ?? [])
        return parts.contains { !($0.0 <= snrWarning) || !($0.1 >= cosineWarning) }
    }
}

/// Streaming sums behind `TensorErrorMetrics`: memory is constant in the number of batches.
/// Sums are kept in Double; each batch is added in Float-free Double arithmetic.
public struct ErrorAccumulator: Codable, Sendable, Equatable {
    public internal(set) var count = 0
    public internal(set) var signal = 0.0  // Σr²
    public internal(set) var noise = 0.0  // Σ(t−r)²
    public internal(set) var dot = 0.0  // Σrt
    public internal(set) var testPower = 0.0  // Σt²
    public internal(set) var absSum = 0.0  // Σ|t−r|
    public internal(set) var maxAbs = 0.0
    public internal(set) var rows = 0
    public internal(set) var agreeingRows = 0
    /// Noise over signal of each item added (8 bytes per item).
    public internal(set) var itemSNRs: [Double] = []
    /// Whether top-1 agreement is tracked (set for model outputs).
    public var classScores = false
    /// Whether the mask IoU above 0.5 is tracked (set for model outputs that are probability maps).
    public var probabilityMap = false
    public internal(set) var maskIntersection = 0
    public internal(set) var maskUnion = 0
    /// Whether per-channel sums are kept for slice metrics (set for model outputs).
    public var sliced = false
    public internal(set) var slices: SliceSums?

    public init(classScores: Bool = false, probabilityMap: Bool = false, sliced: Bool = false) {
        self.classScores = classScores
        self.probabilityMap = probabilityMap
        self.sliced = sliced
    }

    /// Whether a float tensor looks like a probability map: rank 4 or more ([N, C, H, W]) and
    /// every value within [0, 1].
    public static func looksLikeProbabilityMap(_ t: Tensor) -> Bool {
        guard t.rank >= 4, t.dtype == .float, t.count > 0 else { return false }
        return t.withUnsafeBufferPointer(as: Float.self) { p in p.allSatisfy { $0 >= 0 && $0 <= 1 } }
    }

    /// Whether a tensor of this shape looks like class scores: [N, classes] or per step
    /// [N, steps, classes], at least 2 classes. Rank 4 and above are maps (a text detector's
    /// [N, 1, H, W] probabilities), whose argmax along the width means nothing.
    public static func looksLikeClassScores(_ shape: [Int]) -> Bool { (2...3).contains(shape.count) && (shape.last ?? 0) >= 2 }

    /// Adds one batch of `items` samples. Shapes must match (element count); a mismatch is
    /// reported as false. The per-item SNRs split the tensor along its first axis when that
    /// axis has `items` entries; otherwise the tensor counts as one item.
    @discardableResult
    public mutating func add(reference: Tensor, test: Tensor, items: Int = 1, threads: Int = 1) -> Bool {
        guard reference.count == test.count else { return false }
        let r = reference.dtype == .float ? reference : Tensor(shape: reference.shape, floats: reference.floats())
        let t = test.dtype == .float ? test : Tensor(shape: test.shape, floats: test.floats())
        r.withUnsafeBufferPointer(as: Float.self) { rp in
            t.withUnsafeBufferPointer(as: Float.self) { tp in
                let split = items > 1 && reference.shape.first == items && rp.count % items == 0 ? items : 1
                let per = rp.count / split
                // Sums per block of an item (in parallel; `qk_error_sums`, vectorized), then
                // combined in block and item order: the result does not depend on the thread count.
                let blocksPerItem = max(1, (per + ItemSums.block - 1) / ItemSums.block)
                var blocks = [qk_error_totals](repeating: qk_error_totals(), count: split * blocksPerItem)
                blocks.withUnsafeMutableBufferPointer { bp in
                    parallelFor(bp.count, threads: threads) { range in
                        for k in range {
                            let (item, b) = k.quotientAndRemainder(dividingBy: blocksPerItem)
                            let start = item * per + b * ItemSums.block
                            let n = min(ItemSums.block, per - b * ItemSums.block)
                            if n > 0 { qk_error_sums(rp.baseAddress! + start, tp.baseAddress! + start, n, &bp[k]) }
                        }
                    }
                }
                let parts = (0..<split).map { item in ItemSums(blocks[(item * blocksPerItem)..<((item + 1) * blocksPerItem)]) }
                for p in parts {
                    itemSNRs.append(p.signal > 0 ? p.noise / p.signal : (p.noise > 0 ? Double.infinity : 0))
                    signal += p.signal; noise += p.noise; dot += p.dot; testPower += p.testPower; absSum += p.absSum
                    if p.maxAbs > maxAbs || p.maxAbs.isNaN { maxAbs = p.maxAbs }
                }
                if sliced {
                    if count == 0 { slices = SliceSums(shape: reference.shape) }
                    slices?.add(rp, tp, shape: reference.shape)
                    if slices?.axes.isEmpty == true { slices = nil }
                }
                count += rp.count
                if probabilityMap {
                    var inter = 0, union = 0
                    for i in 0..<rp.count {
                        let a = rp[i] > 0.5, b = tp[i] > 0.5
                        if a && b { inter += 1 }
                        if a || b { union += 1 }
                    }
                    maskIntersection += inter
                    maskUnion += union
                }
                if classScores, let c = reference.shape.last, c >= 2, rp.count % c == 0 {
                    for row in 0..<(rp.count / c) {
                        rows += 1
                        if argmax(rp, row * c, c) == argmax(tp, row * c, c) { agreeingRows += 1 }
                    }
                }
            }
        }
        return true
    }

    /// The sums of one item, from its blocks in order.
    private struct ItemSums {
        /// Elements per block of the parallel sums.
        static let block = 1 << 16
        var signal = 0.0, noise = 0.0, dot = 0.0, testPower = 0.0, absSum = 0.0, maxAbs = 0.0

        init(_ blocks: ArraySlice<qk_error_totals>) {
            for b in blocks {
                signal += b.signal; noise += b.noise; dot += b.dot; testPower += b.test_power; absSum += b.abs_sum
                if b.max_abs > maxAbs || b.max_abs.isNaN && !maxAbs.isNaN { maxAbs = b.max_abs }
            }
        }
    }

    private func argmax(_ p: UnsafeBufferPointer<Float>, _ start: Int, _ n: Int) -> Int {
        var best = start
        for i in start..<(start + n) where p[i] > p[best] { best = i }
        return best - start
    }

    public var metrics: TensorErrorMetrics {
        let n = Double(max(count, 1))
        let snr = signal > 0 ? noise / signal : (noise > 0 ? Double.infinity : 0)
        let denom = (signal * testPower).squareRoot()
        let cosine = denom > 0 ? dot / denom : (signal == 0 && testPower == 0 ? 1 : 0)
        var median: Double? = nil, worst: Double? = nil
        if itemSNRs.count >= 2 {
            let sorted = itemSNRs.sorted { $0 < $1 || ($1.isNaN && !$0.isNaN) }
            let k = sorted.count / 2
            median = sorted.count % 2 == 1 ? sorted[k] : (sorted[k - 1] + sorted[k]) / 2
            worst = sorted.last
        }
        return TensorErrorMetrics(elements: count, snr: snr, cosine: cosine, mse: noise / n, mae: absSum / n,
                                  relativeEuclidean: snr.squareRoot(), maxAbsError: maxAbs,
                                  top1Agreement: classScores && rows > 0 ? Double(agreeingRows) / Double(rows) : nil,
                                  maskIoU: probabilityMap && count > 0 ? (maskUnion > 0 ? Double(maskIntersection) / Double(maskUnion) : 1) : nil,
                                  medianItemSNR: median, worstItemSNR: worst, slices: slices.flatMap { $0.slices.isEmpty ? nil : $0.slices })
    }
}
