import QuantCore
import QuantIR

enum ReductionKernels {
    static let all: [String: KernelFactory] = [:]
}
