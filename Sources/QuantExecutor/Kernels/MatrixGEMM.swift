import Dispatch
import QuantCore

/// GEMM parallelized by the executor's own threads: the product is split into column (or
/// row) blocks of C, each computed by one single-threaded `BLAS.sgemm` call inside
/// `parallelFor`.
///
/// Why not BLAS's own threads: OpenBLAS's worker threads spin (sched_yield) for a while after
/// each call and then compete for the cores with the executor's Dispatch workers running the
/// next (non-GEMM) kernel; with 2 cores that costs more than it gains. Calling this sets
/// OpenBLAS to one thread for the process, so every GEMM of the executor should come through
/// here (a general helper: other families may use it). Blocks run on the executor's worker
/// pool (`parallelTasks`).
enum MatrixGEMM {
    /// `C[m×n] = alpha · op(A) · op(B) + beta · C`, row-major, as `BLAS.sgemm`.
    static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) {
        BLAS.setThreads(1)
        let flops = m * n * k
        var parts = flops < (1 << 18) ? 1 : threads
        let splitColumns = n >= 32 * parts || n >= m
        let extent = splitColumns ? n : m
        // Blocks of whole 16-wide column (or 4-row) panels.
        let unit = splitColumns ? 16 : 4
        parts = max(1, min(parts, extent / unit))
        if parts == 1 {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let panels = (extent + unit - 1) / unit
        parallelTasks(parts, threads: parts) { p in
            let lo = min(extent, panels * p / parts * unit), hi = min(extent, panels * (p + 1) / parts * unit)
            guard lo < hi else { return }
            if splitColumns {
                BLAS.sgemm(transA: transA, transB: transB, m: m, n: hi - lo, k: k, alpha: alpha, a: a, lda: lda,
                           b: transB ? b + lo * ldb : b + lo, ldb: ldb, beta: beta, c: c + lo, ldc: ldc)
            } else {
                BLAS.sgemm(transA: transA, transB: transB, m: hi - lo, n: n, k: k, alpha: alpha,
                           a: transA ? a + lo : a + lo * lda, lda: lda, b: b, ldb: ldb, beta: beta, c: c + lo * ldc, ldc: ldc)
            }
        }
    }
}

