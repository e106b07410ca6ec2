import Foundation
import QuantCore

/// The integer grid a tensor is quantized to: `bits` wide, signed or not, symmetric (zero point
/// 0, range ±absmax) or asymmetric (range [lo, hi] with a zero point).
///
/// Symmetric signed grids use [-(2^(b-1)-1), 2^(b-1)-1] (e.g. ±127), so that +x and -x quantize
/// to opposite integers; asymmetric grids use the full [0, 2^b-1] (unsigned) or
/// [-2^(b-1), 2^(b-1)-1] (signed). Following the ONNX QuantizeLinear spec,
/// `q = saturate(round_half_even(x / scale) + zero_point)`.
///
/// A float8 grid (`float8`: float8e4m3fn or float8e5m2) is symmetric with zero point 0 and
/// scale absmax / the format's largest value; values round to the nearest float8 number
/// (saturating), so its steps grow with magnitude. `qmin`/`qmax` are ∓ that largest value.
public struct QuantGrid: Codable, Sendable, Equatable, Hashable {
    public var bits: Int
    public var signed: Bool
    public var symmetric: Bool
    /// A float8 type instead of integers; nil for integer grids.
    public var float8: DType?

    public init(bits: Int, signed: Bool, symmetric: Bool) {
        self.bits = bits
        self.signed = signed
        self.symmetric = symmetric
    }

    /// The float8 grid of `type` (float8e4m3fn or float8e5m2).
    public static func float8(_ type: DType) -> QuantGrid {
        var g = QuantGrid(bits: 8, signed: true, symmetric: true)
        g.float8 = type
        return g
    }

    /// The float8 grid's largest finite value.
    var float8Max: Double? { float8.map { Double(Float8Encoding.format($0).max) } }

    public static let int8Symmetric = QuantGrid(bits: 8, signed: true, symmetric: true)
    public static let uint8Asymmetric = QuantGrid(bits: 8, signed: false, symmetric: false)

    public var qmin: Int {
        if let m = float8Max { return -Int(m) }
        if signed { return symmetric ? -((1 << (bits - 1)) - 1) : -(1 << (bits - 1)) }
        return 0
    }

    public var qmax: Int {
        if let m = float8Max { return Int(m) }
        return signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1
    }

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
        if let f = float8 { return Double(Float8.toFloat(Float8Encoding.encode(Float(x / scale), f, saturate: true), f)) * scale }
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
