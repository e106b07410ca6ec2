import CKernels
import QuantCore
import QuantIR

/// Linear quantization operators: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and
/// the integer operators of QDQ/QOperator models (MatMulInteger, QLinearMatMul, ConvInteger,
/// QLinearConv, in QuantizationInteger.swift). QuantizeLinear and DequantizeLinear are also
/// registered under `com.microsoft`, the domain ONNX Runtime's quantizer emits them in.
enum QuantizationKernels {
    static let all: [String: KernelFactory] = [
        "QuantizeLinear": quantizeLinear,
        "DequantizeLinear": dequantizeLinear,
        "com.microsoft::QuantizeLinear": quantizeLinear,
        "com.microsoft::DequantizeLinear": dequantizeLinear,
        "DynamicQuantizeLinear": dynamicQuantizeLinear,
        "MatMulInteger": QuantizationInteger.matMulInteger,
        "QLinearMatMul": QuantizationInteger.qLinearMatMul,
        "ConvInteger": QuantizationInteger.convInteger,
        "QLinearConv": QuantizationInteger.qLinearConv,
    ]

    /// `QuantizeLinear` (opsets 10–25): `y = saturate(round(x / y_scale) + y_zero_point)`, rounding
    /// half to even. Scale and zero point are per tensor, per `axis` (13+) or per block of
    /// `block_size` along `axis` (21+). The output type is the zero point's, else `output_dtype`
    /// (21+), else uint8. Float8 outputs round to nearest even and, with `saturate` (19+), clamp
    /// to the largest finite value; float4e2m1 always saturates.
    static func quantizeLinear(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", 1)
        let blockSize = ctx.int("block_size", 0)
        let saturate = ctx.int("saturate", 1) != 0
        let outputDtype = try ctx.int("output_dtype").flatMap { $0 == 0 ? nil : try dtype($0, ctx) }
        let precision = try ctx.int("precision").flatMap { $0 == 0 ? nil : try dtype($0, ctx) }
        guard blockSize >= 0 else { throw ctx.invalid("block_size must not be negative") }
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], let scale = inputs[1] else { throw ctx.invalid("x and y_scale are required") }
            let zp = inputs.count > 2 ? inputs[2] : nil
            let target = zp?.dtype ?? outputDtype ?? .uint8
            if let outputDtype, let zp, zp.dtype != outputDtype {
                throw ctx.invalid("output_dtype \(outputDtype) differs from the zero point's type \(zp.dtype)")
            }
            let layout = try QuantLayout(x: x.shape, param: scale.shape, axis: axis, blockSize: blockSize, ctx: ctx)
            if let zp, zp.shape != scale.shape, !(zp.count == 1 && scale.count == 1) {
                throw ctx.invalid("zero point shape \(zp.shape) differs from scale shape \(scale.shape)")
            }
            var xs = x.dtype == .float ? x : Tensor(shape: x.shape, floats: x.floats())
            var scales = scale.floats()
            if let precision, precision == .float16 || precision == .bfloat16 {
                // The division runs in `precision`: round both operands to it first.
                let round: (Float) -> Float = precision == .float16
                    ? { HalfFloat.toFloat(HalfFloat.fromFloat($0)) } : { BFloat16.toFloat(BFloat16.fromFloat($0)) }
                xs = Tensor(shape: x.shape, floats: xs.floats().map(round))
                scales = scales.map(round)
            }
            let zps = zp?.floats() ?? [Float](repeating: 0, count: scales.count)
            let y = Tensor(dtype: target, shape: x.shape, storage: TensorStorage(uninitialized: target.byteCount(elements: x.count)))
            try xs.withUnsafeBufferPointer(as: Float.self) { src in
                switch target {
                case .int8: quantize(src, y, Int8.self, layout, scales, zps, env)
                case .uint8: quantize(src, y, UInt8.self, layout, scales, zps, env)
                case .int16: quantize(src, y, Int16.self, layout, scales, zps, env)
                case .uint16: quantize(src, y, UInt16.self, layout, scales, zps, env)
                case .int4, .uint4, .int2, .uint2:
                    let (lo, hi): (Float, Float) = switch target {
                    case .int4: (-8, 7)
                    case .uint4: (0, 15)
                    case .int2: (-2, 1)
                    default: (0, 3)
                    }
                    var codes = [UInt8](repeating: 0, count: x.count)
                    layout.forEach(count: x.count) { i, p in
                        let v = clamp((src[i] / scales[p]).rounded(.toNearestOrEven) + zps[p], lo, hi)
                        codes[i] = UInt8(truncatingIfNeeded: Int(v))
                    }
                    PackedBits.pack(codes, into: y)
                case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz:
                    let p = y.storage.pointer.assumingMemoryBound(to: UInt8.self)
                    layout.forEach(count: x.count) { i, k in
                        p[i] = Float8Encoding.encode(src[i] / scales[k], target, saturate: saturate)
                    }
                case .float4e2m1:
                    var codes = [UInt8](repeating: 0, count: x.count)
                    layout.forEach(count: x.count) { i, k in
                        codes[i] = Float8Encoding.encode(src[i] / scales[k] + zps[k], .float4e2m1, saturate: true)
                    }
                    PackedBits.pack(codes, into: y)
                default:
                    throw ctx.unsupported("quantizing to \(target.name)")
                }
            }
            return [y]
        }
    }

    /// Integer quantization into a typed output: `clamp(round_half_even(x / s) + zp, T.min, T.max)`.
    static func quantize<T: FixedWidthInteger>(
        _ src: UnsafeBufferPointer<Float>, _ y: Tensor, _: T.Type, _ layout: QuantLayout, _ scales: [Float], _ zps: [Float],
        _ env: RunEnvironment
    ) {
        let lo = Float(T.min), hi = Float(T.max)
        // Through Int32 (an instruction): the generic Float → T conversion checks exactness
        // bit by bit and made QuantizeLinear most of a QDQ model's run time.
        y.withUnsafeMutableBufferPointer(as: T.self) { out in
            if layout.perTensor {
                let s = scales[0], z = zps[0]
                let type: qk_quantize_type = T.self == Int8.self ? QK_Q_INT8 : T.self == UInt8.self ? QK_Q_UINT8
                    : T.self == Int16.self ? QK_Q_INT16 : QK_Q_UINT16
                let base = UnsafeMutableRawPointer(out.baseAddress!), stride = MemoryLayout<T>.stride
                parallelFor(src.count, threads: env.threads, grain: 1 << 15) { r in
                    qk_quantize(src.baseAddress! + r.lowerBound, r.count, s, z, lo, hi, Int32(type.rawValue), base + r.lowerBound * stride)
                }
                return
            }
            layout.forEachRow(threads: env.threads) { row, base, p0, ps in
                for i in 0..<layout.inner {
                    let k = p0 + i * ps
                    out[base + i] = T(truncatingIfNeeded: Int32(clamp((src[base + i] / scales[k]).rounded(.toNearestOrEven) + zps[k], lo, hi)))
                }
            }
        }
    }

    /// Clamps to `[lo, hi]`; NaN maps to `lo`.
    @inline(__always)
    static func clamp(_ v: Float, _ lo: Float, _ hi: Float) -> Float { v > lo ? (v < hi ? v : hi) : lo }

    /// `DequantizeLinear` (opsets 10–25): `y = (x - x_zero_point) * x_scale`, per tensor, per axis
    /// or per block like QuantizeLinear. Inputs may be any integer, float8, float4 or 2/4-bit
    /// packed type; int32 inputs take no zero point. The result is float32 (rounded through half
    /// precision when `output_dtype` is float16/bfloat16).
    static func dequantizeLinear(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", 1)
        let blockSize = ctx.int("block_size", 0)
        let outputDtype = try ctx.int("output_dtype").flatMap { $0 == 0 ? nil : try dtype($0, ctx) }
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], let scale = inputs[1] else { throw ctx.invalid("x and x_scale are required") }
            let zp = inputs.count > 2 ? inputs[2] : nil
            let layout = try QuantLayout(x: x.shape, param: scale.shape, axis: axis, blockSize: blockSize, ctx: ctx)
            let scales = scale.floats()
            var zps = [Float](repeating: 0, count: scales.count)
            if let zp {
                if zp.shape != scale.shape, !(zp.count == 1 && scale.count == 1) {
                    throw ctx.invalid("zero point shape \(zp.shape) differs from scale shape \(scale.shape)")
                }
                // Float8/float4 zero points carry no offset (float8 ones must be 0), as in the reference.
                if !x.dtype.isFloatingPoint { zps = zp.floats() }
            }
            let y = Tensor.makeFloat(x.shape) { out in
                switch x.dtype {
                case .int8: x.withUnsafeBufferPointer(as: Int8.self) { dequantize($0, out, layout, scales, zps, env) }
                case .uint8: x.withUnsafeBufferPointer(as: UInt8.self) { dequantize($0, out, layout, scales, zps, env) }
                case .int16: x.withUnsafeBufferPointer(as: Int16.self) { dequantize($0, out, layout, scales, zps, env) }
                case .uint16: x.withUnsafeBufferPointer(as: UInt16.self) { dequantize($0, out, layout, scales, zps, env) }
                case .int32: x.withUnsafeBufferPointer(as: Int32.self) { dequantize($0, out, layout, scales, zps, env) }
                default:
                    for i in 0..<x.count { out[i] = Float(x.scalarAsDouble(at: i)) }
                    layout.forEach(count: x.count) { i, k in out[i] = (out[i] - zps[k]) * scales[k] }
                }
                if outputDtype == .float16 {
                    for i in 0..<out.count { out[i] = HalfFloat.toFloat(HalfFloat.fromFloat(out[i])) }
                } else if outputDtype == .bfloat16 {
                    for i in 0..<out.count { out[i] = BFloat16.toFloat(BFloat16.fromFloat(out[i])) }
                }
            }
            return [y]
        }
    }

    static func dequantize<T: BinaryInteger>(
        _ src: UnsafeBufferPointer<T>, _ out: UnsafeMutableBufferPointer<Float>, _ layout: QuantLayout, _ scales: [Float],
        _ zps: [Float], _ env: RunEnvironment
    ) {
        if layout.perTensor {
            let s = scales[0], z = zps[0]
            parallelFor(src.count, threads: env.threads, grain: 1 << 15) { r in
                for i in r { out[i] = (Float(src[i]) - z) * s }
            }
            return
        }
        layout.forEachRow(threads: env.threads) { _, base, p0, ps in
            for i in 0..<layout.inner {
                let k = p0 + i * ps
                out[base + i] = (Float(src[base + i]) - zps[k]) * scales[k]
            }
        }
    }

    /// `DynamicQuantizeLinear` (11): uint8 quantization with a range that includes 0:
    /// `scale = (max(0, max x) - min(0, min x)) / 255` (1/255 when the range is empty),
    /// `zero_point = round(clamp(-min / scale, 0, 255))`, then QuantizeLinear.
    static func dynamicQuantizeLinear(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], x.dtype == .float else { throw ctx.unsupported("input type \(inputs[0]?.dtype.name ?? "missing")") }
            let (lo, hi) = x.withUnsafeBufferPointer(as: Float.self) { p -> (Float, Float) in
                var lo: Float = 0, hi: Float = 0
                for v in p { lo = min(lo, v); hi = max(hi, v) }
                return (lo, hi)
            }
            let scale: Float = (hi == lo ? 1 : hi - lo) / 255
            let zp = min(max(0 - lo / scale, 0), 255).rounded(.toNearestOrEven)
            let y = Tensor(dtype: .uint8, shape: x.shape, storage: TensorStorage(uninitialized: x.count))
            x.withUnsafeBufferPointer(as: Float.self) { src in
                quantize(src, y, UInt8.self, QuantLayout(perTensorOf: x.count), [scale], [zp], env)
            }
            return [y, Tensor(shape: [], floats: [scale]), Tensor(shape: [], values: [UInt8(zp)])]
        }
    }

    static func dtype(_ code: Int, _ ctx: KernelContext) throws -> DType {
        guard let t = DType(rawValue: Int32(code)) else { throw ctx.invalid("unknown element type \(code)") }
        return t
    }
}

