import CKernels
import QuantCore

/// Conv weights `W [M, C/group, k...]` packed for `qk_gemm_packed`: per group, the
/// `M/group × (C/group·K)` matrix in panels of 8 rows. Packed once per model from the
/// initializer (`ConvKernel` keeps it) and again per run only when W is not that initializer
/// (computed at run time, or replaced by a hook).
final class ConvPackedWeights: @unchecked Sendable {
    /// The storage the panels were packed from; kept alive, so identity cannot be reused.
    let source: TensorStorage
    let shape: [Int]
    let groups: Int
    let rows: Int
    let depth: Int
    let groupStride: Int
    let data: UnsafeMutablePointer<Float>

    /// Nil unless `w` is a float tensor of rank ≥ 3 whose M is divisible by `groups`.
    init?(_ w: Tensor, groups: Int) {
        guard w.dtype == .float, w.rank >= 3, groups >= 1, w.shape[0] % groups == 0 else { return nil }
        source = w.storage
        shape = w.shape
        self.groups = groups
        rows = w.shape[0] / groups
        depth = w.count / max(w.shape[0], 1)
        groupStride = qk_gemm_packed_count(rows, depth)
        data = .allocate(capacity: max(groupStride * groups, 1))
        let wp = w.storage.pointer.assumingMemoryBound(to: Float.self)
        for g in 0..<groups {
            qk_gemm_pack(wp + g * rows * depth, depth, rows, depth, data + g * groupStride)
        }
    }

    deinit { data.deallocate() }

    /// True when these panels were packed from `w` with `groups` groups.
    func matches(_ w: Tensor, groups: Int) -> Bool { w.storage === source && w.shape == shape && groups == self.groups }

    /// `c[M/group, n] = epilogue(W_group · b[depth, n] + bias)` (row strides `n`), split into
    /// tiles of 8 rows × 48 columns over `threads` threads of the worker pool.
    func multiply(group g: Int, b: UnsafePointer<Float>, n: Int, c: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
                  epilogue: UnsafePointer<qk_epilogue>?, threads: Int) {
        guard n > 0, rows > 0 else { return }
        let panels = (rows + 7) / 8, blocks = (n + 47) / 48
        let work = rows * n * max(depth, 1)
        var parts = work < (1 << 17) ? 1 : threads
        // Columns when there are enough 48-column blocks to balance (every thread then reads
        // only its own part of b), else 8-row panels: 49 columns are one full block and a
        // narrow one, which would leave one thread nearly idle.
        let byColumns = blocks >= 4 * parts || panels < 2 * parts
        parts = max(1, min(parts, byColumns ? blocks : panels))
        let a = UnsafePointer(data + g * groupStride)
        let scratchCount = qk_uses_avx512() != 0 ? 1 : qk_gemm_scratch(depth)
        let (m, k) = (rows, depth)
        parallelTasks(parts, threads: parts) { p in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: scratchCount) { scratch in
                if byColumns {
                    let lo = min(n, blocks * p / parts * 48), hi = min(n, blocks * (p + 1) / parts * 48)
                    qk_gemm_packed(a, m, k, b, n, c, n, 0, m, lo, hi, bias, epilogue, scratch.baseAddress)
                } else {
                    let lo = min(m, panels * p / parts * 8), hi = min(m, panels * (p + 1) / parts * 8)
                    qk_gemm_packed(a, m, k, b, n, c, n, lo, hi, 0, n, bias, epilogue, scratch.baseAddress)
                }
            }
        }
    }
}
