import QuantCore

/// The executor computes floating point in float32. Tensors of other floating types are
/// converted on the way in (feeds, initializers, constant attributes) and back on the way out
/// (graph outputs declared as float16, bfloat16 or double).
public enum ComputeType {
    /// Float32 for float16/bfloat16/double tensors; other tensors unchanged.
    public static func normalize(_ t: Tensor) -> Tensor {
        switch t.dtype {
        case .float16, .bfloat16, .double:
            let out = Tensor(dtype: .float, shape: t.shape)
            out.withUnsafeMutableBufferPointer(as: Float.self) { o in
                let p = t.storage.pointer
                switch t.dtype {
                case .float16: for i in 0..<o.count { o[i] = HalfFloat.toFloat(p.load(fromByteOffset: 2 * i, as: UInt16.self)) }
                case .bfloat16: for i in 0..<o.count { o[i] = BFloat16.toFloat(p.load(fromByteOffset: 2 * i, as: UInt16.self)) }
                default: for i in 0..<o.count { o[i] = Float(p.load(fromByteOffset: 8 * i, as: Double.self)) }
                }
            }
            return out
        default:
            return t
        }
    }

    /// Converts a float32 tensor to `dtype` (float16, bfloat16 or double); others unchanged.
    public static func restore(_ t: Tensor, to dtype: DType) -> Tensor {
        guard t.dtype == .float, dtype == .float16 || dtype == .bfloat16 || dtype == .double else { return t }
        let out = Tensor(dtype: dtype, shape: t.shape)
        t.withUnsafeBufferPointer(as: Float.self) { src in
            let p = out.storage.pointer
            switch dtype {
            case .float16: for i in 0..<src.count { p.storeBytes(of: HalfFloat.fromFloat(src[i]), toByteOffset: 2 * i, as: UInt16.self) }
            case .bfloat16: for i in 0..<src.count { p.storeBytes(of: BFloat16.fromFloat(src[i]), toByteOffset: 2 * i, as: UInt16.self) }
            default: for i in 0..<src.count { p.storeBytes(of: Double(src[i]), toByteOffset: 8 * i, as: Double.self) }
            }
        }
        return out
    }

    /// The type a tensor of `dtype` has inside the executor.
    public static func internalType(_ dtype: DType) -> DType {
        switch dtype {
        case .float16, .bfloat16, .double: .float
        default: dtype
        }
    }
}
