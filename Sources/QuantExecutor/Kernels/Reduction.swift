import Foundation
import QuantCore
import QuantIR

/// Reduce* operators. `axes` is an attribute before opset 13 (ReduceSum) or 18 (the others)
/// and an optional int64 input from then on; no axes reduces all axes unless
/// `noop_with_empty_axes` is set. Float tensors accumulate in float32 (LogSumExp shifted by
/// the maximum); integer tensors accumulate in double and round back to their type. An empty
/// reduction gives the operator's identity (0 for sums, 1 for products, ∓inf for max/min).
enum ReductionKernels {
    enum Op: String, CaseIterable {
        case mean = "ReduceMean", sum = "ReduceSum", max = "ReduceMax", min = "ReduceMin", prod = "ReduceProd"
        case l1 = "ReduceL1", l2 = "ReduceL2", sumSquare = "ReduceSumSquare", logSum = "ReduceLogSum"
        case logSumExp = "ReduceLogSumExp"
    }

    static let all: [String: KernelFactory] = Dictionary(uniqueKeysWithValues: Op.allCases.map { op in (op.rawValue, { try reduce(op, $0) }) })

    static func reduce(_ op: Op, _ ctx: KernelContext) throws -> Kernel {
        let axesAsInput = ctx.opset >= (op == .sum ? 13 : 18)
        let attrAxes = axesAsInput ? nil : ctx.ints("axes")
        let keepDims = ctx.int("keepdims", 1) != 0
        let noop = ctx.int("noop_with_empty_axes", 0) != 0
        return ClosureKernel { inputs, env in
            guard var x = inputs[0] else { throw ctx.invalid("input is missing") }
            let isBool = x.dtype == .bool
            if isBool {
                guard op == .max || op == .min else { throw ctx.unsupported("\(op.rawValue) of bool") }
                x = x.retyped(.uint8)
            }
            let raw = try attrAxes ?? (axesAsInput ? ShapeKernels.ints(inputs.count > 1 ? inputs[1] : nil, "axes", ctx) : nil) ?? []
            if raw.isEmpty && noop { return [inputs[0]] }
            let axes = Set(try ShapeKernels.axes(raw.isEmpty ? Array(0..<x.rank) : raw, rank: x.rank, ctx))
            var outShape: [Int] = [], keptShape: [Int] = [], keptStrides: [Int] = [], redShape: [Int] = [], redStrides: [Int] = []
            let st = Shapes.strides(x.shape)
            for d in 0..<x.rank {
                if axes.contains(d) {
                    if keepDims { outShape.append(1) }
                    redShape.append(x.shape[d])
                    redStrides.append(st[d])
                } else {
                    outShape.append(x.shape[d])
                    keptShape.append(x.shape[d])
                    keptStrides.append(st[d])
                }
            }
            let plan = Plan(keptShape: keptShape, keptStrides: keptStrides, redShape: redShape, redStrides: redStrides)
            if x.dtype == .float {
                return [plan.run(x.storage.pointer.assumingMemoryBound(to: Float.self), outShape, dtype: .float, threads: env.threads) {
                    reduceFloat(op, $0, $1, $2)
                }]
            }
            guard x.dtype.isInteger, x.dtype.bitWidth >= 8 else { throw ctx.unsupported("element type \(x.dtype)") }
            let d = x.doubles()
            let r = d.withUnsafeBufferPointer { p in
                plan.run(p.baseAddress!, outShape, dtype: .double, threads: env.threads) { reduceDouble(op, $0, $1, $2) }
            }
            // r holds doubles in a .double tensor; convert to the input's type.
            guard let t = try ToType(src: r, dtype: x.dtype)(x.dtype) else { throw ctx.unsupported("element type \(x.dtype)") }
            return [isBool ? t.retyped(.bool) : t]
        }
    }

    struct ToType: ScalarVisitor {
        let src: Tensor, dtype: DType
        func visit<T: ExecScalar>(_: T.Type) -> Tensor {
            let p = src.storage.pointer.assumingMemoryBound(to: Double.self)
            return Tensor(shape: src.shape, values: (0..<src.count).map { T.fromDouble(p[$0].rounded(.towardZero)) })
        }
    }

    /// Output element o reduces the elements at `keptOffset(o) + Σ r[d]·redStrides[d]`.
    struct Plan {
        let keptShape: [Int], keptStrides: [Int], redShape: [Int], redStrides: [Int]

