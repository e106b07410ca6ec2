import QuantCore
import QuantIR

enum MatrixKernels {
    static let all: [String: KernelFactory] = [:]
}
