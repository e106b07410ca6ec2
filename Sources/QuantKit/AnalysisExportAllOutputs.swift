import Foundation

/// Makes every intermediate tensor of the main graph a graph output, so any runtime can dump
/// them (to compare QuantKit's executor with another, tensor by tensor).
public enum AllOutputsExport {
    public struct Result {
        public var added: Int
        /// Tensors left out because their element type could not be determined.
        public var skipped: [String]
    }

    /// Adds the outputs in place. Element types come from the model's `value_info`, else from
    /// one run of QuantKit's executor on zero inputs (symbolic dimensions set to 1); shapes are
    /// declared only when `value_info` has them, since they may depend on the input.
    public static func apply(to model: Model, threads: Int = 1) throws -> Result {
        let g = model.graph
        var existing = Set(g.outputs.map(\.name))
        var observed: [String: DType] = [:]
        if let executor = try? Executor(model: model, options: ExecutorOptions(threads: threads)) {
            var feeds: [String: Tensor] = [:]
            for i in g.runtimeInputs {
                let dims = i.tensorType?.shape?.map { $0.intValue ?? 1 } ?? []
                feeds[i.name] = Tensor(dtype: i.tensorType?.elementType ?? .float, shape: dims)
            }
            let hook = TypeRecorder()
            if (try? executor.run(feeds, hooks: [hook])) != nil {
                for (id, t) in hook.types { observed[executor.name(of: id)] = t }
            }
        }
        var added = 0
        var skipped: [String] = []
        for n in g.nodes {
            for o in n.outputs where !o.isEmpty && !existing.contains(o) {
                existing.insert(o)
                if let vi = g.valueInfo(for: o), vi.tensorType?.elementType != nil {
                    g.outputs.append(vi)
                } else if let t = observed[o] {
                    g.outputs.append(ValueInfo(name: o, type: TensorType(elementType: t, shape: nil)))
                } else {
                    skipped.append(o)
                    continue
                }
                added += 1
            }
        }
        return Result(added: added, skipped: skipped)
    }
}

/// Records the element type of every value the main graph produces.
final class TypeRecorder: ExecutionHook {
    var types: [ValueID: DType] = [:]
    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        types[value] = tensor.dtype
        return nil
    }
}
