import QuantCore
import QuantIR

enum IndexingKernels {
    static let all: [String: KernelFactory] = [:]
}
