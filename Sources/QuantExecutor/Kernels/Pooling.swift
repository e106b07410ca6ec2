import Foundation
import QuantCore
import QuantIR

/// Pooling: MaxPool (with Indices), AveragePool, LpPool over 1-D to 3-D windows, and the
/// global variants over all spatial dimensions. Float32; MaxPool also int8/uint8.
enum PoolingKernels {
    static let all: [String: KernelFactory] = [
        "MaxPool": { try PoolKernel($0, .max) },
        "AveragePool": { try PoolKernel($0, .average(includePad: $0.int("count_include_pad", 0) != 0)) },
        "LpPool": { try PoolKernel($0, .lp(Float($0.int("p", 2)))) },
        "GlobalMaxPool": { globalPool($0, .max) },
        "GlobalAveragePool": { globalPool($0, .average(includePad: false)) },
        "GlobalLpPool": { globalPool($0, .lp(Float($0.int("p", 2)))) },
        "MaxUnpool": maxUnpool, "RoiAlign": roiAlign,
    ]

    /// `RoiAlign(X[N, C, H, W], rois[R, 4], batch_indices[R])` (opsets 10, 16): per region
    /// (x1, y1, x2, y2)·spatial_scale (− 0.5 with `half_pixel`, the default from opset 16), an
    /// output_height × output_width grid of bins, each averaging (`avg`) or taking the largest
    /// weighted corner of (`max`, as the reference and ONNX Runtime do) bilinear samples at
    /// sampling_ratio² points (0: ⌈bin size⌉ per axis). Samples beyond one pixel outside the map
    /// count as 0; regions are at least 1×1 without `half_pixel`.
    static func roiAlign(_ ctx: KernelContext) throws -> Kernel {
        let halfPixel = ctx.string("coordinate_transformation_mode", ctx.opset >= 16 ? "half_pixel" : "output_half_pixel") == "half_pixel"
        let mode = ctx.string("mode", "avg"), ph = ctx.int("output_height", 1), pw = ctx.int("output_width", 1)
        let ratio = ctx.int("sampling_ratio", 0), scale = Double(ctx.float("spatial_scale", 1))
        guard mode == "avg" || mode == "max" else { throw ctx.unsupported("mode '\(mode)'") }
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let roisT = inputs.count > 1 ? inputs[1] : nil, let idxT = inputs.count > 2 ? inputs[2] : nil,
                  x.rank == 4, roisT.rank == 2, roisT.shape[1] == 4, idxT.count == roisT.shape[0], x.dtype.isFloatingPoint else {
                throw ctx.invalid("X [N, C, H, W], rois [R, 4] and batch_indices [R] are required")
            }
            let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3])
            let xv = x.doubles(), rois = roisT.doubles(), batch = idxT.int64s().map(Int.init)
            var out = [Float](repeating: 0, count: batch.count * c * ph * pw)
            for r in 0..<batch.count {
                guard batch[r] >= 0 && batch[r] < x.shape[0] else { throw ctx.invalid("batch index \(batch[r]) is outside [0, \(x.shape[0]))") }
                let shift = halfPixel ? 0.5 : 0
                let (x1, y1, x2, y2) = (rois[r * 4] * scale - shift, rois[r * 4 + 1] * scale - shift, rois[r * 4 + 2] * scale - shift, rois[r * 4 + 3] * scale - shift)
                var (rw, rh) = (x2 - x1, y2 - y1)
                if !halfPixel { rw = max(rw, 1); rh = max(rh, 1) }
                let (bh, bw) = (rh / Double(ph), rw / Double(pw))
                let gh = ratio > 0 ? ratio : Int((rh / Double(ph)).rounded(.up)), gw = ratio > 0 ? ratio : Int((rw / Double(pw)).rounded(.up))
                let count = Double(max(gh * gw, 1))
                // Per bin: the samples' four corners (positions, weights).
                var samples: [[(Int, Double)]] = []
                for i in 0..<ph {
                    for j in 0..<pw {
                        for iy in 0..<gh {
                            let y = y1 + Double(i) * bh + (Double(iy) + 0.5) * bh / Double(gh)
                            for ix in 0..<gw {
                                var xx = x1 + Double(j) * bw + (Double(ix) + 0.5) * bw / Double(gw)
                                if y < -1 || y > Double(h) || xx < -1 || xx > Double(w) {
                                    samples.append([(0, 0), (0, 0), (0, 0), (0, 0)])
                                    continue
                                }
                                var yy = max(y, 0)
                                xx = max(xx, 0)
                                var yl = Int(yy), xl = Int(xx), yh = yl + 1, xh = xl + 1
                                if yl >= h - 1 { yl = h - 1; yh = h - 1; yy = Double(yl) }
                                if xl >= w - 1 { xl = w - 1; xh = w - 1; xx = Double(xl) }
                                let (ly, lx) = (yy - Double(yl), xx - Double(xl))
                                samples.append([(yl * w + xl, (1 - ly) * (1 - lx)), (yl * w + xh, (1 - ly) * lx), (yh * w + xl, ly * (1 - lx)), (yh * w + xh, ly * lx)])
                            }
                        }
                    }
                }
                let per = gh * gw
                for ch in 0..<c {
                    let base = (batch[r] * c + ch) * h * w
                    for bin in 0..<(ph * pw) {
                        var acc = 0.0, best: Double? = nil
                        for s in samples[(bin * per)..<((bin + 1) * per)] {
                            if mode == "avg" {
                                acc += s.reduce(0.0) { $0 + $1.1 * xv[base + $1.0] }
                            } else {
                                let v = s.map { $0.1 * xv[base + $0.0] }.max()!
                                best = max(best ?? v, v)
                            }
                        }
                        out[((r * c + ch) * ph * pw) + bin] = Float(mode == "avg" ? acc / count : best ?? 0)
                    }
                }
            }
            return [try CastKernels.convert(Tensor(shape: [batch.count, c, ph, pw], floats: out), to: x.dtype, ctx)]
        }
    }

    /// `MaxUnpool(X, I, output_shape?)`: zeros of the shape MaxPool came from, (d − 1)·stride −
    /// pads + kernel per spatial axis (or `output_shape`, the inferred one at its origin), with
    /// X[k] written at flat position I[k] of the inferred shape.
    static func maxUnpool(_ ctx: KernelContext) throws -> Kernel {
        guard let kernel = ctx.ints("kernel_shape") else { throw ctx.invalid("kernel_shape is required") }
        let strides = ctx.ints("strides") ?? [Int](repeating: 1, count: kernel.count)
        let pads = ctx.ints("pads") ?? [Int](repeating: 0, count: 2 * kernel.count)
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let idx = inputs.count > 1 ? inputs[1]?.int64s() : nil, x.rank == kernel.count + 2, idx.count == x.count,
                  strides.count == kernel.count, pads.count == 2 * kernel.count, x.dtype != .string else {
                throw ctx.invalid("X, I and the kernel attributes do not fit")
            }
            var inferred = Array(x.shape[..<2])
            for k in 0..<kernel.count { inferred.append((x.shape[k + 2] - 1) * strides[k] - pads[k] - pads[kernel.count + k] + kernel[k]) }
            let shape = (inputs.count > 2 ? inputs[2]?.int64s().map(Int.init) : nil) ?? inferred
            guard shape.count == inferred.count, zip(shape, inferred).allSatisfy({ $0 >= $1 }) else { throw ctx.invalid("output_shape \(shape) is smaller than \(inferred)") }
            let size = x.dtype.bitWidth / 8, total = inferred.reduce(1, *)
            let out = Tensor(dtype: x.dtype, shape: shape)
            memset(out.storage.pointer, 0, out.byteCount)
            // Flat index in the inferred shape -> flat index in the output shape.
            var inStrides = [Int](repeating: 1, count: shape.count), outStrides = inStrides
            for k in stride(from: shape.count - 2, through: 0, by: -1) {
                inStrides[k] = inStrides[k + 1] * inferred[k + 1]
                outStrides[k] = outStrides[k + 1] * shape[k + 1]
            }
            for (k, i) in idx.enumerated() {
                guard i >= 0 && Int(i) < total else { throw ctx.invalid("index \(i) is outside the unpooled tensor of \(total)") }
                var rest = Int(i), o = 0
                for a in 0..<shape.count { o += rest / inStrides[a] * outStrides[a]; rest %= inStrides[a] }
                (out.storage.pointer + o * size).copyMemory(from: x.storage.pointer + k * size, byteCount: size)
            }
            return [out]
        }
    }

    enum Kind {
        case max
        case average(includePad: Bool)
        case lp(Float)
    }

    /// The global pools: one value per (image, channel) over all spatial positions.
    static func globalPool(_ ctx: KernelContext, _ kind: Kind) -> Kernel {
        ClosureKernel { inputs, env in
            let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
            guard x.rank >= 2 else { throw ctx.invalid("X \(x.shape) must have rank >= 2") }
            let planes = x.shape[0] * x.shape[1]
            let size = Tensor.elementCount(Array(x.shape.dropFirst(2)))
            let y = Tensor.makeFloat(Array(x.shape.prefix(2)) + [Int](repeating: 1, count: x.rank - 2)) { out in
                x.withUnsafeBufferPointer(as: Float.self) { src in
                    parallelFor(planes, threads: env.threads, grain: max(1, 16384 / max(size, 1))) { r in
                        for p in r {
                            let s = src.baseAddress! + p * size
                            switch kind {
                            case .max:
                                var m = -Float.infinity
                                for i in 0..<size where s[i] > m { m = s[i] }
                                out[p] = m
                            case .average:
                                var acc: Float = 0
                                for i in 0..<size { acc += s[i] }
                                out[p] = acc / Float(size)
                            case .lp(let pw):
                                var acc: Float = 0
                                if pw == 2 { for i in 0..<size { acc += s[i] * s[i] } } else { for i in 0..<size { acc += powf(abs(s[i]), pw) } }
                                out[p] = pw == 2 ? acc.squareRoot() : powf(acc, 1 / pw)
                            }
                        }
                    }
                }
            }
            return [y]
        }
    }
}

