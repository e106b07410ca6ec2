import QuantCore

/// A problem the verifier found.
public struct Diagnostic: CustomStringConvertible, Sendable, Equatable {
    public enum Severity: String, Sendable { case error, warning }
    public let severity: Severity
    public let code: String
    public let message: String

    public var description: String { "\(code) \(severity.rawValue): \(message)" }
}

/// Checks the structure of a graph and its subgraphs: every input defined (by a graph input,
/// initializer, earlier node or an enclosing graph), each value produced once, nodes in
/// dependency order, no cycles, graph outputs produced, non-empty node names unique.
public enum Verifier {
    public static func verify(_ model: Model) -> [Diagnostic] {
        var out: [Diagnostic] = []
        var nodeNames: [String: Int] = [:]
        verify(model.graph, outer: [], path: "graph '\(model.graph.name)'", nodeNames: &nodeNames, into: &out)
        for (name, count) in nodeNames where count > 1 {
            out.append(Diagnostic(severity: .warning, code: "QK1206", message: "node name '\(name)' is used by \(count) nodes"))
        }
        return out
    }

    /// Throws the first error diagnostic as a `QuantKitError`.
    public static func check(_ model: Model) throws {
        if let e = verify(model).first(where: { $0.severity == .error }) {
            throw QuantKitError(e.code, e.message, fix: "the model is malformed; check it with onnx.checker and re-export it")
        }
    }

    static func verify(_ g: Graph, outer: Set<String>, path: String, nodeNames: inout [String: Int], into out: inout [Diagnostic]) {
        func error(_ code: String, _ msg: String) { out.append(Diagnostic(severity: .error, code: code, message: "\(path): \(msg)")) }
        var defined = outer
        var local = Set<String>()
        for v in g.inputs.map(\.name) + g.initializers.map(\.name) {
            defined.insert(v)
            local.insert(v)
        }
        let producedLater = Set(g.nodes.flatMap(\.outputs))
        var produced = Set<String>()
        for node in g.nodes {
            if !node.name.isEmpty { nodeNames[node.name, default: 0] += 1 }
            for i in node.inputs where !i.isEmpty && !defined.contains(i) {
                if producedLater.contains(i) {
                    error("QK1202", "node \(node.label) reads '\(i)' before it is produced (nodes are not in topological order)")
                } else {
                    error("QK1201", "node \(node.label) reads '\(i)', which nothing defines")
                }
            }
            for a in node.attributes {
                for (k, sub) in a.subgraphs.enumerated() {
                    let label = a.subgraphs.count > 1 ? "\(a.name)[\(k)]" : a.name
                    verify(sub, outer: defined, path: "\(path) / \(node.label).\(label)", nodeNames: &nodeNames, into: &out)
                }
            }
            for o in node.outputs where !o.isEmpty {
                if local.contains(o) || produced.contains(o) {
                    error("QK1204", "value '\(o)' is defined more than once (again by \(node.label))")
                }
                produced.insert(o)
                local.insert(o)
                defined.insert(o)
            }
        }
        for o in g.outputs where !defined.contains(o.name) {
            error("QK1205", "graph output '\(o.name)' is not produced by any node")
        }
        if (try? g.topologicalOrder()) == nil {
            error("QK1203", "the graph has a cycle")
        }
    }
}
