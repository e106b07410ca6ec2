#include "CKernels.h"
#include "simd.h"

#include "simd512.h"

// Convolution GEMM: C[m×n] = epilogue(A[m×k] · B[k×n] + bias[row]), with A (the weights)
// packed once into panels of 8 rows and B read in place (the input planes of a pointwise
// convolution, or the im2col matrix). The register tile is 8 rows × 48 columns (AVX-512:
// 24 accumulators of 16 lanes, tails by masked loads and stores) or 4 rows × 24 columns
// (AVX2+FMA and portable: 12 accumulators of 8 lanes, tails through a zero-padded copy of the
// last columns of B). Each tile runs over the whole depth k; the accumulators start at the
// bias and get the epilogue at the store, so C is written exactly once.

#define QK_PANEL 8
#define QK_BLOCK 48

long qk_gemm_packed_count(long m, long k) { return (m + QK_PANEL - 1) / QK_PANEL * QK_PANEL * k; }

void qk_gemm_pack(const float *a, long lda, long m, long k, float *packed) {
    for (long r0 = 0; r0 < m; r0 += QK_PANEL) {
        float *dst = packed + r0 * k;
        for (long kk = 0; kk < k; kk++) {
            for (long r = 0; r < QK_PANEL; r++) dst[kk * QK_PANEL + r] = r0 + r < m ? a[(r0 + r) * lda + kk] : 0;
        }
    }
}

long qk_gemm_scratch(long k) { return k * 24; }

/// 4 rows × `nv` vectors of 8 columns. `pa` points at the rows' first weights in a panel
/// (stride QK_PANEL per k); `cols` (≤ nv·8) columns are stored, `rows` (≤ 4) rows.
QK_INLINE void tile4(const float *pa, const float *b, long ldb, long k, float *c, long ldc, long rows, long cols, int nv,
                     const float *bias, const qk_epilogue *e) {
    v8f acc[4][3];
    for (int r = 0; r < 4; r++) {
        v8f init = v8_splat(bias && r < rows ? bias[r] : 0);
        for (int j = 0; j < 3; j++) acc[r][j] = init;
    }
    for (long kk = 0; kk < k; kk++) {
        const float *bk = b + kk * ldb;
        const float *w = pa + kk * QK_PANEL;
        v8f x0 = v8_load(bk);
        v8f x1 = nv > 1 ? v8_load(bk + 8) : x0;
        v8f x2 = nv > 2 ? v8_load(bk + 16) : x0;
        for (int r = 0; r < 4; r++) {
            v8f wv = v8_splat(w[r]);
            acc[r][0] += wv * x0;
            if (nv > 1) acc[r][1] += wv * x1;
            if (nv > 2) acc[r][2] += wv * x2;
        }
    }
    v8f out[4][3];
    _Pragma("clang loop unroll(full)") for (int r = 0; r < 4; r++) {
        _Pragma("clang loop unroll(full)") for (int j = 0; j < 3; j++) out[r][j] = acc[r][j];
    }
    for (int r = 0; r < 4 && r < rows; r++) {
        float *cr = c + r * ldc;
        for (int j = 0; j < nv; j++) {
            v8f v = e ? epi8(out[r][j], e) : out[r][j];
            if ((j + 1) * 8 <= cols) {
                v8_store(cr + j * 8, v);
            } else {
                float tmp[8];
                v8_store(tmp, v);
                for (long i = 0; j * 8 + i < cols; i++) cr[j * 8 + i] = tmp[i];
            }
        }
    }
}

