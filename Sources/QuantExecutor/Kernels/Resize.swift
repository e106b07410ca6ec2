import Foundation
import QuantCore
import QuantIR

/// Resize (opsets 10, 11, 13, 18, 19) and Upsample (opsets 7, 9), float32.
///
/// Interpolation is separable: each resized axis gets a table of taps (input index, weight)
/// per output index, following the ONNX reference (`onnx/reference/ops/op_resize.py`): the
/// source coordinate from `coordinate_transformation_mode`, `n` neighbours with ties to the
/// left, edge clamping, `exclude_outside` renormalization, antialiasing filters stretched by
/// 1/scale when downsampling, and `extrapolation_value` for tf_crop_and_resize outside [0, L−1].
enum ResizeKernels {
    static let all: [String: KernelFactory] = [
        "Resize": { try ResizeKernel($0, upsample: false) },
        "Upsample": { try ResizeKernel($0, upsample: true) },
    ]

    /// Keys' cubic convolution kernel with coefficient a (Resize and GridSample).
    static func cubicWeight(_ x0: Double, a: Double) -> Double {
        let x = abs(x0)
        if x <= 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return 0
    }
}

final class ResizeKernel: Kernel {
    enum Mode: String { case nearest, linear, cubic }

    let ctx: KernelContext
    let mode: Mode
    let transform: String
    let nearestMode: String
    let cubicA: Double
    let excludeOutside: Bool
    let extrapolation: Float
    let antialias: Bool
    let axesAttr: [Int]?
    let keepAspect: String
    /// Opset-10 Resize and Upsample: asymmetric coordinates, nearest rounds down (up when
    /// downsampling), scales only.
    let legacy: Bool
    let upsample: Bool
    let scalesAttr: [Float]?

