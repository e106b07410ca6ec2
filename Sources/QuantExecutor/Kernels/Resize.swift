import QuantCore
import QuantIR

enum ResizeKernels {
    static let all: [String: KernelFactory] = [:]
}
