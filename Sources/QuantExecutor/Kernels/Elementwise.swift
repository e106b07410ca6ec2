import Foundation
import QuantCore
import QuantIR

/// Unary and binary element-wise operators, activations, comparisons and logic.
///
/// Binary and variadic operators broadcast as numpy does (see `BroadcastLayout`). Floating
/// tensors compute in float32; integer operators wrap; comparisons return bool.
enum ElementwiseKernels {
    static let all: [String: KernelFactory] = {
        var t: [String: KernelFactory] = [
            "Add": Arith.kernel(.add), "Sub": Arith.kernel(.sub), "Mul": Arith.kernel(.mul), "Div": Arith.kernel(.div),
            "Mod": Arith.modKernel, "Pow": PowKernel.make, "BitShift": Arith.bitShift,
            "BitwiseAnd": Arith.kernel(.bitAnd), "BitwiseOr": Arith.kernel(.bitOr), "BitwiseXor": Arith.kernel(.bitXor),
            "Sum": Arith.variadic(.add), "Mean": Arith.variadic(.add, mean: true),
            "Min": Arith.variadic(.min), "Max": Arith.variadic(.max),
            "Equal": Compare.kernel(.equal), "Less": Compare.kernel(.less), "LessOrEqual": Compare.kernel(.lessOrEqual),
            "Greater": Compare.kernel(.greater), "GreaterOrEqual": Compare.kernel(.greaterOrEqual),
            "And": Compare.logic { $0 && $1 }, "Or": Compare.logic { $0 || $1 }, "Xor": Compare.logic { $0 != $1 },
            "Where": Compare.whereKernel,
            "Not": not, "BitwiseNot": bitwiseNot, "IsNaN": isNaN, "IsInf": isInf,
            "Neg": signed(.neg), "Abs": signed(.abs), "Sign": signed(.sign), "Relu": signed(.relu),
            "Clip": clip, "PRelu": prelu,
        ]
        for (name, f) in floatUnary { t[name] = f }
        for (name, f) in Activation.all { t[name] = f }
        return t
    }()

    /// Attribute-free float maps. Each closure is a literal at its `Broadcast.unary` call so
    /// that the element function inlines into the loop (and vectorizes where it can).
    static let floatUnary: [String: KernelFactory] = [
        "Sqrt": floatMap { x, t in fmap(x, t) { v in v.squareRoot() } },
        "Log": floatMap { x, t in fmap(x, t) { v in Foundation.log(v) } },
        "Reciprocal": floatMap { x, t in fmap(x, t) { v in 1 / v } },
        "Floor": floatMap { x, t in fmap(x, t) { v in v.rounded(.down) } },
        "Ceil": floatMap { x, t in fmap(x, t) { v in v.rounded(.up) } },
        "Round": floatMap { x, t in fmap(x, t) { v in v.rounded(.toNearestOrEven) } },
        "Sin": floatMap { x, t in fmap(x, t) { v in Foundation.sin(v) } },
        "Cos": floatMap { x, t in fmap(x, t) { v in Foundation.cos(v) } },
        "Tan": floatMap { x, t in fmap(x, t) { v in Foundation.tan(v) } },
        "Asin": floatMap { x, t in fmap(x, t) { v in Foundation.asin(v) } },
        "Acos": floatMap { x, t in fmap(x, t) { v in Foundation.acos(v) } },
        "Atan": floatMap { x, t in fmap(x, t) { v in Foundation.atan(v) } },
        "Sinh": floatMap { x, t in fmap(x, t) { v in Foundation.sinh(v) } },
        "Cosh": floatMap { x, t in fmap(x, t) { v in Foundation.cosh(v) } },
        "Asinh": floatMap { x, t in fmap(x, t) { v in Foundation.asinh(v) } },
        "Acosh": floatMap { x, t in fmap(x, t) { v in Foundation.acosh(v) } },
        "Atanh": floatMap { x, t in fmap(x, t) { v in Foundation.atanh(v) } },
        "Erf": floatMap { x, t in fmap(x, t) { v in Foundation.erf(v) } },
        "Tanh": floatMap { x, t in fmap(x, t) { v in Foundation.tanh(v) } },
        "Exp": floatMap { x, t in fmap(x, t) { v in FastMath.exp(v) } },
        "Sigmoid": floatMap { x, t in fmap(x, t) { v in FastMath.sigmoid(v) } },
        "Softsign": floatMap { x, t in fmap(x, t) { v in v / (1 + abs(v)) } },
        "Softplus": floatMap { x, t in fmap(x, t) { v in Activation.softplus(v) } },
        "Mish": floatMap { x, t in fmap(x, t) { v in v * Foundation.tanh(Activation.softplus(v)) } },
        "HardSwish": floatMap { x, t in PointwiseActivation.hardSwish.apply(x, threads: t) },
    ]

