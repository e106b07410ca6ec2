import QuantCore
import QuantONNX

/// A node attribute. The ONNX proto holds the value; graph-valued attributes (`If` branches,
/// `Loop`/`Scan` bodies) hold their subgraphs as `Graph`s in `subgraphs` instead, so they can
/// be edited like the main graph.
public struct Attribute {
    /// The attribute without its `g`/`graphs` fields when it is graph-valued.
    public var proto: Onnx_AttributeProto
    public var subgraphs: [Graph]

    public init(proto: Onnx_AttributeProto, subgraphs: [Graph] = []) {
        self.proto = proto
        self.subgraphs = subgraphs
    }

    public var name: String { proto.name }
    public var type: Onnx_AttributeProto.AttributeType { proto.type }

    public var int: Int? { proto.type == .int || proto.hasI ? Int(proto.i) : nil }
    public var float: Float? { proto.type == .float || proto.hasF ? proto.f : nil }
    public var string: String? { proto.type == .string || proto.hasS ? String(decoding: proto.s, as: UTF8.self) : nil }
    public var ints: [Int] { proto.ints.map { Int($0) } }
    public var floats: [Float] { proto.floats }
    public var strings: [String] { proto.strings.map { String(decoding: $0, as: UTF8.self) } }

    /// The tensor value (`t`), decoded; external data inside attributes is not supported.
    public func tensor() throws -> Tensor? {
        guard proto.hasT else { return nil }
        return try TensorProtoCodec.decode(proto.t, store: nil)
    }

    public static func int(_ name: String, _ v: Int) -> Attribute {
        var p = Onnx_AttributeProto()
        p.name = name
        p.type = .int
        p.i = Int64(v)
        return Attribute(proto: p)
    }

    public static func ints(_ name: String, _ v: [Int]) -> Attribute {
        var p = Onnx_AttributeProto()
        p.name = name
        p.type = .ints
        p.ints = v.map(Int64.init)
        return Attribute(proto: p)
    }

    public static func float(_ name: String, _ v: Float) -> Attribute {
        var p = Onnx_AttributeProto()
        p.name = name
        p.type = .float
        p.f = v
        return Attribute(proto: p)
    }

    public static func string(_ name: String, _ v: String) -> Attribute {
        var p = Onnx_AttributeProto()
        p.name = name
        p.type = .string
        p.s = Data(v.utf8)
        return Attribute(proto: p)
    }

    public static func tensor(_ name: String, _ v: Tensor) -> Attribute {
        var p = Onnx_AttributeProto()
        p.name = name
        p.type = .tensor
        p.t = TensorProtoCodec.encode(v, name: "")
        return Attribute(proto: p)
    }
}

import Foundation
