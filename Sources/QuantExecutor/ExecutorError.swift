import QuantCore
import QuantIR

/// Errors of the executor stage (QK3xxx). Each names the node or input concerned.
public enum ExecutorError {
    public static func unsupported(_ node: Node, opset: Int) -> QuantKitError {
        QuantKitError(
            "QK3001",
            "node \(node.label) uses operator '\(node.opType)' of domain '\(node.domain.isEmpty ? "ai.onnx" : node.domain)' (opset \(opset)), which the executor does not implement",
            fix: "exclude the node from the model, replace the operator, or report it with the model attached")
    }

    public static func missingInput(_ name: String, expected: [String]) -> QuantKitError {
        QuantKitError("QK3002", "model input '\(name)' was not given", fix: "feed every input: \(expected.joined(separator: ", "))")
    }

    public static func unknownInput(_ name: String, expected: [String]) -> QuantKitError {
        QuantKitError("QK3002", "'\(name)' is not an input of the model", fix: "the model's inputs are: \(expected.joined(separator: ", "))")
    }

    public static func inputMismatch(_ name: String, _ detail: String) -> QuantKitError {
        QuantKitError("QK3003", "input '\(name)': \(detail)", fix: "feed a tensor of the declared type and shape")
    }

    /// A kernel rejected its operands (shape, type or attribute values).
    public static func invalid(_ node: Node, _ detail: String) -> QuantKitError {
        QuantKitError("QK3004", "node \(node.label) (\(node.opType)): \(detail)", fix: "check the model with onnx.checker; the operands do not fit the operator")
    }

    /// An output whose size comes from input values would exceed the executor's budget.
    public static func tooLarge(_ node: Node, _ shape: [Int], _ dtype: DType, limit: Int) -> QuantKitError {
        let size = Tensor.checkedByteCount(dtype, shape).map { "\($0) bytes" } ?? "more bytes than memory can address"
        return QuantKitError("QK3006", "node \(node.label) (\(node.opType)): an output of shape \(shape) and type \(dtype) would take \(size), above the limit of \(limit)",
                             fix: "check the values that size this output (a shape, repeats, a range, broadcast operands); the model or its input is probably wrong")
    }

    /// A kernel does not support this attribute value or element type.
    public static func unsupportedFeature(_ node: Node, _ detail: String) -> QuantKitError {
        QuantKitError("QK3005", "node \(node.label) (\(node.opType)): \(detail) is not supported", fix: "report it with the model attached, or exclude the node")
    }
}
