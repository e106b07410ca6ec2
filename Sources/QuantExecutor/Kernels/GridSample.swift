import Foundation
import QuantCore
import QuantIR

/// GridSample (opsets 16, 20) and AffineGrid (20). GridSample samples X[N, C, D1, ..., Dr] at the grid's points
/// grid[N, O1, ..., Or, r], whose last axis lists normalized coordinates in [-1, 1] for the
/// spatial axes in reverse order (x for the last axis first). float32 and float64.
///
/// Per spatial axis of size d, a normalized coordinate g becomes the pixel coordinate
/// (g + 1)/2 · (d − 1) with `align_corners`, else ((g + 1) · d − 1)/2. Nearest rounds it half
/// to even first. A coordinate outside the border ([0, d − 1] with `align_corners`, else
/// [−0.5, d − 0.5]) is clamped to [0, d − 1] (`border`) or reflected at the border until inside
/// (`reflection`). Linear and cubic (Keys, a = −0.75) interpolation are separable over the
/// 2^r or 4^r neighbours; a neighbour outside the input reads 0 (`zeros`), the nearest edge
/// pixel (`border`) or its reflection (`reflection`).
enum GridSampleKernels {
    static let all: [String: KernelFactory] = ["GridSample": make, "AffineGrid": affineGrid]

    /// `AffineGrid(theta[N, 2, 3] or [N, 3, 4], size[N, C, (D,) H, W])` (opset 20): the grid
    /// GridSample reads, θ·(x, y, (z,) 1) at evenly spaced positions in [−1, 1] per axis (pixel
    /// centres (2k + 1)/L − 1, or −1 + 2k/(L − 1) with `align_corners`), x along W first.
    static func affineGrid(_ ctx: KernelContext) throws -> Kernel {
        let align = ctx.int("align_corners", 0) != 0
        return ClosureKernel { inputs, _ in
            guard let theta = inputs[0], let size = inputs.count > 1 ? inputs[1] : nil else { throw ctx.invalid("theta and size are required") }
            let dims = size.int64s().map(Int.init)
            let r = dims.count - 2
            guard r == 2 || r == 3, theta.rank == 3, theta.shape[0] == dims[0], theta.shape[1] == r, theta.shape[2] == r + 1 else {
                throw ctx.invalid("theta \(theta.shape) does not fit size \(dims)")
            }
            guard theta.dtype == .float || theta.dtype == .double else { throw ctx.unsupported("element type \(theta.dtype)") }
            func position(_ k: Int, _ l: Int) -> Double {
                align ? (l > 1 ? -1 + 2 * Double(k) / Double(l - 1) : 0) : (2 * Double(k) + 1) / Double(l) - 1
            }
            let spatial = Array(dims[2...]), points = spatial.reduce(1, *), t = theta.doubles()
            var out = [Double](repeating: 0, count: dims[0] * points * r)
            for n in 0..<dims[0] {
                for p in 0..<points {
                    // Coordinates (x, y, z): x along the last axis.
                    var rest = p
                    var c = [Double](repeating: 0, count: r)
                    for a in stride(from: r - 1, through: 0, by: -1) {
                        c[r - 1 - a] = position(rest % spatial[a], spatial[a])
                        rest /= spatial[a]
                    }
                    for row in 0..<r {
                        let m = (n * r + row) * (r + 1)
                        var v = t[m + r]
                        for k in 0..<r { v += t[m + k] * c[k] }
                        out[(n * points + p) * r + row] = v
                    }
                }
            }
            let shape = [dims[0]] + spatial + [r]
            return [theta.dtype == .double ? Tensor(shape: shape, values: out) : Tensor(shape: shape, floats: out.map { Float($0) })]
        }
    }

    enum Mode { case nearest, linear, cubic }

