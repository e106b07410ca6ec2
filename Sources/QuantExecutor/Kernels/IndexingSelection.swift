import QuantCore
import QuantIR

/// TopK, ArgMax/ArgMin, CumSum, NonZero, Compress, NonMaxSuppression.
enum Selection {
    /// Splits `shape` around `axis` into (outer, n, inner).
    static func split(_ shape: [Int], _ a: Int) -> (Int, Int, Int) {
        (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
    }

    struct TopK: ScalarVisitor {
        let x: Tensor, k: Int, a: Int, largest: Bool, sorted: Bool
        func visit<T: ExecScalar>(_: T.Type) -> (Tensor, Tensor) {
            let (outer, n, inner) = split(x.shape, a)
            var shape = x.shape
            shape[a] = k
            let values = Tensor(dtype: x.dtype, shape: shape)
            let indices = Tensor(dtype: .int64, shape: shape)
            let src = x.storage.pointer.assumingMemoryBound(to: T.self)
            let pv = values.storage.pointer.assumingMemoryBound(to: T.self)
            let pi = indices.storage.pointer.assumingMemoryBound(to: Int64.self)
            var order = [Int](repeating: 0, count: n)
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * n * inner + i
                    for j in 0..<n { order[j] = j }
                    // Ties keep the lower index first (stable order).
                    order.sort { p, q in
                        let u = src[base + p * inner], v = src[base + q * inner]
                        if u == v { return p < q }
                        return largest ? u > v : u < v
                    }
                    for j in 0..<k {
                        let dst = o * k * inner + j * inner + i
                        pv[dst] = src[base + order[j] * inner]
                        pi[dst] = Int64(order[j])
                    }
                }
            }
            _ = sorted  // the selected elements are always returned in sorted order
            return (values, indices)
        }
    }

    /// `NonMaxSuppression(boxes[B, N, 4], scores[B, C, N], max_output_boxes_per_class?,
    /// iou_threshold?, score_threshold?) -> selected_indices[S, 3]` (batch, class, box). Per batch
    /// and class: the boxes scoring above score_threshold, best first (ties: lower index first),
    /// each kept unless its IoU with a box already kept is greater than iou_threshold, at most
    /// max_output_boxes_per_class (absent or 0: none). `center_point_box` 0: [y1, x1, y2, x2] of
    /// any diagonal; 1: [x_center, y_center, width, height]. A box of no area overlaps nothing.
    static func nonMaxSuppression(_ ctx: KernelContext) throws -> Kernel {
        let center = ctx.int("center_point_box", 0) != 0
        return ClosureKernel { inputs, _ in
            guard let boxes = inputs[0], let scores = inputs.count > 1 ? inputs[1] : nil else { throw ctx.invalid("boxes and scores are required") }
            guard boxes.rank == 3, boxes.shape[2] == 4, scores.rank == 3, scores.shape[0] == boxes.shape[0], scores.shape[2] == boxes.shape[1] else {
                throw ctx.invalid("boxes \(boxes.shape) and scores \(scores.shape) must be [B, N, 4] and [B, C, N]")
            }
            func scalar(_ i: Int) -> Double? { i < inputs.count ? inputs[i].flatMap { $0.count > 0 ? $0.scalarAsDouble(at: 0) : nil } : nil }
            let limit = max(0, Int(scalar(2) ?? 0)), iouLimit = scalar(3) ?? 0, scoreLimit = scalar(4)
            let (batches, classes, n) = (scores.shape[0], scores.shape[1], scores.shape[2])
            let b = boxes.doubles(), sc = scores.doubles()
            // Corners (lo y, lo x, hi y, hi x) and area per box.
            func corners(_ batch: Int, _ i: Int) -> (Double, Double, Double, Double) {
                let p = (batch * n + i) * 4
                if center {
                    let (xc, yc, w, h) = (b[p], b[p + 1], b[p + 2], b[p + 3])
                    return (yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2)
                }
                return (min(b[p], b[p + 2]), min(b[p + 1], b[p + 3]), max(b[p], b[p + 2]), max(b[p + 1], b[p + 3]))
            }
            var selected: [Int64] = []
            for batch in 0..<batches where limit > 0 {
                let box = (0..<n).map { corners(batch, $0) }
                let area = box.map { ($0.2 - $0.0) * ($0.3 - $0.1) }
                func overlaps(_ i: Int, _ j: Int) -> Bool {
                    guard area[i] > 0, area[j] > 0 else { return false }
                    let h = min(box[i].2, box[j].2) - max(box[i].0, box[j].0), w = min(box[i].3, box[j].3) - max(box[i].1, box[j].1)
                    guard h > 0, w > 0 else { return false }
                    let inter = h * w
                    return inter / (area[i] + area[j] - inter) > iouLimit
                }
                for c in 0..<classes {
                    let base = (batch * classes + c) * n
                    var order = (0..<n).filter { i in scoreLimit.map { sc[base + i] > $0 } ?? true }
                    order.sort { sc[base + $0] != sc[base + $1] ? sc[base + $0] > sc[base + $1] : $0 < $1 }
                    var kept: [Int] = []
                    for i in order where kept.count < limit && !kept.contains(where: { overlaps($0, i) }) {
                        kept.append(i)
                        selected += [Int64(batch), Int64(c), Int64(i)]
                    }
                }
            }
            return [Tensor(shape: [selected.count / 3, 3], values: selected)]
        }
    }

    /// `Unique(X)` (opset 11): the distinct elements of X flattened, or with `axis` its distinct
    /// slices along that axis, ascending (`sorted`, the default; slices compare element by
    /// element) or in order of first occurrence; also the index of each one's first occurrence,
    /// the index into the result of every element (slice) of X, and the counts.
    static func unique(_ ctx: KernelContext) throws -> Kernel {
        let sorted = ctx.int("sorted", 1) != 0, axisAttr = ctx.int("axis")
        let outputs = ctx.node.outputs.count
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.dtype != .string, x.dtype.bitWidth % 8 == 0 else { throw ctx.invalid("a numeric input is required") }
            let axis = try axisAttr.map { a -> Int in
                guard let v = Shapes.axis(a, rank: x.rank) else { throw ctx.invalid("axis \(a) does not fit rank \(x.rank)") }
                return v
            }
            let v = x.doubles(), size = x.dtype.bitWidth / 8
            // Slice i: the flat positions of its elements, in order.
            let (outer, n, inner) = axis.map { split(x.shape, $0) } ?? (1, x.count, 1)
            func positions(_ i: Int) -> [Int] { (0..<outer).flatMap { o in (0..<inner).map { o * n * inner + i * inner + $0 } } }
            var groups: [[Double]: Int] = [:], firsts: [Int] = [], keys: [[Double]] = [], counts: [Int] = [], of = [Int](repeating: 0, count: n)
            for i in 0..<n {
                let key = positions(i).map { v[$0] }
                if let g = groups[key] {
                    counts[g] += 1
                    of[i] = g
                } else {
                    groups[key] = firsts.count
                    of[i] = firsts.count
                    firsts.append(i)
                    keys.append(key)
                    counts.append(1)
                }
            }
            var order = Array(firsts.indices)
            if sorted { order.sort { keys[$0].lexicographicallyPrecedes(keys[$1]) } }
            var rank = [Int](repeating: 0, count: order.count)
            for (r, g) in order.enumerated() { rank[g] = r }
            var shape = axis == nil ? [order.count] : x.shape
            if let axis { shape[axis] = order.count }
            let y = Tensor(dtype: x.dtype, shape: shape)
            var dst = 0
            if axis == nil {
                for g in order { (y.storage.pointer + dst * size).copyMemory(from: x.storage.pointer + firsts[g] * size, byteCount: size); dst += 1 }
            } else {
                for o in 0..<outer {
                    for g in order {
                        let src = o * n * inner + firsts[g] * inner
                        (y.storage.pointer + dst * size).copyMemory(from: x.storage.pointer + src * size, byteCount: inner * size)
                        dst += inner
                    }
                }
            }
            let all = [y, Tensor(shape: [order.count], values: order.map { Int64(firsts[$0]) }),
                       Tensor(shape: [n], values: of.map { Int64(rank[$0]) }), Tensor(shape: [order.count], values: order.map { Int64(counts[$0]) })]
            return Array(all.prefix(max(outputs, 1)))
        }
    }

    /// `TopK(X, K)`: K is an attribute before opset 10 and an input from 10.
    static func topK(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", -1), largest = ctx.int("largest", 1) != 0, sorted = ctx.int("sorted", 1) != 0
        let attrK = ctx.opset < 10 ? ctx.int("k") : nil
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            guard let k = attrK ?? (inputs.count > 1 ? inputs[1].map { Int($0.scalarAsDouble(at: 0)) } : nil) else { throw ctx.invalid("K is required") }
            guard let a = Shapes.axis(axis, rank: x.rank), k >= 0, k <= x.shape[a] else { throw ctx.invalid("K \(k) or axis \(axis) does not fit \(x.shape)") }
            guard let (v, i) = try TopK(x: x, k: k, a: a, largest: largest, sorted: sorted)(x.dtype) else { throw ctx.unsupported("element type \(x.dtype)") }
            return [v, i]
        }
    }

    struct Arg: ScalarVisitor {
        let x: Tensor, a: Int, max: Bool, last: Bool, keepDims: Bool
        func visit<T: ExecScalar>(_: T.Type) -> Tensor {
            let (outer, n, inner) = split(x.shape, a)
            var shape = x.shape
            if keepDims { shape[a] = 1 } else { shape.remove(at: a) }
            let out = Tensor(dtype: .int64, shape: shape)
            let src = x.storage.pointer.assumingMemoryBound(to: T.self)
            let po = out.storage.pointer.assumingMemoryBound(to: Int64.self)
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * n * inner + i
                    var best = 0, bv = src[base]
                    for j in 1..<Swift.max(n, 1) {
                        let v = src[base + j * inner]
                        let better = max ? (last ? v >= bv : v > bv) : (last ? v <= bv : v < bv)
                        if better { best = j; bv = v }
                    }
                    po[o * inner + i] = Int64(best)
                }
            }
            return out
        }
    }

    static func arg(max: Bool) -> KernelFactory {
        { ctx in
            let axis = ctx.int("axis", 0), keepDims = ctx.int("keepdims", 1) != 0, last = ctx.int("select_last_index", 0) != 0
            return ClosureKernel { inputs, _ in
                guard let x = inputs[0], let a = Shapes.axis(axis, rank: x.rank), x.shape[a] > 0 else {
                    throw ctx.invalid("axis \(axis) does not fit the input")
                }
                guard let r = try Arg(x: x, a: a, max: max, last: last, keepDims: keepDims)(x.dtype) else { throw ctx.unsupported("element type \(x.dtype)") }
                return [r]
            }
        }
    }

    struct Cumulative: ScalarVisitor {
        let x: Tensor, a: Int, exclusive: Bool, reverse: Bool, product: Bool
        func visit<T: ExecScalar>(_: T.Type) -> Tensor {
            let (outer, n, inner) = split(x.shape, a)
            let out = Tensor(dtype: x.dtype, shape: x.shape)
            let src = x.storage.pointer.assumingMemoryBound(to: T.self)
            let po = out.storage.pointer.assumingMemoryBound(to: T.self)
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * n * inner + i
                    var acc = product ? T.fromDouble(1) : T.zero
                    for step in 0..<n {
                        let j = reverse ? n - 1 - step : step
                        let v = src[base + j * inner]
                        if exclusive { po[base + j * inner] = acc }
                        acc = product ? acc.wrappingMul(v) : acc.wrappingAdd(v)
                        if !exclusive { po[base + j * inner] = acc }
                    }
                }
            }
            return out
        }
    }

    /// `CumSum(x, axis)` / `CumProd(x, axis)` with `exclusive` and `reverse`.
    static func cumulative(product: Bool) -> KernelFactory { { try cumulative($0, product: product) } }

    static func cumulative(_ ctx: KernelContext, product: Bool) throws -> Kernel {
        let exclusive = ctx.int("exclusive", 0) != 0, reverse = ctx.int("reverse", 0) != 0
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let at = inputs[1], at.count == 1 else { throw ctx.invalid("input and a scalar axis are required") }
            guard let a = Shapes.axis(Int(at.scalarAsDouble(at: 0)), rank: x.rank) else { throw ctx.invalid("axis is out of range") }
            guard let r = try Cumulative(x: x, a: a, exclusive: exclusive, reverse: reverse, product: product)(x.dtype) else { throw ctx.unsupported("element type \(x.dtype)") }
            return [r]
        }
    }

    /// `NonZero(X)`: int64 [rank, count] coordinates of the non-zero elements, row-major.
    static func nonZero(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.dtype != .string else { throw ctx.invalid("input is missing") }
            let hits = (0..<x.count).filter { x.scalarAsDouble(at: $0) != 0 }
            let st = Shapes.strides(x.shape)
            var coords = [Int64](repeating: 0, count: x.rank * hits.count)
            for (n, flat) in hits.enumerated() {
                for d in 0..<x.rank { coords[d * hits.count + n] = Int64((flat / st[d]) % x.shape[d]) }
            }
            return [Tensor(shape: [x.rank, hits.count], values: coords)]
        }
    }

    /// `Compress(input, condition, axis?)`: slices where condition is true (flattened when no axis).
    static func compress(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis")
        return ClosureKernel { inputs, _ in
            guard var x = inputs[0], let c = inputs[1] else { throw ctx.invalid("two inputs are required") }
            try Movement.requireFixedWidth(x, ctx)
            if axis == nil { x = ShapeKernels.view(x, [x.count]) }
            guard let a = Shapes.axis(axis ?? 0, rank: x.rank) else { throw ctx.invalid("axis is out of range") }
            let (outer, n, inner) = split(x.shape, a)
            let keep = (0..<min(n, c.count)).filter { c.scalarAsDouble(at: $0) != 0 }
            var shape = x.shape
            shape[a] = keep.count
            let esize = x.dtype.bitWidth / 8
            let out = Tensor(dtype: x.dtype, shape: shape)
            var w = 0
            for o in 0..<outer {
                for j in keep {
                    (out.storage.pointer + w * inner * esize).copyMemory(from: x.storage.pointer + (o * n + j) * inner * esize, byteCount: inner * esize)
                    w += 1
                }
            }
            return [out]
        }
    }
}
