import QuantCore
import QuantIR

/// Shape-only and data-movement operators, casts, constants.
enum ShapeKernels {
    static let all: [String: KernelFactory] = [
        "Identity": { _ in ClosureKernel { inputs, _ in [inputs[0]] } },
        "Constant": constant,
    ]

    /// `Constant`: the value attribute (any of value, value_float(s), value_int(s)), computed once.
    static func constant(_ ctx: KernelContext) throws -> Kernel {
        guard let t = try ConstantNodeFolding.value(of: ctx.node).map(ComputeType.normalize) else {
            throw ctx.unsupported("a sparse or missing Constant value")
        }
        return ClosureKernel { _, _ in [t] }
    }
}
