import Foundation
import QuantCore

/// Where the bytes of a tensor stored outside the model file live (`external_data` entries
/// `location`, `offset`, `length` of a TensorProto, relative to the model's folder).
public struct ExternalDataRef: Equatable, Sendable {
    public var location: String
    public var offset: Int
    public var length: Int?

    /// Reads the `external_data` entries of `tensor`; nil when the tensor is stored inline.
    public init?(_ tensor: Onnx_TensorProto) throws {
        guard tensor.dataLocation == .external else { return nil }
        var location: String?
        var offset = 0
        var length: Int?
        for entry in tensor.externalData {
            switch entry.key {
            case "location": location = entry.value
            case "offset":
                guard let v = Int(entry.value), v >= 0 else {
                    throw QuantKitError("QK1008", "tensor '\(tensor.name)' has external offset '\(entry.value)'", fix: "the offset must be a non-negative integer; re-save the model")
                }
                offset = v
            case "length":
                guard let v = Int(entry.value), v >= 0 else {
                    throw QuantKitError("QK1008", "tensor '\(tensor.name)' has external length '\(entry.value)'", fix: "the length must be a non-negative integer; re-save the model")
                }
                length = v
            default: break
            }
        }
        guard let location, !location.isEmpty else {
            throw QuantKitError("QK1008", "tensor '\(tensor.name)' is marked external but names no location", fix: "re-save the model with onnx.save(..., save_as_external_data=True)")
        }
        self.location = location
        self.offset = offset
        self.length = length
    }
}

/// Maps external data files on first use and hands out byte ranges, checking bounds.
public final class ExternalDataStore {
    public let baseDirectory: String
    private var files: [String: MappedFile] = [:]

    public init(baseDirectory: String) { self.baseDirectory = baseDirectory }

    /// `path` with every symbolic link, `.` and `..` resolved; nil when it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Paths of every external data file opened so far, in first-use order.
    public private(set) var openedFiles: [String] = []

    /// The mapped file and byte range of `ref` for a tensor that needs `expected` bytes.
    public func region(for ref: ExternalDataRef, tensor: String, expected: Int) throws -> (MappedFile, Int, Int) {
        if ref.location.hasPrefix("/") || ref.location.split(separator: "/").contains("..") {
            throw QuantKitError(
                "QK1008", "tensor '\(tensor)' points outside the model folder: '\(ref.location)'",
                fix: "external data must be a relative path inside the model's folder")
        }
        let path = baseDirectory + "/" + ref.location
        let file: MappedFile
        if let f = files[path] {
            file = f
        } else {
            // A location may itself be a symbolic link (or pass through one): what it resolves to
            // must still lie inside the model's folder (a link to /etc/passwd is refused).
            if let real = ExternalDataStore.realPath(path), let base = ExternalDataStore.realPath(baseDirectory),
               !real.hasPrefix(base.hasSuffix("/") ? base : base + "/") {
                throw QuantKitError(
                    "QK1008", "tensor '\(tensor)' points outside the model folder: '\(ref.location)' is a link to '\(real)'",
                    fix: "copy the data file into the model's folder instead of linking to it")
            }
            do {
                file = try MappedFile(path: path)
            } catch {
                throw QuantKitError(
                    "QK1007", "external data file '\(path)' for tensor '\(tensor)' cannot be opened",
                    fix: "keep the data file next to the model under the name the model records ('\(ref.location)')")
            }
            files[path] = file
            openedFiles.append(path)
        }
        let length = ref.length ?? expected
        guard length == expected else {
            throw QuantKitError(
                "QK1008", "tensor '\(tensor)' records \(length) external bytes but its shape needs \(expected)",
                fix: "the model and its data file do not belong together; re-save the model")
        }
        guard ref.offset <= file.byteCount, length <= file.byteCount - ref.offset else {
            throw QuantKitError(
                "QK1008", "tensor '\(tensor)' reads bytes \(ref.offset)..<\(ref.offset + length) of '\(path)', which has only \(file.byteCount)",
                fix: "the data file is truncated or from another model; copy it again")
        }
        return (file, ref.offset, length)
    }
}
