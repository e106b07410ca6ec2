@_exported import QuantCalibration
@_exported import QuantCore
@_exported import QuantData
@_exported import QuantExecutor
@_exported import QuantIR
@_exported import QuantONNX

/// What `quantkit inspect` reports about a model.
public struct ModelSummary: Codable, Sendable {
    public struct Opset: Codable, Sendable {
        public let domain: String
        public let version: Int
    }

    public struct Value: Codable, Sendable {
        public let name: String
        /// ONNX element type name, or the type's description for non-tensor types.
        public let type: String
        /// Dimensions as numbers or symbol names; `"?"` for unknown; nil when the rank is unknown.
        public let shape: [ShapeDim]?
    }

    /// A dimension in JSON: a number, or a string for symbols and `?`.
    public enum ShapeDim: Codable, Sendable, Equatable, CustomStringConvertible {
        case value(Int)
        case symbol(String)

        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Int.self) { self = .value(v) } else { self = .symbol(try c.decode(String.self)) }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .value(let v): try c.encode(v)
            case .symbol(let s): try c.encode(s)
            }
        }

        public var description: String {
            switch self {
            case .value(let v): "\(v)"
            case .symbol(let s): s
            }
        }
    }

    public struct Subgraph: Codable, Sendable {
        /// `node.attribute` path from the main graph, e.g. `If_12.then_branch`.
        public let path: String
        public let nodeCount: Int
    }

    public let file: String
    public let fileBytes: Int
    public let irVersion: Int
    public let opsets: [Opset]
    public let producerName: String
    public let producerVersion: String
    public let domain: String
    public let modelVersion: Int
    public let docString: String
    public let metadata: [String: String]
    public let graphName: String
    public let inputs: [Value]
    public let outputs: [Value]
    /// Node count per op type in the main graph (`domain::Op` for non-default domains).
    public let opCounts: [String: Int]
    public let nodeCount: Int
    /// Node count per op type including every subgraph.
    public let opCountsWithSubgraphs: [String: Int]
    public let initializerCount: Int
    /// Elements of all initializers (including subgraphs').
    public let parameterCount: Int
    public let parameterBytes: Int
    /// Elements held by `Constant` nodes (weights of PaddlePaddle exports live there).
    public let constantNodeParameterCount: Int
    public let externalDataFiles: [String]
    public let functions: [String]
    public let subgraphs: [Subgraph]

    public init(model: Model, path: String, fileBytes: Int) throws {
        let g = model.graph
        file = path
        self.fileBytes = fileBytes
        irVersion = model.irVersion
        opsets = model.extras.opsetImport.map { Opset(domain: $0.domain, version: Int($0.version)) }
        producerName = model.extras.producerName
        producerVersion = model.extras.producerVersion
        domain = model.extras.domain
        modelVersion = Int(model.extras.modelVersion)
        docString = model.extras.docString
        metadata = Dictionary(model.extras.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { _, b in b })
        graphName = g.name
        inputs = g.runtimeInputs.map(ModelSummary.value)
        outputs = g.outputs.map(ModelSummary.value)
        opCounts = ModelSummary.count(g.nodes)
        nodeCount = g.nodes.count
        opCountsWithSubgraphs = ModelSummary.count(g.allNodes)
        var graphs: [Graph] = [g]
        var subs: [Subgraph] = []
        func walk(_ graph: Graph, prefix: String) {
            for (k, n) in graph.nodes.enumerated() {
                for a in n.attributes {
                    for (j, sub) in a.subgraphs.enumerated() {
                        let nodeName = n.name.isEmpty ? "\(n.opType)#\(k)" : n.name
                        let p = prefix + nodeName + "." + a.name + (a.subgraphs.count > 1 ? "[\(j)]" : "")
                        subs.append(Subgraph(path: p, nodeCount: sub.nodes.count))
                        graphs.append(sub)
                        walk(sub, prefix: p + "/")
                    }
                }
            }
        }
        walk(g, prefix: "")
        subgraphs = subs
        let inits = graphs.flatMap(\.initializers)
        initializerCount = inits.count
        parameterCount = inits.reduce(0) { $0 + $1.tensor.count }
        parameterBytes = inits.reduce(0) { $0 + $1.tensor.byteCount }
        constantNodeParameterCount = try g.allNodes.filter { $0.opType == "Constant" }
            .reduce(0) { $0 + ((try ConstantNodeFolding.value(of: $1))?.count ?? 0) }
        externalDataFiles = model.externalFiles.map { ($0 as NSString).lastPathComponent }
        functions = model.extras.functions.map { $0.domain.isEmpty ? $0.name : "\($0.domain)::\($0.name)" }
    }

    static func count(_ nodes: [Node]) -> [String: Int] {
        var d: [String: Int] = [:]
        for n in nodes { d[n.isStandard ? n.opType : "\(n.domain)::\(n.opType)", default: 0] += 1 }
        return d
    }

    static func value(_ v: ValueInfo) -> Value {
        guard let t = v.tensorType else { return Value(name: v.name, type: v.typeDescription, shape: nil) }
        return Value(
            name: v.name, type: t.elementType?.name ?? "?",
            shape: t.shape?.map { d in
                switch d {
                case .value(let x): .value(x)
                case .param(let p): .symbol(p)
                case .unknown: .symbol("?")
                }
            })
    }

    /// Loads `path` and summarises it.
    public static func inspect(path: String) throws -> ModelSummary {
        let model = try Model.load(path: path)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return try ModelSummary(model: model, path: path, fileBytes: size)
    }

    /// A human-readable multi-line report.
    public var text: String {
        var s: [String] = []
        s.append("model      \(file) (\(ModelSummary.bytes(fileBytes)))")
        s.append("ir_version \(irVersion)")
        s.append("opsets     " + opsets.map { "\($0.domain.isEmpty ? "ai.onnx" : $0.domain) \($0.version)" }.joined(separator: ", "))
        s.append("producer   \(producerName) \(producerVersion)".trimmingCharacters(in: .whitespaces))
        if !graphName.isEmpty { s.append("graph      \(graphName)") }
        func shape(_ v: Value) -> String { v.shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "[rank unknown]" }
        s.append("inputs")
        for v in inputs { s.append("  \(v.name): \(v.type) \(shape(v))") }
        s.append("outputs")
        for v in outputs { s.append("  \(v.name): \(v.type) \(shape(v))") }
        s.append("nodes      \(nodeCount) in the main graph, \(opCountsWithSubgraphs.values.reduce(0, +)) with subgraphs")
        for (op, n) in opCounts.sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }) {
            s.append("  \(op.padding(toLength: max(op.count, 24), withPad: " ", startingAt: 0)) \(n)")
        }
        s.append("parameters \(parameterCount) in \(initializerCount) initializers (\(ModelSummary.bytes(parameterBytes)))")
        if constantNodeParameterCount > 0 {
            s.append("           \(constantNodeParameterCount) more in Constant nodes (folded into initializers before quantization)")
        }
        if !externalDataFiles.isEmpty { s.append("external   " + externalDataFiles.joined(separator: ", ")) }
        if !functions.isEmpty { s.append("functions  " + functions.joined(separator: ", ")) }
        if !subgraphs.isEmpty {
            s.append("subgraphs")
            for sg in subgraphs { s.append("  \(sg.path): \(sg.nodeCount) nodes") }
        }
        if !metadata.isEmpty {
            s.append("metadata")
            for (k, v) in metadata.sorted(by: { $0.key < $1.key }) {
                let oneLine = v.split(whereSeparator: \.isNewline).joined(separator: " ")
                let lines = v.split(whereSeparator: \.isNewline).count
                s.append("  \(k): \(oneLine.prefix(60))\(oneLine.count > 60 ? "…" : "")\(lines > 1 ? " (\(lines) lines)" : "")")
            }
        }
        return s.joined(separator: "\n")
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
    }
}

import Foundation