        func run<T>(_ src: UnsafePointer<T>, _ outShape: [Int], dtype: DType, threads: Int,
                    _ f: (UnsafePointer<T>, Int, Int) -> T) -> Tensor {
            let out = Tensor(dtype: dtype, shape: outShape)
            let po = out.storage.pointer.assumingMemoryBound(to: T.self)
            let (rs, rst) = Strided.coalesce(redShape, [redStrides])
            let m = Tensor.elementCount(redShape)
            // One reduced run (after merging dimensions) is walked in place, with its stride;
            // several runs are first gathered into a scratch row.
            let single = rs.count == 1 || m <= 1
            let step = single && m > 1 ? rst[0][0] : 1
            Strided.forEach(keptShape, [keptStrides], threads: threads, grain: max(1, 16384 / max(m, 1))) { o, off in
                if single {
                    po[o] = f(src + off[0], m, step)
                    return
                }
                let scratch = UnsafeMutablePointer<T>.allocate(capacity: max(m, 1))
                defer { scratch.deallocate() }
                var k = 0
                Strided.forEach(rs, rst, threads: 1, grain: Int.max) { _, r in
                    scratch[k] = src[off[0] + r[0]]
                    k += 1
                }
                po[o] = f(scratch, m, 1)
            }
            return out
        }
    }

    static func reduceFloat(_ op: Op, _ p: UnsafePointer<Float>, _ n: Int, _ step: Int) -> Float {
        if step == 1 { return reduceFloat(op, p, n, Contiguous()) }
        return reduceFloat(op, p, n, StepAccess(step: step))
    }

    protocol Access { func offset(_ i: Int) -> Int }
    struct Contiguous: Access { @inline(__always) func offset(_ i: Int) -> Int { i } }
    struct StepAccess: Access {
        let step: Int
        @inline(__always) func offset(_ i: Int) -> Int { i * step }
    }

    @inline(__always)
    static func reduceFloat<A: Access>(_ op: Op, _ base: UnsafePointer<Float>, _ n: Int, _ a: A) -> Float {
        let p = { (i: Int) in base[a.offset(i)] }
        switch op {
        case .sum: var s: Float = 0; for i in 0..<n { s += p(i) }; return s
        case .mean: var s: Float = 0; for i in 0..<n { s += p(i) }; return s / Float(n)
        case .max: var s = -Float.infinity; for i in 0..<n { s = p(i) > s || p(i).isNaN ? p(i) : s }; return s
        case .min: var s = Float.infinity; for i in 0..<n { s = p(i) < s || p(i).isNaN ? p(i) : s }; return s
        case .prod: var s: Float = 1; for i in 0..<n { s *= p(i) }; return s
        case .l1: var s: Float = 0; for i in 0..<n { s += abs(p(i)) }; return s
        case .l2: var s: Float = 0; for i in 0..<n { s += p(i) * p(i) }; return s.squareRoot()
        case .sumSquare: var s: Float = 0; for i in 0..<n { s += p(i) * p(i) }; return s
        case .logSum: var s: Float = 0; for i in 0..<n { s += p(i) }; return Foundation.log(s)
        case .logSumExp:
            var m = -Float.infinity
            for i in 0..<n { m = Swift.max(m, p(i)) }
            if !m.isFinite { return m }
            var s: Float = 0
            for i in 0..<n { s += Foundation.exp(p(i) - m) }
            return Foundation.log(s) + m
        }
    }

    static func reduceDouble(_ op: Op, _ p: UnsafePointer<Double>, _ n: Int, _ step: Int) -> Double {
        let xs = (0..<n).map { p[$0 * step] }
        switch op {
        case .sum: return xs.reduce(0, +)
        case .mean: return xs.reduce(0, +) / Double(n)
        case .max: return xs.max() ?? -.infinity
        case .min: return xs.min() ?? .infinity
        case .prod: return xs.reduce(1, *)
        case .l1: return xs.reduce(0) { $0 + abs($1) }
        case .l2: return xs.reduce(0) { $0 + $1 * $1 }.squareRoot()
        case .sumSquare: return xs.reduce(0) { $0 + $1 * $1 }
        case .logSum: return Foundation.log(xs.reduce(0, +))
        case .logSumExp:
            let m = xs.max() ?? -.infinity
            return m.isFinite ? Foundation.log(xs.reduce(0) { $0 + Foundation.exp($1 - m) }) + m : m
        }
    }
}
