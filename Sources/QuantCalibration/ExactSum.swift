/// An exact sum of doubles (a long fixed-point accumulator covering every finite double): adding
/// the same values in any order or grouping gives the same state, so statistics calibrated in
/// shards and merged equal, bit for bit, those of one pass over all the data.
///
/// The value is Σ limbs[i]·2^(32·(i − offset)) with 64-bit limbs holding 32-bit digits plus
/// carries; `normalize` brings every limb but the top one into [0, 2^32) (a unique form), which is
/// what is compared, encoded and converted to a double.
public struct ExactSum: Sendable, Equatable, Codable {
    static let offset = 34          // 2^(32·(0 − 34)) = 2^−1088, below the smallest subnormal
    static let count = 68           // up to 2^(32·34) = 2^1088, above the largest double
    private var limbs = [Int64](repeating: 0, count: ExactSum.count)
    private var pending = 0

    public init() {}

    public init(_ x: Double) { add(x) }

    /// Adds `x` exactly (non-finite values are ignored: the statistics count them apart).
    public mutating func add(_ x: Double) {
        guard x.isFinite, x != 0 else { return }
        // x = ±m·2^e, m < 2^53 an integer.
        let m = x.significandBitPattern | (x.isNormal ? 1 << 52 : 0)
        let e = (x.isNormal ? Int(x.exponentBitPattern) : 1) - 1075
        let position = e + 32 * ExactSum.offset
        let index = position / 32, shift = position % 32
        let wide = UInt128(m) << UInt128(shift)
        let sign: Int64 = x < 0 ? -1 : 1
        for k in 0..<3 {
            let digit = Int64(truncatingIfNeeded: (wide >> UInt128(32 * k)) & 0xFFFF_FFFF)
            if digit != 0 { limbs[index + k] += sign * digit }
        }
        pending += 1
        // Each add moves a limb by less than 2^32: normalize long before 2^63.
        if pending >= 1 << 29 { normalize() }
    }

    public mutating func add(_ o: ExactSum) {
        for i in 0..<ExactSum.count { limbs[i] += o.limbs[i] }
        pending += o.pending + 1
        normalize()
    }

    /// Carries into the unique form: limbs 0 ..< count−1 in [0, 2^32), the top one signed.
    mutating func normalize() {
        for i in 0..<(ExactSum.count - 1) {
            let carry = limbs[i] >> 32
            limbs[i] -= carry << 32
            limbs[i + 1] += carry
        }
        pending = 0
    }

    /// The nearest double, from the top three digits of the magnitude (a function of the exact
    /// value alone).
    public var value: Double {
        var s = self
        s.normalize()
        let negative = s.limbs[ExactSum.count - 1] < 0
        if negative {
            // Two's complement over the digits: −v = (~v) + 1.
            var carry: Int64 = 1
            for i in 0..<(ExactSum.count - 1) {
                let d = (0xFFFF_FFFF - s.limbs[i]) + carry
                s.limbs[i] = d & 0xFFFF_FFFF
                carry = d >> 32
            }
            s.limbs[ExactSum.count - 1] = -s.limbs[ExactSum.count - 1] - 1 + carry
        }
        guard let top = s.limbs.lastIndex(where: { $0 != 0 }) else { return 0 }
        var v = 0.0
        for i in stride(from: top, through: Swift.max(top - 2, 0), by: -1) {
            v += Double(s.limbs[i]) * Double(sign: .plus, exponent: 32 * (i - ExactSum.offset), significand: 1)
        }
        return negative ? -v : v
    }

    // JSON: the nonzero limbs of the normalized form as [index, digit] pairs.
    public init(from decoder: Decoder) throws {
        var c = try decoder.unkeyedContainer()
        while !c.isAtEnd {
            var pair = try c.nestedUnkeyedContainer()
            let i = try pair.decode(Int.self), d = try pair.decode(Int64.self)
            guard i >= 0 && i < ExactSum.count else {
                throw DecodingError.dataCorruptedError(in: pair, debugDescription: "limb index \(i) outside 0..<\(ExactSum.count)")
            }
            limbs[i] = d
        }
        normalize()
    }

    public func encode(to encoder: Encoder) throws {
        var s = self
        s.normalize()
        var c = encoder.unkeyedContainer()
        for (i, d) in s.limbs.enumerated() where d != 0 { try c.encode([Int64(i), d]) }
    }

    public static func == (a: ExactSum, b: ExactSum) -> Bool {
        var x = a, y = b
        x.normalize()
        y.normalize()
        return x.limbs == y.limbs
    }
}
