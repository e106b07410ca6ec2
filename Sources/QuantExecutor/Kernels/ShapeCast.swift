import Foundation
import QuantCore
import QuantIR

/// `Cast` and `CastLike`, and the general element-type conversion other kernels reuse.
///
/// Floating targets follow `ComputeType`: a cast to float16 or bfloat16 rounds each value to
/// that precision (round to nearest even) and keeps float32 storage; double is float32 inside
/// the executor. Integer targets truncate toward zero (saturating out-of-range values and NaN
/// instead of trapping); bool is `x != 0`. Float8, float4 and 4/2-bit integer targets are
/// encoded with round to nearest even and ONNX's `saturate` rule.
enum CastKernels {
    static func cast(_ ctx: KernelContext) throws -> Kernel {
        guard let raw = ctx.int("to"), let to = DType(rawValue: Int32(raw)) else { throw ctx.invalid("attribute 'to' is missing or unknown") }
        let saturate = ctx.int("saturate", 1) != 0
        return ClosureKernel { inputs, env in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            return [try convert(x, to: to, saturate: saturate, threads: env.threads, ctx)]
        }
    }

    /// `CastLike(input, target_type)`: the type comes from the second input's declared type.
    static func castLike(_ ctx: KernelContext) throws -> Kernel {
        let saturate = ctx.int("saturate", 1) != 0
        // target_type arrives in the compute type (float for a float16/bfloat16/double value),
        // so the cast targets that type; a graph output of such a type is rounded at the edge.
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], let like = inputs[1] else { throw ctx.invalid("two inputs are required") }
            return [try convert(x, to: like.dtype, saturate: saturate, threads: env.threads, ctx)]
        }
    }

    /// `BitCast(input, to)`: the same bits read as another type of the same width. Double
    /// inputs are float32 inside the executor, so their original bits are gone: a double
    /// source is rejected; a double target decodes the 64-bit pattern and rounds to float32.
    static func bitCast(_ ctx: KernelContext) throws -> Kernel {
        guard let raw = ctx.int("to"), let to = DType(rawValue: Int32(raw)) else { throw ctx.invalid("attribute 'to' is missing or unknown") }
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.dtype != .string, to != .string else { throw ctx.invalid("a fixed-width input is required") }
            if to == .double {
                guard x.dtype.bitWidth == 64, x.dtype != .complex64 else { throw ctx.invalid("\(x.dtype) and double differ in width") }
                let p = x.storage.pointer
                return [Tensor(shape: x.shape, floats: (0..<x.count).map { Float(p.load(fromByteOffset: 8 * $0, as: Double.self)) })]
            }
            let internalTo = ComputeType.internalType(to)
            guard internalTo == to, x.dtype.bitWidth == to.bitWidth else {
                throw ctx.unsupported("bit-casting \(x.dtype) (float32 inside the executor when declared double/float16) to \(to)")
            }
            return [Tensor(dtype: to, shape: x.shape, storage: TensorStorage(copying: x.bytes))]
        }
    }

    /// `x` converted to element type `to` (in the executor's compute-type convention).
    static func convert(_ x: Tensor, to: DType, saturate: Bool = true, threads: Int = 1, _ ctx: KernelContext) throws -> Tensor {
        if x.dtype == .string || to == .string { throw ctx.unsupported("casting \(x.dtype) to \(to)") }
        switch to {
        case .float16, .bfloat16:
            let f = try convert(x, to: .float, threads: threads, ctx)
            if to == .float16 {
                return Broadcast.unary(f, Float.self, out: .float, threads: threads) { HalfFloat.toFloat(HalfFloat.fromFloat($0)) }
            }
            return Broadcast.unary(f, Float.self, out: .float, threads: threads) { BFloat16.toFloat(BFloat16.fromFloat($0)) }
        case .double:
            return try convert(x, to: .float, threads: threads, ctx)
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0, .float4e2m1, .int4, .uint4, .int2, .uint2:
            let f = try convert(x, to: .float, threads: threads, ctx)
            return try PackedCast.encode(f, to: to, saturate: saturate, ctx)
        default: break
        }
        if x.dtype == to { return x }
        var src = x
        if src.dtype.bitWidth < 8 || (src.dtype.isFloatingPoint && src.dtype != .float) {
            // Packed and 8-bit float sources decode to float32 first.
            src = Tensor(shape: x.shape, floats: (0..<x.count).map { Float(x.scalarAsDouble(at: $0)) })
            if to == .float { return src }
        }
        if src.dtype == .bool { src = Tensor(dtype: .uint8, shape: src.shape, storage: src.storage) }
        if to == .bool {
            guard let r = try ToBool(x: src, threads: threads)(src.dtype) else { throw ctx.unsupported("casting \(x.dtype) to bool") }
            return r
        }
        guard let r = try From(x: src, to: to, threads: threads)(src.dtype), let t = r else {
            throw ctx.unsupported("casting \(x.dtype) to \(to)")
        }
        return t
    }

    struct ToBool: ScalarVisitor {
        let x: Tensor, threads: Int
        func visit<S: ExecScalar>(_: S.Type) -> Tensor {
            Broadcast.unary(x, S.self, out: .bool, threads: threads) { $0 != S.zero ? 1 as UInt8 : 0 }
        }
    }

    struct From: ScalarVisitor {
        let x: Tensor, to: DType, threads: Int
        func visit<S: ExecScalar>(_: S.Type) throws -> Tensor? { try To<S>(x: x, to: to, threads: threads)(to) }
    }

    struct To<S: ExecScalar>: ScalarVisitor {
        let x: Tensor, to: DType, threads: Int
        func visit<D: ExecScalar>(_: D.Type) -> Tensor {
            Broadcast.unary(x, S.self, out: to, threads: threads) { D.cast($0) }
        }
    }
}

