import QuantCore
import QuantIR

enum RecurrentKernels {
    static let all: [String: KernelFactory] = [:]
}
