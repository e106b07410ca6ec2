import CKernels
import QuantCore
import QuantIR

/// Integer matrix multiplication and convolution of QOperator models. Accumulation is exact in
/// int32; QLinear* requantize with `round_half_even(acc · (x_scale · w_scale / y_scale)) + y_zp`
/// saturated to the output type, in float32 as ONNX Runtime computes it (`requantize`).
enum QuantizationInteger {
    /// `MatMulInteger` (10): int32 `(A - a_zero_point) · (B - b_zero_point)` with numpy matmul
    /// broadcasting; a_zero_point per tensor or per row of A, b_zero_point per tensor or per
    /// column of B.
    static func matMulInteger(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let a = inputs[0], let b = inputs[1] else { throw ctx.invalid("A and B are required") }
            let (shape, acc) = try integerMatMul(a, b, inputs.count > 2 ? inputs[2] : nil, inputs.count > 3 ? inputs[3] : nil, ctx, env)
            return [Tensor(shape: shape, values: acc)]
        }
    }

    /// `QLinearMatMul` (10, 21): integer matmul of dequantization-free operands, requantized to
    /// y's type (y_zero_point's type).
    static func qLinearMatMul(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard inputs.count >= 8, let a = inputs[0], let aScale = inputs[1], let b = inputs[3], let bScale = inputs[4],
                  let yScale = inputs[6] else { throw ctx.invalid("QLinearMatMul needs 8 inputs") }
            let (shape, acc) = try integerMatMul(a, b, inputs[2], inputs[5], ctx, env)
            let n = shape.last ?? 1
            let m = b.rank == 1 ? 1 : (a.rank == 1 ? 1 : a.shape[a.rank - 2])
            let sa = aScale.floats(), sb = bScale.floats(), sy = yScale.floats()
            guard sy.count == 1, sa.count == 1 || sa.count == m, sb.count == 1 || sb.count == n else {
                throw ctx.invalid("scales must be per tensor (y), per row (a) or per column (b)")
            }
            let yType = inputs[7]?.dtype ?? a.dtype
            let zp = inputs[7].map { Int32($0.scalarAsDouble(at: 0)) } ?? 0
            // One multiplier per output row, or one per element of it for per-column b scales.
            let perRow: [[Float]] = (0..<m).map { row in
                let a = sa[sa.count == 1 ? 0 : row]
                return sb.count == 1 ? [a * sb[0] / sy[0]] : (0..<n).map { a * sb[$0] / sy[0] }
            }
            return [try requantize(acc, shape: shape, type: yType, zeroPoint: zp, ctx: ctx, rowLength: n) { perRow[$0 % m] }]
        }
    }

    /// `ConvInteger` (10): int32 convolution of `x - x_zero_point` with `w - w_zero_point`
    /// (w_zero_point per tensor or per output channel).
    static func convInteger(_ ctx: KernelContext) throws -> Kernel {
        let attrs = try ConvAttributes(ctx)
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], let w = inputs[1] else { throw ctx.invalid("x and w are required") }
            let (shape, acc) = try attrs.run(x, w, inputs.count > 2 ? inputs[2] : nil, inputs.count > 3 ? inputs[3] : nil, bias: nil, ctx, env)
            return [Tensor(shape: shape, values: acc)]
        }
    }

    /// `QLinearConv` (10): integer convolution plus int32 bias, requantized per output channel.
    /// A batch runs in chunks of `2 · threads` samples, so the int32 copies of the input, the
    /// sums and the requantized values hold one chunk instead of the whole batch
    /// (EfficientNet-Lite0, batch 32: `quantkit run --integer-conv` peaks at 355 MB instead of 694 MB).
    static func qLinearConv(_ ctx: KernelContext) throws -> Kernel {
        let attrs = try ConvAttributes(ctx)
        return ClosureKernel { inputs, env in
            guard inputs.count >= 8, let x = inputs[0], let xScale = inputs[1], let w = inputs[3], let wScale = inputs[4],
                  let yScale = inputs[6] else { throw ctx.invalid("QLinearConv needs 8 or 9 inputs") }
            let bias = inputs.count > 8 ? inputs[8] : nil
            let sx = xScale.floats(), sw = wScale.floats(), sy = yScale.floats()
            guard sx.count == 1, sy.count == 1, sw.count == 1 || sw.count == w.shape.first else {
                throw ctx.invalid("x_scale and y_scale must be scalars, w_scale scalar or per output channel")
            }
            let yType = inputs[7]?.dtype ?? x.dtype
            let zp = inputs[7].map { Int32($0.scalarAsDouble(at: 0)) } ?? 0
            func convolve(_ x: Tensor) throws -> Tensor {
                let (shape, acc) = try attrs.run(x, w, inputs[2], inputs[5], bias: bias, ctx, env)
                let channels = shape[1], spatial = shape[2...].reduce(1, *)
                return try requantize(acc, shape: shape, type: yType, zeroPoint: zp, ctx: ctx, rowLength: spatial) { r in
                    [sx[0] * sw[sw.count == 1 ? 0 : r % channels] / sy[0]]
                }
            }
            let n = x.shape.first ?? 1, chunk = max(1, 2 * env.threads)
            guard x.rank >= 3, n > chunk, x.dtype.bitWidth % 8 == 0 else { return [try convolve(x)] }
            let parts = try stride(from: 0, to: n, by: chunk).map { try convolve(x.items(from: $0, count: min(chunk, n - $0))) }
            return [SampleSplit.concatenate(parts)!]
        }
    }


    /// `clamp(float(acc) · multiplier(i)) + zero_point`, rounded half to even, into an int8/uint8
    /// (or 16-bit) tensor. The arithmetic is ONNX Runtime's (MLAS requantization): the int32 sum
    /// converted to float32, multiplied by the float32 multiplier, clamped to the output range
    /// less the zero point, rounded, then shifted; in double the few products within an ulp of a
    /// .5 would round the other way (and a whole constant region with them).
    /// `acc` is split into rows of `rowLength` sums; `multipliers(row)` gives one multiplier for
    /// the whole row or one per element of it.
    static func requantize(_ acc: [Int32], shape: [Int], type: DType, zeroPoint: Int32, ctx: KernelContext, rowLength: Int,
                           _ multipliers: (Int) -> [Float]) throws -> Tensor {
        let (lo, hi, code): (Int32, Int32, qk_quantize_type) = switch type {
        case .int8: (-128, 127, QK_Q_INT8)
        case .uint8: (0, 255, QK_Q_UINT8)
        case .int16: (-32768, 32767, QK_Q_INT16)
        case .uint16: (0, 65535, QK_Q_UINT16)
        default: throw ctx.unsupported("output type \(type.name)")
        }
        let minimum = Float(lo - zeroPoint), maximum = Float(hi - zeroPoint)
        let out = Tensor(dtype: type, shape: shape)
        let length = max(rowLength, 1)
        func fill<T>(_: T.Type) {
            out.withUnsafeMutableBufferPointer(as: T.self) { o in
                acc.withUnsafeBufferPointer { a in
                    guard let ap = a.baseAddress, let op = o.baseAddress else { return }
                    for (r, start) in stride(from: 0, to: a.count, by: length).enumerated() {
                        let m = multipliers(r), count = min(length, a.count - start)
                        qk_requantize(ap + start, count, m, m.count > 1 ? 1 : 0, minimum, maximum, zeroPoint, Int32(code.rawValue), op + start)
                    }
                }
            }
        }
        switch type {
        case .int8: fill(Int8.self)
        case .uint8: fill(UInt8.self)
        case .int16: fill(Int16.self)
        default: fill(UInt16.self)
        }
        return out
    }

    /// Elements of an integer tensor as Int32.
    static func int32Values(_ t: Tensor, _ ctx: KernelContext) throws -> [Int32] {
        switch t.dtype {
        case .int8: return t.withUnsafeBufferPointer(as: Int8.self) { $0.map(Int32.init) }
        case .uint8: return t.withUnsafeBufferPointer(as: UInt8.self) { $0.map(Int32.init) }
        case .int16: return t.withUnsafeBufferPointer(as: Int16.self) { $0.map(Int32.init) }
        case .uint16: return t.withUnsafeBufferPointer(as: UInt16.self) { $0.map(Int32.init) }
        case .int32: return t.withUnsafeBufferPointer(as: Int32.self) { Array($0) }
        default: throw ctx.unsupported("element type \(t.dtype.name)")
        }
    }

    /// numpy-matmul of `a - aZero` and `b - bZero` in int32. Returns the output shape and values.
    static func integerMatMul(_ a: Tensor, _ b: Tensor, _ aZero: Tensor?, _ bZero: Tensor?, _ ctx: KernelContext, _ env: RunEnvironment) throws -> ([Int], [Int32]) {
        guard a.rank >= 1, b.rank >= 1 else { throw ctx.invalid("matmul operands must have rank >= 1") }
        let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
        let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
        let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1]
        let n = bShape[bShape.count - 1]
        guard bShape[bShape.count - 2] == k else { throw ctx.invalid("shapes \(a.shape) and \(b.shape) do not multiply") }
        guard let batch = Shapes.broadcast([Array(aShape.dropLast(2)), Array(bShape.dropLast(2))]) else {
            throw ctx.invalid("batch dimensions of \(a.shape) and \(b.shape) do not broadcast (or their broadcast exceeds 2^31 elements)")
        }
        var av = try int32Values(a, ctx), bv = try int32Values(b, ctx)
        if let aZero {
            let z = try int32Values(aZero, ctx)
            guard z.count == 1 || z.count == m else { throw ctx.invalid("a_zero_point must be a scalar or have \(m) entries") }
            for i in 0..<av.count { av[i] -= z.count == 1 ? z[0] : z[(i / k) % m] }
        }
        if let bZero {
            let z = try int32Values(bZero, ctx)
            guard z.count == 1 || z.count == n else { throw ctx.invalid("b_zero_point must be a scalar or have \(n) entries") }
            for i in 0..<bv.count { bv[i] -= z.count == 1 ? z[0] : z[i % n] }
        }
        let batchCount = batch.reduce(1, *)
        let aStrides = Shapes.broadcastStrides(Array(aShape.dropLast(2)), to: batch)
        let bStrides = Shapes.broadcastStrides(Array(bShape.dropLast(2)), to: batch)
        let batchStrides = Shapes.strides(batch)
        var out = [Int32](repeating: 0, count: batchCount * m * n)
        av.withUnsafeBufferPointer { ap in
            bv.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    let opBase = op.baseAddress!
                    parallelFor(batchCount * m, threads: env.threads, grain: max(1, 4096 / max(n * k, 1))) { r in
                        for row in r {
                            let bi = row / m, i = row % m
                            var aOff = 0, bOff = 0, rem = bi
                            for d in 0..<batch.count {
                                let c = rem / batchStrides[d]
                                rem %= batchStrides[d]
                                aOff += c * aStrides[d]
                                bOff += c * bStrides[d]
                            }
                            let arow = ap.baseAddress! + (aOff * m + i) * k
                            let orow = opBase + row * n
                            for kk in 0..<k {
                                let x = arow[kk]
                                let brow = bp.baseAddress! + (bOff * k + kk) * n
                                for j in 0..<n { orow[j] &+= x &* brow[j] }
                            }
                        }
                    }
                }
            }
        }
        var shape = batch
        if a.rank > 1 { shape.append(m) }
        if b.rank > 1 { shape.append(n) }
        return (shape, out)
    }
}

