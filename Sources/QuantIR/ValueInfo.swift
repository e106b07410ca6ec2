import QuantCore
import QuantONNX

/// One dimension of a tensor shape: a number, a named symbol (`batch`) or unknown.
public enum Dim: Hashable, Sendable, Codable, CustomStringConvertible {
    case value(Int)
    case param(String)
    case unknown

    public var description: String {
        switch self {
        case .value(let v): "\(v)"
        case .param(let p): p
        case .unknown: "?"
        }
    }

    public var intValue: Int? { if case .value(let v) = self { v } else { nil } }
}

/// Element type and (optionally known) shape of a tensor value.
public struct TensorType: Hashable, Sendable {
    public var elementType: DType?
    /// nil when the rank is unknown; `[]` for a scalar.
    public var shape: [Dim]?

    public init(elementType: DType?, shape: [Dim]?) {
        self.elementType = elementType
        self.shape = shape
    }

    /// The shape with every dimension known, or nil.
    public var staticShape: [Int]? {
        guard let shape else { return nil }
        let dims = shape.compactMap(\.intValue)
        return dims.count == shape.count ? dims : nil
    }
}

/// A graph input, output or `value_info` annotation. The ONNX proto is the source of truth, so
/// doc strings, denotations and metadata survive a load/save unchanged; `tensorType` reads and
/// writes its tensor type.
public struct ValueInfo {
    public var proto: Onnx_ValueInfoProto

    public init(proto: Onnx_ValueInfoProto) { self.proto = proto }

    public init(name: String, type: TensorType) {
        proto = Onnx_ValueInfoProto()
        proto.name = name
        tensorType = type
    }

    public var name: String {
        get { proto.name }
        set { proto.name = newValue }
    }

    /// The tensor type, or nil for sequence/map/optional types or an absent type.
    public var tensorType: TensorType? {
        get {
            guard proto.hasType, case .tensorType(let t)? = proto.type.value else { return nil }
            let elem = t.hasElemType ? DType(rawValue: t.elemType) : nil
            guard t.hasShape else { return TensorType(elementType: elem, shape: nil) }
            let dims: [Dim] = t.shape.dim.map { d in
                switch d.value {
                case .dimValue(let v)?: return .value(Int(v))
                case .dimParam(let p)?: return .param(p)
                case nil: return .unknown
                }
            }
            return TensorType(elementType: elem, shape: dims)
        }
        set {
            guard let newValue else {
                proto.clearType()
                return
            }
            var t = Onnx_TypeProto.Tensor()
            if let e = newValue.elementType { t.elemType = e.rawValue }
            if let shape = newValue.shape {
                var s = Onnx_TensorShapeProto()
                s.dim = shape.map { d in
                    var p = Onnx_TensorShapeProto.Dimension()
                    switch d {
                    case .value(let v): p.dimValue = Int64(v)
                    case .param(let n): p.dimParam = n
                    case .unknown: break
                    }
                    return p
                }
                t.shape = s
            }
            var type = proto.hasType ? proto.type : Onnx_TypeProto()
            type.tensorType = t
            proto.type = type
        }
    }

    /// A short human description of the type: `float[1,3,224,224]`, `seq(float)`, `?`.
    public var typeDescription: String {
        guard proto.hasType else { return "?" }
        return TypeDescription.describe(proto.type)
    }
}

enum TypeDescription {
    static func describe(_ t: Onnx_TypeProto) -> String {
        switch t.value {
        case .tensorType(let x)?:
            let e = DType(rawValue: x.elemType)?.name ?? "?"
            guard x.hasShape else { return e }
            return e + "[" + x.shape.dim.map { d -> String in
                switch d.value {
                case .dimValue(let v)?: "\(v)"
                case .dimParam(let p)?: p
                case nil: "?"
                }
            }.joined(separator: ",") + "]"
        case .sequenceType(let s)?: return "seq(\(describe(s.elemType)))"
        case .mapType(let m)?: return "map(\(DType(rawValue: m.keyType)?.name ?? "?"),\(describe(m.valueType)))"
        case .optionalType(let o)?: return "optional(\(describe(o.elemType)))"
        case .sparseTensorType(let s)?: return "sparse(\(DType(rawValue: s.elemType)?.name ?? "?"))"
        case .opaqueType(let o)?: return "opaque(\(o.domain)::\(o.name))"
        case nil: return "?"
        }
    }
}
