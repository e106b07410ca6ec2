import Foundation
import QuantIR

extension AnalysisReport {
    /// One op of the diagram in the HTML report: the quantized model's ops without their
    /// QuantizeLinear/DequantizeLinear (a tensor read through Q → DQ is drawn as read directly),
    /// and its inputs at the top.
    public struct GraphNode: Sendable {
        public var name: String
        public var opType: String
        /// Indices of the nodes whose outputs it reads.
        public var inputs: [Int]
        /// Its row in the report's layer table (1-based), nil for ops that stay float.
        public var layer: Int?
        /// Layout: layer of the drawing (longest path from an input) and place within it.
        public var rank: Int
        public var slot: Int
    }

    /// The diagram of `quantizedModel`'s main graph (If/Loop/Scan bodies are drawn as their
    /// node), `layers` joined by node name.
    static func diagram(of quantizedModel: Model, layers: [Layer]) -> [GraphNode] {
        let g = quantizedModel.graph
        guard let order = try? g.topologicalOrder() else { return [] }
        var producer: [String: Node] = [:]
        for n in order { for o in n.outputs where !o.isEmpty { producer[o] = n } }
        let skipped: Set<String> = ["QuantizeLinear", "DequantizeLinear", "Constant"]
        // A tensor read through Q/DQ pairs is the tensor before them.
        func source(_ t: String) -> String {
            var t = t
            for _ in 0..<4 {
                guard let p = producer[t], p.isStandard || p.domain == "com.microsoft", ["QuantizeLinear", "DequantizeLinear"].contains(p.opType),
                      let x = p.inputs.first else { break }
                t = x
            }
            return t
        }
        let layerOf = Dictionary(layers.map { ($0.node, $0.index) }, uniquingKeysWith: { a, _ in a })
        var nodes: [GraphNode] = []
        var index: [String: Int] = [:]  // tensor -> node producing it
        for v in g.runtimeInputs {
            index[v.name] = nodes.count
            nodes.append(GraphNode(name: v.name, opType: "Input", inputs: [], layer: nil, rank: 0, slot: 0))
        }
        for n in order where !skipped.contains(n.opType) {
            let reads = n.inputs.filter { !$0.isEmpty }.map(source).compactMap { index[$0] }
            // Ops on constants only (weight reshapes) are part of the weight, not the data flow.
            if reads.isEmpty && !n.inputs.contains(where: { !$0.isEmpty && g.initializer(source($0)) == nil && producer[source($0)] == nil }) { continue }
            let name = n.name.isEmpty ? (n.outputs.first ?? "") : n.name
            let inputs = Array(Set(reads)).sorted()
            let rank = 1 + (inputs.map { nodes[$0].rank }.max() ?? -1)
            for o in n.outputs where !o.isEmpty { index[o] = nodes.count }
            nodes.append(GraphNode(name: name, opType: n.opType, inputs: inputs, layer: layerOf[name], rank: rank, slot: 0))
        }
        var used: [Int: Int] = [:]
        for i in nodes.indices {
            nodes[i].slot = used[nodes[i].rank, default: 0]
            used[nodes[i].rank, default: 0] += 1
        }
        return nodes
    }
}