/// Convolution attributes (auto_pad, dilations, group, kernel_shape, pads, strides), parsed once.
struct ConvAttributes {
    let autoPad: String
    let dilations: [Int]?
    let group: Int
    let kernelShape: [Int]?
    let pads: [Int]?
    let strides: [Int]?

    init(_ ctx: KernelContext) throws {
        autoPad = ctx.string("auto_pad", "NOTSET")
        dilations = ctx.ints("dilations")
        group = ctx.int("group", 1)
        kernelShape = ctx.ints("kernel_shape")
        pads = ctx.ints("pads")
        strides = ctx.ints("strides")
        guard group >= 1 else { throw ctx.invalid("group must be >= 1") }
        guard ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(autoPad) else { throw ctx.invalid("unknown auto_pad \(autoPad)") }
    }

    /// Output spatial sizes and begin paddings for input spatial sizes and kernel sizes.
    func geometry(_ input: [Int], _ kernel: [Int], _ ctx: KernelContext) throws -> (out: [Int], padBegin: [Int], strides: [Int], dilations: [Int]) {
        let r = input.count
        let s = strides ?? [Int](repeating: 1, count: r)
        let d = dilations ?? [Int](repeating: 1, count: r)
        guard s.count == r, d.count == r, s.allSatisfy({ $0 > 0 }), d.allSatisfy({ $0 > 0 }) else { throw ctx.invalid("strides/dilations must have \(r) positive entries") }
        var out = [Int](repeating: 0, count: r), begin = [Int](repeating: 0, count: r)
        for i in 0..<r {
            let extent = d[i] * (kernel[i] - 1) + 1
            switch autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                out[i] = (input[i] + s[i] - 1) / s[i]
                let total = max(0, (out[i] - 1) * s[i] + extent - input[i])
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
            case "VALID":
                out[i] = (input[i] - extent) / s[i] + 1
            default:
                let p = pads ?? [Int](repeating: 0, count: 2 * r)
                guard p.count == 2 * r else { throw ctx.invalid("pads must have \(2 * r) entries") }
                begin[i] = p[i]
                out[i] = (input[i] + p[i] + p[i + r] - extent) / s[i] + 1
            }
            guard out[i] > 0 else { throw ctx.invalid("kernel \(kernel) does not fit input \(input)") }
        }
        return (out, begin, s, d)
    }

    /// Int32 convolution of `x - xZero` with `w - wZero`, plus `bias` per output channel.
    func run(_ x: Tensor, _ w: Tensor, _ xZero: Tensor?, _ wZero: Tensor?, bias: Tensor?, _ ctx: KernelContext, _ env: RunEnvironment) throws -> ([Int], [Int32]) {
        guard x.rank >= 3, w.rank == x.rank else { throw ctx.invalid("x \(x.shape) and w \(w.shape) must have the same rank >= 3") }
        let batch = x.shape[0], channels = x.shape[1], inSpatial = Array(x.shape[2...])
        let outChannels = w.shape[0], cg = w.shape[1], kernel = Array(w.shape[2...])
        if let kernelShape, kernelShape != kernel { throw ctx.invalid("kernel_shape \(kernelShape) differs from w \(w.shape)") }
        guard cg * group == channels, outChannels % group == 0 else { throw ctx.invalid("channels \(channels) and w \(w.shape) do not fit group \(group)") }
        let (outSpatial, begin, s, d) = try geometry(inSpatial, kernel, ctx)
        var xv = try QuantizationInteger.int32Values(x, ctx), wv = try QuantizationInteger.int32Values(w, ctx)
        if let xZero {
            let z = try QuantizationInteger.int32Values(xZero, ctx)
            guard z.count == 1 else { throw ctx.invalid("x_zero_point must be a scalar") }
            for i in 0..<xv.count { xv[i] -= z[0] }
        }
        let ks = kernel.reduce(1, *), perOut = cg * ks
        if let wZero {
            let z = try QuantizationInteger.int32Values(wZero, ctx)
            guard z.count == 1 || z.count == outChannels else { throw ctx.invalid("w_zero_point must be a scalar or per output channel") }
            for i in 0..<wv.count { wv[i] -= z.count == 1 ? z[0] : z[i / perOut] }
        }
        let bv = try bias.map { try QuantizationInteger.int32Values($0, ctx) }
        if let bv, bv.count != outChannels { throw ctx.invalid("B must have \(outChannels) entries") }
        // For each (kernel offset, output position): the input spatial index, or -1 in padding.
        let p = outSpatial.reduce(1, *), inCount = inSpatial.reduce(1, *)
        let inStrides = Shapes.strides(inSpatial), outStrides = Shapes.strides(outSpatial), kStrides = Shapes.strides(kernel)
        var source = [Int](repeating: -1, count: ks * p)
        for kk in 0..<ks {
            for o in 0..<p {
                var idx = 0, inside = true
                for dim in 0..<inSpatial.count {
                    let oc = (o / outStrides[dim]) % outSpatial[dim], kc = (kk / kStrides[dim]) % kernel[dim]
                    let pos = oc * s[dim] - begin[dim] + kc * d[dim]
                    if pos < 0 || pos >= inSpatial[dim] { inside = false; break }
                    idx += pos * inStrides[dim]
                }
                if inside { source[kk * p + o] = idx }
            }
        }
        let mg = outChannels / group
        // Each image and group is one double-precision GEMM of integer values: exact (every
        // partial sum is an integer far below 2^53) and as fast as BLAS. Small groups
        // (depthwise: one output channel, a few taps) accumulate directly in int32 instead,
        // where a GEMM call per channel would cost more than the sums.
        let viaGEMM = mg >= 4 && perOut >= 16
        let wd = viaGEMM ? wv.map { Double($0) } : []
        var out = [Int32](repeating: 0, count: batch * outChannels * p)
        BLAS.setThreads(1)
        out.withUnsafeMutableBufferPointer { op in xv.withUnsafeBufferPointer { xb in wv.withUnsafeBufferPointer { wb in
        source.withUnsafeBufferPointer { sb in
            let obase = op.baseAddress!, xbase = xb.baseAddress!, wbase = wb.baseAddress!, sbase = sb.baseAddress!
            parallelFor(batch * group, threads: env.threads) { r in
                let col = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, perOut * p))
                let colD = UnsafeMutablePointer<Double>.allocate(capacity: viaGEMM ? perOut * p : 1)
                let prod = UnsafeMutablePointer<Double>.allocate(capacity: viaGEMM ? mg * p : 1)
                defer { col.deallocate(); colD.deallocate(); prod.deallocate() }
                for bg in r {
                    let n = bg / group, g = bg % group
                    // im2col of this image and group: rows (c, kk), columns output positions.
                    for c in 0..<cg {
                        let xc = xbase + (n * channels + g * cg + c) * inCount
                        for kk in 0..<ks {
                            let dst = col + (c * ks + kk) * p, src = sbase + kk * p
                            for o in 0..<p {
                                let sidx = src[o]
                                dst[o] = sidx >= 0 ? xc[sidx] : 0
                            }
                        }
                    }
                    if viaGEMM {
                        for i in 0..<(perOut * p) { colD[i] = Double(col[i]) }
                        wd.withUnsafeBufferPointer { wp in
                            BLAS.dgemm(m: mg, n: p, k: perOut, a: wp.baseAddress! + g * mg * perOut, b: colD, c: prod)
                        }
                    }
                    for mm in 0..<mg {
                        let m = g * mg + mm
                        let orow = obase + (n * outChannels + m) * p
                        let b0 = bv?[m] ?? 0
                        if viaGEMM {
                            let pr = prod + mm * p
                            for o in 0..<p { orow[o] = b0 &+ Int32(truncatingIfNeeded: Int64(pr[o])) }
                            continue
                        }
                        orow.update(repeating: b0, count: p)
                        for rIdx in 0..<perOut {
                            let wval = wbase[m * perOut + rIdx]
                            if wval == 0 { continue }
                            let crow = col + rIdx * p
                            for o in 0..<p { orow[o] &+= wval &* crow[o] }
                        }
                    }
                }
            }
        } } } }
        return ([batch, outChannels] + outSpatial, out)
    }
}