    static func make(_ ctx: KernelContext) throws -> Kernel {
        let name = ctx.string("mode", ctx.opset < 20 ? "bilinear" : "linear")
        let mode: Mode
        switch name {
        case "nearest": mode = .nearest
        case "linear", "bilinear": mode = .linear
        case "cubic", "bicubic": mode = .cubic
        default: throw ctx.unsupported("mode '\(name)'")
        }
        let padding = ctx.string("padding_mode", "zeros")
        guard ["zeros", "border", "reflection"].contains(padding) else { throw ctx.unsupported("padding_mode '\(padding)'") }
        let align = ctx.int("align_corners", 0) != 0
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let grid = inputs.count > 1 ? inputs[1] : nil else { throw ctx.invalid("X and grid are required") }
            let r = x.rank - 2
            guard r >= 1, grid.rank == r + 2, grid.shape[0] == x.shape[0], grid.shape[r + 1] == r else {
                throw ctx.invalid("X \(x.shape) and grid \(grid.shape) do not match: grid must be [N, spatial..., \(max(r, 0))]")
            }
            guard x.dtype == .float || x.dtype == .double else { throw ctx.unsupported("element type \(x.dtype)") }
            let (batches, channels) = (x.shape[0], x.shape[1])
            let dims = Array(x.shape[2...]), outDims = Array(grid.shape[1...r])
            let plane = dims.reduce(1, *), points = outDims.reduce(1, *)
            let xs = x.doubles(), gs = grid.doubles()
            var strides = [Int](repeating: 1, count: r)
            for k in stride(from: r - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * dims[k + 1] }
            let lo = dims.map { _ in align ? 0.0 : -0.5 }, hi = dims.map { align ? Double($0 - 1) : Double($0) - 0.5 }

            func reflect(_ v: Double, _ a: Double, _ b: Double) -> Double {
                let span = b - a
                guard span > 0 else { return a }
                if v < a {
                    let d = a - v, n = (d / span).rounded(.towardZero), rest = d - n * span
                    return Int(n) % 2 == 0 ? a + rest : b - rest
                }
                if v > b {
                    let d = v - b, n = (d / span).rounded(.towardZero), rest = d - n * span
                    return Int(n) % 2 == 0 ? b - rest : a + rest
                }
                return v
            }
            /// The input index read for neighbour `i` on axis `k`, or nil for a zero.
            func index(_ i: Int, _ k: Int) -> Int? {
                switch padding {
                case "zeros": return i >= 0 && i < dims[k] ? i : nil
                case "border": return min(max(i, 0), dims[k] - 1)
                default: return min(max(Int(reflect(Double(i), lo[k], hi[k])), 0), dims[k] - 1)
                }
            }
            func cubic(_ t: Double) -> [Double] { [t + 1, t, 1 - t, 2 - t].map { ResizeKernels.cubicWeight($0, a: -0.75) } }

            var out = [Double](repeating: 0, count: batches * channels * points)
            // Per output point: the taps (offset in a channel plane, weight), shared by channels.
            var taps: [(Int, Double)] = []
            for n in 0..<batches {
                for p in 0..<points {
                    taps.removeAll(keepingCapacity: true)
                    let g = (n * points + p) * r
                    // Pixel coordinates per axis (axis k reads grid entry r − 1 − k).
                    var coord = (0..<r).map { k -> Double in
                        let v = gs[g + r - 1 - k], d = Double(dims[k])
                        return align ? (v + 1) / 2 * (d - 1) : ((v + 1) * d - 1) / 2
                    }
                    if mode == .nearest { coord = coord.map { $0.rounded(.toNearestOrEven) } }
                    for k in 0..<r where coord[k] < lo[k] || coord[k] > hi[k] {
                        if padding == "border" { coord[k] = min(max(coord[k], 0), Double(dims[k] - 1)) }
                        if padding == "reflection" { coord[k] = reflect(coord[k], lo[k], hi[k]) }
                    }
                    // Per axis: (index or nil, weight) of each neighbour.
                    let axes: [[(Int?, Double)]] = (0..<r).map { k in
                        let c = coord[k]
                        switch mode {
                        case .nearest:
                            return [(index(Int(c.rounded(.towardZero)), k), 1)]
                        case .linear:
                            let i0 = Int(c.rounded(.down)), t = c - Double(i0)
                            return [(index(i0, k), 1 - t), (index(i0 + 1, k), t)]
                        case .cubic:
                            let i0 = Int(c.rounded(.down))
                            return zip(-1...2, cubic(c - Double(i0))).map { (index(i0 + $0, k), $1) }
                        }
                    }
                    // Every combination of one neighbour per axis.
                    var combo = [Int](repeating: 0, count: r)
                    outer: while true {
                        var offset: Int? = 0, weight = 1.0
                        for k in 0..<r {
                            let (i, w) = axes[k][combo[k]]
                            weight *= w
                            if let i, let o = offset { offset = o + i * strides[k] } else { offset = nil }
                        }
                        if let offset, weight != 0 { taps.append((offset, weight)) }
                        var k = r - 1
                        while k >= 0 {
                            combo[k] += 1
                            if combo[k] < axes[k].count { break }
                            combo[k] = 0
                            k -= 1
                        }
                        if k < 0 { break outer }
                    }
                    for c in 0..<channels {
                        let base = (n * channels + c) * plane
                        var acc = 0.0
                        for (o, w) in taps { acc += w * xs[base + o] }
                        out[(n * channels + c) * points + p] = acc
                    }
                }
            }
            let shape = [batches, channels] + outDims
            if x.dtype == .double { return [Tensor(shape: shape, values: out)] }
            return [Tensor(shape: shape, floats: out.map { Float($0) })]
        }
    }
}
