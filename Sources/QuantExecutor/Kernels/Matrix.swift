import QuantCore
import QuantIR

/// Matrix products: Gemm, MatMul (numpy matmul semantics) and Einsum. Float32 through
/// `BLAS.sgemm`.
enum MatrixKernels {
    static let all: [String: KernelFactory] = [
        "Gemm": gemm,
        "MatMul": matMul,
        "Einsum": EinsumKernel.make,
        "Det": det,
    ]

    /// `Det(X[..., M, M])`: determinants by LU decomposition with partial pivoting, in double.
    static func det(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.rank >= 2, x.shape[x.rank - 1] == x.shape[x.rank - 2], x.dtype.isFloatingPoint else {
                throw ctx.invalid("input must be [..., M, M] floating point")
            }
            let m = x.shape[x.rank - 1], count = x.shape[..<(x.rank - 2)].reduce(1, *), v = x.doubles()
            var out = [Float](repeating: 0, count: count)
            for b in 0..<count {
                var a = Array(v[(b * m * m)..<((b + 1) * m * m)])
                var d = 1.0
                for c in 0..<m {
                    var p = c
                    for r in (c + 1)..<max(m, c + 1) where abs(a[r * m + c]) > abs(a[p * m + c]) { p = r }
                    if a[p * m + c] == 0 { d = 0; break }
                    if p != c {
                        for k in 0..<m { a.swapAt(p * m + k, c * m + k) }
                        d = -d
                    }
                    d *= a[c * m + c]
                    for r in (c + 1)..<max(m, c + 1) {
                        let f = a[r * m + c] / a[c * m + c]
                        for k in c..<m { a[r * m + k] -= f * a[c * m + k] }
                    }
                }
                out[b] = Float(d)
            }
            return [try CastKernels.convert(Tensor(shape: Array(x.shape[..<(x.rank - 2)]), floats: out), to: x.dtype, ctx)]
        }
    }

    static func floatInput(_ t: Tensor?, _ ctx: KernelContext, _ what: String) throws -> Tensor {
        guard let t else { throw ctx.invalid("input '\(what)' is missing") }
        guard t.dtype == .float else { throw ctx.unsupported("\(what) of type \(t.dtype.name)") }
        return t
    }

    /// `Gemm`: `Y = alpha · op(A) · op(B) + beta · C`, C unidirectionally broadcast to [M, N].
    static func gemm(_ ctx: KernelContext) throws -> Kernel {
        let transA = ctx.int("transA", 0) != 0
        let transB = ctx.int("transB", 0) != 0
        let alpha = ctx.float("alpha", 1)
        let beta = ctx.float("beta", 1)
        return ClosureKernel { inputs, env in
            let a = try floatInput(inputs[0], ctx, "A")
            let b = try floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "B")
            guard a.rank == 2, b.rank == 2 else { throw ctx.invalid("A \(a.shape) and B \(b.shape) must be 2-D") }
            let m = transA ? a.shape[1] : a.shape[0]
            let k = transA ? a.shape[0] : a.shape[1]
            let kb = transB ? b.shape[1] : b.shape[0]
            let n = transB ? b.shape[0] : b.shape[1]
            guard k == kb else { throw ctx.invalid("inner dimensions differ: A \(a.shape), B \(b.shape)") }
            let c = inputs.count > 2 ? inputs[2] : nil
            var useC = false
            var cStrides = [0, 0]
            if let c, beta != 0 {
                guard c.dtype == .float else { throw ctx.unsupported("C of type \(c.dtype.name)") }
                guard c.rank <= 2, Shapes.broadcast([c.shape, [m, n]]) == [m, n] else {
                    throw ctx.invalid("C \(c.shape) does not broadcast to [\(m), \(n)]")
                }
                cStrides = Shapes.broadcastStrides(c.shape, to: [m, n])
                useC = true
            }
            let y = Tensor.makeFloat([m, n]) { out in
                if useC, let c {
                    c.withUnsafeBufferPointer(as: Float.self) { cp in
                        for i in 0..<m { for j in 0..<n { out[i * n + j] = cp[i * cStrides[0] + j * cStrides[1]] } }
                    }
                }
                a.withUnsafeBufferPointer(as: Float.self) { ap in
                    b.withUnsafeBufferPointer(as: Float.self) { bp in
                        if k == 0 || m == 0 || n == 0 {
                            if !useC { for i in 0..<out.count { out[i] = 0 } } else { for i in 0..<out.count { out[i] *= beta } }
                            return
                        }
                        MatrixGEMM.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                   a: ap.baseAddress!, lda: a.shape[1], b: bp.baseAddress!, ldb: b.shape[1],
                                   beta: useC ? beta : 0, c: out.baseAddress!, ldc: n, threads: env.threads)
                    }
                }
            }
            return [y]
        }
    }

    /// `MatMul`: numpy matmul. 1-D operands gain a dimension that is removed again; batch
    /// dimensions broadcast. A 2-D right operand folds A's batch into one GEMM.
    static func matMul(_ ctx: KernelContext) throws -> Kernel {
        ClosureKernel { inputs, env in
            let a = try floatInput(inputs[0], ctx, "A")
            let b = try floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "B")
            return [try matmul(a, b, ctx, threads: env.threads)]
        }
    }

    static func matmul(_ a: Tensor, _ b: Tensor, _ ctx: KernelContext, threads: Int) throws -> Tensor {
        guard a.rank >= 1, b.rank >= 1 else { throw ctx.invalid("MatMul operands must have rank >= 1: \(a.shape), \(b.shape)") }
        let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
        let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
        let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1]
        let kb = bShape[bShape.count - 2], n = bShape[bShape.count - 1]
        guard k == kb else { throw ctx.invalid("inner dimensions differ: \(a.shape) × \(b.shape)") }
        let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
        guard let batch = Shapes.broadcast([aBatch, bBatch]) else {
            throw ctx.invalid("batch dimensions \(aBatch) and \(bBatch) do not broadcast (or their broadcast exceeds 2^31 elements)")
        }
        var outShape = batch
        if a.rank > 1 { outShape.append(m) }
        if b.rank > 1 { outShape.append(n) }
        let batchCount = Tensor.elementCount(batch)
        let y = Tensor.makeFloat(outShape) { out in
            guard out.count > 0 else { return }
            if k == 0 {
                for i in 0..<out.count { out[i] = 0 }
                return
            }
            a.withUnsafeBufferPointer(as: Float.self) { ap in
                b.withUnsafeBufferPointer(as: Float.self) { bp in
                    if bBatch.allSatisfy({ $0 == 1 }) && Tensor.elementCount(aBatch) == batchCount {
                        // B is one matrix: all of A's rows in one GEMM.
                        MatrixGEMM.sgemm(m: batchCount * m, n: n, k: k, a: ap.baseAddress!, lda: k,
                                   b: bp.baseAddress!, ldb: n, c: out.baseAddress!, ldc: n, threads: threads)
                        return
                    }
                    let aStr = Shapes.broadcastStrides(aBatch, to: batch)
                    let bStr = Shapes.broadcastStrides(bBatch, to: batch)
                    let outStr = Shapes.strides(batch)
                    func offsets(_ i: Int) -> (Int, Int) {
                        var ao = 0, bo = 0, rem = i
                        for d in 0..<batch.count {
                            let idx = rem / outStr[d]
                            rem %= outStr[d]
                            ao += idx * aStr[d]
                            bo += idx * bStr[d]
                        }
                        return (ao, bo)
                    }
                    if m * n * k < (1 << 18) {
                        // Many small products: one single-threaded GEMM per batch entry, entries in parallel.
                        BLAS.setThreads(1)
                        parallelFor(batchCount, threads: threads) { r in
                            for i in r {
                                let (ao, bo) = offsets(i)
                                BLAS.sgemm(m: m, n: n, k: k, a: ap.baseAddress! + ao * m * k, lda: k,
                                           b: bp.baseAddress! + bo * k * n, ldb: n, c: out.baseAddress! + i * m * n, ldc: n)
                            }
                        }
                    } else {
                        for i in 0..<batchCount {
                            let (ao, bo) = offsets(i)
                            MatrixGEMM.sgemm(m: m, n: n, k: k, a: ap.baseAddress! + ao * m * k, lda: k,
                                             b: bp.baseAddress! + bo * k * n, ldb: n, c: out.baseAddress! + i * m * n, ldc: n, threads: threads)
                        }
                    }
                }
            }
        }
        return y
    }
}
