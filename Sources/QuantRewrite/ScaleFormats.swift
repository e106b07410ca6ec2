import Foundation
import QuantAlgorithms
import QuantCalibration
import QuantCore
import QuantIR

/// Fixed-point scales (`--scale-format pow2|fixed:M`, `--hardware-profile FILE`): every scale
/// the rewrite writes is rounded into the profile's format with its range re-chosen, and the
/// requantization multipliers of the integer ops are checked against the profile.
extension QDQRewriter {
    /// (scale, zero point) of `grid` rounded to the profile's scale format: among the two
    /// representable scales next to `scale` (the largest below, which clips, and the smallest
    /// above, which covers the range) and, on an asymmetric grid whose range does not start or
    /// end at 0, the zero points that anchor the range's low end, its high end or its middle, the pair with the least squared error by
    /// `error` (nil: a uniform distribution over `range`). A scale outside the format's bounds is
    /// QK5007, or clamped to the bound with a warning when the profile allows.
    func formatScale(_ scale: Double, zeroPoint: Int, range: ClipRange, grid: QuantGrid, what: String,
                     error: ((Double, Int) -> Double?)?, result: inout Result) throws -> (scale: Double, zeroPoint: Int) {
        guard let format = options.scheme.hardware?.scale else { return (scale, zeroPoint) }
        // All zeros (a dead channel, a constant zero tensor): any scale is exact; take the
        // representable one nearest the chosen, inside the bounds.
        if range.lo == 0 && range.hi == 0 {
            let (lo, hi) = format.bounds
            let n = format.neighbours(of: min(max(scale, lo), hi))
            return (n.below ?? n.above ?? lo, zeroPoint)
        }
        var (below, above) = format.neighbours(of: scale)
        if below == nil || above == nil {
            let (lo, hi) = format.bounds
            let bound = below == nil ? lo : hi
            guard options.scheme.hardware?.clamp == true else {
                throw QuantKitError("QK5007", "\(what) needs scale \(String(format: "%.6g", scale)) (range [\(String(format: "%.4g", range.lo)), \(String(format: "%.4g", range.hi))]), "
                                    + "outside the \(format.text) scales the hardware profile allows: \(format.describe(lo)) to \(format.describe(hi))",
                                    fix: "widen the profile's shift range, allow clamping (\"clamp\": true in the profile: the scale becomes \(format.describe(bound)), which loses precision), or keep this op float (--exclude-node)")
            }
            result.clampedScales.append("\(what): \(String(format: "%.3g", scale)) -> \(format.describe(bound))")
            (below, above) = (bound, bound)
        }
        var best: (e: Double, s: Double, z: Int)? = nil
        for s in Set([below!, above!]) {
            var zps = [zeroPoint]
            // A range that starts or ends at 0 keeps that end on the grid's edge: an absorbed
            // Relu (or Clip) relies on the grid clamping there.
            if !grid.symmetric && zeroPoint != grid.qmin && zeroPoint != grid.qmax {
                let z = { (x: Double) in min(max(Int(x.rounded(.toNearestOrEven)), grid.qmin), grid.qmax) }
                zps = [z(Double(grid.qmin) - range.lo / s), z(Double(grid.qmax) - range.hi / s),
                       z(Double(grid.qmin + grid.qmax) / 2 - (range.lo + range.hi) / (2 * s))]
            }
            for zp in Set(zps) {
                let e = error?(s, zp) ?? uniformError(range, scale: s, zeroPoint: zp, grid: grid)
                if best == nil || e < best!.e || (e == best!.e && s > best!.s) { best = (e, s, zp) }
            }
        }
        return (best!.s, best!.z)
    }

    /// Squared error of quantizing a uniform distribution over `range` with (scale, zp):
    /// rounding noise s²/12 inside the grid's span, the squared distance outside it.
    func uniformError(_ range: ClipRange, scale s: Double, zeroPoint zp: Int, grid: QuantGrid) -> Double {
        let width = max(range.hi - range.lo, 1e-30)
        let gl = Double(grid.qmin - zp) * s, gh = Double(grid.qmax - zp) * s
        func cube(_ x: Double) -> Double { x * x * x }
        let inside = max(0, min(range.hi, gh) - max(range.lo, gl))
        let over = range.hi > gh ? cube(range.hi - max(gh, range.lo)) / 3 : 0
        let under = range.lo < gl ? cube(min(gl, range.hi) - range.lo) / 3 : 0
        return (inside * s * s / 12 + over + under) / width
    }

