import QuantCore
import QuantIR

/// Shape-only and data-movement operators, casts, constants.
///
/// Shape-only operators (Reshape, Flatten, Squeeze, Unsqueeze, Identity) return views sharing
/// the input's storage; kernels never mutate their inputs, so sharing is safe.
enum ShapeKernels {
    static let all: [String: KernelFactory] = [
        "Identity": { _ in ClosureKernel { inputs, _ in [inputs[0]] } },
        "Constant": constant,
        "Cast": CastKernels.cast, "CastLike": CastKernels.castLike, "BitCast": CastKernels.bitCast,
        "Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
        "Shape": shape, "Size": size, "Dropout": dropout,
        "Transpose": Movement.transpose, "Expand": Movement.expand, "Tile": Movement.tile,
        "Concat": Movement.concat, "Split": Movement.split, "Slice": Movement.slice, "Pad": Movement.pad,
        "DepthToSpace": Movement.depthToSpace, "SpaceToDepth": Movement.spaceToDepth,
        "ConstantOfShape": Generate.constantOfShape, "Range": Generate.range, "EyeLike": Generate.eyeLike,
        "Trilu": Generate.trilu, "OneHot": Generate.oneHot,
        "HannWindow": Generate.window([0.5, -0.5]), "HammingWindow": Generate.window([25.0 / 46, -21.0 / 46]),
        "BlackmanWindow": Generate.window([0.42, -0.5, 0.08]),
        "MelWeightMatrix": Generate.melWeightMatrix, "CenterCropPad": Rearrange.centerCropPad, "Col2Im": Rearrange.col2Im, "ReverseSequence": Rearrange.reverseSequence,
    ]

    /// `Constant`: the value attribute (any of value, value_float(s), value_int(s)), computed once.
    static func constant(_ ctx: KernelContext) throws -> Kernel {
        guard let t = try ConstantNodeFolding.value(of: ctx.node).map(ComputeType.normalize) else {
            throw ctx.unsupported("a sparse or missing Constant value")
        }
        return ClosureKernel { _, _ in [t] }
    }

    /// The integers of an optional 1-D input (axes, shape, pads, ...), nil when omitted.
    static func ints(_ t: Tensor?, _ what: String, _ ctx: KernelContext) throws -> [Int]? {
        guard let t else { return nil }
        guard t.dtype.isInteger, t.rank <= 1 else { throw ctx.invalid("\(what) must be a 1-D integer tensor, got \(t.dtype) \(t.shape)") }
        return t.intValues()
    }

    /// Normalizes axes against `rank`, rejecting out-of-range and duplicate axes.
    static func axes(_ raw: [Int], rank: Int, _ ctx: KernelContext) throws -> [Int] {
        var seen = Set<Int>()
        return try raw.map { a in
            guard let v = Shapes.axis(a, rank: rank), seen.insert(v).inserted else {
                throw ctx.invalid("axis \(a) is out of range or repeated for rank \(rank)")
            }
            return v
        }
    }

