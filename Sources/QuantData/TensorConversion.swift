import QuantCore

/// Element-type conversion and batching of item tensors.
enum TensorConversion {
    /// True when data of type `from` may be fed to an input of type `to`: float to float,
    /// integer/bool to any numeric type, bool to bool. Floating data is never silently
    /// truncated into integer inputs (image pipelines convert explicitly via `convert`).
    static func canFeed(_ from: DType, to: DType) -> Bool {
        if from == to { return true }
        if to == .bool { return false }
        if from.isFloatingPoint { return to.isFloatingPoint }
        return from.isInteger || from == .bool
    }

    /// Converts `t` to `dtype`. Floats to integers round half to even and saturate; NaN becomes 0.
    static func convert(_ t: Tensor, to dtype: DType) -> Tensor {
        if t.dtype == dtype { return t }
        let out = Tensor(dtype: dtype, shape: t.shape)
        let p = out.storage.pointer
        let n = t.count
        if (t.dtype.isInteger || t.dtype == .bool) && dtype.isInteger {
            for i in 0..<n { storeInteger(integerAt(t, i), p, i, dtype) }
            return out
        }
        if t.dtype == .float && dtype == .float16 {
            t.withUnsafeBufferPointer(as: Float.self) { s in
                let o = p.assumingMemoryBound(to: UInt16.self)
                for i in 0..<n { o[i] = HalfFloat.fromFloat(s[i]) }
            }
            return out
        }
        for i in 0..<n {
            let v = t.scalarAsDouble(at: i)
            switch dtype {
            case .float: p.storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self)
            case .double: p.storeBytes(of: v, toByteOffset: i * 8, as: Double.self)
            case .float16: p.storeBytes(of: HalfFloat.fromFloat(Float(v)), toByteOffset: i * 2, as: UInt16.self)
            case .bfloat16: p.storeBytes(of: BFloat16.fromFloat(Float(v)), toByteOffset: i * 2, as: UInt16.self)
            case .bool: p.storeBytes(of: UInt8(v != 0 ? 1 : 0), toByteOffset: i, as: UInt8.self)
            default:
                let r = v.isNaN ? 0 : v.rounded(.toNearestOrEven)
                let lo = Double(minValue(dtype)), hi = Double(maxValue(dtype))
                storeInteger(r <= lo ? minValue(dtype) : (r >= hi ? maxValue(dtype) : Int64(r)), p, i, dtype)
            }
        }
        return out
    }

    static func integerAt(_ t: Tensor, _ i: Int) -> Int64 {
        let p = t.storage.pointer
        switch t.dtype {
        case .int64: return p.load(fromByteOffset: i * 8, as: Int64.self)
        case .uint64: return Int64(clamping: p.load(fromByteOffset: i * 8, as: UInt64.self))
        default: return Int64(t.scalarAsDouble(at: i))
        }
    }

    static func minValue(_ t: DType) -> Int64 {
        switch t {
        case .int8: Int64(Int8.min)
        case .int16: Int64(Int16.min)
        case .int32: Int64(Int32.min)
        case .int64: Int64.min
        default: 0
        }
    }

    static func maxValue(_ t: DType) -> Int64 {
        switch t {
        case .int8: Int64(Int8.max)
        case .uint8: Int64(UInt8.max)
        case .int16: Int64(Int16.max)
        case .uint16: Int64(UInt16.max)
        case .int32: Int64(Int32.max)
        case .uint32: Int64(UInt32.max)
        default: Int64.max
        }
    }

    static func storeInteger(_ v: Int64, _ p: UnsafeMutableRawPointer, _ i: Int, _ t: DType) {
        let c = min(max(v, minValue(t)), maxValue(t))
        switch t {
        case .int8: p.storeBytes(of: Int8(c), toByteOffset: i, as: Int8.self)
        case .uint8: p.storeBytes(of: UInt8(c), toByteOffset: i, as: UInt8.self)
        case .int16: p.storeBytes(of: Int16(c), toByteOffset: i * 2, as: Int16.self)
        case .uint16: p.storeBytes(of: UInt16(c), toByteOffset: i * 2, as: UInt16.self)
        case .int32: p.storeBytes(of: Int32(c), toByteOffset: i * 4, as: Int32.self)
        case .uint32: p.storeBytes(of: UInt32(c), toByteOffset: i * 4, as: UInt32.self)
        case .int64: p.storeBytes(of: c, toByteOffset: i * 8, as: Int64.self)
        case .uint64: p.storeBytes(of: UInt64(c), toByteOffset: i * 8, as: UInt64.self)
        default: preconditionFailure("not an integer type: \(t)")
        }
    }

    /// Concatenates tensors of one dtype along dimension 0 (their other dims are equal).
    static func concat(_ parts: [Tensor]) -> Tensor {
        guard let t = Tensor.joined(parts) else { preconditionFailure("items of different types or shapes in one batch") }
        return t
    }

    /// The number of NaN and ±Inf elements (0 for non-float types).
    static func nonFiniteCount(_ t: Tensor) -> Int {
        switch t.dtype {
        case .float: return t.withUnsafeBufferPointer(as: Float.self) { $0.reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
        case .double: return t.withUnsafeBufferPointer(as: Double.self) { $0.reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
        case .float16, .bfloat16: return (0..<t.count).reduce(0) { $0 + (t.scalarAsDouble(at: $1).isFinite ? 0 : 1) }
        default: return 0
        }
    }
}
