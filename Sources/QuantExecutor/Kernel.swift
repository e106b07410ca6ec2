import QuantCore
import QuantIR

/// An operator implementation bound to one node. Built once per node when the executor
/// compiles a graph (attributes parsed, constant operands pre-processed), then run many times.
///
/// Contract: `run` receives one tensor per node input (`nil` for an omitted optional input) and
/// returns one per node output (`nil` for an omitted optional output). Floating-point tensors
/// are float32 inside the executor (float16, bfloat16 and double are converted at the graph's
/// edges); integer and bool tensors keep their type. `run` must not mutate the kernel (the same
/// executor may run on several threads) and must not mutate its inputs. Bad operands throw
/// `ExecutorError.invalid`, never trap.
public protocol Kernel: AnyObject {
    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?]
}

/// Builds a kernel for a node.
public typealias KernelFactory = (KernelContext) throws -> Kernel

/// A kernel given as a closure, for operators with little to prepare.
public final class ClosureKernel: Kernel {
    let body: ([Tensor?], RunEnvironment) throws -> [Tensor?]
    public init(_ body: @escaping ([Tensor?], RunEnvironment) throws -> [Tensor?]) { self.body = body }
    public func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] { try body(inputs, env) }
}

/// What a kernel factory may know about its node at compile time.
public struct KernelContext {
    public let node: Node
    /// Opset version of the node's domain.
    public let opset: Int
    public let options: ExecutorOptions
    let constantLookup: (String) -> Tensor?
    let compileSubgraph: (Graph) throws -> GraphPlan

    /// The value of input `i` when it is an initializer or a `Constant` output (compute type).
    public func constantInput(_ i: Int) -> Tensor? {
        guard i < node.inputs.count, !node.inputs[i].isEmpty else { return nil }
        return constantLookup(node.inputs[i])
    }

    /// True when input `i` is present (not omitted).
    public func hasInput(_ i: Int) -> Bool { i < node.inputs.count && !node.inputs[i].isEmpty }

    public func int(_ name: String, _ fallback: Int) -> Int { node.attribute(name)?.int ?? fallback }
    public func int(_ name: String) -> Int? { node.attribute(name)?.int }
    public func float(_ name: String, _ fallback: Float) -> Float { node.attribute(name)?.float ?? fallback }
    public func string(_ name: String, _ fallback: String) -> String { node.attribute(name)?.string ?? fallback }
    public func ints(_ name: String) -> [Int]? { node.attribute(name).map(\.ints) }
    public func floats(_ name: String) -> [Float]? { node.attribute(name).map(\.floats) }
    public func strings(_ name: String) -> [String]? { node.attribute(name).map(\.strings) }

    /// The tensor attribute `name`, converted to the compute type.
    public func tensor(_ name: String) throws -> Tensor? {
        try node.attribute(name)?.tensor().map(ComputeType.normalize)
    }

    /// Compiles the graph attribute `name` (If branches, Loop/Scan bodies).
    public func subgraph(_ name: String) throws -> GraphPlan {
        guard let g = node.attribute(name)?.subgraphs.first else {
            throw ExecutorError.invalid(node, "graph attribute '\(name)' is missing")
        }
        return try compileSubgraph(g)
    }

    /// QK3006 unless a `dtype` output of `shape` fits `options.maxTensorBytes`: for outputs
    /// whose size comes from input values, checked before they are allocated.
    public func checkOutput(_ dtype: DType, _ shape: [Int]) throws {
        guard let b = Tensor.checkedByteCount(dtype, shape), b <= options.maxTensorBytes else {
            throw ExecutorError.tooLarge(node, shape, dtype, limit: options.maxTensorBytes)
        }
    }

    /// An error about this node's operands.
    public func invalid(_ detail: String) -> QuantKitError { ExecutorError.invalid(node, detail) }
    public func unsupported(_ detail: String) -> QuantKitError { ExecutorError.unsupportedFeature(node, detail) }
}

/// Operator implementations by domain and op type. Opset-specific behaviour is decided by each
/// factory from `KernelContext.opset`.
public struct KernelRegistry: @unchecked Sendable {
    private var table: [String: KernelFactory] = [:]

    public init() {}

    static func key(_ domain: String, _ op: String) -> String {
        (domain == "ai.onnx" ? "" : domain) + "::" + op
    }

    public mutating func register(_ op: String, domain: String = "", _ factory: @escaping KernelFactory) {
        table[KernelRegistry.key(domain, op)] = factory
    }

    public func factory(domain: String, op: String) -> KernelFactory? { table[KernelRegistry.key(domain, op)] }

    public func supports(domain: String, op: String) -> Bool { factory(domain: domain, op: op) != nil }

    /// Registered operators as `op` (default domain) or `domain::op`.
    public var operators: [String] {
        table.keys.map { $0.hasPrefix("::") ? String($0.dropFirst(2)) : $0 }.sorted()
    }

    /// Every operator QuantKit implements.
    public static let standard: KernelRegistry = {
        var r = KernelRegistry()
        for family in KernelFamilies.all {
            // Family keys are `Op` for the default domain or `domain::Op`.
            for (key, f) in family {
                if let r2 = key.range(of: "::") {
                    r.register(String(key[r2.upperBound...]), domain: String(key[..<r2.lowerBound]), f)
                } else {
                    r.register(key, f)
                }
            }
        }
        return r
    }()
}

extension KernelRegistry {
    /// Runs `node` once on known inputs (constant folding). Subgraph-holding nodes are not
    /// evaluated (nil is returned), nor nodes without a kernel.
    public func evaluate(_ node: Node, inputs: [Tensor?], opset: Int, options: ExecutorOptions = ExecutorOptions(threads: 1)) throws -> [Tensor?]? {
        guard node.subgraphs.isEmpty, let factory = factory(domain: node.domain, op: node.opType) else { return nil }
        var known: [String: Tensor] = [:]
        for (k, name) in node.inputs.enumerated() where !name.isEmpty { if let t = inputs[k] { known[name] = ComputeType.normalize(t) } }
        let ctx = KernelContext(node: node, opset: opset, options: options, constantLookup: { known[$0] },
                                compileSubgraph: { _ in throw ExecutorError.unsupportedFeature(node, "subgraphs during constant folding") })
        let kernel = try factory(ctx)
        return try kernel.run(node.inputs.map { $0.isEmpty ? nil : known[$0] }, RunEnvironment.compileTime(options))
    }
}
