import Foundation
import QuantCore

/// Element types the executor computes with, and how to convert between them (C-cast semantics:
/// floats truncate toward zero into integers, integers wrap into narrower integers; NaN and
/// out-of-range floats saturate instead of trapping).
protocol ExecScalar: FixedWidthScalar, Comparable, Numeric {
    static func fromDouble(_ d: Double) -> Self
    var asDouble: Double { get }
    /// `-self`, wrapping for integers (never traps).
    var wrappingNegation: Self { get }
    /// `self + o` / `self * o`, wrapping for integers.
    func wrappingAdd(_ o: Self) -> Self
    func wrappingMul(_ o: Self) -> Self
}

/// The integer element types (two's complement, wrapping arithmetic).
protocol ExecInteger: ExecScalar, FixedWidthInteger {}

extension Float: ExecScalar {
    @inline(__always) static func fromDouble(_ d: Double) -> Float { Float(d) }
    @inline(__always) var asDouble: Double { Double(self) }
    @inline(__always) var wrappingNegation: Float { -self }
    @inline(__always) func wrappingAdd(_ o: Float) -> Float { self + o }
    @inline(__always) func wrappingMul(_ o: Float) -> Float { self * o }
}

extension ExecInteger {
    @inline(__always) static func fromDouble(_ d: Double) -> Self {
        if d.isNaN { return 0 }
        if d <= Double(Self.min) { return Self.min }
        if d >= Double(Self.max) { return Self.max }
        return Self(d)
    }
    @inline(__always) var asDouble: Double { Double(self) }
    @inline(__always) var wrappingNegation: Self { 0 &- self }
    @inline(__always) func wrappingAdd(_ o: Self) -> Self { self &+ o }
    @inline(__always) func wrappingMul(_ o: Self) -> Self { self &* o }
}

extension Int8: ExecInteger {}
extension UInt8: ExecInteger {}
extension Int16: ExecInteger {}
extension UInt16: ExecInteger {}
extension Int32: ExecInteger {}
extension UInt32: ExecInteger {}
extension Int64: ExecInteger {}
extension UInt64: ExecInteger {}

/// Calls `visit` with the Swift type of an integer dtype (Swift has no generic closures).
protocol IntegerVisitor {
    associatedtype Result
    func visit<T: ExecInteger>(_ type: T.Type) throws -> Result
}

extension IntegerVisitor {
    /// nil when `dtype` is not an integer type the executor computes with.
    func callAsFunction(_ dtype: DType) throws -> Result? {
        switch dtype {
        case .int8: try visit(Int8.self)
        case .uint8: try visit(UInt8.self)
        case .int16: try visit(Int16.self)
        case .uint16: try visit(UInt16.self)
        case .int32: try visit(Int32.self)
        case .uint32: try visit(UInt32.self)
        case .int64: try visit(Int64.self)
        case .uint64: try visit(UInt64.self)
        default: nil
        }
    }
}

/// Calls `visit` with the Swift type of a numeric dtype: float (the compute type of every
/// floating tensor) and the integer types.
protocol ScalarVisitor {
    associatedtype Result
    func visit<T: ExecScalar>(_ type: T.Type) throws -> Result
}

extension ScalarVisitor {
    func callAsFunction(_ dtype: DType) throws -> Result? {
        switch dtype {
        case .float: try visit(Float.self)
        case .int8: try visit(Int8.self)
        case .uint8: try visit(UInt8.self)
        case .int16: try visit(Int16.self)
        case .uint16: try visit(UInt16.self)
        case .int32: try visit(Int32.self)
        case .uint32: try visit(UInt32.self)
        case .int64: try visit(Int64.self)
        case .uint64: try visit(UInt64.self)
        default: nil
        }
    }
}