    /// `Broadcast.unary` for float32 → float32; call it with a closure literal so that `f`
    /// inlines into the loop.
    @inline(__always)
    static func fmap(_ x: Tensor, _ threads: Int, _ f: (Float) -> Float) -> Tensor {
        Broadcast.unary(x, Float.self, out: .float, threads: threads, f)
    }

    /// A kernel applying `body(x, threads)` to a float32 input.
    static func floatMap(_ body: @escaping (Tensor, Int) -> Tensor) -> KernelFactory {
        { ctx in
            ClosureKernel { inputs, env in
                guard let x = inputs[0], x.dtype == .float else {
                    throw ctx.unsupported("input type \(inputs[0]?.dtype.name ?? "missing")")
                }
                return [body(x, env.threads)]
            }
        }
    }

    enum SignedOp { case neg, abs, sign, relu }

    struct SignedVisitor: ScalarVisitor {
        let op: SignedOp, x: Tensor, threads: Int
        func visit<T: ExecScalar>(_: T.Type) -> Tensor {
            let z = T.zero
            switch op {
            case .neg: return Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { $0.wrappingNegation }
            case .abs: return Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { $0 < z ? $0.wrappingNegation : $0 }
            case .relu: return Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { $0 < z ? z : $0 }
            case .sign:
                let one = T.fromDouble(1), minusOne = T.fromDouble(-1)
                return Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { $0 > z ? one : $0 < z ? minusOne : $0 }
            }
        }
    }

    /// Neg, Abs, Sign, Relu for float and integer types (integer negation wraps).
    static func signed(_ op: SignedOp) -> KernelFactory {
        { ctx in
            ClosureKernel { inputs, env in
                guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
                if x.dtype == .float {
                    switch op {
                    case .neg: return [Broadcast.unary(x, Float.self, out: .float, threads: env.threads) { -$0 }]
                    case .abs: return [Broadcast.unary(x, Float.self, out: .float, threads: env.threads) { Swift.abs($0) }]
                    case .relu: return [PointwiseActivation.relu.apply(x, threads: env.threads)]
                    case .sign: break
                    }
                }
                guard let r = try SignedVisitor(op: op, x: x, threads: env.threads)(x.dtype) else {
                    throw ctx.unsupported("input type \(x.dtype)")
                }
                return [r]
            }
        }
    }