/// How the elements of `x` map to the entries of a scale/zero-point tensor: one entry for all
/// (per tensor), one per index along `axis` (per axis), or one per block of `blockSize` indices
/// along `axis` with the other dimensions kept (blocked, ONNX opset 21).
struct QuantLayout {
    let perTensor: Bool
    let outer: Int, dim: Int, inner: Int
    /// 0 when not blocked.
    let blockSize: Int
    let blocks: Int

    init(perTensorOf count: Int) {
        self.init(perTensor: true, outer: 1, dim: 1, inner: count, blockSize: 0, blocks: 1)
    }

    private init(perTensor: Bool, outer: Int, dim: Int, inner: Int, blockSize: Int, blocks: Int) {
        self.perTensor = perTensor
        self.outer = outer
        self.dim = dim
        self.inner = inner
        self.blockSize = blockSize
        self.blocks = blocks
    }

    init(x: [Int], param: [Int], axis: Int, blockSize: Int, ctx: KernelContext) throws {
        let count = Tensor.elementCount(param)
        if count == 1 && (blockSize == 0 || param.count <= 1) {
            self.init(perTensorOf: Tensor.elementCount(x))
            return
        }
        guard let a = Shapes.axis(axis, rank: x.count), !x.isEmpty else {
            throw ctx.invalid("axis \(axis) is out of range for input shape \(x)")
        }
        let dim = x[a]
        var blocks = dim
        if blockSize > 0 {
            blocks = (dim + blockSize - 1) / blockSize
            var want = x
            want[a] = blocks
            guard param == want else {
                throw ctx.invalid("blocked quantization with block_size \(blockSize) on axis \(a) of \(x) needs scale shape \(want), got \(param)")
            }
        } else {
            guard param.count == 1, param[0] == dim else {
                throw ctx.invalid("per-axis scale must be 1-D of length \(dim) (axis \(a) of \(x)), got \(param)")
            }
        }
        self.init(perTensor: false, outer: x[..<a].reduce(1, *), dim: dim, inner: x[(a + 1)...].reduce(1, *), blockSize: blockSize, blocks: blocks)
    }

