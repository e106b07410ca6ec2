import QuantCore
import QuantExecutor
import QuantIR

/// An execution hook that drops the memory-mapped pages of each initializer once the node that
/// reads it has run (the kernel reads them again from the file when a later node or run needs
/// them). A pass over a model whose external weights are mapped then holds about one node's
/// weights at a time instead of all of them. Models loaded into memory are not affected.
public final class MappedPageRelease: ExecutionHook {
    private var byOutput: [String: [TensorStorage]] = [:]

    public init(graph: Graph) {
        for n in graph.nodes {
            let mapped = n.inputs.compactMap { graph.initializer($0) }.map(\.storage).filter(\.isMapped)
            guard !mapped.isEmpty, let out = n.outputs.first(where: { !$0.isEmpty }) else { continue }
            byOutput[out, default: []] += mapped
        }
    }

    /// Whether `graph` has mapped initializers at all (otherwise the hook has nothing to do).
    public var isEmpty: Bool { byOutput.isEmpty }

    public func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        if let list = byOutput[executor.name(of: value)] { for s in list { s.releaseMappedPages() } }
        return nil
    }
}
