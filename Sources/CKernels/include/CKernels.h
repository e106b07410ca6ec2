// CKernels: float32 micro-kernels for QuantExecutor's hot loops, and a persistent worker pool.
//
// Swift compiles for baseline x86-64 (SSE2, no FMA) unless given unsafe flags; these kernels
// carry AVX2+FMA variants (`__attribute__((target))`) selected at run time with
// `__builtin_cpu_supports`, and a portable variant for every other CPU. No kernel allocates
// except where documented; none prints.
#ifndef QK_CKERNELS_H
#define QK_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Element-wise activation fused after a kernel, applied in place.
typedef enum {
    QK_ACT_NONE = 0,
    /// max(x, 0)
    QK_ACT_RELU = 1,
    /// min(max(x, a), b)
    QK_ACT_CLIP = 2,
    /// x * max(0, min(1, a*x + b))   (ONNX HardSwish: a = 1/6, b = 0.5)
    QK_ACT_HARDSWISH = 3,
    /// max(0, min(1, a*x + b))
    QK_ACT_HARDSIGMOID = 4,
} qk_activation_kind;

/// `y[i] = act(x[i])` for i in [0, n) (parameters `a`, `b`); `x` may equal `y`.
void qk_activation(const float *x, float *y, long n, int act, float a, float b);

/// What a kernel applies to each output value v before storing it:
/// `post_scale * act(pre_scale * v + pre_shift) + post_shift` (scalar multiplies and adds
/// around an activation, fused from the nodes that follow a Conv).
typedef struct {
    int act;
    float a, b;
    float pre_scale, pre_shift, post_scale, post_shift;
} qk_epilogue;

/// Geometry of a 2-D depthwise convolution (group = C = M), NCHW.
typedef struct {
    int ih, iw, oh, ow;
    int kh, kw, sh, sw, dh, dw;
    int pad_top, pad_left;
    int channels;
} qk_dw_geometry;

/// Floats of scratch one thread needs for `qk_depthwise2d`.
long qk_depthwise2d_scratch(const qk_dw_geometry *g);

/// Planes that the variant chosen for `g` handles together (16 for the 16-channel AVX-512
/// variant, else 1): callers split work at multiples of it.
long qk_depthwise2d_planes_per_unit(const qk_dw_geometry *g);

/// Depthwise 2-D convolution of planes [p0, p1) (plane = image*channels + channel):
/// `y[p] = epilogue(conv(x[p], w[channel]) + bias[channel])`. `w` is [channels, kh, kw]; `bias` may
/// be NULL; `e` is applied to each output (after the bias). `scratch` holds
/// `qk_depthwise2d_scratch(g)` floats.
void qk_depthwise2d(const float *x, const float *w, const float *bias, float *y, long p0, long p1,
                    const qk_dw_geometry *g, const qk_epilogue *e, float *scratch);

/// Binary float operators over one row: `y[i] = a[i*sa] op b[i*sb]` with `sa`, `sb` in {0, 1}.
typedef enum { QK_ADD = 0, QK_SUB = 1, QK_MUL = 2, QK_DIV = 3 } qk_binary_op;
void qk_binary(int op, const float *a, long sa, const float *b, long sb, float *y, long n);

/// Min, max and sums of the finite elements of a float array (calibration statistics).
/// `min`/`max` are +inf/-inf when no element is finite; a zero minimum or maximum is +0.
typedef struct {
    float min, max;
    double sum, sum_squares;
    long finite;
} qk_summary;
void qk_summarize(const float *x, long n, qk_summary *out);

/// Sums of an analysis comparison over n elements, in double: Σr², Σ(t−r)², Σr·t, Σt², Σ|t−r|
/// and max |t−r| (NaN when any t−r is NaN). Fixed summation order for a given n.
typedef struct {
    double signal, noise, dot, test_power, abs_sum, max_abs;
} qk_error_totals;
void qk_error_sums(const float *r, const float *t, long n, qk_error_totals *out);

