import Foundation
import QuantCalibration
import QuantCore
import QuantAlgorithms
import QuantKit
import Testing

@Test func fixedPointNeighboursAndBounds() {
    let pow2 = FixedPointFormat(mantissaBits: 0)
    let (b, a) = pow2.neighbours(of: 0.3)
    #expect(b == 0.25 && a == 0.5)
    #expect(pow2.neighbours(of: 0.25) == (0.25, 0.25))
    // m·2^-n, m of 4 bits (1...15), n in [0, 4]: the steps are at most 1/16, so 0.3 lies between 4/16 and 5/16.
    let fixed = FixedPointFormat(mantissaBits: 4, shift: [0, 4])
    let (fb, fa) = fixed.neighbours(of: 0.3)
    #expect(fb == 0.25 && fa == 0.3125)
    #expect(fixed.bounds.lo == 1.0 / 16 && fixed.bounds.hi == 15)
    // Past the bounds there is no neighbour on that side.
    #expect(fixed.neighbours(of: 20).above == nil && fixed.neighbours(of: 0.01).below == nil)
    #expect(fixed.describe(0.3125) == "5·2^-4" && FixedPointFormat(mantissaBits: 0, shift: [0, 31]).describe(1) == "1·2^0" && FixedPointFormat(mantissaBits: 0).describe(16) == "1·2^4")
}

@Test func hardwareProfilesAreReadAndCheckedQK7010() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qk-profile-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let good = dir.appendingPathComponent("p.json").path
    try #"{"name": "k", "scale": {"mantissa_bits": 0, "shift": [0, 31]}, "clamp": true}"#.write(toFile: good, atomically: true, encoding: .utf8)
    let p = try HardwareProfile(contentsOf: good)
    #expect(p.scale == FixedPointFormat(mantissaBits: 0, shift: [0, 31]) && p.multiplier == nil && p.clamp == true)
    for text in [#"{"scale": {"mantissa_bits": 0, "shift": [5, 1]}}"#, #"{"scale": {"mantissa_bits": 17}}"#, "not json"] {
        let bad = dir.appendingPathComponent("bad.json").path
        try text.write(toFile: bad, atomically: true, encoding: .utf8)
        do {
            _ = try HardwareProfile(contentsOf: bad)
            Issue.record("accepted \(text)")
        } catch let e as QuantKitError {
            #expect(e.code == "QK7010" && e.message.contains("bad.json"), "\(e)")
        }
    }
}

@Test func float8SchemesCarryTheirType() throws {
    let s = try QuantizerConfiguration.scheme(named: "e4m3fn", key: "--activations")
    #expect(s.activation.float8 == .float8e4m3fn && s.weight.float8 == .float8e4m3fn)
    #expect(s.activation.qmax == 448 && s.activation.parameters(for: ClipRange(lo: -2, hi: 8.96)).scale == 0.02)
    // Nearest float8: 0.3 / 0.02 = 15 is exact in E4M3 (1.875 · 2^3); 0.31 / 0.02 = 15.5 rounds to 16 (steps of 1 above 8).
    #expect(s.activation.fakeQuantize(0.3, scale: 0.02, zeroPoint: 0) == 0.3 && abs(s.activation.fakeQuantize(0.31, scale: 0.02, zeroPoint: 0) - 0.32) < 1e-12)
    let data = try JSONEncoder().encode(s)
    #expect(try JSONDecoder().decode(QuantScheme.self, from: data) == s && String(decoding: data, as: UTF8.self).contains("float8"), "\(String(decoding: data, as: UTF8.self))")
}
