import CKernels
import Foundation
import QuantCore
import QuantIR

/// Binary arithmetic, comparison and logic with numpy broadcasting (ONNX "multidirectional
/// broadcasting"), and the variadic Sum/Mean/Min/Max.
enum Arith {
    case add, sub, mul, div, mod, fmod, min, max, bitAnd, bitOr, bitXor, shiftLeft, shiftRight

    /// `a op b` for float32 (the compute type of every floating tensor).
    static func float(_ op: Arith, _ a: Tensor, _ b: Tensor, threads: Int) -> Tensor? {
        let F = Float.self
        switch op {
        case .add: return Broadcast.floatArithmetic(QK_ADD, a, b, threads: threads)
        case .sub: return Broadcast.floatArithmetic(QK_SUB, a, b, threads: threads)
        case .mul: return Broadcast.floatArithmetic(QK_MUL, a, b, threads: threads)
        case .div: return Broadcast.floatArithmetic(QK_DIV, a, b, threads: threads)
        case .fmod: return Broadcast.map(a, b, F, F, out: .float, threads: threads) { Foundation.fmod($0, $1) }
        case .mod:
            return Broadcast.map(a, b, F, F, out: .float, threads: threads) { x, y in
                let r = Foundation.fmod(x, y)
                return r != 0 && (r < 0) != (y < 0) ? r + y : r
            }
        // NaN propagates, as in numpy.minimum/maximum.
        case .min: return Broadcast.map(a, b, F, F, out: .float, threads: threads) { x, y in x.isNaN || x < y ? x : y }
        case .max: return Broadcast.map(a, b, F, F, out: .float, threads: threads) { x, y in x.isNaN || x > y ? x : y }
        default: return nil
        }
    }

    /// `a op b` for an integer type: wrapping arithmetic; division by zero gives 0.
    struct Integer: IntegerVisitor {
        let op: Arith, a: Tensor, b: Tensor, threads: Int

        func visit<T: ExecInteger>(_: T.Type) -> Tensor? {
            let t = a.dtype
            switch op {
            case .add: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { $0 &+ $1 }
            case .sub: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { $0 &- $1 }
            case .mul: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { $0 &* $1 }
            case .div:
                return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { x, y in
                    y == 0 ? 0 : x.dividedReportingOverflow(by: y).partialValue
                }
            case .fmod:
                return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { x, y in
                    y == 0 ? 0 : x.remainderReportingOverflow(dividingBy: y).partialValue
                }
            case .mod:
                // Python semantics: the result takes the divisor's sign.
                return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { x, y in
                    if y == 0 { return T.zero }
                    let r = x.remainderReportingOverflow(dividingBy: y).partialValue
                    return r != 0 && (r < 0) != (y < 0) ? r &+ y : r
                }
            case .min: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { Swift.min($0, $1) }
            case .max: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { Swift.max($0, $1) }
            case .bitAnd: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { $0 & $1 }
            case .bitOr: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { $0 | $1 }
            case .bitXor: return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { $0 ^ $1 }
            // Shift amounts outside 0..<bitWidth (including negative ones) shift everything out.
            case .shiftLeft:
                return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { x, y in
                    y < 0 || y >= T.bitWidth ? 0 : x << y
                }
            case .shiftRight:
                return Broadcast.map(a, b, T.self, T.self, out: t, threads: threads) { x, y in
                    y < 0 || y >= T.bitWidth ? (x < 0 ? x >> (T.bitWidth - 1) : 0) : x >> y
                }
            }
        }
    }

    /// `a op b` for any supported element type, or an error naming the problem.
    static func apply(_ op: Arith, _ a: Tensor, _ b: Tensor, threads: Int, _ ctx: KernelContext) throws -> Tensor {
        guard a.dtype == b.dtype else { throw ctx.invalid("operand types differ: \(a.dtype) and \(b.dtype)") }
        let result: Tensor??
        if a.dtype == .float {
            result = float(op, a, b, threads: threads)
        } else {
            result = try Integer(op: op, a: a, b: b, threads: threads)(a.dtype)
        }
        guard let r = result else { throw ctx.unsupported("element type \(a.dtype)") }
        guard let t = r else { throw ctx.invalid("shapes \(a.shape) and \(b.shape) do not broadcast (or their broadcast exceeds 2^31 elements)") }
        return t
    }

    static func kernel(_ op: Arith) -> KernelFactory {
        { ctx in
            ClosureKernel { inputs, env in
                guard let a = inputs[0], let b = inputs[1] else { throw ctx.invalid("two inputs are required") }
                return [try apply(op, a, b, threads: env.threads, ctx)]
            }
        }
    }

    /// Sum, Mean, Min, Max over any number of inputs (folded pairwise with broadcasting).
    static func variadic(_ op: Arith, mean: Bool = false) -> KernelFactory {
        { ctx in
            ClosureKernel { inputs, env in
                let xs = inputs.compactMap { $0 }
                guard var acc = xs.first else { throw ctx.invalid("at least one input is required") }
                for x in xs.dropFirst() { acc = try apply(op, acc, x, threads: env.threads, ctx) }
                if xs.count == 1 { acc = Tensor(dtype: acc.dtype, shape: acc.shape, storage: TensorStorage(copying: acc.bytes)) }
                if mean {
                    guard acc.dtype == .float else { throw ctx.unsupported("Mean of \(acc.dtype)") }
                    let k = Float(xs.count)
                    acc = Broadcast.unary(acc, Float.self, out: .float, threads: env.threads) { $0 / k }
                }
                return [acc]
            }
        }
    }

