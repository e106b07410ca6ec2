#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

/// The one place QuantKit calls BLAS: single-precision GEMM, row-major.
///
/// `C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C`, with `lda`/`ldb`/`ldc` the row
/// strides in elements. OpenBLAS on Linux, Accelerate on macOS.
public enum BLAS {
    public static func sgemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            // op(A)·op(B) is empty: C = beta·C.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        if m == 1 {
            // A row vector times a matrix: sgemv reads op(B) once, where sgemm would first
            // pack all of it (a 1000×1280 classifier at batch 1: ~0.4 ms of copying).
            let x = a, incx = Int32(transA ? lda : 1)
            if transB {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), alpha, b, Int32(ldb), x, incx, beta, c, 1)
            } else {
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(k), Int32(n), alpha, b, Int32(ldb), x, incx, beta, c, 1)
            }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `C[m×n] = A[m×k] · B[k×n]` in double precision, row-major, no transposes. Integer
    /// convolutions use it for exact sums: products of 8- or 16-bit integers and their sums
    /// stay far below 2^53.
    public static func dgemm(m: Int, n: Int, k: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>, c: UnsafeMutablePointer<Double>) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else { c.update(repeating: 0, count: m * n); return }
        dgemm(m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: c, ldc: n)
    }

    /// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C` in double precision, row-major with row
    /// strides `lda`, `ldb`, `ldc`.
    public static func dgemm(m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                             beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        guard m > 0, n > 0, k > 0 else { return }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Whether ``inverseCholeskyLower(_:k:)`` has LAPACK behind it.
    #if canImport(Accelerate)
    public static let hasLAPACK = false
    #else
    public static let hasLAPACK = true
    #endif

    /// In place on a symmetric k×k matrix `a` (row-major): the lower-triangular inverse L⁻¹ of its
    /// Cholesky factor A = L·Lᵀ, zeros above the diagonal. False when A is not positive definite
    /// (then `a` is overwritten), or when no LAPACK is linked (macOS: the caller's own code runs).
    public static func inverseCholeskyLower(_ a: UnsafeMutablePointer<Double>, k: Int) -> Bool {
        #if canImport(Accelerate)
        return false
        #else
        // Column-major LAPACK sees the row-major matrix transposed: its upper factor U (A = UᵀU)
        // is L = Uᵀ here, and its inverse of U is (L⁻¹)ᵀ, which row-major reads as L⁻¹.
        var n = Int32(k), lda = Int32(k), info: Int32 = 0
        var upper = CChar(UInt8(ascii: "U")), nonUnit = CChar(UInt8(ascii: "N"))
        dpotrf_(&upper, &n, a, &lda, &info)
        guard info == 0 else { return false }
        dtrtri_(&upper, &nonUnit, &n, a, &lda, &info)
        guard info == 0 else { return false }
        for i in 0..<k { (a + i * k + i + 1).update(repeating: 0, count: k - i - 1) }
        return true
        #endif
    }

    /// Sets the number of threads BLAS may use (process-wide).
    public static func setThreads(_ n: Int) {
        #if !canImport(Accelerate)
        openblas_set_num_threads(Int32(max(1, n)))
        #endif
    }
}