/// Columns [c0, c1) of rows [r0, r1) with 4×24 tiles (portable and AVX2 variants).
QK_INLINE void gemm8(const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0, long r1,
                     long c0, long c1, const float *bias, const qk_epilogue *e, float *scratch) {
    for (long col = c0; col < c1; col += 24) {
        long cols = c1 - col < 24 ? c1 - col : 24;
        const float *bb = b + col;
        long ld = ldb;
        if (cols < 24) {
            // Tail: a zero-padded copy, so that the tile's loads stay inside the buffer.
            for (long kk = 0; kk < k; kk++) {
                memcpy(scratch + kk * 24, b + kk * ldb + col, sizeof(float) * cols);
                memset(scratch + kk * 24 + cols, 0, sizeof(float) * (24 - cols));
            }
            bb = scratch;
            ld = 24;
        }
        int nv = (int)((cols + 7) / 8);
        for (long row = r0; row < r1; row += 4) {
            const float *pa = packed + row / QK_PANEL * QK_PANEL * k + row % QK_PANEL;
            long rows = (r1 < m ? r1 : m) - row;
            const float *bs = bias ? bias + row : NULL;
            float *ct = c + row * ldc + col;
            if (nv == 3) tile4(pa, bb, ld, k, ct, ldc, rows, cols, 3, bs, e);
            else if (nv == 2) tile4(pa, bb, ld, k, ct, ldc, rows, cols, 2, bs, e);
            else tile4(pa, bb, ld, k, ct, ldc, rows, cols, 1, bs, e);
        }
    }
}

static void gemm_generic(const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0, long r1,
                         long c0, long c1, const float *bias, const qk_epilogue *e, float *scratch) {
    gemm8(packed, m, k, b, ldb, c, ldc, r0, r1, c0, c1, bias, e, scratch);
}

#if QK_HAS_X86
QK_AVX2 static void gemm_avx2(const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0, long r1,
                              long c0, long c1, const float *bias, const qk_epilogue *e, float *scratch) {
    gemm8(packed, m, k, b, ldb, c, ldc, r0, r1, c0, c1, bias, e, scratch);
}

/// 8 rows × `nv` vectors of 16 columns; the last vector's lanes are `last` (loads and stores
/// are masked, so nothing outside B or C is touched).
QK_AVX512 QK_INLINE void tile8_avx512(const float *pa, const float *b, long ldb, long k, float *c, long ldc, long rows, int nv,
                                      __mmask16 last, const float *bias, const qk_epilogue *e) {
    __m512 acc[8][3];
    for (int r = 0; r < 8; r++) {
        __m512 init = _mm512_set1_ps(bias && r < rows ? bias[r] : 0);
        for (int j = 0; j < 3; j++) acc[r][j] = init;
    }
    __mmask16 full = 0xFFFF;
    __mmask16 m0 = nv == 1 ? last : full, m1 = nv == 2 ? last : full;
    for (long kk = 0; kk < k; kk++) {
        const float *bk = b + kk * ldb;
        const float *w = pa + kk * QK_PANEL;
        __m512 x0 = _mm512_maskz_loadu_ps(m0, bk);
        __m512 x1 = nv > 1 ? _mm512_maskz_loadu_ps(m1, bk + 16) : x0;
        __m512 x2 = nv > 2 ? _mm512_maskz_loadu_ps(last, bk + 32) : x0;
        for (int r = 0; r < 8; r++) {
            __m512 wv = _mm512_set1_ps(w[r]);
            acc[r][0] = _mm512_fmadd_ps(wv, x0, acc[r][0]);
            if (nv > 1) acc[r][1] = _mm512_fmadd_ps(wv, x1, acc[r][1]);
            if (nv > 2) acc[r][2] = _mm512_fmadd_ps(wv, x2, acc[r][2]);
        }
    }
    // The accumulators leave registers through a buffer indexed by constants only, so that
    // they stay in registers during the loop above.
    __m512 out[8][3];
    _Pragma("clang loop unroll(full)") for (int r = 0; r < 8; r++) {
        _Pragma("clang loop unroll(full)") for (int j = 0; j < 3; j++) out[r][j] = acc[r][j];
    }
    for (int r = 0; r < 8 && r < rows; r++) {
        float *cr = c + r * ldc;
        for (int j = 0; j < nv; j++) {
            __m512 v = e ? epi16(out[r][j], e) : out[r][j];
            _mm512_mask_storeu_ps(cr + 16 * j, j == nv - 1 ? last : full, v);
        }
    }
}

