import Foundation

/// The integer grid a tensor is quantized to: `bits` wide, signed or not, symmetric (zero point
/// 0, range ±absmax) or asymmetric (range [lo, hi] with a zero point).
///
/// Symmetric signed grids use [-(2^(b-1)-1), 2^(b-1)-1] (e.g. ±127), so that +x and -x quantize
/// to opposite integers; asymmetric grids use the full [0, 2^b-1] (unsigned) or
/// [-2^(b-1), 2^(b-1)-1] (signed). Following the ONNX QuantizeLinear spec,
/// `q = saturate(round_half_even(x / scale) + zero_point)`.
public struct QuantGrid: Codable, Sendable, Equatable, Hashable {
    public var bits: Int
    public var signed: Bool
    public var symmetric: Bool

    public init(bits: Int, signed: Bool, symmetric: Bool) {
        self.bits = bits
        self.signed = signed
        self.symmetric = symmetric
    }

    public static let int8Symmetric = QuantGrid(bits: 8, signed: true, symmetric: true)
    public static let uint8Asymmetric = QuantGrid(bits: 8, signed: false, symmetric: false)

    public var qmin: Int {
        if signed { return symmetric ? -((1 << (bits - 1)) - 1) : -(1 << (bits - 1)) }
        return 0
    }

    public var qmax: Int { signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1 }

    /// Scale and zero point for a clipping range. The range is widened to contain 0 (so zero is
    /// exactly representable) and every scale is positive and finite, even for an all-zero tensor.
    public func parameters(for range: ClipRange) -> (scale: Double, zeroPoint: Int) {
        var lo = min(range.lo, 0), hi = max(range.hi, 0)
        let tiny = Double(Float.leastNormalMagnitude) * 1024
        if symmetric {
            let m = max(abs(lo), abs(hi))
            if signed { return (max(m / Double(qmax), tiny), 0) }
            // Unsigned symmetric: the midpoint code is zero.
            let mid = (qmax + 1) / 2
            return (max(m / Double(mid), tiny), mid)
        }
        if hi - lo < tiny {
            lo = 0
            hi = tiny * Double(qmax - qmin)
        }
        let scale = max((hi - lo) / Double(qmax - qmin), tiny)
        let zp = Int((Double(qmin) - lo / scale).rounded(.toNearestOrEven))
        return (scale, min(max(zp, qmin), qmax))
    }

    /// Quantize-dequantize of `x` on this grid.
    @inlinable
    public func fakeQuantize(_ x: Double, scale: Double, zeroPoint: Int) -> Double {
        let q = min(max((x / scale).rounded(.toNearestOrEven) + Double(zeroPoint), Double(qmin)), Double(qmax))
        return (q - Double(zeroPoint)) * scale
    }
}

/// A clipping range [lo, hi] chosen for a tensor.
public struct ClipRange: Codable, Sendable, Equatable {
    public var lo: Double
    public var hi: Double
    public init(lo: Double, hi: Double) {
        self.lo = lo
        self.hi = hi
    }
}
