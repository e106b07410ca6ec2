import QuantCalibration
import QuantAlgorithms
import QuantCore

/// The quantization parameters chosen for one tensor, as written to `NAME.qparams.json`.
public struct TensorQuantParameters: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable { case activation, weight, bias }
    public var role: Role
    public var dtype: String
    public var scale: [Double]
    public var zeroPoint: [Int]
    /// Channel axis for per-channel parameters.
    public var axis: Int?
    /// Per-group weights: the group size; `scale` and `zeroPoint` then hold one value per group,
    /// row-major by output channel (along `axis`), then group along the channel's fan-in.
    public var blockSize: Int? = nil
    /// The clipping range [lo, hi] (activations), or the per-tensor absmax (weights).
    public var threshold: [Double]
    public var method: String
    /// Non-uniform weights (`--weight-levels`): the integers the weight is restricted to.
    public var levels: [Int]? = nil
}

/// What adaptive weight rounding did to one node's weight (`NAME.qparams.json`, the report).
public struct WeightRoundingRecord: Codable, Sendable, Equatable {
    /// Weights rounded the other way than to nearest, of all.
    public var flips: Int
    public var weights: Int
    /// The layer's mean squared output error over the calibration inputs (the rounding term of
    /// the objective) with round-to-nearest and with the chosen rounding.
    public var errorNearest: Double
    public var errorAfter: Double
}

extension QuantGrid {
    /// The ONNX element type of this grid's integers. Grids narrower than 8 bits (`--weight-bits
    /// 4`: integers in [-7, 7]) are stored in 8-bit tensors, which ONNX Runtime runs as its int8
    /// kernels; `packedDType` is the sub-byte alternative.
    public var dtype: DType {
        if let f = float8 { return f }
        return switch (bits, signed) {
        case (2...8, true): .int8
        case (2...8, false): .uint8
        case (9...16, true): .int16
        case (9...16, false): .uint16
        default: signed ? .int32 : .uint32
        }
    }

    /// int4/uint4 for grids of 4 bits or fewer (packed, low nibble first), else `dtype`.
    public var packedDType: DType {
        bits <= 4 ? (signed ? .int4 : .uint4) : dtype
    }

    /// `values` quantized to this grid with `scale`/`zeroPoint` per channel along `axis`
    /// (per tensor when `axis` is nil), half-to-even, saturating, as a tensor of `dtype`
    /// (`packedDType` when `packed`).
    func quantize(_ values: [Float], shape: [Int], scales: [Double], zeroPoints: [Int], axis: Int?, packed: Bool = false) -> Tensor {
        if packed && packedDType != dtype {
            var q = [Int](repeating: 0, count: values.count)
            let inner = axis.map { shape[($0 + 1)...].reduce(1, *) } ?? 1
            for (i, v) in values.enumerated() {
                let c = axis == nil ? 0 : (i / inner) % scales.count
                q[i] = Int(min(max((Double(v) / scales[c]).rounded(.toNearestOrEven) + Double(zeroPoints[c]), Double(qmin)), Double(qmax)))
            }
            return Self.packed(q, dtype: packedDType, shape: shape)
        }
        let out = Tensor(dtype: dtype, shape: shape)
        let inner = axis.map { shape[($0 + 1)...].reduce(1, *) } ?? 1
        let channels = scales.count
        let p = out.storage.pointer
        if let f = float8 {
            // Float8: the nearest float8 number of x / scale (saturating); zero points are 0.
            for (i, v) in values.enumerated() {
                let c = axis == nil ? 0 : (i / inner) % channels
                p.storeBytes(of: Float8Encoding.encode(Float(Double(v) / scales[c]), f, saturate: true), toByteOffset: i, as: UInt8.self)
            }
            return out
        }
        for (i, v) in values.enumerated() {
            let c = axis == nil ? 0 : (i / inner) % channels
            let q = min(max((Double(v) / scales[c]).rounded(.toNearestOrEven) + Double(zeroPoints[c]), Double(qmin)), Double(qmax))
            switch dtype {
            case .int8: p.storeBytes(of: Int8(q), toByteOffset: i, as: Int8.self)
            case .uint8: p.storeBytes(of: UInt8(q), toByteOffset: i, as: UInt8.self)
            case .int16: p.storeBytes(of: Int16(q), toByteOffset: 2 * i, as: Int16.self)
            case .uint16: p.storeBytes(of: UInt16(q), toByteOffset: 2 * i, as: UInt16.self)
            default: p.storeBytes(of: Int32(q), toByteOffset: 4 * i, as: Int32.self)
            }
        }
        return out
    }

    /// Integers already on the grid as a tensor of `dtype` (or `packedDType` when `packed`).
    func tensor(_ q: [Int], shape: [Int], packed: Bool = false) -> Tensor {
        if packed && packedDType != dtype { return Self.packed(q, dtype: packedDType, shape: shape) }
        return quantize(q.map(Float.init), shape: shape, scales: [1], zeroPoints: [0], axis: nil)
    }

    /// 4-bit integers packed two per byte, the first in the low nibble (ONNX's int4/uint4 layout).
    static func packed(_ q: [Int], dtype: DType, shape: [Int]) -> Tensor {
        let out = Tensor(dtype: dtype, shape: shape)
        let p = out.storage.pointer
        for i in stride(from: 0, to: q.count, by: 2) {
            let lo = UInt8(truncatingIfNeeded: q[i]) & 0x0F
            let hi = i + 1 < q.count ? UInt8(truncatingIfNeeded: q[i + 1]) & 0x0F : 0
            p.storeBytes(of: lo | (hi << 4), toByteOffset: i / 2, as: UInt8.self)
        }
        return out
    }

    /// A zero-point tensor of this grid's type (scalar or 1-D, or `shape`).
    func zeroPointTensor(_ zps: [Int], perChannel: Bool, packed: Bool = false, shape: [Int]? = nil) -> Tensor {
        tensor(zps, shape: shape ?? (perChannel ? [zps.count] : []), packed: packed)
    }
}

extension QuantScheme {
    /// The weight granularity this scheme asks for where the plan does not say.
    public var weightGranularity: PrecisionPlan.Granularity {
        if let g = weightGroupSize { return .group(g) }
        return perChannelWeights ? .channel : .tensor
    }
}