extension ExecScalar {
    /// C-style conversion from another executor scalar type.
    @inline(__always)
    static func cast<S: ExecScalar>(_ s: S) -> Self {
        if let v = s as? Float { return fromDouble(Double(v)) }
        return fromInteger(s)
    }

    @inline(__always)
    static func fromInteger<S: ExecScalar>(_ s: S) -> Self {
        // Integers wrap (two's complement truncation), as C casts between integer types do.
        switch s {
        case let v as Int64: return fromBits(v, unsigned: false)
        case let v as UInt64: return fromBits(Int64(bitPattern: v), unsigned: true)
        case let v as Int32: return fromBits(Int64(v), unsigned: false)
        case let v as UInt32: return fromBits(Int64(v), unsigned: false)
        case let v as Int16: return fromBits(Int64(v), unsigned: false)
        case let v as UInt16: return fromBits(Int64(v), unsigned: false)
        case let v as Int8: return fromBits(Int64(v), unsigned: false)
        case let v as UInt8: return fromBits(Int64(v), unsigned: false)
        default: return fromDouble(s.asDouble)
        }
    }

    @inline(__always)
    static func fromBits(_ v: Int64, unsigned: Bool) -> Self {
        switch Self.self {
        case is Float.Type: return (unsigned ? Float(UInt64(bitPattern: v)) : Float(v)) as! Self
        case is Int64.Type: return v as! Self
        case is UInt64.Type: return UInt64(bitPattern: v) as! Self
        case is Int32.Type: return Int32(truncatingIfNeeded: v) as! Self
        case is UInt32.Type: return UInt32(truncatingIfNeeded: v) as! Self
        case is Int16.Type: return Int16(truncatingIfNeeded: v) as! Self
        case is UInt16.Type: return UInt16(truncatingIfNeeded: v) as! Self
        case is Int8.Type: return Int8(truncatingIfNeeded: v) as! Self
        default: return UInt8(truncatingIfNeeded: v) as! Self
        }
    }
}
