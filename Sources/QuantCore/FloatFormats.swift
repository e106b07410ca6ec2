/// IEEE 754 binary16 conversion, round-to-nearest-even, without relying on `Float16`
/// (unavailable on some platforms).
public enum HalfFloat {
    @inlinable
    public static func toFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F)
        let mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // subnormal: value = mant * 2^-24
            let v = Float(mant) * Float(bitPattern: 0x3380_0000)  // 2^-24
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    }

    @inlinable
    public static func fromFloat(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exp = Int((bits >> 23) & 0xFF)
        var mant = bits & 0x7F_FFFF
        if exp == 255 { return sign | 0x7C00 | (mant != 0 ? 0x200 : 0) }
        var e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }
            mant |= 0x80_0000
            let shift = UInt32(14 - e)
            var half = mant >> shift
            let rem = mant & ((1 << shift) - 1)
            let mid = UInt32(1) << (shift - 1)
            if rem > mid || (rem == mid && (half & 1) == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(e) << 10 | (mant >> 13)
        let rem = mant & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1) { half += 1 }
        e = Int(half >> 10)
        return sign | UInt16(truncatingIfNeeded: half)
    }
}

/// bfloat16: the upper 16 bits of a float32, rounded to nearest even.
public enum BFloat16 {
    @inlinable public static func toFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }
    @inlinable
    public static func fromFloat(_ f: Float) -> UInt16 {
        if f.isNaN { return 0x7FC0 }
        let bits = f.bitPattern
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }
}

/// 8-bit and 4-bit float formats of ONNX (decode only; used for inspection and dequantization).
public enum Float8 {
    public static func toFloat(_ v: UInt8, _ t: DType) -> Float {
        switch t {
        case .float8e8m0:
            return v == 0xFF ? .nan : Float(sign: .plus, exponent: Int(v) - 127, significand: 1)
        case .float8e4m3fn:
            if v & 0x7F == 0x7F { return .nan }
            return decode(v, expBits: 4, bias: 7)
        case .float8e4m3fnuz:
            if v == 0x80 { return .nan }
            return decode(v, expBits: 4, bias: 8)
        case .float8e5m2:
            let e = (v >> 2) & 0x1F
            if e == 0x1F { return v & 0x3 == 0 ? (v & 0x80 != 0 ? -.infinity : .infinity) : .nan }
            return decode(v, expBits: 5, bias: 15)
        case .float8e5m2fnuz:
            if v == 0x80 { return .nan }
            return decode(v, expBits: 5, bias: 16)
        default: return .nan
        }
    }

    static func decode(_ v: UInt8, expBits: Int, bias: Int) -> Float {
        let mantBits = 7 - expBits
        let sign: Float = v & 0x80 != 0 ? -1 : 1
        let e = Int(v >> UInt8(mantBits)) & ((1 << expBits) - 1)
        let m = Int(v) & ((1 << mantBits) - 1)
        if e == 0 { return sign * Float(m) * Float(sign: .plus, exponent: 1 - bias - mantBits, significand: 1) }
        return sign * (1 + Float(m) / Float(1 << mantBits)) * Float(sign: .plus, exponent: e - bias, significand: 1)
    }

    public static func float4e2m1(_ v: UInt8) -> Float {
        let table: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
        let mag = table[Int(v & 0x7)]
        return v & 0x8 != 0 ? -mag : mag
    }
}

/// Float32 to 8-bit (and 4-bit) float formats of ONNX, round to nearest even.
public enum Float8Encoding {
    /// Mantissa bits, exponent bias, largest finite value.
    public static func format(_ t: DType) -> (mant: Int, bias: Int, max: Float) {
        switch t {
        case .float8e4m3fn: (3, 7, 448)
        case .float8e4m3fnuz: (3, 8, 240)
        case .float8e5m2: (2, 15, 57344)
        case .float8e5m2fnuz: (2, 16, 57344)
        default: (1, 1, 6)  // float4e2m1
        }
    }

    /// Encodes `x`. With `saturate`, overflow and infinities clamp to ±max; without, they become
    /// NaN (fn/fnuz types) or ±infinity (e5m2), as the ONNX Cast/QuantizeLinear tables say.
    public static func encode(_ x: Float, _ t: DType, saturate: Bool) -> UInt8 {
        let (m, bias, maxFinite) = format(t)
        let uz = t == .float8e4m3fnuz || t == .float8e5m2fnuz
        let fp4 = t == .float4e2m1
        let signBit: UInt8 = fp4 ? 0x08 : 0x80
        let sign: UInt8 = x.sign == .minus ? signBit : 0
        let nan: UInt8 = switch t {
        case .float8e4m3fn: 0x7F
        case .float8e5m2: 0x7E
        case .float4e2m1: 0x07
        default: 0x80
        }
        if x.isNaN { return nan }
        let a = abs(x)
        func overflow() -> UInt8 {
            if saturate || fp4 { return sign | encodeFinite(maxFinite, m: m, bias: bias) }
            if t == .float8e5m2 { return sign | 0x7C }
            return nan
        }
        if a.isInfinite { return overflow() }
        var e = Int(a.exponent)
        if a == 0 { return uz ? 0 : sign }
        e = max(e, 1 - bias)
        let q = Float(sign: .plus, exponent: e - m, significand: 1)
        let r = (a / q).rounded(.toNearestOrEven) * q
        if r == 0 { return uz ? 0 : sign }
        if r > maxFinite { return overflow() }
        return sign | encodeFinite(r, m: m, bias: bias)
    }

    /// Bits of a positive value exactly representable in the format.
    public static func encodeFinite(_ r: Float, m: Int, bias: Int) -> UInt8 {
        let e = Int(r.exponent)
        if e < 1 - bias {
            // Subnormal: r = mant * 2^(1 - bias - m).
            let mant = r / Float(sign: .plus, exponent: 1 - bias - m, significand: 1)
            return UInt8(mant)
        }
        let mant = (r / Float(sign: .plus, exponent: e, significand: 1) - 1) * Float(1 << m)
        return UInt8(e + bias) << UInt8(m) | UInt8(mant)
    }
}