/// The bins of x and |x| histograms (calibration): bin = trunc(clamp(v * inv - first, 0, top))
/// computed in double (`inv` a power of two, `first` and `top` integers), as
/// `TensorStatistics.updateHistograms` defines it.
typedef struct {
    double inv, first, top;
} qk_bin_grid;

/// Scratch (uint32 counters) that `qk_histogram2` needs for histograms of `bins` and
/// `abs_bins` bins.
long qk_histogram2_scratch(long bins, long abs_bins);

/// Adds the finite elements of `x` to the histogram of x (`counts`, `h.top + 1` bins) and of
/// |x| (`abs_counts`, `a.top + 1` bins). `scratch` holds `qk_histogram2_scratch` zeroed
/// counters (the kernel leaves them zeroed); non-finite elements are skipped.
void qk_histogram2(const float *x, long n, qk_bin_grid h, qk_bin_grid a, double *counts, double *abs_counts,
                   unsigned *scratch);

/// A persistent pool of worker threads. `qk_parallel_run` runs `fn(ctx, task)` for every task
/// in [0, tasks) on the caller and up to `threads - 1` workers and returns when all are done.
/// A call made while the pool is busy (another thread's call, or a nested call from a task)
/// runs its tasks on the calling thread instead.
void qk_parallel_run(int tasks, int threads, void (*fn)(void *ctx, long task), void *ctx);

/// glibc: fixes the mmap threshold at its maximum (32 MiB) and disables heap trimming, so
/// that freed blocks are reused instead of unmapped and faulted in again. Returns 1 when
/// applied, 0 elsewhere (other C libraries) or on failure.
int qk_keep_freed_memory(void);

/// Floats of a weight matrix of `m` rows and `k` columns packed for `qk_gemm_packed`.
long qk_gemm_packed_count(long m, long k);

/// Packs row-major `a` [m×k] (row stride `lda`) into panels of 8 rows: row r, column kk goes to
/// `packed[(r/8·8)·k + kk·8 + r%8]`; the rows of the last panel past `m` are zero.
void qk_gemm_pack(const float *a, long lda, long m, long k, float *packed);

/// Floats of scratch one thread needs for `qk_gemm_packed` with depth `k`.
long qk_gemm_scratch(long k);

/// `c[r·ldc + j] = epilogue(sum_kk A[r, kk] · b[kk·ldb + j] + bias[r])` for rows r in [r0, r1)
/// (r0 a multiple of 8) and columns j in [c0, c1), with A packed by `qk_gemm_pack` (m rows,
/// depth k). `bias` may be NULL (zero); `e` may be NULL (no epilogue). Reads of `b` and writes
/// of `c` stay inside the given columns; `scratch` holds `qk_gemm_scratch(k)` floats.
void qk_gemm_packed(const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0, long r1,
                    long c0, long c1, const float *bias, const qk_epilogue *e, float *scratch);

/// Pointwise Conv followed by a depthwise Conv, in row bands of one image (AVX-512 only):
/// channels [c0, c1) of `y` (c0 a multiple of 8) = depthwise(`w2`, `bias2`, `e2`, geometry `g`)
/// of pointwise(`packed` [g->channels × cin] by `qk_gemm_pack`, `bias1`, `e1`) of `x` [cin
/// planes of g->ih × g->iw]. `g` is the depthwise geometry on the full image (channels = the
/// pointwise outputs); `buf` holds (c1 - c0) · `qk_pointwise_depthwise_rows(g, band)` · g->iw
/// floats. `_applies` says whether this CPU and `g` (3×3 or 5×5, stride 1 or 2, dilation 1,
/// output rows of at least 14 columns) are supported.
int qk_pointwise_depthwise_applies(const qk_dw_geometry *g);
long qk_pointwise_depthwise_rows(const qk_dw_geometry *g, long band);
void qk_pointwise_depthwise(const float *x, long cin, const float *packed, const float *bias1, const qk_epilogue *e1,
                            const float *w2, const float *bias2, const qk_epilogue *e2, const qk_dw_geometry *g,
                            float *y, long c0, long c1, long band, float *buf);