    static func not(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], x.dtype == .bool else { throw ctx.invalid("a bool input is required") }
            return [Broadcast.unary(x, UInt8.self, out: .bool, threads: env.threads) { $0 == 0 ? 1 as UInt8 : 0 }]
        }
    }

    struct BitNot: IntegerVisitor {
        let x: Tensor, threads: Int
        func visit<T: ExecInteger>(_: T.Type) -> Tensor { Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { ~$0 } }
    }

    static func bitwiseNot(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], let r = try BitNot(x: x, threads: env.threads)(x.dtype) else {
                throw ctx.unsupported("input type \(inputs[0]?.dtype.name ?? "missing")")
            }
            return [r]
        }
    }

    static func isNaN(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], x.dtype == .float else { throw ctx.unsupported("input type \(inputs[0]?.dtype.name ?? "missing")") }
            return [Broadcast.unary(x, Float.self, out: .bool, threads: env.threads) { $0.isNaN ? 1 as UInt8 : 0 }]
        }
    }

    static func isInf(_ ctx: KernelContext) throws -> Kernel {
        let detectNegative = ctx.int("detect_negative", 1) != 0, detectPositive = ctx.int("detect_positive", 1) != 0
        return ClosureKernel { inputs, env in
            guard let x = inputs[0], x.dtype == .float else { throw ctx.unsupported("input type \(inputs[0]?.dtype.name ?? "missing")") }
            return [Broadcast.unary(x, Float.self, out: .bool, threads: env.threads) { v in
                v.isInfinite && (v > 0 ? detectPositive : detectNegative) ? 1 as UInt8 : 0
            }]
        }
    }

    struct ClipVisitor: ScalarVisitor {
        let x: Tensor, lo: Tensor?, hi: Tensor?, threads: Int
        func visit<T: ExecScalar>(_: T.Type) -> Tensor {
            let l = lo.map { $0.storage.pointer.load(as: T.self) }
            let h = hi.map { $0.storage.pointer.load(as: T.self) }
            switch (l, h) {
            case let (l?, h?): return Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { Swift.min(Swift.max($0, l), h) }
            case let (l?, nil): return Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { Swift.max($0, l) }
            case let (nil, h?): return Broadcast.unary(x, T.self, out: x.dtype, threads: threads) { Swift.min($0, h) }
            case (nil, nil): return Tensor(dtype: x.dtype, shape: x.shape, storage: TensorStorage(copying: x.bytes))
            }
        }
    }

    /// `Clip`: bounds are attributes `min`/`max` before opset 11 and optional scalar inputs
    /// from opset 11; a missing bound does not clip.
    static func clip(_ ctx: KernelContext) throws -> Kernel {
        let attrLo = ctx.opset < 11 ? ctx.node.attribute("min")?.float : nil
        let attrHi = ctx.opset < 11 ? ctx.node.attribute("max")?.float : nil
        return ClosureKernel { inputs, env in
            guard let x = inputs[0] else { throw ctx.invalid("input is missing") }
            var lo = inputs.count > 1 ? inputs[1] : nil
            var hi = inputs.count > 2 ? inputs[2] : nil
            if let v = attrLo { lo = Tensor(shape: [], floats: [v]) }
            if let v = attrHi { hi = Tensor(shape: [], floats: [v]) }
            for b in [lo, hi].compactMap({ $0 }) where b.dtype != x.dtype || b.count != 1 {
                throw ctx.invalid("bounds must be scalars of the input type \(x.dtype), got \(b.dtype) \(b.shape)")
            }
            if x.dtype == .float, lo != nil || hi != nil {
                let l = lo.map { $0.storage.pointer.load(as: Float.self) } ?? -.infinity
                let h = hi.map { $0.storage.pointer.load(as: Float.self) } ?? .infinity
                return [PointwiseActivation.clip(l, h).apply(x, threads: env.threads)]
            }
            guard let r = try ClipVisitor(x: x, lo: lo, hi: hi, threads: env.threads)(x.dtype) else {
                throw ctx.unsupported("input type \(x.dtype)")
            }
            return [r]
        }
    }

    /// `PRelu(X, slope)`: slope broadcasts unidirectionally to X.
    static func prelu(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], let s = inputs[1] else { throw ctx.invalid("two inputs are required") }
            guard x.dtype == .float, s.dtype == .float else { throw ctx.unsupported("element type \(x.dtype)") }
            guard let r = Broadcast.map(x, s, Float.self, Float.self, out: .float, threads: env.threads, { $0 < 0 ? $0 * $1 : $0 }),
                  r.shape == x.shape else { throw ctx.invalid("slope \(s.shape) does not broadcast to \(x.shape)") }
            return [r]
        }
    }
}