    /// `Reshape(data, shape)`: 0 copies the input dimension (unless allowzero), -1 is inferred.
    static func reshape(_ ctx: KernelContext) throws -> Kernel {
        let allowZero = ctx.int("allowzero", 0) != 0
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], let spec = try ints(inputs[1], "shape", ctx) else { throw ctx.invalid("two inputs are required") }
            var out = spec
            var infer = -1
            for (i, d) in spec.enumerated() {
                if d == 0 && !allowZero {
                    guard i < x.rank else { throw ctx.invalid("shape \(spec) copies dimension \(i) of \(x.shape)") }
                    out[i] = x.shape[i]
                } else if d == -1 {
                    guard infer < 0 else { throw ctx.invalid("shape \(spec) has two -1 entries") }
                    infer = i
                } else if d < 0 {
                    throw ctx.invalid("shape \(spec) has a negative dimension")
                }
            }
            if infer >= 0 {
                let known = out.enumerated().filter { $0.offset != infer }.reduce(1) { $0 * $1.element }
                guard known > 0, x.count % known == 0 else { throw ctx.invalid("cannot reshape \(x.shape) to \(spec)") }
                out[infer] = x.count / known
            }
            guard Tensor.elementCount(out) == x.count else { throw ctx.invalid("cannot reshape \(x.shape) to \(spec)") }
            return [view(x, out)]
        }
    }

    /// The same storage with another shape (strings keep their elements).
    static func view(_ x: Tensor, _ shape: [Int]) -> Tensor {
        Tensor(dtype: x.dtype, shape: shape, storage: x.storage)
    }

    static func flatten(_ ctx: KernelContext) throws -> Kernel {
        let axis = ctx.int("axis", 1)
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            let a = axis < 0 ? axis + x.rank : axis
            guard a >= 0, a <= x.rank else { throw ctx.invalid("axis \(axis) is out of range for rank \(x.rank)") }
            let outer = x.shape[..<a].reduce(1, *)
            return [view(x, [outer, x.shape[a...].reduce(1, *)])]
        }
    }

    /// `Squeeze`: axes attribute before opset 13, optional input from 13; none removes all 1s.
    static func squeeze(_ ctx: KernelContext) throws -> Kernel {
        let attr = ctx.opset < 13 ? ctx.ints("axes") : nil
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            let raw = try attr ?? ints(inputs.count > 1 ? inputs[1] : nil, "axes", ctx)
            guard let raw else { return [view(x, x.shape.filter { $0 != 1 })] }
            let ax = Set(try axes(raw, rank: x.rank, ctx))
            for a in ax where x.shape[a] != 1 { throw ctx.invalid("cannot squeeze axis \(a) of size \(x.shape[a])") }
            return [view(x, x.shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element))]
        }
    }

    /// `Unsqueeze`: axes (relative to the output rank) attribute before opset 13, input from 13.
    static func unsqueeze(_ ctx: KernelContext) throws -> Kernel {
        let attr = ctx.opset < 13 ? ctx.ints("axes") : nil
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            guard let raw = try attr ?? ints(inputs.count > 1 ? inputs[1] : nil, "axes", ctx) else { throw ctx.invalid("axes are required") }
            let rank = x.rank + raw.count
            let ax = Set(try axes(raw, rank: rank, ctx))
            var out: [Int] = []
            var k = 0
            for d in 0..<rank {
                if ax.contains(d) { out.append(1) } else { out.append(x.shape[k]); k += 1 }
            }
            return [view(x, out)]
        }
    }

    /// `Shape(data)`: int64 dimensions, sliced by `start`/`end` (opset 15) with clamping.
    static func shape(_ ctx: KernelContext) throws -> Kernel {
        let start = ctx.int("start", 0), end = ctx.int("end")
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            let r = x.rank
            func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + r : v, 0), r) }
            let s = clamp(start), e = clamp(end ?? r)
            let dims = s < e ? x.shape[s..<e].map(Int64.init) : []
            return [Tensor(shape: [dims.count], values: dims)]
        }
    }

    static func size(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, _ in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            return [Tensor(shape: [], values: [Int64(x.count)])]
        }
    }

    /// `Dropout` at inference: the identity, and an all-true mask when asked for. Training mode
    /// (opset 12 input `training_mode` = true) is not supported.
    static func dropout(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, _ in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            if inputs.count > 2, let t = inputs[2], t.count == 1, t.scalarAsDouble(at: 0) != 0 {
                if let r = inputs[1], r.count == 1, r.scalarAsDouble(at: 0) == 0 {
                    // ratio 0: training mode keeps every element.
                } else {
                    throw ctx.unsupported("training_mode = true")
                }
            }
            guard ctx.node.outputs.count > 1 else { return [x] }
            let mask: Tensor
            if ctx.opset >= 10 {
                mask = Tensor(shape: x.shape, values: [UInt8](repeating: 1, count: x.count)).retyped(.bool)
            } else {
                mask = Tensor(shape: x.shape, floats: [Float](repeating: 1, count: x.count))
            }
            return [x, mask]
        }
    }
}

extension Tensor {
    /// The same bytes viewed as another element type of the same width.
    func retyped(_ dtype: DType) -> Tensor { Tensor(dtype: dtype, shape: shape, storage: storage) }
}