/// Output types of `qk_quantize`.
typedef enum { QK_Q_INT8 = 0, QK_Q_UINT8 = 1, QK_Q_INT16 = 2, QK_Q_UINT16 = 3 } qk_quantize_type;

/// QuantizeLinear with one scale and zero point over n floats: `y[i] = clamp(round_half_even(
/// x[i] / scale) + zp, lo, hi)` (NaN to lo) stored as `type` (`lo`/`hi` within the type).
void qk_quantize(const float *x, long n, float scale, float zp, float lo, float hi, int type, void *y);

/// Requantizes n int32 sums as ONNX Runtime does: `y[i] = round_half_even(clamp(float(acc[i]) *
/// m, lo, hi)) + zp` stored as `type`, with m = mult[i] when `per_element`, else mult[0]; `lo`/`hi`
/// are the output type's range less zp.
void qk_requantize(const int32_t *acc, long n, const float *mult, int per_element, float lo, float hi, int32_t zp, int type, void *y);

/// DequantizeLinear(QuantizeLinear(x)) over n floats with one scale and zero point, in float:
/// `y[i] = (clamp(round_half_even(x[i] / scale) + zp, lo, hi) - zp) * scale` (NaN to lo).
void qk_fake_quantize(const float *x, long n, float scale, float zp, float lo, float hi, float *y);

/// Instruction-set variants of a kernel, best last.
typedef enum { QK_ISA_PORTABLE = 0, QK_ISA_AVX2 = 1, QK_ISA_AVX512 = 2 } qk_isa;

/// `qk_gemm_packed` with the best variant not above `isa` that this CPU supports (tests run
/// every variant through it).
void qk_gemm_packed_isa(int isa, const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0,
                        long r1, long c0, long c1, const float *bias, const qk_epilogue *e, float *scratch);

/// Page-aligned memory for large tensors (QuantCore's `TensorStorage` from 256 KiB), from big
/// anonymous mappings: one heap per allocating thread, best fit (lowest address among equal
/// sizes), freed ranges coalesced and kept mapped for reuse, never unmapped. Any thread may
/// free; the block returns to the heap it came from, and a finished thread's heap passes to
/// the next thread.
///
/// Why not malloc: executor runs allocate and free the same sequence of tensor sizes every
/// batch, interleaved with long-lived small allocations (statistics, strings) and with
/// allocations of other threads at moments that vary (data prefetch). In glibc's heap those
/// land between freed tensors and the layout drifts, so the heap's high-water mark kept
/// rising with the number of batches; unmapping every tensor instead (mmap threshold) costs
/// a page fault per 4 KiB per run. Kept apart, one thread's fixed sequence per heap, placed
/// by best fit, tensor memory repeats its layout from run to run and reuse costs nothing.
/// `qk_block_alloc` returns NULL when no memory can be mapped; `qk_block_free` takes the
/// byte count given to `qk_block_alloc`.
void *qk_block_alloc(size_t bytes);
void qk_block_free(void *p, size_t bytes);
/// Returns the pages of every free range to the system (they stay mapped and read as zero
/// when used again), e.g. when a long pass over the data is done.
void qk_block_release(void);

/// Bytes mapped, in use and the in-use high-water mark (page-rounded); `extent`: bytes from
/// the start of each mapping to the end of the highest block ever handed out in it (what
/// may be resident); free ranges.
typedef struct {
    size_t mapped, in_use, high_water, extent;
    long free_ranges;
} qk_block_stats;
qk_block_stats qk_block_statistics(void);

/// 1 when the AVX2+FMA kernel variants are in use.
int qk_uses_avx2(void);

/// 1 when the AVX-512 kernel variants (depthwise convolution, GEMM) are in use.
int qk_uses_avx512(void);

#ifdef __cplusplus
}
#endif
#endif
