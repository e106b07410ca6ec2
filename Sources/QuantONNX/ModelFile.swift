import Foundation
import QuantCore
import SwiftProtobuf

/// Reading and writing ONNX protobuf files.
///
/// Errors are `QuantKitError`s with codes QK1001–QK1009 naming the file. Reading never
/// crashes on bad bytes: protobuf decoding errors, empty files and well-formed protobuf that is
/// not an ONNX model are all reported.
public enum ModelFile {
    /// The largest serialized protobuf message: protobuf's 2 GiB limit.
    public static let protobufLimit = Int(Int32.max)

    /// Decodes the model at `path` from a read-only memory mapping of the file.
    public static func read(path: String) throws -> Onnx_ModelProto {
        let file = try MappedFile(path: path)
        guard file.byteCount > 0 else {
            throw QuantKitError("QK1002", "'\(path)' is empty", fix: "pass an .onnx model file; the file may have been truncated while copying")
        }
        if let kind = foreignFormat(file.bytes) {
            throw QuantKitError(
                "QK1003", "'\(path)' is \(kind), not an ONNX model",
                fix: "export the network to ONNX first (e.g. torch.onnx.export) and pass the .onnx file")
        }
        let data = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: file.base!), count: file.byteCount, deallocator: .none)
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 1000
        let model: Onnx_ModelProto
        do {
            model = try withExtendedLifetime(file) { try Onnx_ModelProto(serializedBytes: data, options: options) }
        } catch {
            throw QuantKitError(
                "QK1004", "'\(path)' is not a readable ONNX protobuf (\(describe(error)))",
                fix: "the file is truncated or corrupt; copy or export it again")
        }
        try validateHeader(model, path: path)
        return model
    }

    /// Decodes a serialized TensorProto (`.pb` files of the ONNX test data sets).
    public static func readTensor(path: String) throws -> Onnx_TensorProto {
        let file = try MappedFile(path: path)
        guard file.byteCount > 0 else {
            throw QuantKitError("QK1002", "'\(path)' is empty", fix: "pass a serialized onnx.TensorProto")
        }
        let data = Data(bytes: file.base!, count: file.byteCount)
        do {
            return try Onnx_TensorProto(serializedBytes: data)
        } catch {
            throw QuantKitError(
                "QK1004", "'\(path)' is not a readable onnx.TensorProto (\(describe(error)))",
                fix: "write it with onnx.numpy_helper.from_array(...).SerializeToString()")
        }
    }

    /// Encodes `model` to `path` atomically (temporary file + rename). Throws QK1005 when the
    /// message would exceed protobuf's 2 GiB limit: save with external data instead.
    public static func write(_ model: Onnx_ModelProto, to path: String, batch: AtomicBatch? = nil) throws {
        let data: Data
        do {
            data = try model.serializedBytes()
        } catch {
            throw QuantKitError("QK1005", "cannot encode the model for '\(path)': \(describe(error))",
                                fix: "save with external data (tensors over 2 GiB in total must live in side files)")
        }
        guard data.count <= protobufLimit else {
            throw QuantKitError("QK1005", "the model for '\(path)' is \(data.count) bytes, over protobuf's 2 GiB limit",
                                fix: "save with external data")
        }
        try AtomicFile.write(data, to: path, batch: batch)
    }

    static func validateHeader(_ model: Onnx_ModelProto, path: String) throws {
        guard model.hasIrVersion, model.irVersion > 0 else {
            throw QuantKitError(
                "QK1006", "'\(path)' decodes as protobuf but has no ir_version, so it is not an ONNX model",
                fix: "pass an .onnx model file; the file may be corrupt")
        }
        guard model.hasGraph else {
            throw QuantKitError("QK1006", "'\(path)' has no graph", fix: "the file is truncated or not a model; export it again")
        }
        if model.irVersion >= 3 && model.opsetImport.isEmpty {
            throw QuantKitError(
                "QK1006", "'\(path)' declares IR version \(model.irVersion) but no opset imports (truncated?)",
                fix: "export the model again; the file may have been cut short")
        }
    }

    /// Recognises formats users pass by mistake, by their first bytes.
    static func foreignFormat(_ bytes: UnsafeRawBufferPointer) -> String? {
        func starts(_ magic: [UInt8]) -> Bool { bytes.count >= magic.count && zip(bytes, magic).allSatisfy { $0 == $1 } }
        if starts([0x50, 0x4B, 0x03, 0x04]) { return "a ZIP archive (a PyTorch checkpoint or .npz?)" }
        if starts([0x89, 0x50, 0x4E, 0x47]) { return "a PNG image" }
        if starts([0xFF, 0xD8, 0xFF]) { return "a JPEG image" }
        if starts([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) { return "a NumPy .npy file" }
        if starts([0x1F, 0x8B]) { return "a gzip archive" }
        if starts([0x80]) && bytes.count > 1 && bytes[1] <= 5 { return "a Python pickle" }
        if starts(Array("TFL3".utf8)) || (bytes.count > 8 && Array(bytes[4..<8]) == Array("TFL3".utf8)) { return "a TensorFlow Lite model" }
        if starts(Array("<?xml".utf8)) { return "an XML file (OpenVINO IR?)" }
        if starts(Array("{".utf8)) || starts(Array("[".utf8)) { return "a JSON/text file" }
        return nil
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? BinaryDecodingError {
            switch e {
            case .truncated: return "data ends in the middle of a field"
            case .malformedProtobuf: return "malformed protobuf"
            case .messageDepthLimit: return "nesting too deep"
            case .invalidUTF8: return "a text field holds invalid UTF-8"
            default: return "\(e)"
            }
        }
        return "\(error)"
    }
}
