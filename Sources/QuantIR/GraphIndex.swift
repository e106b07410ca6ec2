/// Producer and consumers of every value of one graph (not of its subgraphs), built on demand.
/// Rebuild it after editing the graph.
public struct GraphIndex {
    public private(set) var producer: [String: Node] = [:]
    private var consumerLists: [String: [Node]] = [:]

    public init(_ graph: Graph) {
        for node in graph.nodes {
            for o in node.outputs where !o.isEmpty { producer[o] = node }
            for i in Set(node.inputs) where !i.isEmpty { consumerLists[i, default: []].append(node) }
            // Values read implicitly by subgraphs count as consumed by the owning node.
            for name in node.subgraphs.flatMap(\.outerScopeReads) where !node.inputs.contains(name) {
                consumerLists[name, default: []].append(node)
            }
        }
    }

    /// Nodes reading `value`, in graph order, each once.
    public func consumers(of value: String) -> [Node] {
        var seen = Set<ObjectIdentifier>()
        return (consumerLists[value] ?? []).filter { seen.insert(ObjectIdentifier($0)).inserted }
    }
}

extension Graph {
    /// Names a subgraph reads that it does not define itself (values of enclosing graphs).
    public var outerScopeReads: [String] {
        var defined = Set(inputs.map(\.name)).union(initializers.map(\.name))
        var reads: [String] = []
        var seen = Set<String>()
        for node in nodes {
            for i in node.inputs + node.subgraphs.flatMap(\.outerScopeReads) where !i.isEmpty && !defined.contains(i) {
                if seen.insert(i).inserted { reads.append(i) }
            }
            defined.formUnion(node.outputs)
        }
        return reads
    }
}
