import QuantCore
import QuantExecutor
import QuantIR

/// Folds what is static before quantization: nodes whose inputs are all constants are computed
/// once with the executor's kernels and become initializers; `Shape` of a value whose shape is
/// fully known from the graph's type annotations becomes a constant. Shape arithmetic of models
/// exported with fixed input sizes disappears this way.
/// `Op(c1, c2) -> y  ==>  initializer y = Op(c1, c2)`
public enum StaticFolding {
    /// Ops never folded: random or stateful outputs, and quantization nodes (their int
    /// initializers are the point of QDQ models).
    static let keep = KernelRegistry.randomOps.union(["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"])
    /// Largest folded output (elements): folding must not blow up the model (ConstantOfShape, Tile).
    static let maxElements = 1 << 20

    @discardableResult
    public static func run(_ model: Model, registry: KernelRegistry = .standard) throws -> Int {
        let g = model.graph
        let opsets = model.opsets
        var folded = 0
        var kept: [Node] = []
        let outputs = Set(g.outputs.map(\.name))
        for node in try g.topologicalOrder() {
            guard node.isStandard, !keep.contains(node.opType), node.subgraphs.isEmpty,
                  !node.outputs.contains(where: outputs.contains) else {
                kept.append(node)
                continue
            }
            let inputs: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : g.initializer($0) }
            let foldable = !node.inputs.isEmpty && node.inputs.indices.allSatisfy { node.inputs[$0].isEmpty || inputs[$0] != nil }
            if node.opType == "Shape", !foldable, let shape = g.valueInfo(for: node.inputs[0])?.tensorType?.staticShape {
                // Shape of a statically shaped value: its dims, sliced by start/end (opset 15).
                let start = node.attribute("start")?.int ?? 0, end = node.attribute("end")?.int ?? shape.count
                let rank = shape.count
                let s = min(max(start < 0 ? start + rank : start, 0), rank), e = min(max(end < 0 ? end + rank : end, 0), rank)
                let dims = s < e ? Array(shape[s..<e]) : []
                for o in node.outputs.prefix(1) { g.setInitializer(o, Tensor(shape: [dims.count], values: dims.map(Int64.init))) }
                folded += 1
                continue
            }
            let opset = opsets[""] ?? 13
            guard foldable, let results = try? registry.evaluate(node, inputs: inputs, opset: opset),
                  results.count >= node.outputs.filter({ !$0.isEmpty }).count,
                  results.allSatisfy({ ($0?.count ?? 0) <= maxElements }) else {
                kept.append(node)
                continue
            }
            for (k, o) in node.outputs.enumerated() where !o.isEmpty {
                guard let t = results[k] else { continue }
                // Keep the declared element type (the executor computes floats in float32).
                let declared = g.valueInfo(for: o)?.tensorType?.elementType
                g.setInitializer(o, declared.map { ComputeType.restore(t, to: $0) } ?? t)
            }
            folded += 1
        }
        g.nodes = kept
        Preparation.removeUnusedInitializers(g)
        return folded
    }
}