/// Multidirectional (numpy) broadcasting of n-ary element-wise operators.
///
/// The operand shapes are padded to the output rank, size-1 output dimensions dropped, and
/// adjacent dimensions merged whenever every operand walks them contiguously (or broadcasts
/// both). What remains is an outer loop over rows and one inner row in which each operand
/// either advances by one element or repeats one element; common patterns (same shape, tensor
/// op scalar, per-channel `[1,C,1,1]` against `[N,C,H,W]`, last-dimension broadcast) therefore
/// reduce to one or a few long contiguous rows.
struct BroadcastLayout {
    let shape: [Int]
    let count: Int
    /// Length of one inner row.
    let inner: Int
    /// Per operand: 1 when it advances within a row, 0 when it repeats.
    let steps: [Int]
    /// Outer dimensions (merged) and per-operand strides over them.
    let outerShape: [Int]
    let outerStrides: [[Int]]
    var rows: Int { inner == 0 ? 0 : count / inner }

    /// Elements a broadcast result may have (8 GiB of float32): two small operands such as
    /// [100000, 1] and [1, 100000] must not allocate beyond memory.
    static let maxCount = 1 << 31

    init?(_ shapes: [[Int]]) {
        guard let out = Shapes.broadcast(shapes), Tensor.elementCount(out) <= BroadcastLayout.maxCount else { return nil }
        shape = out
        count = Tensor.elementCount(out)
        var dims: [Int] = []
        var strides: [[Int]] = Array(repeating: [], count: shapes.count)
        let full = shapes.map { Shapes.broadcastStrides($0, to: out) }
        for d in 0..<out.count where out[d] != 1 {
            if !dims.isEmpty, (0..<shapes.count).allSatisfy({ strides[$0].last! == full[$0][d] * out[d] }) {
                dims[dims.count - 1] *= out[d]
                for k in 0..<shapes.count { strides[k][strides[k].count - 1] = full[k][d] }
            } else {
                dims.append(out[d])
                for k in 0..<shapes.count { strides[k].append(full[k][d]) }
            }
        }
        if dims.isEmpty {
            inner = count == 0 ? 0 : 1
            steps = Array(repeating: 0, count: shapes.count)
            outerShape = []
            outerStrides = Array(repeating: [], count: shapes.count)
        } else {
            inner = dims.removeLast()
            steps = strides.map { $0.last! }
            outerShape = dims
            outerStrides = strides.map { Array($0.dropLast()) }
        }
    }

    /// Runs `body(offsets, outOffset, n)` for every inner row, in parallel chunks of rows;
    /// `offsets[k]` is operand k's element offset at the row start.
    func forEachRow(threads: Int, _ body: (UnsafePointer<Int>, Int, Int) -> Void) {
        let rows = self.rows
        guard rows > 0 else { return }
        let k = outerStrides.count
        let rank = outerShape.count
        let grain = max(1, 32768 / max(inner, 1))
        parallelFor(rows, threads: threads, grain: grain) { range in
            let idx = UnsafeMutablePointer<Int>.allocate(capacity: max(rank, 1))
            let off = UnsafeMutablePointer<Int>.allocate(capacity: max(k, 1))
            defer { idx.deallocate(); off.deallocate() }
            // Decompose the first row index.
            var r = range.lowerBound
            for d in stride(from: rank - 1, through: 0, by: -1) {
                idx[d] = r % outerShape[d]
                r /= outerShape[d]
            }
            for j in 0..<k {
                var o = 0
                for d in 0..<rank { o += idx[d] * outerStrides[j][d] }
                off[j] = o
            }
            for row in range {
                body(off, row * inner, inner)
                // Advance the counter.
                var d = rank - 1
                while d >= 0 {
                    idx[d] += 1
                    for j in 0..<k { off[j] += outerStrides[j][d] }
                    if idx[d] < outerShape[d] { break }
                    for j in 0..<k { off[j] -= outerStrides[j][d] * outerShape[d] }
                    idx[d] = 0
                    d -= 1
                }
            }
        }
    }
}