    init(_ ctx: KernelContext, upsample: Bool) throws {
        self.ctx = ctx
        self.upsample = upsample
        let m = ctx.string("mode", "nearest")
        // Upsample-7 accepted "bilinear" as well.
        guard let mode = Mode(rawValue: m == "bilinear" ? "linear" : m) else { throw ctx.unsupported("mode '\(m)'") }
        self.mode = mode
        legacy = upsample || ctx.opset < 11
        transform = legacy ? "asymmetric" : ctx.string("coordinate_transformation_mode", "half_pixel")
        let known = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"]
        guard known.contains(transform) else { throw ctx.unsupported("coordinate_transformation_mode '\(transform)'") }
        nearestMode = ctx.string("nearest_mode", "round_prefer_floor")
        guard ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearestMode) else {
            throw ctx.unsupported("nearest_mode '\(nearestMode)'")
        }
        cubicA = Double(ctx.float("cubic_coeff_a", -0.75))
        excludeOutside = ctx.int("exclude_outside", 0) != 0
        extrapolation = ctx.float("extrapolation_value", 0)
        antialias = ctx.int("antialias", 0) != 0
        axesAttr = ctx.ints("axes")
        keepAspect = ctx.string("keep_aspect_ratio_policy", "stretch")
        guard ["stretch", "not_larger", "not_smaller"].contains(keepAspect) else { throw ctx.unsupported("keep_aspect_ratio_policy '\(keepAspect)'") }
        scalesAttr = upsample && ctx.opset < 9 ? ctx.floats("scales") : nil
        if upsample && ctx.opset < 9 && scalesAttr == nil { throw ctx.invalid("attribute scales is required") }
    }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
        let r = x.rank
        func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i].flatMap { $0.count > 0 ? $0 : nil } : nil }
        var scalesIn: [Double]?
        var sizesIn: [Int]?
        var roiIn: [Double]?
        if let scalesAttr {
            scalesIn = scalesAttr.map(Double.init)
        } else if legacy {
            scalesIn = input(1).map { $0.floats().map(Double.init) }
        } else {
            roiIn = input(1).map { $0.floats().map(Double.init) }
            scalesIn = input(2).map { $0.floats().map(Double.init) }
            sizesIn = input(3).map { $0.intValues() }
        }
        var axes = Array(0..<r)
        if let axesAttr {
            axes = try axesAttr.map { a in
                guard let v = Shapes.axis(a, rank: r) else { throw ctx.invalid("axis \(a) is out of range for \(x.shape)") }
                return v
            }
        }
        var scale = [Double](repeating: 1, count: r)
        var outShape = x.shape
        if let sizes = sizesIn {
            guard sizes.count == axes.count, sizes.allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }) else {
                throw ctx.invalid("sizes \(sizes) must have \(axes.count) non-negative values")
            }
            for (i, a) in axes.enumerated() {
                outShape[a] = sizes[i]
                scale[a] = Double(sizes[i]) / Double(x.shape[a])
            }
            if keepAspect != "stretch" {
                let s = axes.map { scale[$0] }
                let chosen = keepAspect == "not_larger" ? s.min()! : s.max()!
                for a in axes {
                    scale[a] = chosen
                    outShape[a] = Int(chosen * Double(x.shape[a]) + 0.5)
                }
            }
        } else if let scales = scalesIn {
            guard scales.count == axes.count else { throw ctx.invalid("scales \(scales) must have \(axes.count) values") }
            for (i, a) in axes.enumerated() {
                guard scales[i] > 0, scales[i] * Double(x.shape[a]) < Double(Int32.max) else {
                    throw ctx.invalid("scales \(scales) must be positive and give a representable size")
                }
                scale[a] = scales[i]
                outShape[a] = Int((scales[i] * Double(x.shape[a])).rounded(.down))
            }
        } else {
            throw ctx.invalid("one of scales or sizes must be given")
        }
        for a in axes where outShape[a] != x.shape[a] {
            guard x.shape[a] > 0, outShape[a] >= 0, outShape[a] <= Int(Int32.max), scale[a].isFinite, scale[a] > 0 || outShape[a] == 0 else {
                throw ctx.invalid("cannot resize dimension \(a) of \(x.shape) to \(outShape[a]) (scale \(scale[a]))")
            }
        }
        var roiStart = [Double](repeating: 0, count: r), roiEnd = [Double](repeating: 1, count: r)
        if transform == "tf_crop_and_resize" {
            guard let roi = roiIn else { throw ctx.invalid("tf_crop_and_resize needs the roi input") }
            if roi.count == 2 * axes.count {
                for (i, a) in axes.enumerated() { roiStart[a] = roi[i]; roiEnd[a] = roi[axes.count + i] }
            } else if roi.count == 2 * r {
                roiStart = Array(roi[..<r])
                roiEnd = Array(roi[r...])
            } else {
                throw ctx.invalid("roi \(roi) must have \(2 * axes.count) values")
            }
        }
        var cur = x
        for a in axes {
            let identity = abs(scale[a] - 1) < 1e-9 && outShape[a] == cur.shape[a] && roiStart[a] == 0 && roiEnd[a] == 1
            if identity { continue }
            let taps = try self.taps(length: cur.shape[a], output: outShape[a], scale: scale[a], roi: (roiStart[a], roiEnd[a]))
            cur = ResizeKernel.apply(cur, axis: a, taps, extrapolation: extrapolation, threads: env.threads)
        }
        if cur.storage === x.storage { cur = Tensor(shape: x.shape, floats: x.floats()) }
        return [cur]
    }

    /// For one axis: `n` taps per output index and a per-output extrapolation flag.
    struct Taps {
        let n: Int
        let index: [Int]
        let weight: [Float]
        let extrapolated: [Bool]
        let output: Int
    }

    func sourceCoordinate(_ j: Int, length l: Int, output o: Int, scale: Double, roi: (Double, Double)) -> (Double, Bool) {
        let jd = Double(j), ld = Double(l)
        let width = scale * ld
        switch transform {
        case "align_corners":
            return (width == 1 ? 0 : jd * (ld - 1) / (width - 1), false)
        case "asymmetric":
            return (jd / scale, false)
        case "tf_half_pixel_for_nn":
            return ((jd + 0.5) / scale, false)
        case "tf_crop_and_resize":
            var v = width == 1 ? (roi.1 - roi.0) * (ld - 1) / 2 : jd * (roi.1 - roi.0) * (ld - 1) / (width - 1)
            v += roi.0 * (ld - 1)
            return (v, v < 0 || v > ld - 1)
        case "pytorch_half_pixel":
            return (width == 1 ? -0.5 : (jd + 0.5) / scale - 0.5, false)
        case "half_pixel_symmetric":
            let adjustment = Double(o) / width
            let offset = ld / 2 * (1 - adjustment)
            return (offset + (jd + 0.5) / scale - 0.5, false)
        default:  // half_pixel
            return ((jd + 0.5) / scale - 0.5, false)
        }
    }

    /// Filter coefficients for the `n` neighbours of a source coordinate whose distance to its
    /// left neighbour is `ratio` ∈ (0, 1].
    func coefficients(_ ratio: Double, scale: Double) -> [Double] {
        switch mode {
        case .nearest:
            if ratio == 1 { return [0, 1] }
            var mode = nearestMode
            if legacy { mode = scale < 1 ? "ceil" : "floor" }
            switch mode {
            case "round_prefer_ceil": return ratio < 0.5 ? [1, 0] : [0, 1]
            case "floor": return [1, 0]
            case "ceil": return [0, 1]
            default: return ratio <= 0.5 ? [1, 0] : [0, 1]
            }
        case .linear:
            if !antialias { return [1 - ratio, ratio] }
            let s = min(scale, 1)
            let start = Int((-1 / s).rounded(.down)) + 1
            let footprint = 2 - 2 * start
            let c = (0..<footprint).map { max(0, min(1, 1 - abs((Double(start + $0) - ratio) * s))) }
            let sum = c.reduce(0, +)
            return c.map { $0 / sum }
        case .cubic:
            func k(_ x: Double) -> Double { ResizeKernels.cubicWeight(x, a: cubicA) }
            if !antialias { return [k(ratio + 1), k(ratio), k(1 - ratio), k(2 - ratio)] }
            let s = min(scale, 1)
            let start = Int((-2 / s).rounded(.down)) + 1
            let end = 2 - start
            let c = (start..<end).map { k(s * (Double($0) - ratio)) }
            let sum = c.reduce(0, +)
            return c.map { $0 / sum }
        }
    }

    func taps(length l: Int, output o: Int, scale: Double, roi: (Double, Double)) throws -> Taps {
        var index: [Int] = [], weight: [Float] = [], extra: [Bool] = []
        var n = 0
        for j in 0..<o {
            let (xo, outside) = sourceCoordinate(j, length: l, output: o, scale: scale, roi: roi)
            let fl = xo.rounded(.down)
            let ratio = xo == fl ? 1 : xo - fl
            let left = xo == fl ? Int(fl) - 1 : Int(fl)
            var c = coefficients(ratio, scale: scale)
            n = c.count
            let first = left - n / 2 + 1
            if excludeOutside {
                for t in 0..<n where first + t < 0 || first + t >= l { c[t] = 0 }
                let sum = c.reduce(0, +)
                if sum != 0 { c = c.map { $0 / sum } }
            }
            for t in 0..<n {
                index.append(min(max(first + t, 0), l - 1))
                weight.append(Float(c[t]))
            }
            extra.append(outside)
        }
        return Taps(n: n, index: index, weight: weight, extrapolated: extra, output: o)
    }

    /// Resizes `x` along `axis` with `taps`.
    static func apply(_ x: Tensor, axis: Int, _ taps: Taps, extrapolation: Float, threads: Int) -> Tensor {
        var shape = x.shape
        let l = shape[axis]
        shape[axis] = taps.output
        let outer = Tensor.elementCount(Array(x.shape[..<axis]))
        let inner = Tensor.elementCount(Array(x.shape[(axis + 1)...]))
        let o = taps.output, n = taps.n
        return Tensor.makeFloat(shape) { out in
            guard out.count > 0 else { return }
            let src = x.storage.pointer.assumingMemoryBound(to: Float.self)
            let dst = out.baseAddress!
            taps.index.withUnsafeBufferPointer { idx in
                taps.weight.withUnsafeBufferPointer { w in
                    parallelFor(outer * o, threads: threads, grain: max(1, 4096 / max(inner * n, 1))) { r in
                        for q in r {
                            let b = q / o, j = q % o
                            let d = dst + q * inner
                            if taps.extrapolated[j] {
                                d.update(repeating: extrapolation, count: inner)
                                continue
                            }
                            let s = src + b * l * inner
                            if inner == 1 {
                                var acc: Float = 0
                                for t in 0..<n where w[j * n + t] != 0 { acc += w[j * n + t] * s[idx[j * n + t]] }
                                d[0] = acc
                            } else {
                                d.update(repeating: 0, count: inner)
                                for t in 0..<n {
                                    let wt = w[j * n + t]
                                    if wt == 0 { continue }
                                    let row = s + idx[j * n + t] * inner
                                    for i in 0..<inner { d[i] += wt * row[i] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
