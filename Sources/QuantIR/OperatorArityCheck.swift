import QuantCore

/// How many inputs and outputs a node of a known operator may have, from the ONNX (and ONNX
/// Runtime contrib) operator schemas in `OperatorArity.table` (generated). Kernels index their
/// operands by position, so a node outside its schema's arity must be refused before it runs.
public enum OperatorArity {
    struct Entry {
        let since: Int
        let minInputs: Int
        let maxInputs: Int  // -1: variadic
        let minOutputs: Int
        let maxOutputs: Int  // -1: variadic
        let required: [Int]
        init(_ since: Int, _ minInputs: Int, _ maxInputs: Int, _ minOutputs: Int, _ maxOutputs: Int, _ required: [Int]) {
            (self.since, self.minInputs, self.maxInputs, self.minOutputs, self.maxOutputs, self.required) =
                (since, minInputs, maxInputs, minOutputs, maxOutputs, required)
        }
    }

    /// The schema entry in force for `op` of `domain` at `opset`, nil for unknown operators.
    static func entry(domain: String, op: String, opset: Int) -> Entry? {
        let d = domain == "ai.onnx" ? "" : domain
        return table["\(d)::\(op)"]?.last { $0.since <= opset }
    }

    /// What is wrong with the node's number of operands at `opset` (of its domain), or nil.
    /// Trailing omitted (`""`) inputs and outputs are not counted.
    public static func problem(_ node: Node, opset: Int) -> String? {
        guard let e = entry(domain: node.domain, op: node.opType, opset: opset) else { return nil }
        func count(_ names: [String]) -> Int { (names.lastIndex { !$0.isEmpty } ?? -1) + 1 }
        let nIn = count(node.inputs), nOut = count(node.outputs)
        func range(_ lo: Int, _ hi: Int) -> String { hi < 0 ? "at least \(lo)" : lo == hi ? "\(lo)" : "\(lo) to \(hi)" }
        if nIn < e.minInputs || (e.maxInputs >= 0 && nIn > e.maxInputs) {
            return "has \(nIn) input\(nIn == 1 ? "" : "s"); \(node.opType)-\(e.since) takes \(range(e.minInputs, e.maxInputs))"
        }
        if let i = e.required.first(where: { $0 >= node.inputs.count || node.inputs[$0].isEmpty }) {
            return "omits input \(i), which \(node.opType)-\(e.since) requires"
        }
        if nOut < e.minOutputs || (e.maxOutputs >= 0 && nOut > e.maxOutputs) {
            return "has \(nOut) output\(nOut == 1 ? "" : "s"); \(node.opType)-\(e.since) produces \(range(e.minOutputs, e.maxOutputs))"
        }
        return nil
    }

    /// Throws QK1207 when the node's operands do not fit its operator's schema.
    public static func check(_ node: Node, opset: Int) throws {
        if let p = problem(node, opset: opset) {
            throw QuantKitError("QK1207", "node \(node.label) \(p)", fix: "the model is malformed; check it with onnx.checker and re-export it")
        }
    }
}
