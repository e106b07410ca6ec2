import QuantCore

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator whose output
/// depends only on the seed, so random calibration data is reproducible on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// Random items for inputs without data (XQuant's `infer_auto`): floating types ~ N(0, 1)
/// (Box–Muller), signed integers uniform in [-10, 10), unsigned integers in [1, 10), bool
/// 0 or 1. Item `k` of input `i` draws from its own stream seeded by `(seed, i, k)`, so the
/// data does not depend on the batch size or on prefetching.
public enum RandomData {
    public static func item(dtype: DType, shape: [Int], seed: UInt64, input: Int, item: Int) -> Tensor {
        var g = SplitMix64(seed: seed ^ (UInt64(input) &* 0xD1B5_4A32_D192_ED03) ^ (UInt64(item) &* 0x8CB9_2BA7_2F3D_8DD7))
        _ = g.next()
        let n = Tensor.elementCount(shape)
        if dtype.isFloatingPoint {
            var v = [Float](repeating: 0, count: n)
            var i = 0
            while i < n {
                let u1 = max(g.unit(), 0x1p-53), u2 = g.unit()
                let r = (-2 * _log(u1)).squareRoot()
                v[i] = Float(r * _cos(2 * .pi * u2))
                if i + 1 < n { v[i + 1] = Float(r * _sin(2 * .pi * u2)) }
                i += 2
            }
            return TensorConversion.convert(Tensor(shape: shape, floats: v), to: dtype)
        }
        let signed: Bool
        switch dtype {
        case .int8, .int16, .int32, .int64: signed = true
        default: signed = false
        }
        let ints: [Int64] = (0..<n).map { _ in
            if dtype == .bool { return Int64(g.next() & 1) }
            return signed ? Int64(g.next() % 20) - 10 : Int64(g.next() % 9) + 1
        }
        let t = Tensor(shape: shape, values: ints)
        if dtype == .bool {
            let b = Tensor(dtype: .bool, shape: shape)
            for i in 0..<n { b.storage.pointer.storeBytes(of: UInt8(ints[i]), toByteOffset: i, as: UInt8.self) }
            return b
        }
        return TensorConversion.convert(t, to: dtype)
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Glibc.sin(x) }
#else
import Darwin
@inline(__always) func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Darwin.cos(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Darwin.sin(x) }
#endif
