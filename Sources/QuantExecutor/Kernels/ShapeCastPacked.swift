import Foundation
import QuantCore
import QuantIR

/// Encoding float32 into the 8-bit float formats, float4e2m1 and the packed 4/2-bit integers
/// (ONNX `Cast` to those types). Floats round to the nearest representable value, ties to even
/// mantissa; out-of-range values saturate to the largest finite value when `saturate` is set,
/// otherwise become infinity (E5M2) or NaN (formats without infinity). Integers round to
/// nearest even and keep their low bits.
enum PackedCast {
    static func encode(_ f: Tensor, to: DType, saturate: Bool, _ ctx: KernelContext) throws -> Tensor {
        let n = f.count
        let out = Tensor(dtype: to, shape: f.shape)
        let src = f.withUnsafeBufferPointer(as: Float.self) { Array($0) }
        let p = out.storage.pointer.assumingMemoryBound(to: UInt8.self)
        switch to {
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz:
            let grid = Grid(to)
            for i in 0..<n { p[i] = grid.encode(src[i], saturate: saturate) }
        case .float8e8m0:
            // Exponent-only (E8M0): 2^(v-127); rounds to the nearest power of two upward on ties.
            for i in 0..<n {
                let x = src[i]
                if x.isNaN || x <= 0 && !saturate { p[i] = 0xFF; continue }
                if x.isInfinite { p[i] = saturate ? 0xFE : 0xFF; continue }
                if x <= 0 { p[i] = 0; continue }
                let e = Int(x.exponent)
                let up = x > Float(sign: .plus, exponent: x.exponent, significand: 1)
                p[i] = UInt8(clamping: max(0, min(254, e + 127 + (up ? 1 : 0))))
            }
        case .float4e2m1:
            let grid = Grid(to)
            for i in 0..<n { setNibble(p, i, grid.encode(src[i], saturate: true) & 0xF) }
        case .int4, .uint4, .int2, .uint2:
            // Round to nearest even, then keep the low bits (wraps, as the reference does).
            let bits = to.bitWidth
            for i in 0..<n {
                let x = src[i]
                let v = x.isNaN ? 0 : Int(max(-1e9, min(1e9, x.rounded(.toNearestOrEven))))
                let code = UInt8(truncatingIfNeeded: v) & UInt8((1 << bits) - 1)
                if bits == 4 { setNibble(p, i, code) } else { p[i / 4] |= code << UInt8(2 * (i % 4)) }
            }
        default:
            throw ctx.unsupported("casting to \(to)")
        }
        return out
    }

    @inline(__always)
    static func setNibble(_ p: UnsafeMutablePointer<UInt8>, _ i: Int, _ v: UInt8) {
        if i % 2 == 0 { p[i / 2] = (p[i / 2] & 0xF0) | v } else { p[i / 2] = (p[i / 2] & 0x0F) | (v << 4) }
    }

    /// The non-negative finite values of a small float format, ascending, with their codes.
    struct Grid {
        let values: [Float]
        let codes: [UInt8]
        let type: DType

        init(_ type: DType) {
            self.type = type
            var pairs: [(Float, UInt8)] = []
            let positiveCodes: ClosedRange<UInt8> = type == .float4e2m1 ? 0...7 : 0...127
            for c in positiveCodes {
                let v = type == .float4e2m1 ? Float8.float4e2m1(c) : Float8.toFloat(c, type)
                if v.isFinite { pairs.append((v, c)) }
            }
            pairs.sort { $0.0 < $1.0 }
            values = pairs.map(\.0)
            codes = pairs.map(\.1)
        }

        var signBit: UInt8 { type == .float4e2m1 ? 0x8 : 0x80 }
        var noNegativeZero: Bool { type == .float8e4m3fnuz || type == .float8e5m2fnuz }

        func overflow(_ negative: Bool, saturate: Bool) -> UInt8 {
            if saturate || type == .float4e2m1 { return codes.last! | (negative ? signBit : 0) }
            switch type {
            case .float8e4m3fn: return negative ? 0xFF : 0x7F
            case .float8e5m2: return negative ? 0xFC : 0x7C
            default: return 0x80  // the single NaN of the fnuz formats
            }
        }

        func nan() -> UInt8 {
            switch type {
            case .float8e4m3fn: 0x7F
            case .float8e5m2: 0x7F
            case .float4e2m1: 0x8  // no NaN in E2M1; the reference writes -0
            default: 0x80
            }
        }

        func encode(_ x: Float, saturate: Bool) -> UInt8 {
            if x.isNaN { return nan() }
            let negative = x.sign == .minus
            let m = abs(x)
            let maxValue = values.last!
            var code: UInt8
            if m.isInfinite {
                return overflow(negative, saturate: saturate)
            } else if m > maxValue {
                // Beyond the largest finite value: the next grid step would be one more ulp.
                let ulp = maxValue - values[values.count - 2]
                let next = maxValue + ulp
                let toMax = m - maxValue < next - m || (m - maxValue == next - m && codes.last! & 1 == 0)
                if !toMax { return overflow(negative, saturate: saturate) }
                code = codes.last!
            } else {
                // Binary search for the first value >= m.
                var lo = 0, hi = values.count - 1
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if values[mid] < m { lo = mid + 1 } else { hi = mid }
                }
                if values[lo] == m || lo == 0 {
                    code = codes[lo]
                } else {
                    let below = values[lo - 1], above = values[lo]
                    let dBelow = m - below, dAbove = above - m
                    if dBelow < dAbove { code = codes[lo - 1] } else if dAbove < dBelow { code = codes[lo] } else {
                        code = codes[lo] & 1 == 0 ? codes[lo] : codes[lo - 1]
                    }
                }
            }
            if code == 0 && noNegativeZero { return 0 }
            return code | (negative ? signBit : 0)
        }
    }
}
