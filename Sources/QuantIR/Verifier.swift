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
/// dependency order, no cycles, graph outputs produced, non-empty node names unique; nodes of
/// known operators with the number of operands their schema allows (`OperatorArity`); an opset
/// QuantKit knows; a main graph with typed inputs and at least one output.
public enum Verifier {
    public static func verify(_ model: Model) -> [Diagnostic] {
        var out: [Diagnostic] = []
        var nodeNames: [String: Int] = [:]
        let opsets = model.opsets
        let path = "graph '\(model.graph.name)'"
        if let v = opsets[""], v > OperatorArity.latestStandardOpset {
            out.append(Diagnostic(severity: .error, code: "QK1208", message:
                "the model imports opset \(v) of the default ONNX domain; QuantKit knows opsets up to \(OperatorArity.latestStandardOpset)"))
        }
        if model.graph.outputs.isEmpty {
            out.append(Diagnostic(severity: .error, code: "QK1209", message: "\(path) has no outputs"))
        }
        for i in model.graph.runtimeInputs where !i.proto.hasType || (i.tensorType != nil && i.tensorType?.elementType == nil) {
            out.append(Diagnostic(severity: .error, code: "QK1210", message: "\(path): input '\(i.name)' has no element type"))
        }
        verify(model.graph, outer: [], opsets: opsets, path: path, nodeNames: &nodeNames, into: &out)
        for (name, count) in nodeNames where count > 1 {
            out.append(Diagnostic(severity: .warning, code: "QK1206", message: "node name '\(name)' is used by \(count) nodes"))
        }
        return out
    }

    /// What a model must satisfy before anything runs it: the schema and interface checks
    /// (QK1207-QK1210). Order and definition problems (QK1201-QK1205) are left to the
    /// executor and preparation, which sort an unsorted graph.
    public static let loadCodes: Set<String> = ["QK1207", "QK1208", "QK1209", "QK1210"]

    /// Throws the first error diagnostic (of `codes`, when given) as a `QuantKitError`.
    public static func check(_ model: Model, codes: Set<String>? = nil) throws {
        if let e = verify(model).first(where: { d in d.severity == .error && (codes?.contains(d.code) ?? true) }) {
            throw QuantKitError(e.code, e.message, fix: e.code == "QK1208"
                ? "export the model at an opset QuantKit knows (torch.onnx.export(opset_version=...)) or convert it with onnx.version_converter"
                : "the model is malformed; check it with onnx.checker and re-export it")
        }
    }

    static func verify(_ g: Graph, outer: Set<String>, opsets: [String: Int], path: String, nodeNames: inout [String: Int], into out: inout [Diagnostic]) {
        func error(_ code: String, _ msg: String) { out.append(Diagnostic(severity: .error, code: code, message: "\(path): \(msg)")) }
        var defined = outer
        var local = Set<String>()
        // A name may be both an input and an initializer (its default value), not twice either.
        for names in [g.inputs.map(\.name), g.initializers.map(\.name)] {
            var seen = Set<String>()
            for v in names where !seen.insert(v).inserted {
                error("QK1204", "value '\(v)' is defined more than once (\(names == g.inputs.map(\.name) ? "two graph inputs" : "two initializers"))")
            }
            defined.formUnion(names)
            local.formUnion(names)
        }
        let producedLater = Set(g.nodes.flatMap(\.outputs))
        var produced = Set<String>()
        for node in g.nodes {
            if !node.name.isEmpty { nodeNames[node.name, default: 0] += 1 }
            if let p = OperatorArity.problem(node, opset: opsets[node.isStandard ? "" : node.domain] ?? 1) {
                error("QK1207", "node \(node.label) \(p)")
            }
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
                    verify(sub, outer: defined, opsets: opsets, path: "\(path) / \(node.label).\(label)", nodeNames: &nodeNames, into: &out)
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
