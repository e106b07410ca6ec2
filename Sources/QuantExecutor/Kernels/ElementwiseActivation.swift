import Foundation
import QuantCore
import QuantIR

/// Activations with attributes (float32). Formulas follow the ONNX operator definitions.
enum Activation {
    static func floatMap(_ body: @escaping (Tensor, Int) -> Tensor) -> KernelFactory { ElementwiseKernels.floatMap(body) }
    @inline(__always)
    static func fmap(_ x: Tensor, _ t: Int, _ f: (Float) -> Float) -> Tensor { ElementwiseKernels.fmap(x, t, f) }
    static let all: [String: KernelFactory] = [
        "LeakyRelu": { ctx in
            let alpha = ctx.float("alpha", 0.01)
            return try floatMap { x, t in fmap(x, t) { $0 < 0 ? alpha * $0 : $0 } }(ctx)
        },
        "HardSigmoid": { ctx in
            let alpha = ctx.float("alpha", 0.2), beta = ctx.float("beta", 0.5)
            return try floatMap { x, t in PointwiseActivation.hardSigmoid(alpha: alpha, beta: beta).apply(x, threads: t) }(ctx)
        },
        "Elu": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try floatMap { x, t in fmap(x, t) { $0 < 0 ? alpha * (Foundation.exp($0) - 1) : $0 } }(ctx)
        },
        // Klambauer et al. 2017; the defaults are the float32 values of the spec.
        "Selu": { ctx in
            let alpha = ctx.float("alpha", 1.67326319217681884765625), gamma = ctx.float("gamma", 1.05070102214813232421875)
            return try floatMap { x, t in fmap(x, t) { $0 <= 0 ? gamma * (alpha * Foundation.exp($0) - alpha) : gamma * $0 } }(ctx)
        },
        "Celu": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try floatMap { x, t in fmap(x, t) { max(0, $0) + min(0, alpha * (Foundation.exp($0 / alpha) - 1)) } }(ctx)
        },
        "ThresholdedRelu": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try floatMap { x, t in fmap(x, t) { $0 > alpha ? $0 : 0 } }(ctx)
        },
        "Shrink": { ctx in
            let bias = ctx.float("bias", 0), lambd = ctx.float("lambd", 0.5)
            return try floatMap { x, t in fmap(x, t) { $0 < -lambd ? $0 + bias : $0 > lambd ? $0 - bias : 0 } }(ctx)
        },
        "Swish": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try floatMap { x, t in fmap(x, t) { $0 * FastMath.sigmoid(alpha * $0) } }(ctx)
        },
        // Hendrycks & Gimpel 2016: exact (erf) or tanh approximation.
        "Gelu": { ctx in
            switch ctx.string("approximate", "none") {
            case "none": return try floatMap { x, t in fmap(x, t, gelu) }(ctx)
            case "tanh": return try floatMap { x, t in fmap(x, t, geluTanh) }(ctx)
            case let a: throw ctx.invalid("approximate must be 'none' or 'tanh', not '\(a)'")
            }
        },
    ]

    /// Gelu with erf, and its tanh approximation (also ONNX Runtime's FastGelu).
    static func gelu(_ x: Float) -> Float { 0.5 * x * (1 + Foundation.erf(x * 0.70710678118654752)) }
    static func geluTanh(_ x: Float) -> Float { 0.5 * x * (1 + Foundation.tanh(0.79788456080286536 * (x + 0.044715 * x * x * x))) }

    /// log(1 + e^x) without overflow.
    @inline(__always)
    static func softplus(_ x: Float) -> Float {
        x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x))
    }
}

/// Branch-free float32 exp for the hot activations, written so that loops over it
/// auto-vectorize: Cody–Waite range reduction x = n·ln2 + r (n rounded to nearest with the
/// 1.5·2^23 trick), then the Cephes `expf` minimax polynomial for e^r on |r| <= ln2/2 (about
/// 2 ulp). Underflows to 0 below -87.3 and overflows to +inf above 88.72 (inputs in
/// (88.38, 88.72] give e^88.38, the largest power the exponent trick reaches); NaN propagates.
enum FastMath {
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let c = Swift.min(Swift.max(x, -87.33654), 88.37626)
        let t = c * 1.44269504088896341 + 12582912.0
        let n = t - 12582912.0
        var r = c - n * 0.693359375
        r = r - n * -2.12194440e-4
        var y: Float = 1.9875691500e-4
        y = y * r + 1.3981999507e-3
        y = y * r + 8.3334519073e-3
        y = y * r + 4.1665795894e-2
        y = y * r + 1.6666665459e-1
        y = y * r + 5.0000001201e-1
        y = y * (r * r) + r + 1
        let scale = Float(bitPattern: (t.bitPattern &- 0x4B40_0000 &+ 127) &<< 23)
        var out = y * scale
        out = x < -87.33654 ? 0 : out
        out = x > 88.72283 ? .infinity : out
        return x.isNaN ? x : out
    }

    @inline(__always)
    static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }
}
