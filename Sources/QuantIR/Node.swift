import QuantCore
import QuantONNX

/// One operator application. Inputs and outputs are value names; `""` marks an omitted
/// optional input or output, as in ONNX.
public final class Node {
    public var name: String
    public var opType: String
    /// `""` for the default ONNX domain (also spelled `ai.onnx`).
    public var domain: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [Attribute]
    /// Every other field of the node proto (doc string, overload, metadata), kept for round trips.
    public var extras: Onnx_NodeProto

    public init(name: String, opType: String, domain: String = "", inputs: [String], outputs: [String], attributes: [Attribute] = []) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
        extras = Onnx_NodeProto()
    }

    init(proto: Onnx_NodeProto, store: ExternalDataStore?) throws {
        name = proto.name
        opType = proto.opType
        domain = proto.domain
        inputs = proto.input
        outputs = proto.output
        attributes = try proto.attribute.map { a in
            var ap = a
            var graphs: [Graph] = []
            if a.hasG {
                graphs = [try Graph(proto: a.g, store: store)]
                ap.clearG()
            } else if !a.graphs.isEmpty {
                graphs = try a.graphs.map { try Graph(proto: $0, store: store) }
                ap.graphs = []
            }
            return Attribute(proto: ap, subgraphs: graphs)
        }
        var e = proto
        e.input = []
        e.output = []
        e.attribute = []
        extras = e
    }

    func export(_ writer: ExternalDataWriter?) -> Onnx_NodeProto {
        var p = extras
        // Assign only changed scalars: proto2 fields have presence, and setting an absent field
        // to its default would add bytes that the source file did not have.
        if p.name != name { p.name = name }
        if p.opType != opType { p.opType = opType }
        if p.domain != domain { p.domain = domain }
        p.input = inputs
        p.output = outputs
        p.attribute = attributes.map { a in
            var ap = a.proto
            if a.proto.type == .graphs || a.subgraphs.count > 1 {
                ap.graphs = a.subgraphs.map { $0.export(writer) }
            } else if let g = a.subgraphs.first {
                ap.g = g.export(writer)
            }
            return ap
        }
        return p
    }

    /// The attribute named `name`, if present.
    public func attribute(_ name: String) -> Attribute? { attributes.first { $0.name == name } }

    /// Sets (replacing any existing) attribute.
    public func setAttribute(_ a: Attribute) {
        if let i = attributes.firstIndex(where: { $0.name == a.name }) { attributes[i] = a } else { attributes.append(a) }
    }

    /// True for ops of the default ONNX domain.
    public var isStandard: Bool { domain.isEmpty || domain == "ai.onnx" }

    /// All subgraphs held by this node's attributes.
    public var subgraphs: [Graph] { attributes.flatMap(\.subgraphs) }

    /// A label for messages: `Conv 'conv1'` or `Conv #12` when unnamed.
    public var label: String { name.isEmpty ? opType : "\(opType) '\(name)'" }
}
