/// Element types of ONNX tensors, numbered as `TensorProto.DataType` in onnx.proto.
///
/// Sub-byte types (`int4`, `uint4`, `int2`, `uint2`, `float4e2m1`) are packed low nibble (or low
/// bit pair) first, as the ONNX spec stores them in `raw_data`.
public enum DType: Int32, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7
    case string = 8, bool = 9, float16 = 10, double = 11, uint32 = 12, uint64 = 13
    case complex64 = 14, complex128 = 15, bfloat16 = 16
    case float8e4m3fn = 17, float8e4m3fnuz = 18, float8e5m2 = 19, float8e5m2fnuz = 20
    case uint4 = 21, int4 = 22, float4e2m1 = 23, float8e8m0 = 24, uint2 = 25, int2 = 26
    case float6e2m3 = 27, float6e3m2 = 28

    /// Bits one element occupies in packed storage.
    public var bitWidth: Int {
        switch self {
        case .bool, .uint8, .int8, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz,
            .float8e8m0:
            return 8
        case .uint16, .int16, .float16, .bfloat16: return 16
        case .float, .int32, .uint32: return 32
        case .double, .int64, .uint64, .complex64: return 64
        case .complex128: return 128
        case .uint4, .int4, .float4e2m1: return 4
        case .uint2, .int2: return 2
        case .float6e2m3, .float6e3m2: return 6
        case .string: return 0
        }
    }

    /// Bytes needed to store `count` elements (sub-byte types round up to whole bytes).
    public func byteCount(elements count: Int) -> Int {
        (count * bitWidth + 7) / 8
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float, .double, .float16, .bfloat16, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2,
            .float8e5m2fnuz, .float4e2m1, .float8e8m0, .float6e2m3, .float6e3m2:
            return true
        default: return false
        }
    }

    public var isInteger: Bool {
        switch self {
        case .uint8, .int8, .uint16, .int16, .int32, .int64, .uint32, .uint64, .uint4, .int4, .uint2, .int2:
            return true
        default: return false
        }
    }

    /// The ONNX name, e.g. `float`, `int8`, `bfloat16`.
    public var name: String {
        switch self {
        case .float: "float"
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .int32: "int32"
        case .int64: "int64"
        case .string: "string"
        case .bool: "bool"
        case .float16: "float16"
        case .double: "double"
        case .uint32: "uint32"
        case .uint64: "uint64"
        case .complex64: "complex64"
        case .complex128: "complex128"
        case .bfloat16: "bfloat16"
        case .float8e4m3fn: "float8e4m3fn"
        case .float8e4m3fnuz: "float8e4m3fnuz"
        case .float8e5m2: "float8e5m2"
        case .float8e5m2fnuz: "float8e5m2fnuz"
        case .uint4: "uint4"
        case .int4: "int4"
        case .float4e2m1: "float4e2m1"
        case .float8e8m0: "float8e8m0"
        case .uint2: "uint2"
        case .int2: "int2"
        case .float6e2m3: "float6e2m3"
        case .float6e3m2: "float6e3m2"
        }
    }

    public var description: String { name }

    /// Parses an ONNX or numpy-style name (`float32`, `fp16`, `int8`, ...).
    public init?(name: String) {
        switch name.lowercased() {
        case "float", "float32", "fp32", "f32": self = .float
        case "float16", "half", "fp16", "f16": self = .float16
        case "bfloat16", "bf16": self = .bfloat16
        case "double", "float64", "fp64", "f64": self = .double
        case "bool", "boolean": self = .bool
        default:
            guard let t = DType.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
            self = t
        }
    }
}
