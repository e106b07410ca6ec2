import Foundation
import QuantCore

/// Reads and writes NumPy `.npy` files (format versions 1.0, 2.0 and 3.0, as specified in
/// numpy/lib/format.py): magic `\x93NUMPY`, version, little-endian header length (2 bytes in
/// 1.0, 4 bytes later), then a Python dict literal with `descr`, `fortran_order` and `shape`,
/// padded with spaces and a newline, then the raw array bytes.
public enum Npy {
    /// The parsed header of an .npy file.
    public struct Header: Equatable, Sendable {
        public var dtype: DType
        /// True when the data is big-endian ('>').
        public var bigEndian: Bool
        public var fortranOrder: Bool
        public var shape: [Int]
        /// Offset of the first data byte.
        public var dataOffset: Int
    }

    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// Parses the header at the start of `bytes`. Errors are plain strings for the caller to wrap.
    public static func parseHeader(_ bytes: UnsafeRawBufferPointer) throws -> Header {
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw NpyProblem("not an .npy file (no \\x93NUMPY magic)") }
        let major = bytes[6]
        let lenSize = major == 1 ? 2 : 4
        guard [1, 2, 3].contains(major), bytes.count >= 8 + lenSize else { throw NpyProblem("unsupported .npy version \(major)") }
        var len = 0
        for i in 0..<lenSize { len |= Int(bytes[8 + i]) << (8 * i) }
        let start = 8 + lenSize
        guard bytes.count >= start + len else { throw NpyProblem("header is cut short") }
        let text = String(decoding: bytes[start..<(start + len)], as: UTF8.self)
        guard let descr = stringValue(text, key: "descr") else { throw NpyProblem("header has no 'descr'") }
        guard let (dtype, big) = parseDescr(descr) else {
            throw NpyProblem("unsupported dtype '\(descr)'\(descr.contains("V") ? " (numpy writes bfloat16 and other custom types as raw void bytes; save as float32)" : "")")
        }
        guard let fortran = boolValue(text, key: "fortran_order") else { throw NpyProblem("header has no 'fortran_order'") }
        guard let shape = tupleValue(text, key: "shape") else { throw NpyProblem("header has no valid 'shape'") }
        return Header(dtype: dtype, bigEndian: big, fortranOrder: fortran, shape: shape, dataOffset: start + len)
    }

    /// Maps a numpy type string (`<f4`, `|u1`, `<f2`, `|b1`, `<i8`, ...) to a DType and endianness.
    public static func parseDescr(_ d: String) -> (DType, Bool)? {
        let chars = Array(d)
        guard chars.count >= 3, "<>|=".contains(chars[0]), let size = Int(String(chars[2...])) else { return nil }
        let big = chars[0] == ">"
        let table: [String: DType] = [
            "f2": .float16, "f4": .float, "f8": .double, "i1": .int8, "i2": .int16, "i4": .int32, "i8": .int64,
            "u1": .uint8, "u2": .uint16, "u4": .uint32, "u8": .uint64, "b1": .bool,
        ]
        guard let t = table["\(chars[1])\(size)"] else { return nil }
        return (t, big)
    }

    /// The numpy type string for a DType (little-endian).
    public static func descr(_ t: DType) -> String? {
        switch t {
        case .float16: "<f2"
        case .float: "<f4"
        case .double: "<f8"
        case .int8: "|i1"
        case .int16: "<i2"
        case .int32: "<i4"
        case .int64: "<i8"
        case .uint8: "|u1"
        case .uint16: "<u2"
        case .uint32: "<u4"
        case .uint64: "<u8"
        case .bool: "|b1"
        default: nil
        }
    }

    /// Decodes a whole .npy file held in `bytes` into a C-order, little-endian tensor.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Tensor {
        let h = try parseHeader(bytes)
        // The file must hold every byte its header declares, so memory stays bounded by the
        // file's size; a shape whose size is not even an Int is refused first.
        guard let need = Tensor.checkedByteCount(h.dtype, h.shape) else {
            throw NpyProblem("header shape \(h.shape) is negative or too large to exist")
        }
        let count = Tensor.elementCount(h.shape)
        guard bytes.count - h.dataOffset >= need else {
            throw NpyProblem("data has \(bytes.count - h.dataOffset) bytes but \(h.shape) of \(h.dtype) needs \(need)")
        }
        let t = Tensor(dtype: h.dtype, shape: h.shape)
        let src = bytes.baseAddress! + h.dataOffset
        let es = h.dtype.bitWidth / 8
        if h.fortranOrder && h.shape.count > 1 {
            fortranToC(src: src, dst: t.storage.pointer, shape: h.shape, elementSize: es)
        } else if need > 0 {
            t.storage.pointer.copyMemory(from: src, byteCount: need)
        }
        if h.bigEndian && es > 1 {
            let p = UnsafeMutableBufferPointer(start: t.storage.pointer.assumingMemoryBound(to: UInt8.self), count: need)
            for i in 0..<count {
                var a = i * es, b = a + es - 1
                while a < b { p.swapAt(a, b); a += 1; b -= 1 }
            }
        }
        return t
    }

    /// Reads the .npy file at `path`.
    /// Reads the .npy file at `path` (fed to `input`, named in errors). Every problem is QK2108
    /// naming the file (a bfloat16 array, which numpy stores as raw void bytes, included).
    public static func read(path: String, input: String = "-") throws -> Tensor {
        do {
            let file = try MappedFile(path: path)
            return try decode(file.bytes)
        } catch let e as QuantKitError {
            throw DataError.unreadable(input: input, file: path, reason: e.message)
        } catch {
            throw DataError.unreadable(input: input, file: path, reason: "\(error)")
        }
    }

    /// The .npy encoding (version 1.0, C order, little-endian) of `t`.
    public static func encode(_ t: Tensor) -> Data? {
        guard let d = descr(t.dtype) else { return nil }
        let shape = t.shape.count == 1 ? "(\(t.shape[0]),)" : "(" + t.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(d)', 'fortran_order': False, 'shape': \(shape), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var out = Data(magic + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        out.append(Data(header.utf8))
        out.append(Data(t.bytes))
        return out
    }

    static func fortranToC(src: UnsafeRawPointer, dst: UnsafeMutableRawPointer, shape: [Int], elementSize es: Int) {
        let n = shape.count
        var fStride = [Int](repeating: 1, count: n)
        for k in 1..<n { fStride[k] = fStride[k - 1] * shape[k - 1] }
        let count = shape.reduce(1, *)
        var index = [Int](repeating: 0, count: n)
        var offset = 0
        for i in 0..<count {
            (dst + i * es).copyMemory(from: src + offset * es, byteCount: es)
            var k = n - 1
            while k >= 0 {
                index[k] += 1
                offset += fStride[k]
                if index[k] < shape[k] { break }
                offset -= fStride[k] * shape[k]
                index[k] = 0
                k -= 1
            }
        }
    }

    static func valueText(_ text: String, key: String) -> Substring? {
        guard let r = text.range(of: "'\(key)'") ?? text.range(of: "\"\(key)\"") else { return nil }
        var rest = text[r.upperBound...].drop(while: { $0 == " " })
        guard rest.first == ":" else { return nil }
        rest = rest.dropFirst().drop(while: { $0 == " " })
        return rest
    }

    static func stringValue(_ text: String, key: String) -> String? {
        guard let v = valueText(text, key: key), let q = v.first, q == "'" || q == "\"" else { return nil }
        let body = v.dropFirst()
        guard let end = body.firstIndex(of: q) else { return nil }
        return String(body[..<end])
    }

    static func boolValue(_ text: String, key: String) -> Bool? {
        guard let v = valueText(text, key: key) else { return nil }
        if v.hasPrefix("True") { return true }
        if v.hasPrefix("False") { return false }
        return nil
    }

    static func tupleValue(_ text: String, key: String) -> [Int]? {
        guard let v = valueText(text, key: key), v.first == "(", let end = v.firstIndex(of: ")") else { return nil }
        let parts = v[v.index(after: v.startIndex)..<end].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        var dims: [Int] = []
        for p in parts where !p.isEmpty {
            guard let d = Int(p.hasSuffix("L") ? String(p.dropLast()) : p), d >= 0 else { return nil }
            dims.append(d)
        }
        return dims
    }
}

/// A problem inside an .npy file; the reader wraps it into QK2108 with the file and input.
public struct NpyProblem: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
