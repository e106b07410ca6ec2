import QuantCore
import QuantIR

enum NormalizationKernels {
    static let all: [String: KernelFactory] = [:]
}