    /// Weight scales (one per channel or group) rounded to the profile's format by the exact
    /// squared error over that channel's (group's) weights; `minimum`: a scale may not go below
    /// it (a bias that must fit int32).
    func formatWeightScales(_ scales: inout [Double], zeroPoints: inout [Int], grid: QuantGrid, what: String, values: (Int) -> [Float],
                            minimum: (Int) -> Double = { _ in 0 }, result: inout Result) throws {
        guard options.scheme.hardware?.scale != nil else { return }
        for c in scales.indices {
            let v = values(c)
            let lo = Double(v.min() ?? 0), hi = Double(v.max() ?? 0)
            let label = scales.count == 1 ? what : "\(what) channel \(c)"
            let least = minimum(c)
            let (s, z) = try formatScale(scales[c], zeroPoint: zeroPoints[c], range: ClipRange(lo: lo, hi: hi), grid: grid, what: label, error: { s, z in
                guard s >= least else { return .infinity }
                return v.reduce(0) { e, x in let d = Double(x) - grid.fakeQuantize(Double(x), scale: s, zeroPoint: z); return e + d * d }
            }, result: &result)
            (scales[c], zeroPoints[c]) = (s, z)
        }
    }

    /// Checks s_in·s_w/s_out of every Conv/ConvTranspose/MatMul/Gemm between Q/DQ against the
    /// profile's multiplier format: a multiplier outside its bounds is QK5007 (the first few
    /// named), or one warning when the profile allows clamping. Returns how many were checked.
    @discardableResult
    func checkMultipliers(_ g: Graph, result: inout Result) throws -> Int {
        guard let format = options.scheme.hardware?.multiplier else { return 0 }
        let index = GraphIndex(g)
        func scales(_ t: String, _ want: String) -> [Double]? {
            guard let p = index.producer[t], p.opType == want, p.inputs.count > 1, let s = g.initializer(p.inputs[1]), s.dtype == .float else { return nil }
            return s.floats().map(Double.init)
        }
        let (lo, hi) = format.bounds
        var checked = 0
        var outside: [String] = []
        for n in g.nodes where ["Conv", "ConvTranspose", "MatMul", "Gemm"].contains(n.opType) && n.isStandard {
            guard n.inputs.count > 1, let y = n.outputs.first, let sIn = scales(n.inputs[0], "DequantizeLinear")?.first,
                  let sW = scales(n.inputs[1], "DequantizeLinear"),
                  let q = index.consumers(of: y).first(where: { $0.opType == "QuantizeLinear" }), q.inputs.count > 1,
                  let sOut = g.initializer(q.inputs[1])?.floats().first.map(Double.init) else { continue }
            checked += 1
            let ms = sW.map { sIn * $0 / sOut }
            guard let worst = ms.enumerated().first(where: { $0.element < lo * (1 - 1e-9) || $0.element > hi * (1 + 1e-9) }) else { continue }
            let bound = worst.element < lo ? lo : hi
            outside.append("'\(n.name)'\(ms.count > 1 ? " channel \(worst.offset)" : ""): \(String(format: "%.6g", worst.element)) (the hardware would use \(format.describe(bound)))")
        }
        guard !outside.isEmpty else { return checked }
        let list = outside.prefix(5).joined(separator: "; ") + (outside.count > 5 ? "; and \(outside.count - 5) more" : "")
        let allowed = "\(format.describe(lo)) to \(format.describe(hi))"
        guard options.scheme.hardware?.clamp == true else {
            throw QuantKitError("QK5007", "\(outside.count) requantization multiplier(s) s_in·s_w/s_out are outside the \(format.text) range the hardware profile allows (\(allowed)): \(list)",
                                fix: "widen the profile's multiplier shift range, allow clamping (\"clamp\": true: the hardware then uses the bound, which loses precision), or keep the named ops float (--exclude-node)")
        }
        result.warnings.append("\(outside.count) requantization multiplier(s) outside the profile's \(allowed) are clamped to the bound, which loses precision: \(list)")
        return checked
    }
}

