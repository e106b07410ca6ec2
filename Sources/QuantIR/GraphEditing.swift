import QuantCore

extension Graph {
    /// Reorders `nodes` so every node follows the producers of its inputs (Kahn's algorithm,
    /// stable: among ready nodes the original order wins). Throws QK1203 on a cycle.
    public func sortTopologically() throws {
        nodes = try topologicalOrder()
    }

    /// The nodes in a dependency-respecting order; see `sortTopologically`.
    public func topologicalOrder() throws -> [Node] {
        let index = GraphIndex(self)
        var position: [ObjectIdentifier: Int] = [:]
        for (i, n) in nodes.enumerated() { position[ObjectIdentifier(n)] = i }
        var pending = [Int](repeating: 0, count: nodes.count)
        var dependents = [[Int]](repeating: [], count: nodes.count)
        for (i, n) in nodes.enumerated() {
            let reads = Set(n.inputs + n.subgraphs.flatMap(\.outerScopeReads)).filter { !$0.isEmpty }
            let producers = Set(reads.compactMap { index.producer[$0].flatMap { position[ObjectIdentifier($0)] } })
            for p in producers where p != i {
                pending[i] += 1
                dependents[p].append(i)
            }
            if producers.contains(i) {
                throw QuantKitError("QK1203", "node \(n.label) reads its own output", fix: "the graph has a cycle; re-export the model")
            }
        }
        // Ready nodes in a min-heap of original positions, so the order is stable and the sort
        // O(n log n) however wide the graph.
        var ready = MinHeap((0..<nodes.count).filter { pending[$0] == 0 })
        var order: [Node] = []
        order.reserveCapacity(nodes.count)
        while let i = ready.pop() {
            order.append(nodes[i])
            for d in dependents[i] {
                pending[d] -= 1
                if pending[d] == 0 { ready.push(d) }
            }
        }
        guard order.count == nodes.count else {
            let stuck = nodes.indices.filter { pending[$0] > 0 }.prefix(5).map { nodes[$0].label }
            throw QuantKitError("QK1203", "graph '\(name)' has a cycle through \(stuck.joined(separator: ", "))",
                                fix: "ONNX graphs must be acyclic; re-export the model")
        }
        return order
    }

    /// Inserts `node` right before `anchor` (or at the end when `anchor` is nil).
    public func insert(_ node: Node, before anchor: Node?) {
        if let anchor, let i = nodes.firstIndex(where: { $0 === anchor }) { nodes.insert(node, at: i) } else { nodes.append(node) }
    }

    /// Inserts `node` right after `anchor`.
    public func insert(_ node: Node, after anchor: Node) {
        let i = nodes.firstIndex { $0 === anchor }.map { $0 + 1 } ?? nodes.count
        nodes.insert(node, at: i)
    }

    /// Removes `node`; its outputs are left dangling for the caller to reconnect.
    public func remove(_ node: Node) {
        nodes.removeAll { $0 === node }
    }

    /// Replaces `old` by `new` at the same position.
    public func replace(_ old: Node, with new: [Node]) {
        guard let i = nodes.firstIndex(where: { $0 === old }) else { return }
        nodes.replaceSubrange(i...i, with: new)
    }

    /// Removes `node` and makes every reader of its single output read `input` instead
    /// (`Identity`, `Dropout`). Graph outputs keep their names: when the output is a graph
    /// output, the producer of `input` is renamed instead.
    public func bypass(_ node: Node, input: String) {
        guard let out = node.outputs.first else { return }
        remove(node)
        if outputs.contains(where: { $0.name == out }) {
            renameValue(input, to: out)
        } else {
            replaceUses(of: out, with: input)
        }
    }

    /// Makes every reader of `old` (nodes, subgraphs, graph outputs) read `new`. Producers are
    /// untouched.
    public func replaceUses(of old: String, with new: String) {
        for node in nodes {
            for k in node.inputs.indices where node.inputs[k] == old { node.inputs[k] = new }
            for g in node.subgraphs where !g.defines(old) { g.replaceUses(of: old, with: new) }
        }
        for k in outputs.indices where outputs[k].name == old { outputs[k].name = new }
    }