/// Up to 4 columns of 8 rows with the rows in the lanes: each depth step is one 8-float load of
/// the panel and one multiply-add per column, instead of a 16-lane tile per column that would
/// use 1 to 4 of its lanes. Four partial sums per column hide the multiply-add latency.
QK_AVX512 QK_INLINE void narrow8(const float *pa, const float *b, long ldb, long k, float *c, long ldc, long rows, long cols,
                                 const float *bias, const qk_epilogue *e) {
    __m256 acc[4][4];
    _Pragma("clang loop unroll(full)") for (int t = 0; t < 4; t++) {
        _Pragma("clang loop unroll(full)") for (int u = 0; u < 4; u++) acc[t][u] = _mm256_setzero_ps();
    }
    long kk = 0;
    for (; kk + 4 <= k; kk += 4) {
        _Pragma("clang loop unroll(full)") for (int u = 0; u < 4; u++) {
            __m256 w = _mm256_loadu_ps(pa + (kk + u) * QK_PANEL);
            const float *bk = b + (kk + u) * ldb;
            _Pragma("clang loop unroll(full)") for (int t = 0; t < 4; t++) {
                if (t < cols) acc[t][u] = _mm256_fmadd_ps(w, _mm256_set1_ps(bk[t]), acc[t][u]);
            }
        }
    }
    for (; kk < k; kk++) {
        __m256 w = _mm256_loadu_ps(pa + kk * QK_PANEL);
        _Pragma("clang loop unroll(full)") for (int t = 0; t < 4; t++) {
            if (t < cols) acc[t][0] = _mm256_fmadd_ps(w, _mm256_set1_ps(b[kk * ldb + t]), acc[t][0]);
        }
    }
    float bv[QK_PANEL];
    for (int r = 0; r < QK_PANEL; r++) bv[r] = bias && r < rows ? bias[r] : 0;
    for (long t = 0; t < cols; t++) {
        __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]), _mm256_add_ps(acc[t][2], acc[t][3]));
        float out[QK_PANEL];
        _mm256_storeu_ps(out, _mm256_add_ps(sum, _mm256_loadu_ps(bv)));
        for (long r = 0; r < QK_PANEL && r < rows; r++) c[r * ldc + t] = e ? epi1(out[r], e) : out[r];
    }
}

QK_AVX512 static void gemm_avx512(const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0,
                                  long r1, long c0, long c1, const float *bias, const qk_epilogue *e) {
    for (long col = c0; col < c1; col += QK_BLOCK) {
        long cols = c1 - col < QK_BLOCK ? c1 - col : QK_BLOCK;
        int nv = (int)((cols + 15) / 16);
        long tail = cols - 16 * (nv - 1);
        __mmask16 last = (__mmask16)((1u << tail) - 1);
        for (long row = r0; row < r1; row += QK_PANEL) {
            const float *pa = packed + row * k;
            long rows = (r1 < m ? r1 : m) - row;
            const float *bs = bias ? bias + row : NULL;
            float *ct = c + row * ldc + col;
            if (cols <= 4) narrow8(pa, b + col, ldb, k, ct, ldc, rows, cols, bs, e);
            else if (nv == 3) tile8_avx512(pa, b + col, ldb, k, ct, ldc, rows, 3, last, bs, e);
            else if (nv == 2) tile8_avx512(pa, b + col, ldb, k, ct, ldc, rows, 2, last, bs, e);
            else tile8_avx512(pa, b + col, ldb, k, ct, ldc, rows, 1, last, bs, e);
        }
    }
}
#endif

void qk_gemm_packed_isa(int isa, const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0,
                        long r1, long c0, long c1, const float *bias, const qk_epilogue *e, float *scratch) {
    if (r1 > m) r1 = m;
    if (r0 >= r1 || c0 >= c1) return;
#if QK_HAS_X86
    if (isa >= QK_ISA_AVX512 && qk_uses_avx512()) { gemm_avx512(packed, m, k, b, ldb, c, ldc, r0, r1, c0, c1, bias, e); return; }
    if (isa >= QK_ISA_AVX2 && qk_uses_avx2()) { gemm_avx2(packed, m, k, b, ldb, c, ldc, r0, r1, c0, c1, bias, e, scratch); return; }
#endif
    gemm_generic(packed, m, k, b, ldb, c, ldc, r0, r1, c0, c1, bias, e, scratch);
}

void qk_gemm_packed(const float *packed, long m, long k, const float *b, long ldb, float *c, long ldc, long r0, long r1,
                    long c0, long c1, const float *bias, const qk_epilogue *e, float *scratch) {
    qk_gemm_packed_isa(QK_ISA_AVX512, packed, m, k, b, ldb, c, ldc, r0, r1, c0, c1, bias, e, scratch);
}
