import Foundation
import QuantCore
import QuantONNX

/// How a save stores tensor bytes.
public enum ExternalDataPolicy: Sendable, Equatable {
    /// Inline, unless the model was loaded with external data or its tensors exceed what one
    /// protobuf file can hold (2 GiB): then tensors of `threshold` bytes and more go to a side file.
    case auto
    /// Every tensor inline; fails with QK1005 above 2 GiB.
    case never
    /// Tensors of `threshold` bytes and more go to the side file.
    case always
}

public struct SaveOptions: Sendable {
    public var externalData: ExternalDataPolicy
    /// Smallest tensor (bytes) stored externally.
    public var externalThreshold: Int
    /// Side file name, relative to the model's folder; default `<model file name>.data`.
    public var externalFileName: String?

    public init(externalData: ExternalDataPolicy = .auto, externalThreshold: Int = 1024, externalFileName: String? = nil) {
        self.externalData = externalData
        self.externalThreshold = externalThreshold
        self.externalFileName = externalFileName
    }
}

/// An ONNX model: the main graph plus every model-level field (IR version, opsets, producer,
/// metadata, functions, training info), which `extras` keeps for round trips.
public final class Model {
    public var graph: Graph
    public var extras: Onnx_ModelProto
    /// External data files the model was loaded with.
    public let externalFiles: [String]
    /// Protobuf's limit for one file, less a margin for the non-tensor parts of the model.
    public static let inlineLimit = ModelFile.protobufLimit - (64 << 20)

    public init(graph: Graph, opsets: [String: Int], irVersion: Int = 10, producer: String = "QuantKit") {
        self.graph = graph
        extras = Onnx_ModelProto()
        externalFiles = []
        extras.irVersion = Int64(irVersion)
        extras.producerName = producer
        extras.opsetImport = opsets.sorted { $0.key < $1.key }.map { kv in
            var o = Onnx_OperatorSetIdProto()
            o.domain = kv.key
            o.version = Int64(kv.value)
            return o
        }
    }

    /// Converts a decoded model; external data is resolved relative to `baseDirectory`.
    public init(proto: Onnx_ModelProto, baseDirectory: String?) throws {
        let store = baseDirectory.map(ExternalDataStore.init(baseDirectory:))
        graph = try Graph(proto: proto.graph, store: store)
        var e = proto
        e.clearGraph()
        extras = e
        externalFiles = store?.openedFiles ?? []
    }

    /// Loads the model at `path` (memory-mapped; external data mapped lazily per file).
    public static func load(path: String) throws -> Model {
        let proto = try ModelFile.read(path: path)
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            return try Model(proto: proto, baseDirectory: dir)
        } catch let e as QuantKitError {
            throw QuantKitError(e.code, "\(path): \(e.message)", fix: e.fix)
        }
    }

    /// The model as an ONNX proto with every tensor inline.
    public func proto() -> Onnx_ModelProto { export(nil) }

    func export(_ writer: ExternalDataWriter?) -> Onnx_ModelProto {
        var p = extras
        p.graph = graph.export(writer)
        return p
    }

    /// Saves atomically: the side file (if any) first, then the model file.
    /// With a `batch`, the model (and its external data file) are staged in it and appear when
    /// it commits.
    public func save(to path: String, options: SaveOptions = SaveOptions(), batch: AtomicBatch? = nil) throws {
        let external: Bool
        switch options.externalData {
        case .never: external = false
        case .always: external = true
        case .auto: external = !externalFiles.isEmpty || initializerBytes > Model.inlineLimit
        }
        guard external else {
            if initializerBytes > Model.inlineLimit {
                throw QuantKitError("QK1005", "the tensors of the model for '\(path)' take \(initializerBytes) bytes, over protobuf's 2 GiB limit",
                                    fix: "save with external data (quantkit convert --external-data always)")
            }
            try ModelFile.write(proto(), to: path, batch: batch)
            return
        }
        let url = URL(fileURLWithPath: path)
        let location = options.externalFileName ?? url.lastPathComponent + ".data"
        let writer = ExternalDataWriter(location: location, threshold: options.externalThreshold)
        let p = export(writer)
        if !writer.entries.isEmpty {
            try writer.write(to: url.deletingLastPathComponent().appendingPathComponent(location).path, batch: batch)
        }
        try ModelFile.write(p, to: path, batch: batch)
    }

    /// Opset version per domain (`""` is the default ONNX domain; `ai.onnx` maps to it).
    public var opsets: [String: Int] {
        var d: [String: Int] = [:]
        for o in extras.opsetImport { d[o.domain == "ai.onnx" ? "" : o.domain] = Int(o.version) }
        return d
    }

    public var irVersion: Int { Int(extras.irVersion) }

    /// Adds `domain` (version 1) to the opset imports unless the model imports it already
    /// (ONNX Runtime's com.microsoft contrib operators).
    public func declareDomain(_ domain: String) {
        guard !extras.opsetImport.contains(where: { $0.domain == domain }) else { return }
        var o = extras.opsetImport[0]
        o.domain = domain
        o.version = 1
        extras.opsetImport.append(o)
    }

    /// Bytes of all initializers, including subgraphs'.
    public var initializerBytes: Int {
        func bytes(_ g: Graph) -> Int {
            g.initializers.reduce(0) { $0 + $1.tensor.byteCount } + g.nodes.flatMap(\.subgraphs).reduce(0) { $0 + bytes($1) }
        }
        return bytes(graph)
    }
}
