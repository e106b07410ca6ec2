import CKernels
import Foundation

/// Bytes of a tensor: either owned, 64-byte aligned heap memory, or a read-only window into a
/// memory-mapped file (external data), kept alive by this object.
public final class TensorStorage: @unchecked Sendable {
    public let byteCount: Int
    /// Start of the bytes; 64-byte aligned when owned, element-aligned when mapped.
    public let pointer: UnsafeMutableRawPointer
    public let isMapped: Bool
    /// Owned memory from `qk_block_alloc` (else from malloc).
    private let isBlock: Bool
    private let owner: AnyObject?
    /// Elements of a `string` tensor (ONNX `string_data`); empty for every other type.
    public let strings: [Data]

    /// Allocates `byteCount` zero-initialised bytes.
    public convenience init(zeroed byteCount: Int) {
        self.init(uninitialized: byteCount)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
    }

    /// Allocates `byteCount` bytes without initialising them; the caller must write every byte.
    public init(uninitialized byteCount: Int) {
        self.byteCount = byteCount
        isBlock = byteCount >= TensorStorage.blockThreshold
        if isBlock {
            guard let p = qk_block_alloc(byteCount) else { fatalError("out of memory: cannot map \(byteCount) bytes for a tensor") }
            pointer = p
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        }
        isMapped = false
        owner = nil
        strings = []
    }

    /// Blocks from this size up come from `qk_block_alloc` (page-aligned, per-thread heaps
    /// reused by best fit, apart from the malloc heap) instead of malloc; see CKernels.h for
    /// why.
    static let blockThreshold = 256 << 10

    /// Gives the memory of freed large tensors back to the system. Freed tensor memory is
    /// otherwise kept for the next allocation (so repeated runs do not fault it in again);
    /// call this after a pass over many batches, before work of another shape.
    public static func releaseFreedMemory() { qk_block_release() }

    /// Copies `bytes` into owned storage.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(uninitialized: bytes.count)
        if let base = bytes.baseAddress, bytes.count > 0 { pointer.copyMemory(from: base, byteCount: bytes.count) }
    }

    /// Uses `count` bytes at `offset` in `file` without copying when they are aligned for
    /// `alignment`; otherwise copies them (mapped regions may start at any byte).
    public static func mapped(_ file: MappedFile, offset: Int, count: Int, alignment: Int) -> TensorStorage {
        let start = file.base.map { $0 + offset }
        if let start, Int(bitPattern: start) % max(alignment, 1) == 0 {
            return TensorStorage(mapped: UnsafeMutableRawPointer(mutating: start), count: count, owner: file)
        }
        return TensorStorage(copying: UnsafeRawBufferPointer(start: start, count: count))
    }

    private init(mapped pointer: UnsafeMutableRawPointer, count: Int, owner: AnyObject) {
        self.pointer = pointer
        byteCount = count
        isMapped = true
        isBlock = false
        self.owner = owner
        strings = []
    }

    /// Storage for a `string` tensor.
    public init(strings: [Data]) {
        byteCount = 0
        pointer = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64)
        isMapped = false
        isBlock = false
        owner = nil
        self.strings = strings
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: byteCount) }

    /// For mapped storage: lets the kernel drop the pages read so far (they are read again from
    /// the file if the bytes are used later), so that a pass over many mapped tensors, one at a
    /// time, holds one tensor's pages at a time. Owned storage is left as it is.
    public func releaseMappedPages() {
        guard isMapped, byteCount > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        // Only whole pages inside this tensor's bytes (a neighbour may share the edge pages).
        let start = (Int(bitPattern: pointer) + page - 1) / page * page
        let end = (Int(bitPattern: pointer) + byteCount) / page * page
        guard end > start, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(p, end - start, MADV_DONTNEED)
    }

    deinit {
        if isMapped { return }
        if isBlock { qk_block_free(pointer, byteCount) } else { pointer.deallocate() }
    }
}