/// MaxPool / AveragePool / LpPool with `auto_pad`, `pads`, `strides`, `dilations` and
/// `ceil_mode`. AveragePool divides by the number of input elements in the window, or with
/// `count_include_pad` by the elements inside the padded input. Windows are evaluated as up to
/// three nested loops over the in-range kernel offsets.
final class PoolKernel: Kernel {
    let ctx: KernelContext
    let kind: PoolingKernels.Kind
    let window: WindowAttributes
    let ceilMode: Bool
    let storageOrder: Int

    init(_ ctx: KernelContext, _ kind: PoolingKernels.Kind) throws {
        self.ctx = ctx
        self.kind = kind
        window = try WindowAttributes(ctx)
        ceilMode = ctx.int("ceil_mode", 0) != 0
        storageOrder = ctx.int("storage_order", 0)
        guard window.kernelShape != nil else { throw ctx.invalid("kernel_shape is required") }
    }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        guard let x0 = inputs[0] else { throw ctx.invalid("input X is missing") }
        var x = x0
        let integer = x0.dtype == .int8 || x0.dtype == .uint8
        if integer, case .max = kind {
            x = Tensor(shape: x0.shape, floats: x0.floats())
        }
        guard x.dtype == .float else { throw ctx.unsupported("X of type \(x0.dtype.name)") }
        guard x.rank >= 3, x.rank <= 5 else { throw ctx.unsupported("pooling over \(x.rank - 2) spatial dimensions") }
        let g0 = try window.resolve(input: Array(x.shape.dropFirst(2)), kernel: window.kernelShape!, ceilMode: ceilMode, ctx: ctx)
        // Pad to three spatial dimensions with unit dimensions in front.
        let e = 3 - g0.rank
        let ones = [Int](repeating: 1, count: e), zeros = [Int](repeating: 0, count: e)
        let g = WindowGeometry(input: ones + g0.input, kernel: ones + g0.kernel, strides: ones + g0.strides, dilations: ones + g0.dilations,
                               padBegin: zeros + g0.padBegin, padEnd: zeros + g0.padEnd, output: ones + g0.output)
        let planes = x.shape[0] * x.shape[1]
        let inSize = g.inputSize, outSize = g.outputSize
        let wantIndices = ctx.node.outputs.count > 1 && !ctx.node.outputs[1].isEmpty
        let indices = wantIndices ? Tensor(dtype: .int64, shape: [x.shape[0], x.shape[1]] + g0.output) : nil
        let kind = self.kind
        let columnMajor = storageOrder == 1
        let y = Tensor.makeFloat([x.shape[0], x.shape[1]] + g0.output) { out in
            let src = x.storage.pointer.assumingMemoryBound(to: Float.self)
            let idxOut = indices.map { $0.storage.pointer.assumingMemoryBound(to: Int64.self) }
            parallelFor(planes, threads: env.threads, grain: max(1, 8192 / max(outSize * g.kernelSize, 1))) { r in
                for p in r {
                    let xp = src + p * inSize
                    var o = p * outSize
                    for o0 in 0..<g.output[0] {
                        let (a0, b0, c0) = PoolKernel.span(g, 0, o0)
                        for o1 in 0..<g.output[1] {
                            let (a1, b1, c1) = PoolKernel.span(g, 1, o1)
                            for o2 in 0..<g.output[2] {
                                let (a2, b2, c2) = PoolKernel.span(g, 2, o2)
                                let s0 = o0 * g.strides[0] - g.padBegin[0], s1 = o1 * g.strides[1] - g.padBegin[1], s2 = o2 * g.strides[2] - g.padBegin[2]
                                var best = -Float.infinity, bestAt = -1
                                var acc: Float = 0
                                for k0 in a0..<max(a0, b0) {
                                    let i0 = s0 + k0 * g.dilations[0]
                                    for k1 in a1..<max(a1, b1) {
                                        let row = xp + (i0 * g.input[1] + s1 + k1 * g.dilations[1]) * g.input[2] + s2
                                        switch kind {
                                        case .max:
                                            for k2 in a2..<max(a2, b2) {
                                                let v = row[k2 * g.dilations[2]]
                                                if v > best {
                                                    best = v
                                                    bestAt = (i0 * g.input[1] + s1 + k1 * g.dilations[1]) * g.input[2] + s2 + k2 * g.dilations[2]
                                                }
                                            }
                                        case .average:
                                            for k2 in a2..<max(a2, b2) { acc += row[k2 * g.dilations[2]] }
                                        case .lp(let pw):
                                            if pw == 2 {
                                                for k2 in a2..<max(a2, b2) { let v = row[k2 * g.dilations[2]]; acc += v * v }
                                            } else {
                                                for k2 in a2..<max(a2, b2) { acc += powf(abs(row[k2 * g.dilations[2]]), pw) }
                                            }
                                        }
                                    }
                                }
                                switch kind {
                                case .max:
                                    out[o] = best
                                    if let idxOut {
                                        var flat = bestAt
                                        if columnMajor && bestAt >= 0 {
                                            let i2 = bestAt % g.input[2], i1 = (bestAt / g.input[2]) % g.input[1], i0 = bestAt / (g.input[2] * g.input[1])
                                            // Column-major over the real spatial dimensions (unit dimensions in front add nothing).
                                            flat = g0.rank == 3 ? i0 + g.input[0] * (i1 + g.input[1] * i2) : (g0.rank == 2 ? i1 + g.input[1] * i2 : i2)
                                        }
                                        idxOut[o] = Int64(p * inSize + flat)
                                    }
                                case .average(let includePad):
                                    let n = includePad ? c0 * c1 * c2 : (b0 - a0) * (b1 - a1) * (b2 - a2)
                                    out[o] = n > 0 ? acc / Float(n) : 0
                                case .lp(let pw):
                                    out[o] = pw == 2 ? acc.squareRoot() : powf(acc, 1 / pw)
                                }
                                o += 1
                            }
                        }
                    }
                }
            }
        }
        if integer {
            let vals = y.floats()
            let t = Tensor(dtype: x0.dtype, shape: y.shape)
            if x0.dtype == .int8 {
                t.withUnsafeMutableBufferPointer(as: Int8.self) { for i in 0..<$0.count { $0[i] = Int8(vals[i]) } }
            } else {
                t.withUnsafeMutableBufferPointer(as: UInt8.self) { for i in 0..<$0.count { $0[i] = UInt8(vals[i]) } }
            }
            return [t, indices]
        }
        return [y, indices]
    }

    /// Kernel offsets `a..<b` of output position `o` along dimension `i` that read the input,
    /// and the count of offsets inside the padded input (for `count_include_pad`).
    @inline(__always)
    static func span(_ g: WindowGeometry, _ i: Int, _ o: Int) -> (Int, Int, Int) {
        let start = o * g.strides[i] - g.padBegin[i]
        let d = g.dilations[i]
        let a = start >= 0 ? 0 : (-start + d - 1) / d
        let lastIn = g.input[i] - 1 - start
        let b = lastIn < 0 ? 0 : min(g.kernel[i], lastIn / d + 1)
        let lastPad = g.input[i] + g.padEnd[i] - 1 - start
        let c = lastPad < 0 ? 0 : min(g.kernel[i], lastPad / d + 1)
        return (a, b, c)
    }
}
