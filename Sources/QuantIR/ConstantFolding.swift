import QuantCore
import QuantONNX

/// Turns `Constant` nodes into initializers, in the graph and every subgraph.
///
/// PaddlePaddle exports (PP-OCR) keep all weights in `Constant` nodes; quantizers and
/// optimizers look for weights among initializers, so this runs before anything else.
/// `Constant(value=t) -> out  ==>  initializer out = t`
public enum ConstantNodeFolding {
    /// Returns the number of nodes folded. Throws QK1103 for an unreadable constant.
    @discardableResult
    public static func run(_ graph: Graph) throws -> Int {
        var folded = 0
        var kept: [Node] = []
        for node in graph.nodes {
            for sub in node.subgraphs { folded += try run(sub) }
            guard node.opType == "Constant", node.isStandard, node.outputs.count == 1, let value = try value(of: node) else {
                kept.append(node)
                continue
            }
            graph.setInitializer(node.outputs[0], value)
            folded += 1
        }
        graph.nodes = kept
        return folded
    }

    /// The tensor a `Constant` node produces, or nil for sparse constants (left as nodes).
    public static func value(of node: Node) throws -> Tensor? {
        guard let a = node.attributes.first else { return nil }
        switch a.name {
        case "value": return try a.tensor()
        case "value_float": return Tensor(shape: [], floats: [a.float ?? 0])
        case "value_floats": return Tensor(shape: [a.floats.count], floats: a.floats)
        case "value_int": return Tensor(shape: [], values: [Int64(a.int ?? 0)])
        case "value_ints": return Tensor(shape: [a.ints.count], values: a.ints.map(Int64.init))
        case "value_string": return Tensor(dtype: .string, shape: [], storage: TensorStorage(strings: [a.proto.s]))
        case "value_strings": return Tensor(dtype: .string, shape: [a.proto.strings.count], storage: TensorStorage(strings: a.proto.strings))
        default: return nil
        }
    }
}
