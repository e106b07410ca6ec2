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
    /// one run of QuantKit's executor on zero inputs (symbolic dimensions set to 1), else from
    /// the operators' type rules (`ElementTypes.infer`: a run on zero inputs fails when a
    /// symbolic dimension of 1 is too small for a kernel); shapes are declared only when
    /// `value_info` has them, since they may depend on the input.
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
        let inferred = ElementTypes.infer(g)
        var added = 0
        var skipped: [String] = []
        for n in g.nodes {
            for o in n.outputs where !o.isEmpty && !existing.contains(o) {
                existing.insert(o)
                if let vi = g.valueInfo(for: o), vi.tensorType?.elementType != nil {
                    g.outputs.append(vi)
                } else if let t = observed[o] ?? inferred[o] {
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

/// Element types of a graph's values from the ONNX operators' type rules, for models without
/// `value_info` (QDQ models written by quantizers usually have none). Covers the standard
/// operators whose output type follows from an input, an attribute or the operator itself;
/// values whose type it cannot tell are absent.
enum ElementTypes {
    static func infer(_ g: Graph) -> [String: DType] {
        var types: [String: DType] = [:]
        for i in g.inputs { if let t = i.tensorType?.elementType { types[i.name] = t } }
        for v in g.valueInfo { if let t = v.tensorType?.elementType { types[v.name] = t } }
        for n in g.nodes {
            func input(_ i: Int) -> DType? {
                guard i < n.inputs.count, !n.inputs[i].isEmpty else { return nil }
                return types[n.inputs[i]] ?? g.initializer(n.inputs[i])?.dtype
            }
            let attrType = { (name: String) in n.attribute(name)?.int.flatMap { DType(rawValue: Int32($0)) } }
            var out: [DType?] = []
            // Quantizers write per-axis Q/DQ in com.microsoft for models below opset 13; those
            // follow the standard rules.
            let qdq = n.domain == "com.microsoft" && (n.opType == "QuantizeLinear" || n.opType == "DequantizeLinear")
            switch n.domain == "ai.onnx" || qdq ? "" : n.domain {
            case "":
                switch n.opType {
                case "Shape", "Size", "ArgMax", "ArgMin", "NonZero", "NonMaxSuppression":
                    out = [.int64]
                case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf":
                    out = [.bool]
                case "Cast": out = [attrType("to")]
                case "CastLike": out = [input(1)]
                case "QuantizeLinear": out = [input(2) ?? attrType("output_dtype") ?? .uint8]
                case "DequantizeLinear": out = [input(1)]
                case "DynamicQuantizeLinear": out = [.uint8, .float, .uint8]
                case "MatMulInteger", "ConvInteger": out = [.int32]
                case "QLinearConv": out = [input(7)]
                case "QLinearMatMul": out = [input(7)]
                case "ConstantOfShape": out = [(try? n.attribute("value")?.tensor())??.dtype ?? .float]
                case "Constant": out = [(try? n.attribute("value")?.tensor())??.dtype ?? (n.attribute("value_ints") != nil ? .int64 : .float)]
                case "Where": out = [input(1)]
                case "OneHot": out = [input(2)]
                case "TopK": out = [input(0), .int64]
                case "MaxPool": out = [input(0), .int64]
                case "Dropout": out = [input(0), .bool]
                case "EyeLike": out = [attrType("dtype") ?? input(0)]
                case "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike":
                    out = [attrType("dtype") ?? input(0) ?? .float]
                case "If", "Loop", "Scan", "SequenceConstruct", "SplitToSequence", "Unique", "StringNormalizer":
                    out = []
                default: out = Array(repeating: input(0), count: n.outputs.count)
                }
            default: out = []
            }
            for (o, t) in zip(n.outputs, out) where !o.isEmpty { if let t { types[o] = t } }
        }
        return types
    }
}
