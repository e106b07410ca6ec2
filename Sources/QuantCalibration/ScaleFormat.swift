import Foundation
import QuantCore

/// The numbers a quantization scale (or a requantization multiplier) may take on hardware that
/// computes in fixed point: m·2^-n with m an integer in `mantissa` and n an integer in `shift`
/// (`--scale-format pow2`: m = 1; `fixed:M_BITS`: m in [1, 2^M − 1]; float: any positive number).
public struct FixedPointFormat: Codable, Sendable, Equatable {
    /// Bits of the mantissa m: 0 for powers of two (m = 1), else m in [1, 2^bits − 1].
    public var mantissaBits: Int
    /// Allowed n (inclusive); nil: any.
    public var shift: [Int]?

    public init(mantissaBits: Int, shift: [Int]? = nil) {
        self.mantissaBits = mantissaBits
        self.shift = shift
    }

    enum CodingKeys: String, CodingKey { case mantissaBits = "mantissa_bits", shift }

    var mantissas: ClosedRange<Int> { mantissaBits == 0 ? 1...1 : 1...((1 << mantissaBits) - 1) }
    var shifts: ClosedRange<Int> { shift.map { $0[0]...$0[1] } ?? -64...96 }

    /// The smallest and largest representable values.
    public var bounds: (lo: Double, hi: Double) {
        (Double(mantissas.lowerBound) * pow(2, -Double(shifts.upperBound)), Double(mantissas.upperBound) * pow(2, -Double(shifts.lowerBound)))
    }

    /// The representable values next to `x` > 0: the largest ≤ x and the smallest ≥ x (nil past
    /// the bounds).
    public func neighbours(of x: Double) -> (below: Double?, above: Double?) {
        var below: Double? = nil, above: Double? = nil
        for n in shifts {
            let unit = pow(2, -Double(n))
            let t = x / unit
            let down = min(max(t.rounded(.down), Double(mantissas.lowerBound)), Double(mantissas.upperBound))
            let up = min(max(t.rounded(.up), Double(mantissas.lowerBound)), Double(mantissas.upperBound))
            for c in [down * unit, up * unit] {
                if c <= x * (1 + 1e-12), c > (below ?? 0) { below = c }
                if c >= x * (1 - 1e-12), c < (above ?? .infinity) { above = c }
            }
        }
        return (below, above)
    }

    /// `x` written as m·2^-n with the smallest n, for messages and the record.
    public func describe(_ x: Double) -> String {
        for n in shifts {
            let m = x * pow(2, Double(n))
            if abs(m - m.rounded()) < 1e-9 * max(1, abs(m)), mantissas.contains(Int(m.rounded())) { return "\(Int(m.rounded()))·2^\(-n)" }
        }
        return String(format: "%.6g", x)
    }

    /// `pow2` or `fixed:M` (the `--scale-format` text; `float` is no format).
    public var text: String { mantissaBits == 0 ? "pow2" : "fixed:\(mantissaBits)" }
}

/// A hardware profile (`--hardware-profile FILE`, JSON): the fixed-point format of scales and of
/// the requantization multiplier s_in·s_w/s_out of each integer Conv/MatMul/Gemm, and whether a
/// value outside the format is an error (QK5007) or clamped to the nearest bound with a warning.
///
///     {"name": "knight", "scale": {"mantissa_bits": 0, "shift": [0, 31]},
///      "multiplier": {"mantissa_bits": 0, "shift": [0, 31]}, "clamp": false}
public struct HardwareProfile: Codable, Sendable, Equatable {
    public var name: String?
    public var scale: FixedPointFormat?
    public var multiplier: FixedPointFormat?
    public var clamp: Bool?

    public init(name: String? = nil, scale: FixedPointFormat? = nil, multiplier: FixedPointFormat? = nil, clamp: Bool? = nil) {
        self.name = name
        self.scale = scale
        self.multiplier = multiplier
        self.clamp = clamp
    }

    /// Reads and checks a profile file. Throws QK7010 naming the file and what is wrong.
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw QuantKitError("QK7010", "hardware profile '\(path)' cannot be read", fix: "check the path; profiles/ has examples (icraft.json, knight.json)")
        }
        do {
            self = try JSONDecoder().decode(HardwareProfile.self, from: data)
        } catch {
            throw QuantKitError("QK7010", "hardware profile '\(path)' is not valid JSON of a profile: \(error)",
                                fix: #"write {"scale": {"mantissa_bits": 8, "shift": [8, 16]}, "multiplier": {...}, "clamp": false}; profiles/ has examples"#)
        }
        for (key, f) in [("scale", scale), ("multiplier", multiplier)] {
            guard let f else { continue }
            guard (0...16).contains(f.mantissaBits) else {
                throw QuantKitError("QK7010", "hardware profile '\(path)': \(key).mantissa_bits is \(f.mantissaBits)", fix: "give 0 (powers of two) to 16")
            }
            if let s = f.shift, s.count != 2 || s[0] > s[1] {
                throw QuantKitError("QK7010", "hardware profile '\(path)': \(key).shift is \(s)", fix: "give [lowest n, highest n] of m·2^-n, e.g. [0, 31]")
            }
        }
    }
}