    /// Calls `body(row, base, p0, ps)` for each row `(o, a)` of `inner` contiguous elements
    /// starting at `base`; element `base + i` uses parameter `p0 + i * ps`.
    func forEachRow(threads: Int, _ body: (Int, Int, Int, Int) -> Void) {
        parallelFor(outer * dim, threads: threads, grain: max(1, (1 << 14) / max(inner, 1))) { r in
            for row in r {
                let o = row / dim, a = row % dim
                if blockSize > 0 {
                    body(row, row * inner, (o * blocks + a / blockSize) * inner, 1)
                } else {
                    body(row, row * inner, a, 0)
                }
            }
        }
    }

    /// Calls `body(element, parameterIndex)` for every element, serially.
    func forEach(count: Int, _ body: (Int, Int) -> Void) {
        if perTensor {
            for i in 0..<count { body(i, 0) }
            return
        }
        for row in 0..<(outer * dim) {
            let o = row / dim, a = row % dim
            let p0 = blockSize > 0 ? (o * blocks + a / blockSize) * inner : a
            let ps = blockSize > 0 ? 1 : 0
            for i in 0..<inner { body(row * inner + i, p0 + i * ps) }
        }
    }
}

/// Packing of 4-bit and 2-bit element codes, low bits first (ONNX raw_data order).
enum PackedBits {
    /// Writes `codes` (already truncated to the type's width) into `t`'s packed storage.
    static func pack(_ codes: [UInt8], into t: Tensor) {
        let bits = t.dtype.bitWidth
        let p = t.storage.pointer.assumingMemoryBound(to: UInt8.self)
        let mask: UInt8 = bits == 4 ? 0x0F : 0x03
        let perByte = 8 / bits
        for b in 0..<t.dtype.byteCount(elements: codes.count) { p[b] = 0 }
        for (i, c) in codes.enumerated() {
            p[i / perByte] |= (c & mask) << UInt8(bits * (i % perByte))
        }
    }
}
