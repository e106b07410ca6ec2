import QuantCore

/// Shape arithmetic shared by kernels.
public enum Shapes {
    /// Row-major strides in elements.
    @inlinable
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    /// Multidirectional (numpy) broadcast of shapes, or nil when they are incompatible.
    public static func broadcast(_ shapes: [[Int]]) -> [Int]? {
        let rank = shapes.map(\.count).max() ?? 0
        var out = [Int](repeating: 1, count: rank)
        for s in shapes {
            let off = rank - s.count
            for (i, d) in s.enumerated() {
                let o = out[off + i]
                if o == d || d == 1 { continue }
                if o == 1 { out[off + i] = d } else { return nil }
            }
        }
        // Shapes whose element count is not even an Int do not broadcast.
        return Tensor.checkedByteCount(.uint8, out) == nil ? nil : out
    }

    /// Strides of `shape` viewed as `target` (same rank after left-padding with 1s), 0 where
    /// a dimension is broadcast.
    public static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let padded = [Int](repeating: 1, count: target.count - shape.count) + shape
        let s = strides(padded)
        return zip(padded, s).map { $0.0 == 1 ? 0 : $0.1 }
    }

    /// Normalizes a possibly negative axis into `0..<rank`, or nil when out of range.
    @inlinable
    public static func axis(_ a: Int, rank: Int) -> Int? {
        let v = a < 0 ? a + rank : a
        return v >= 0 && v < max(rank, 1) ? v : nil
    }
}

extension Tensor {
    /// A new float32 tensor whose elements `body` writes (every element must be written).
    @inlinable
    public static func makeFloat(_ shape: [Int], _ body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows -> Tensor {
        let t = Tensor(dtype: .float, shape: shape, storage: TensorStorage(uninitialized: Tensor.elementCount(shape) * 4))
        try t.withUnsafeMutableBufferPointer(as: Float.self, body)
        return t
    }

    /// The same bytes with another shape (no copy). The element count must match.
    public func reshaped(_ shape: [Int]) -> Tensor {
        precondition(Tensor.elementCount(shape) == count)
        return Tensor(dtype: dtype, shape: shape, storage: storage)
    }

    /// Scalar or 1-D integer tensor as [Int] (int64/int32/other integer types).
    public func intValues() -> [Int] { int64s().map { Int($0) } }
}