enum Broadcast {
    /// `out[i] = f(a[i], b[i])` with broadcasting; nil when the shapes do not broadcast.
    @inline(__always)
    static func map<A, B, O>(_ a: Tensor, _ b: Tensor, _: A.Type, _: B.Type, out dtype: DType, threads: Int,
                             _ f: (A, B) -> O) -> Tensor? {
        precondition(MemoryLayout<A>.stride * 8 == a.dtype.bitWidth && MemoryLayout<B>.stride * 8 == b.dtype.bitWidth
            && MemoryLayout<O>.stride * 8 == dtype.bitWidth, "element types do not match the tensors")
        guard let layout = BroadcastLayout([a.shape, b.shape]) else { return nil }
        let y = Tensor(dtype: dtype, shape: layout.shape, storage: TensorStorage(uninitialized: dtype.byteCount(elements: layout.count)))
        let pa = a.storage.pointer.assumingMemoryBound(to: A.self)
        let pb = b.storage.pointer.assumingMemoryBound(to: B.self)
        let po = y.storage.pointer.assumingMemoryBound(to: O.self)
        let sa = layout.steps[0], sb = layout.steps[1]
        layout.forEachRow(threads: threads) { off, o, n in
            let x = pa + off[0], z = pb + off[1], w = po + o
            if sa == 1 && sb == 1 {
                for i in 0..<n { w[i] = f(x[i], z[i]) }
            } else if sa == 1 {
                let v = z[0]
                for i in 0..<n { w[i] = f(x[i], v) }
            } else if sb == 1 {
                let u = x[0]
                for i in 0..<n { w[i] = f(u, z[i]) }
            } else {
                let v = f(x[0], z[0])
                for i in 0..<n { w[i] = v }
            }
        }
        return y
    }

    /// `out[i] = f(x[i])`, parallel over chunks.
    @inline(__always)
    static func unary<A, O>(_ x: Tensor, _: A.Type, out dtype: DType, threads: Int, _ f: (A) -> O) -> Tensor {
        precondition(MemoryLayout<A>.stride * 8 == x.dtype.bitWidth && MemoryLayout<O>.stride * 8 == dtype.bitWidth,
                     "element types do not match the tensors")
        let y = Tensor(dtype: dtype, shape: x.shape, storage: TensorStorage(uninitialized: dtype.byteCount(elements: x.count)))
        let px = x.storage.pointer.assumingMemoryBound(to: A.self)
        let po = y.storage.pointer.assumingMemoryBound(to: O.self)
        parallelFor(x.count, threads: threads, grain: 1 << 15) { r in
            let a = px + r.lowerBound, o = po + r.lowerBound
            for i in 0..<r.count { o[i] = f(a[i]) }
        }
        return y
    }

    /// `Where`-style selection for any element size: `out = cond ? x : y`, broadcast.
    static func select(_ cond: Tensor, _ x: Tensor, _ y: Tensor, threads: Int) -> Tensor? {
        guard let layout = BroadcastLayout([cond.shape, x.shape, y.shape]) else { return nil }
        switch x.dtype.bitWidth {
        case 8: return select(layout, cond, x, y, UInt8.self, threads)
        case 16: return select(layout, cond, x, y, UInt16.self, threads)
        case 32: return select(layout, cond, x, y, UInt32.self, threads)
        default: return select(layout, cond, x, y, UInt64.self, threads)
        }
    }

    static func select<T>(_ layout: BroadcastLayout, _ cond: Tensor, _ x: Tensor, _ y: Tensor, _: T.Type, _ threads: Int) -> Tensor {
        let out = Tensor(dtype: x.dtype, shape: layout.shape, storage: TensorStorage(uninitialized: x.dtype.byteCount(elements: layout.count)))
        let pc = cond.storage.pointer.assumingMemoryBound(to: UInt8.self)
        let px = x.storage.pointer.assumingMemoryBound(to: T.self)
        let py = y.storage.pointer.assumingMemoryBound(to: T.self)
        let po = out.storage.pointer.assumingMemoryBound(to: T.self)
        let s0 = layout.steps[0], s1 = layout.steps[1], s2 = layout.steps[2]
        layout.forEachRow(threads: threads) { off, o, n in
            let c = pc + off[0], a = px + off[1], b = py + off[2], w = po + o
            for i in 0..<n { w[i] = c[i * s0] != 0 ? a[i * s1] : b[i * s2] }
        }
        return out
    }
}
