import QuantCore
import QuantIR

enum QuantizationKernels {
    static let all: [String: KernelFactory] = [:]
}
