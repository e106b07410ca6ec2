import QuantCore
import QuantIR

/// Finds the nodes a control setting applies to.
enum Regions {
    /// Nodes reading (transitively) any of `tensors`.
    static func downstream(of tensors: [String], in g: Graph) -> Set<ObjectIdentifier> {
        var reached = Set(tensors)
        var nodes = Set<ObjectIdentifier>()
        for n in g.nodes where n.inputs.contains(where: reached.contains) {
            nodes.insert(ObjectIdentifier(n))
            reached.formUnion(n.outputs)
        }
        return nodes
    }

    /// Nodes on a path from any input tensor to any output tensor.
    static func between(_ inputs: [String], _ outputs: [String], in g: Graph) -> Set<ObjectIdentifier> {
        let down = downstream(of: inputs, in: g)
        var needed = Set(outputs)
        var up = Set<ObjectIdentifier>()
        for n in g.nodes.reversed() where n.outputs.contains(where: needed.contains) {
            up.insert(ObjectIdentifier(n))
            needed.formUnion(n.inputs)
        }
        return down.intersection(up)
    }

    /// The first of `graphs` whose own nodes produce or read every tensor in `names` (a
    /// custom_setting may name tensors inside an If/Loop/Scan body), or nil.
    static func home(of names: [String], in graphs: [Graph]) -> Graph? {
        graphs.first { g in
            let index = GraphIndex(g)
            return names.allSatisfy { t in index.producer[t] != nil || !index.consumers(of: t).isEmpty }
        }
    }

    /// Checks that each named tensor exists and cuts the graph (has a producer and a reader).
    static func checkCut(_ names: [String], in g: Graph, what: String) throws {
        let index = GraphIndex(g)
        for t in names {
            guard g.allValueNames.contains(t) else {
                throw QuantKitError("QK5001", "\(what) tensor '\(t)' is not in the model", fix: "use a tensor name shown by `quantkit inspect` or Netron")
            }
            // In an If/Loop/Scan body, a value read from the enclosing graph counts as an input.
            guard index.producer[t] != nil || g.inputs.contains(where: { $0.name == t }) || g.outerScopeReads.contains(t),
                  !index.consumers(of: t).isEmpty else {
                throw QuantKitError("QK5002", "\(what) tensor '\(t)' does not cut the graph in two (it is not produced and read by nodes)",
                                    fix: "name an intermediate tensor between two nodes")
            }
        }
    }

    /// Checks that `names` (truncate_var_names) separate the graph: no node after them also
    /// reads a value that comes from the graph inputs by another path (a skip connection around
    /// the cut). Constants may feed both sides.
    static func checkSeparates(_ names: [String], in g: Graph) throws {
        guard !names.isEmpty else { return }
        let cut = Set(names)
        var before = Set(g.runtimeInputs.map(\.name)).subtracting(cut)
        for n in g.nodes where n.inputs.contains(where: before.contains) {
            before.formUnion(n.outputs.filter { !$0.isEmpty && !cut.contains($0) })
        }
        let after = downstream(of: names, in: g)
        for n in g.nodes where after.contains(ObjectIdentifier(n)) {
            if let other = n.inputs.first(where: { before.contains($0) && !cut.contains($0) }) {
                let list = names.map { "'\($0)'" }.joined(separator: ", ")
                throw QuantKitError("QK5002", "truncate tensor \(list) does not cut the graph in two: node \(n.label) after the cut also reads '\(other)', which reaches it without passing the cut",
                                    fix: "truncate at a tensor every path goes through (e.g. after the branches merge), or also name '\(other)'")
            }
        }
    }
}