/// An n-dimensional array of one element type, row-major (C order), with shared storage.
///
/// `Tensor` is a cheap value: copies share `storage`. Code that mutates bytes in place must
/// own the storage (create it with `Tensor(dtype:shape:)`); mapped storage is read-only.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let dtype: DType
    public var shape: [Int]
    public let storage: TensorStorage

    /// A zero-filled tensor.
    public init(dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
        storage = TensorStorage(zeroed: dtype.byteCount(elements: Tensor.elementCount(shape)))
    }

    public init(dtype: DType, shape: [Int], storage: TensorStorage) {
        precondition(
            dtype == .string || storage.byteCount >= dtype.byteCount(elements: Tensor.elementCount(shape)),
            "tensor storage smaller than its shape")
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
    }

    /// A tensor whose bytes are a copy of `bytes` (little-endian, packed as in ONNX raw_data).
    public init(dtype: DType, shape: [Int], copying bytes: UnsafeRawBufferPointer) throws {
        let need = dtype.byteCount(elements: Tensor.elementCount(shape))
        guard bytes.count == need else {
            throw QuantKitError(
                "QK1103", "tensor of \(dtype) \(shape) needs \(need) bytes but has \(bytes.count)",
                fix: "the data is inconsistent with its declared shape; re-export the tensor")
        }
        self.init(dtype: dtype, shape: shape, storage: TensorStorage(copying: bytes))
    }

    /// A float32 tensor holding `values`.
    public init(shape: [Int], floats values: [Float]) {
        precondition(values.count == Tensor.elementCount(shape))
        self.init(dtype: .float, shape: shape)
        values.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// A tensor of a fixed-width scalar type holding `values`.
    public init<T: FixedWidthScalar>(shape: [Int], values: [T]) {
        precondition(values.count == Tensor.elementCount(shape))
        self.init(dtype: T.dtype, shape: shape)
        values.withUnsafeBytes { if $0.count > 0 { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    }

    public static func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// Bytes a tensor of `dtype` and `shape` needs, or nil when a dimension is negative or the
    /// count overflows `Int` (shapes from files and model declarations are checked with this
    /// before anything is allocated).
    public static func checkedByteCount(_ dtype: DType, _ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        let (bits, o) = n.multipliedReportingOverflow(by: dtype == .string ? 64 : dtype.bitWidth)
        return o ? nil : (bits + 7) / 8
    }

    public var count: Int { Tensor.elementCount(shape) }
    public var rank: Int { shape.count }
    public var byteCount: Int { dtype.byteCount(elements: count) }
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage.pointer, count: byteCount) }
    public var strings: [Data] { storage.strings }

    /// Read-only typed view. `T` must match `dtype` in size (checked).
    @inlinable
    public func withUnsafeBufferPointer<T, R>(as: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride * 8 == dtype.bitWidth, "typed view \(T.self) does not match \(dtype)")
        let p = storage.pointer.assumingMemoryBound(to: T.self)
        return try body(UnsafeBufferPointer(start: p, count: count))
    }

    /// Mutable typed view of owned storage.
    @inlinable
    public func withUnsafeMutableBufferPointer<T, R>(as: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride * 8 == dtype.bitWidth, "typed view \(T.self) does not match \(dtype)")
        precondition(!storage.isMapped, "mapped tensors are read-only")
        let p = storage.pointer.assumingMemoryBound(to: T.self)
        return try body(UnsafeMutableBufferPointer(start: p, count: count))
    }

    /// The elements converted to Double (for inspection, statistics and tests; not a hot path).
    public func doubles() -> [Double] {
        (0..<count).map { scalarAsDouble(at: $0) }
    }

    /// The elements converted to Float.
    public func floats() -> [Float] {
        if dtype == .float { return withUnsafeBufferPointer(as: Float.self) { Array($0) } }
        return (0..<count).map { Float(scalarAsDouble(at: $0)) }
    }

    /// The elements converted to Int64 (integers and bool; floats truncate toward zero).
    public func int64s() -> [Int64] {
        switch dtype {
        case .int64: return withUnsafeBufferPointer(as: Int64.self) { Array($0) }
        case .int32: return withUnsafeBufferPointer(as: Int32.self) { $0.map(Int64.init) }
        default: return (0..<count).map { Int64(scalarAsDouble(at: $0)) }
        }
    }

    /// Element `i` as Double, for every numeric type including packed and 8-bit float types.
    public func scalarAsDouble(at i: Int) -> Double {
        let p = storage.pointer
        switch dtype {
        case .float: return Double(p.load(fromByteOffset: i * 4, as: Float.self))
        case .double: return p.load(fromByteOffset: i * 8, as: Double.self)
        case .float16: return Double(HalfFloat.toFloat(p.load(fromByteOffset: i * 2, as: UInt16.self)))
        case .bfloat16: return Double(BFloat16.toFloat(p.load(fromByteOffset: i * 2, as: UInt16.self)))
        case .int8: return Double(p.load(fromByteOffset: i, as: Int8.self))
        case .uint8: return Double(p.load(fromByteOffset: i, as: UInt8.self))
        case .bool: return p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
        case .int16: return Double(p.load(fromByteOffset: i * 2, as: Int16.self))
        case .uint16: return Double(p.load(fromByteOffset: i * 2, as: UInt16.self))
        case .int32: return Double(p.load(fromByteOffset: i * 4, as: Int32.self))
        case .uint32: return Double(p.load(fromByteOffset: i * 4, as: UInt32.self))
        case .int64: return Double(p.load(fromByteOffset: i * 8, as: Int64.self))
        case .uint64: return Double(p.load(fromByteOffset: i * 8, as: UInt64.self))
        case .int4, .uint4:
            let byte = p.load(fromByteOffset: i / 2, as: UInt8.self)
            let nibble = i % 2 == 0 ? byte & 0x0F : byte >> 4
            if dtype == .uint4 { return Double(nibble) }
            return Double(nibble >= 8 ? Int(nibble) - 16 : Int(nibble))
        case .int2, .uint2:
            let byte = p.load(fromByteOffset: i / 4, as: UInt8.self)
            let v = (byte >> UInt8(2 * (i % 4))) & 0x3
            if dtype == .uint2 { return Double(v) }
            return Double(v >= 2 ? Int(v) - 4 : Int(v))
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0:
            return Double(Float8.toFloat(p.load(fromByteOffset: i, as: UInt8.self), dtype))
        case .float4e2m1:
            let byte = p.load(fromByteOffset: i / 2, as: UInt8.self)
            return Double(Float8.float4e2m1(i % 2 == 0 ? byte & 0x0F : byte >> 4))
        case .complex64: return Double(p.load(fromByteOffset: i * 8, as: Float.self))
        case .complex128: return p.load(fromByteOffset: i * 16, as: Double.self)
        case .string, .float6e2m3, .float6e3m2: return .nan
        }
    }

    public var description: String { "Tensor<\(dtype)>\(shape)" }

    /// True when dtype, shape and bytes (or strings) are equal.
    public func bitwiseEqual(_ other: Tensor) -> Bool {
        guard dtype == other.dtype, shape == other.shape else { return false }
        if dtype == .string { return strings == other.strings }
        return memcmp(storage.pointer, other.storage.pointer, byteCount) == 0
    }
}

