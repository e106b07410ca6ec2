import Foundation
import QuantCore

/// Seeded samplers for the sweeps.
struct Sampler {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }

    mutating func gaussian() -> Double {
        let u = uniform(), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }

    /// Laplace with scale 1 (inverse CDF).
    mutating func laplace() -> Double {
        let u = uniform() - 0.5
        return u < 0 ? log(1 + 2 * u) : -log(1 - 2 * u)
    }

    mutating func tensor(_ n: Int, _ f: (inout Sampler) -> Double) -> Tensor {
        var v = [Float](repeating: 0, count: n)
        for i in 0..<n { v[i] = Float(f(&self)) }
        return Tensor(shape: [n], floats: v)
    }
}
