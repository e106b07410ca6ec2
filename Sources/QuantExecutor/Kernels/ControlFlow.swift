import QuantCore
import QuantIR

enum ControlFlowKernels {
    static let all: [String: KernelFactory] = [:]
}