    /// `Mod`: fmod=0 takes the divisor's sign (integers), fmod=1 the dividend's (C fmod).
    static func modKernel(_ ctx: KernelContext) throws -> Kernel {
        let op: Arith = ctx.int("fmod", 0) != 0 ? .fmod : .mod
        return try kernel(op)(ctx)
    }

    /// `BitShift`: direction LEFT or RIGHT, unsigned integers.
    static func bitShift(_ ctx: KernelContext) throws -> Kernel {
        switch ctx.string("direction", "") {
        case "LEFT": return try kernel(.shiftLeft)(ctx)
        case "RIGHT": return try kernel(.shiftRight)(ctx)
        case let d: throw ctx.invalid("direction must be LEFT or RIGHT, not '\(d)'")
        }
    }
}

/// `Pow(X, Y)`: the result has X's type; Y may have another numeric type.
enum PowKernel {
    static func make(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let x = inputs[0], let y = inputs[1] else { throw ctx.invalid("two inputs are required") }
            let xf = try CastKernels.convert(x, to: .float, ctx)
            let yf = try CastKernels.convert(y, to: .float, ctx)
            guard let r = Broadcast.map(xf, yf, Float.self, Float.self, out: .float, threads: env.threads, { a, b in
                b == 2 ? a * a : Foundation.pow(a, b)
            }) else { throw ctx.invalid("shapes \(x.shape) and \(y.shape) do not broadcast (or their broadcast exceeds 2^31 elements)") }
            return [x.dtype == .float ? r : try CastKernels.convert(r, to: x.dtype, ctx)]
        }
    }
}

/// Comparisons (bool result) and boolean logic.
enum Compare {
    case equal, less, lessOrEqual, greater, greaterOrEqual

    struct Visitor: ScalarVisitor {
        let op: Compare, a: Tensor, b: Tensor, threads: Int
        func visit<T: ExecScalar>(_: T.Type) -> Tensor? {
            let m = { (f: (T, T) -> Bool) in
                Broadcast.map(a, b, T.self, T.self, out: .bool, threads: threads) { f($0, $1) ? 1 as UInt8 : 0 }
            }
            switch op {
            case .equal: return m { $0 == $1 }
            case .less: return m { $0 < $1 }
            case .lessOrEqual: return m { $0 <= $1 }
            case .greater: return m { $0 > $1 }
            case .greaterOrEqual: return m { $0 >= $1 }
            }
        }
    }

    static func kernel(_ op: Compare) -> KernelFactory {
        { ctx in
            ClosureKernel { inputs, env in
                guard let a = inputs[0], let b = inputs[1] else { throw ctx.invalid("two inputs are required") }
                guard a.dtype == b.dtype else { throw ctx.invalid("operand types differ: \(a.dtype) and \(b.dtype)") }
                let result: Tensor??
                if a.dtype == .string, op == .equal {
                    result = equalStrings(a, b)
                } else if a.dtype == .bool {
                    result = Visitor(op: op, a: a, b: b, threads: env.threads).visit(UInt8.self)
                } else {
                    result = try Visitor(op: op, a: a, b: b, threads: env.threads)(a.dtype)
                }
                guard let r = result else { throw ctx.unsupported("comparing \(a.dtype) tensors") }
                guard let t = r else { throw ctx.invalid("shapes \(a.shape) and \(b.shape) do not broadcast (or their broadcast exceeds 2^31 elements)") }
                return [t]
            }
        }
    }

    /// `Equal` on string tensors (bytewise).
    static func equalStrings(_ a: Tensor, _ b: Tensor) -> Tensor? {
        guard let layout = BroadcastLayout([a.shape, b.shape]) else { return nil }
        let out = Tensor(dtype: .bool, shape: layout.shape)
        let p = out.storage.pointer.assumingMemoryBound(to: UInt8.self)
        let sa = a.strings, sb = b.strings, s0 = layout.steps[0], s1 = layout.steps[1]
        layout.forEachRow(threads: 1) { off, o, n in
            for i in 0..<n { p[o + i] = sa[off[0] + i * s0] == sb[off[1] + i * s1] ? 1 : 0 }
        }
        return out
    }

    /// And, Or, Xor on bool tensors.
    static func logic(_ f: @escaping (Bool, Bool) -> Bool) -> KernelFactory {
        { ctx in
            ClosureKernel { inputs, env in
                guard let a = inputs[0], let b = inputs[1], a.dtype == .bool, b.dtype == .bool else {
                    throw ctx.invalid("two bool inputs are required")
                }
                guard let t = Broadcast.map(a, b, UInt8.self, UInt8.self, out: .bool, threads: env.threads, {
                    f($0 != 0, $1 != 0) ? 1 as UInt8 : 0
                }) else { throw ctx.invalid("shapes \(a.shape) and \(b.shape) do not broadcast (or their broadcast exceeds 2^31 elements)") }
                return [t]
            }
        }
    }

    /// `Where(condition, X, Y)` for any fixed-width element type.
    static func whereKernel(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            guard let c = inputs[0], let x = inputs[1], let y = inputs[2] else { throw ctx.invalid("three inputs are required") }
            guard c.dtype == .bool, x.dtype == y.dtype, x.dtype.bitWidth >= 8 else {
                throw ctx.unsupported("Where on \(c.dtype), \(x.dtype), \(y.dtype)")
            }
            guard let t = Broadcast.select(c, x, y, threads: env.threads) else {
                throw ctx.invalid("shapes \(c.shape), \(x.shape), \(y.shape) do not broadcast (or their broadcast exceeds 2^31 elements)")
            }
            return [t]
        }
    }
}
