import QuantCore
import QuantIR

enum PoolingKernels {
    static let all: [String: KernelFactory] = [:]
}
