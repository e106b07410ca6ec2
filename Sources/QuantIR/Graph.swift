import Foundation
import QuantCore
import QuantONNX

/// A constant tensor of a graph. `template` keeps the original proto (without its bytes) while
/// the tensor is unchanged, so saving reproduces the source file exactly.
public struct Initializer {
    public let name: String
    public let tensor: Tensor
    let template: Onnx_TensorProto?
    let encoding: Encoding

    enum Encoding { case raw, typed, external, fresh }

    public init(name: String, tensor: Tensor) {
        self.name = name
        self.tensor = tensor
        template = nil
        encoding = .fresh
    }

    init(proto: Onnx_TensorProto, store: ExternalDataStore?) throws {
        name = proto.name
        tensor = try TensorProtoCodec.decode(proto, store: store)
        if proto.dataLocation == .external {
            encoding = .external
            template = TensorProtoCodec.strippingData(proto)
        } else if proto.hasRawData {
            encoding = .raw
            var t = proto
            t.clearRawData()
            template = t
        } else {
            encoding = .typed
            template = proto
        }
    }

    func export(_ writer: ExternalDataWriter?) -> Onnx_TensorProto {
        if let writer, tensor.dtype != .string, tensor.byteCount >= writer.threshold {
            var p = TensorProtoCodec.strippingData(template ?? TensorProtoCodec.header(tensor, name: name))
            p.externalData = writer.add(tensor)
            p.dataLocation = .external
            return p
        }
        switch encoding {
        case .typed: return template!
        case .raw:
            var p = template!
            p.rawData = Data(tensor.bytes)
            return p
        case .external:
            var p = template!
            if tensor.dtype == .string { p.stringData = tensor.strings } else { p.rawData = Data(tensor.bytes) }
            return p
        case .fresh: return TensorProtoCodec.encode(tensor, name: name)
        }
    }
}

/// A computation graph: nodes in stored order, graph inputs/outputs, `value_info`
/// annotations and initializers. Subgraphs of `If`/`Loop`/`Scan` are `Graph`s too and may read
/// values of the enclosing graphs by name.
public final class Graph {
    public var name: String
    public var nodes: [Node]
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    public var valueInfo: [ValueInfo]
    public private(set) var initializers: [Initializer]
    private var initializerIndex: [String: Int]
    /// Every other field of the graph proto (doc string, sparse initializers, quantization
    /// annotations, metadata), kept for round trips.
    public var extras: Onnx_GraphProto

    public init(name: String, nodes: [Node] = [], inputs: [ValueInfo] = [], outputs: [ValueInfo] = [], initializers: [Initializer] = []) {
        self.name = name
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        valueInfo = []
        self.initializers = initializers
        initializerIndex = [:]
        extras = Onnx_GraphProto()
        reindexInitializers()
    }

    public init(proto: Onnx_GraphProto, store: ExternalDataStore?) throws {
        name = proto.name
        nodes = try proto.node.map { try Node(proto: $0, store: store) }
        inputs = proto.input.map(ValueInfo.init(proto:))
        outputs = proto.output.map(ValueInfo.init(proto:))
        valueInfo = proto.valueInfo.map(ValueInfo.init(proto:))
        initializers = try proto.initializer.map { try Initializer(proto: $0, store: store) }
        initializerIndex = [:]
        var e = proto
        e.node = []
        e.input = []
        e.output = []
        e.valueInfo = []
        e.initializer = []
        extras = e
        reindexInitializers()
    }

    func export(_ writer: ExternalDataWriter?) -> Onnx_GraphProto {
        var p = extras
        if p.name != name { p.name = name }
        p.node = nodes.map { $0.export(writer) }
        p.initializer = initializers.map { $0.export(writer) }
        p.input = inputs.map(\.proto)
        p.output = outputs.map(\.proto)
        p.valueInfo = valueInfo.map(\.proto)
        return p
    }

    private func reindexInitializers() {
        initializerIndex = [:]
        for (i, t) in initializers.enumerated() { initializerIndex[t.name] = i }
    }

    /// The initializer named `name`, if any.
    public func initializer(_ name: String) -> Tensor? {
        initializerIndex[name].map { initializers[$0].tensor }
    }

    public func isInitializer(_ name: String) -> Bool { initializerIndex[name] != nil }

    /// Adds or replaces the initializer `name` (a replaced one keeps its position).
    public func setInitializer(_ name: String, _ tensor: Tensor) {
        if let i = initializerIndex[name] {
            initializers[i] = Initializer(name: name, tensor: tensor)
        } else {
            initializerIndex[name] = initializers.count
            initializers.append(Initializer(name: name, tensor: tensor))
        }
    }

    public func removeInitializer(_ name: String) {
        guard let i = initializerIndex[name] else { return }
        initializers.remove(at: i)
        reindexInitializers()
    }

    /// Renames an initializer in place.
    func renameInitializer(_ old: String, to new: String) {
        guard let i = initializerIndex[old] else { return }
        initializers[i] = Initializer(name: new, tensor: initializers[i].tensor)
        reindexInitializers()
    }

    /// Graph inputs that are not initializers: the values a caller must feed.
    public var runtimeInputs: [ValueInfo] { inputs.filter { !isInitializer($0.name) } }

    /// Every node of this graph and of all nested subgraphs, depth first.
    public var allNodes: [Node] {
        nodes.flatMap { n in [n] + n.subgraphs.flatMap(\.allNodes) }
    }

    /// Every If/Loop/Scan body below this graph, each before the bodies nested in it.
    public var allSubgraphs: [Graph] {
        nodes.flatMap { $0.subgraphs.flatMap { [$0] + $0.allSubgraphs } }
    }

    /// The type annotation of `name` from inputs, outputs or value_info.
    public func valueInfo(for name: String) -> ValueInfo? {
        inputs.first { $0.name == name } ?? outputs.first { $0.name == name } ?? valueInfo.first { $0.name == name }
    }
}