/// Accumulator widths (`--accumulator-bits`): the integer sum of a Conv/MatMul/Gemm output
/// channel, Σ (q_x − z_x)·(q_w − z_w) + q_b, must fit a signed accumulator of that many bits for
/// every input the activation grid can hold. The worst case is |q_x − z_x| ≤ span (the larger
/// distance from the zero point to the grid's ends) times Σ|q_w − z_w| over the channel, plus |q_b|.
extension QDQRewriter {
    /// Widens the weight scale of every output channel whose worst case overflows (the whole
    /// tensor's scale when per tensor) and rounds that channel again to nearest, until all fit.
    /// Returns (channels widened, the largest widening factor). Throws QK5008 naming the node
    /// and channel when fitting would round every weight of a channel to zero.
    func fitAccumulator(_ n: Node, q: inout [Int], values: [Float], scales: inout [Double], zeroPoints zps: [Int], grid: QuantGrid,
                        scaleOf: (Int) -> Int, outputChannelOf: (Int) -> Int, outputChannels: Int, span: Int,
                        bias: [Float]?, inputScale: Double, bits: Int) throws -> (widened: Int, factor: Double) {
        let limit = Double((1 << (bits - 1)) - 1)
        var widened = Set<Int>(), factor = 1.0
        // Each output channel's scale (one per channel, or the tensor's).
        var scaleOfChannel = [Int](repeating: -1, count: outputChannels)
        for i in q.indices where scaleOfChannel[outputChannelOf(i)] < 0 { scaleOfChannel[outputChannelOf(i)] = scaleOf(i) }
        for _ in 0..<40 {
            var sum = [Double](repeating: 0, count: outputChannels)
            for (i, v) in q.enumerated() { sum[outputChannelOf(i)] += Double(abs(v - zps[scaleOf(i)])) }
            var grow: [Int: Double] = [:]
            for o in 0..<outputChannels where scaleOfChannel[o] >= 0 {
                let c = scaleOfChannel[o]
                let b = bias.map { o < $0.count ? abs(Double($0[o])) / (inputScale * scales[c]) : 0 } ?? 0
                let worst = Double(span) * sum[o] + b.rounded()
                if worst > limit { grow[c] = max(grow[c] ?? 1, worst / limit * 1.0001) }
            }
            if grow.isEmpty { return (widened.count, factor) }
            for (c, f) in grow {
                scales[c] *= f
                // On fixed-point hardware the wider scale is the next representable one up.
                if let format = options.scheme.hardware?.scale, let up = format.neighbours(of: scales[c]).above { scales[c] = up }
                widened.insert(c)
                factor = max(factor, f)
            }
            var alive = Set<Int>(), weight = [Int: Double]()
            for i in q.indices where grow[scaleOf(i)] != nil {
                let c = scaleOf(i)
                q[i] = Int(min(max((Double(values[i]) / scales[c]).rounded(.toNearestOrEven) + Double(zps[c]), Double(grid.qmin)), Double(grid.qmax)))
                if q[i] != zps[c] { alive.insert(c) }
                weight[c, default: 0] += abs(Double(values[i]))
            }
            // A channel may vanish when its weights could move its output by less than 1% of its
            // bias (channels BatchNorm folding switched off: the bias is what they compute).
            let biasOf = { (c: Int) -> Double in
                guard let b = bias else { return 0 }
                let os = (0..<outputChannels).filter { scaleOfChannel[$0] == c }
                return os.map { $0 < b.count ? abs(Double(b[$0])) : 0 }.min() ?? 0
            }
            for c in grow.keys where !alive.contains(c) && (weight[c] ?? 0) * Double(span) * inputScale >= 0.01 * biasOf(c) && (weight[c] ?? 0) > 0 {
                throw QuantKitError("QK5008", "\(n.label): its \(bits)-bit accumulator overflows unless every weight of channel \(c) rounds to zero "
                                    + "(inputs span \(span) steps of their zero point)",
                                    fix: "use a wider accumulator (--accumulator-bits), fewer bits of activation range (--value-range W;A, e.g. 7;6), or keep \(n.label) float (--exclude-node \(n.name))")
            }
        }
        return (widened.count, factor)
    }
}
