import Foundation
import QuantCore
import QuantIR

/// Activations with attributes (float32). Formulas follow the ONNX operator definitions.
enum Activation {
    static let all: [String: KernelFactory] = [
        "LeakyRelu": { ctx in
            let alpha = ctx.float("alpha", 0.01)
            return try map(ctx) { $0 < 0 ? alpha * $0 : $0 }
        },
        "HardSigmoid": { ctx in
            let alpha = ctx.float("alpha", 0.2), beta = ctx.float("beta", 0.5)
            return try map(ctx) { max(0, min(1, alpha * $0 + beta)) }
        },
        "Elu": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try map(ctx) { $0 < 0 ? alpha * (Foundation.exp($0) - 1) : $0 }
        },
        // Klambauer et al. 2017; the defaults are the float32 values of the spec.
        "Selu": { ctx in
            let alpha = ctx.float("alpha", 1.67326319217681884765625), gamma = ctx.float("gamma", 1.05070102214813232421875)
            return try map(ctx) { $0 <= 0 ? gamma * (alpha * Foundation.exp($0) - alpha) : gamma * $0 }
        },
        "Celu": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try map(ctx) { max(0, $0) + min(0, alpha * (Foundation.exp($0 / alpha) - 1)) }
        },
        "ThresholdedRelu": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try map(ctx) { $0 > alpha ? $0 : 0 }
        },
        "Shrink": { ctx in
            let bias = ctx.float("bias", 0), lambd = ctx.float("lambd", 0.5)
            return try map(ctx) { $0 < -lambd ? $0 + bias : $0 > lambd ? $0 - bias : 0 }
        },
        "Swish": { ctx in
            let alpha = ctx.float("alpha", 1)
            return try map(ctx) { $0 * sigmoid(alpha * $0) }
        },
        // Hendrycks & Gimpel 2016: exact (erf) or tanh approximation.
        "Gelu": { ctx in
            switch ctx.string("approximate", "none") {
            case "none": return try map(ctx) { 0.5 * $0 * (1 + Foundation.erf($0 * 0.70710678118654752)) }
            case "tanh":
                return try map(ctx) { x in 0.5 * x * (1 + Foundation.tanh(0.79788456080286536 * (x + 0.044715 * x * x * x))) }
            case let a: throw ctx.invalid("approximate must be 'none' or 'tanh', not '\(a)'")
            }
        },
    ]

    /// Logistic function without overflow for large |x|.
    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
        let e = Foundation.exp(x)
        return e / (1 + e)
    }

    static func map(_ ctx: KernelContext, _ f: @escaping (Float) -> Float) throws -> Kernel {
        try ElementwiseKernels.unaryFloat(f)(ctx)
    }
}