    /// `replaceUses(of:with:onlyIn:)` limited to `readers` (a `GraphIndex`'s consumers of
    /// `old`), and to the graph outputs when `includingOutputs`: the same edit without a scan of
    /// every node, so that editing every value of a graph stays linear in its size.
    public func replaceUses(of old: String, with new: String, readers: [Node], includingOutputs: Bool,
                            onlyIn include: (Node) -> Bool = { _ in true }) {
        for node in readers where include(node) {
            for k in node.inputs.indices where node.inputs[k] == old { node.inputs[k] = new }
            for g in node.subgraphs where !g.defines(old) { g.replaceUses(of: old, with: new) }
        }
        if includingOutputs { for k in outputs.indices where outputs[k].name == old { outputs[k].name = new } }
    }

    /// Readers of `old` for which `include` holds (and their subgraphs' reads) read `new` instead;
    /// other readers and the graph outputs are unchanged.
    public func replaceUses(of old: String, with new: String, onlyIn include: (Node) -> Bool) {
        for node in nodes where include(node) {
            for k in node.inputs.indices where node.inputs[k] == old { node.inputs[k] = new }
            for g in node.subgraphs where !g.defines(old) { g.replaceUses(of: old, with: new) }
        }
    }

    /// Renames a value everywhere it appears: producer, readers, graph inputs/outputs,
    /// value_info, initializers and subgraph reads.
    public func renameValue(_ old: String, to new: String) {
        guard old != new else { return }
        for node in nodes {
            for k in node.outputs.indices where node.outputs[k] == old { node.outputs[k] = new }
        }
        replaceUses(of: old, with: new)
        for k in inputs.indices where inputs[k].name == old { inputs[k].name = new }
        for k in valueInfo.indices where valueInfo[k].name == old { valueInfo[k].name = new }
        renameInitializer(old, to: new)
    }

    /// True when this graph itself (not an enclosing one) defines `name`.
    public func defines(_ name: String) -> Bool {
        isInitializer(name) || inputs.contains { $0.name == name } || nodes.contains { $0.outputs.contains(name) }
    }

    /// Every value name used anywhere in this graph and its subgraphs.
    public var allValueNames: Set<String> {
        var s = Set(inputs.map(\.name)).union(outputs.map(\.name)).union(initializers.map(\.name)).union(valueInfo.map(\.name))
        for n in nodes {
            s.formUnion(n.inputs)
            s.formUnion(n.outputs)
            for g in n.subgraphs { s.formUnion(g.allValueNames) }
        }
        s.remove("")
        return s
    }
}

/// Hands out value and node names that collide with nothing in a graph.
public struct NameAllocator {
    private var used: Set<String>

    public init(_ graph: Graph) {
        used = graph.allValueNames.union(graph.allNodes.map(\.name))
    }

    /// `base` if free, else `base_1`, `base_2`, ...
    public mutating func fresh(_ base: String) -> String {
        var name = base
        var k = 1
        while used.contains(name) {
            name = "\(base)_\(k)"
            k += 1
        }
        used.insert(name)
        return name
    }
}

/// A binary min-heap of integers.
struct MinHeap {
    private var items: [Int]

    init(_ items: [Int]) {
        self.items = items.sorted()  // a sorted array is a heap
    }

    mutating func push(_ x: Int) {
        items.append(x)
        var k = items.count - 1
        while k > 0, items[(k - 1) / 2] > items[k] {
            items.swapAt(k, (k - 1) / 2)
            k = (k - 1) / 2
        }
    }

    mutating func pop() -> Int? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        guard !items.isEmpty else { return top }
        items[0] = last
        var k = 0
        while true {
            let l = 2 * k + 1, r = l + 1
            var m = k
            if l < items.count, items[l] < items[m] { m = l }
            if r < items.count, items[r] < items[m] { m = r }
            if m == k { break }
            items.swapAt(k, m)
            k = m
        }
        return top
    }
}
