import CKernels

/// Keeps freed tensor memory in the process heap between kernels (glibc only).
///
/// Every kernel output is a fresh allocation and most die a few nodes later. With glibc's
/// defaults, blocks above the (dynamic) mmap threshold are mapped and unmapped per tensor and
/// the heap top is trimmed back to the OS, so each run page-faults (and the kernel zeroes)
/// the same memory again: ~12 % of an EfficientNet-Lite0 batch-8 run in `perf`. Fixing the
/// mmap threshold at glibc's maximum (32 MiB), serving larger blocks from the heap too
/// (`M_MMAP_MAX` 0) and disabling trimming lets every tensor reuse freed heap blocks
/// (EfficientNet-Lite0 batch 8: ~19,000 page faults per run -> ~0). Resident memory then stays
/// at the largest working set seen instead of growing and shrinking each run. Process-wide;
/// applied once, by the first `Executor`.
enum MemoryTuning {
    static let applied: Bool = qk_keep_freed_memory() != 0
}
