import Foundation
import QuantCore
import QuantONNX

/// Converts between ONNX `TensorProto` and `Tensor`, for inline (`raw_data` or typed fields) and
/// external data. Errors carry code QK1103 (bad tensor) or QK1007/QK1008 (external data).
public enum TensorProtoCodec {
    /// Decodes `proto`. External data is read through `store`, without copying when the mapped
    /// bytes are aligned.
    public static func decode(_ proto: Onnx_TensorProto, store: ExternalDataStore?) throws -> Tensor {
        let name = proto.name
        guard let dtype = DType(rawValue: proto.dataType), proto.dataType != 0 else {
            throw QuantKitError("QK1103", "tensor '\(name)' has unknown data type \(proto.dataType)",
                                fix: "use a data type defined by ONNX 1.23 TensorProto.DataType")
        }
        if proto.hasSegment {
            throw QuantKitError("QK1103", "tensor '\(name)' is split into segments, which QuantKit does not read",
                                fix: "re-save the model without segmented tensors")
        }
        var shape: [Int] = []
        for d in proto.dims {
            guard d >= 0, d <= Int64(Int32.max) else {
                throw QuantKitError("QK1103", "tensor '\(name)' has dimension \(d)", fix: "dimensions must be non-negative")
            }
            shape.append(Int(d))
        }
        let (count, overflow) = shape.reduce((1, false)) { acc, d in
            let (p, o) = acc.0.multipliedReportingOverflow(by: d)
            return (p, acc.1 || o)
        }
        guard !overflow, count <= Int(Int32.max) * 16 else {
            throw QuantKitError("QK1103", "tensor '\(name)' has shape \(shape) with too many elements", fix: "check the dims")
        }
        let bytes = dtype.byteCount(elements: count)

        if dtype == .string {
            guard proto.stringData.count == count else {
                throw QuantKitError("QK1103", "string tensor '\(name)' has \(proto.stringData.count) strings for shape \(shape)", fix: "re-export the tensor")
            }
            return Tensor(dtype: .string, shape: shape, storage: TensorStorage(strings: proto.stringData))
        }
        if let ref = try ExternalDataRef(proto) {
            guard let store else {
                throw QuantKitError("QK1007", "tensor '\(name)' uses external data but no model folder is known", fix: "load the model from a file")
            }
            let (file, offset, length) = try store.region(for: ref, tensor: name, expected: bytes)
            let storage = TensorStorage.mapped(file, offset: offset, count: length, alignment: max(1, dtype.bitWidth / 8))
            return Tensor(dtype: dtype, shape: shape, storage: storage)
        }
        if proto.hasRawData {
            guard proto.rawData.count == bytes else {
                throw QuantKitError(
                    "QK1103", "tensor '\(name)' (\(dtype) \(shape)) needs \(bytes) bytes but raw_data has \(proto.rawData.count)",
                    fix: "the tensor is truncated or its dims are wrong; re-export it")
            }
            return try proto.rawData.withUnsafeBytes { try Tensor(dtype: dtype, shape: shape, copying: $0) }
        }
        // Typed fields hold at least one value per four elements (2-bit types pack four in an
        // int32): check that before allocating, so dims without data cannot claim memory.
        let values = proto.floatData.count + proto.doubleData.count + proto.int32Data.count + proto.int64Data.count + proto.uint64Data.count
        guard count <= 4 * values else {
            throw QuantKitError("QK1103", "tensor '\(name)' (\(dtype) \(shape)) has \(values) values for \(count) elements",
                                fix: "the tensor is truncated or its dims are wrong; re-export it")
        }
        let t = Tensor(dtype: dtype, shape: shape)
        func mismatch(_ field: String, _ have: Int, _ want: Int) -> QuantKitError {
            QuantKitError("QK1103", "tensor '\(name)' (\(dtype) \(shape)) has \(have) values in \(field), expected \(want)",
                          fix: "the tensor is truncated or its dims are wrong; re-export it")
        }
        let out = t.storage.pointer
        switch dtype {
        case .float, .complex64:
            let want = dtype == .float ? count : 2 * count
            guard proto.floatData.count == want else { throw mismatch("float_data", proto.floatData.count, want) }
            proto.floatData.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        case .double, .complex128:
            let want = dtype == .double ? count : 2 * count
            guard proto.doubleData.count == want else { throw mismatch("double_data", proto.doubleData.count, want) }
            proto.doubleData.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        case .int64:
            guard proto.int64Data.count == count else { throw mismatch("int64_data", proto.int64Data.count, count) }
            proto.int64Data.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        case .uint64, .uint32:
            guard proto.uint64Data.count == count else { throw mismatch("uint64_data", proto.uint64Data.count, count) }
            for (i, v) in proto.uint64Data.enumerated() {
                if dtype == .uint64 { out.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self) } else { out.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: i * 4, as: UInt32.self) }
            }
        case .float6e2m3, .float6e3m2:
            guard proto.int32Data.count == count else { throw mismatch("int32_data", proto.int32Data.count, count) }
            // Pack 6-bit codes as an LSB-first bit stream.
            for (i, v) in proto.int32Data.enumerated() {
                let code = UInt32(v) & 0x3F
                for b in 0..<6 where code & (1 << b) != 0 {
                    let bit = i * 6 + b
                    let byte = out.load(fromByteOffset: bit / 8, as: UInt8.self)
                    out.storeBytes(of: byte | UInt8(1 << (bit % 8)), toByteOffset: bit / 8, as: UInt8.self)
                }
            }
        case .string:
            preconditionFailure("handled above")
        default:
            // int32_data carries one element per entry for 8..32-bit types, one packed byte for 4/2-bit types.
            let perEntry = dtype.bitWidth < 8 ? 8 / dtype.bitWidth : 1
            let want = (count + perEntry - 1) / perEntry
            guard proto.int32Data.count == want else { throw mismatch("int32_data", proto.int32Data.count, want) }
            let width = max(1, dtype.bitWidth / 8)
            for (i, v) in proto.int32Data.enumerated() {
                switch width {
                case 1: out.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
                case 2: out.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: i * 2, as: UInt16.self)
                default: out.storeBytes(of: v, toByteOffset: i * 4, as: Int32.self)
                }
            }
        }
        return t
    }

    /// Name, dims and data type of `tensor`, without data.
    static func header(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        var p = Onnx_TensorProto()
        p.name = name
        p.dims = tensor.shape.map(Int64.init)
        p.dataType = tensor.dtype.rawValue
        return p
    }

    /// Encodes `tensor` inline as `raw_data` (`string_data` for strings).
    public static func encode(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        var p = header(tensor, name: name)
        if tensor.dtype == .string {
            p.stringData = tensor.strings
        } else {
            p.rawData = Data(tensor.bytes)
        }
        return p
    }

    /// Removes every data field (typed, raw and external) from `proto`, keeping the rest.
    static func strippingData(_ proto: Onnx_TensorProto) -> Onnx_TensorProto {
        var p = proto
        p.clearRawData()
        p.floatData = []
        p.int32Data = []
        p.int64Data = []
        p.doubleData = []
        p.uint64Data = []
        p.stringData = []
        p.externalData = []
        p.clearDataLocation()
        return p
    }
}