extension Tensor {
    /// Items `from ..< from + count` along dimension 0 (a copy of the bytes).
    public func items(from: Int, count: Int) -> Tensor {
        let size = byteCount / Swift.max(shape[0], 1)
        let bytes = UnsafeRawBufferPointer(start: storage.pointer + from * size, count: count * size)
        return Tensor(dtype: dtype, shape: [count] + shape.dropFirst(), storage: TensorStorage(copying: bytes))
    }

    /// Tensors of one element type and trailing shape joined along dimension 0, or nil when the
    /// list is empty, they differ (in type, rank or trailing shape) or hold strings.
    public static func joined(_ parts: [Tensor]) -> Tensor? {
        guard let first = parts.first, first.rank >= 1, first.dtype != .string,
              parts.allSatisfy({ $0.dtype == first.dtype && $0.shape.dropFirst() == first.shape.dropFirst() }) else { return nil }
        if parts.count == 1 { return first }
        let storage = TensorStorage(uninitialized: parts.reduce(0) { $0 + $1.byteCount })
        var offset = 0
        for p in parts where p.byteCount > 0 {
            (storage.pointer + offset).copyMemory(from: p.storage.pointer, byteCount: p.byteCount)
            offset += p.byteCount
        }
        return Tensor(dtype: first.dtype, shape: [parts.reduce(0) { $0 + $1.shape[0] }] + first.shape.dropFirst(), storage: storage)
    }
}

/// Scalar Swift types that map one-to-one to an ONNX element type.
public protocol FixedWidthScalar { static var dtype: DType { get } }
extension Float: FixedWidthScalar { public static var dtype: DType { .float } }
extension Double: FixedWidthScalar { public static var dtype: DType { .double } }
extension Int8: FixedWidthScalar { public static var dtype: DType { .int8 } }
extension UInt8: FixedWidthScalar { public static var dtype: DType { .uint8 } }
extension Int16: FixedWidthScalar { public static var dtype: DType { .int16 } }
extension UInt16: FixedWidthScalar { public static var dtype: DType { .uint16 } }
extension Int32: FixedWidthScalar { public static var dtype: DType { .int32 } }
extension UInt32: FixedWidthScalar { public static var dtype: DType { .uint32 } }
extension Int64: FixedWidthScalar { public static var dtype: DType { .int64 } }
extension UInt64: FixedWidthScalar { public static var dtype: DType { .uint64 } }
extension Bool: FixedWidthScalar { public static var dtype: DType { .bool } }
