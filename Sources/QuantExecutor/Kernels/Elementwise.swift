import QuantCore
import QuantIR

/// Unary and binary element-wise operators, activations, comparisons and logic.
enum ElementwiseKernels {
    static let all: [String: KernelFactory] = [
        "Relu": unaryFloat { max($0, 0) },
    ]

    /// A float32 unary map, parallel over chunks.
    static func unaryFloat(_ f: @escaping (Float) -> Float) -> KernelFactory {
        { ctx in
            ClosureKernel { inputs, env in
                guard let x = inputs[0], x.dtype == .float else {
                    throw ctx.unsupported("input type \(inputs[0]?.dtype.name ?? "missing")")
                }
                let y = Tensor.makeFloat(x.shape) { out in
                    x.withUnsafeBufferPointer(as: Float.self) { src in
                        parallelFor(src.count, threads: env.threads, grain: 1 << 15) { r in
                            for i in r { out[i] = f(src[i]) }
                        }
                    }
                }
                return [y]
            }
        }
    }
}
