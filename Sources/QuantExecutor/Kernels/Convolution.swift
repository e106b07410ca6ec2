import QuantCore
import QuantIR

enum ConvolutionKernels {
    static let all: [String: KernelFactory] = [:]
}
