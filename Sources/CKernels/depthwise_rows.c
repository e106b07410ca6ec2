#include "CKernels.h"
#include "simd512.h"

// Depthwise 2-D convolution, AVX-512, stride 1 or 2 (the same both ways), dilation 1, 3×3 or
// 5×5, output rows of at least 14 columns: straight on the NCHW plane, 16 output columns per
// vector. For kernel column kj the input vector is an unaligned masked load of the input row
// at stride·(output column) + kj - pad_left (stride 2: two loads of 16 and the even lanes of
// the pair); lanes left of column 0 or right of the row are masked to zero, so neither a
// padded copy nor a transpose is needed. Four output rows are computed together: each input
// row vector is loaded once and feeds every output row whose window contains that row.

#if QK_HAS_X86

int qk_depthwise_rows_applies(const qk_dw_geometry *g) {
    return g->sh == g->sw && (g->sw == 1 || g->sw == 2) && g->dh == 1 && g->dw == 1 && g->ow >= 14 &&
           ((g->kh == 3 && g->kw == 3) || (g->kh == 5 && g->kw == 5));
}

/// Masks of one column block: `in[kj][h]` the in-row lanes of load h (stride 2: two loads)
/// for kernel column kj, `out` the output columns.
typedef struct {
    __mmask16 in[5][2];
    __mmask16 out;
} block_masks;

/// Output rows [r0, r0 + rows) (rows ≤ 4) of one plane, the 16 output columns from c0.
/// `k` (kernel size) and `s` (stride) are constants at the call sites, so the loops unroll.
QK_AVX512 QK_INLINE void rows4(const float *xp, const float *wt, __m512 bias, float *yp, long r0, int rows, long c0,
                               const block_masks *m, const qk_dw_geometry *g, const qk_epilogue *e, const int k,
                               const int s) {
    __m512 acc[4];
    _Pragma("clang loop unroll(full)") for (int q = 0; q < 4; q++) acc[q] = bias;
    __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    long first = r0 * s - g->pad_top;  // input row of kernel row 0 for output row r0
    _Pragma("clang loop unroll(full)") for (int t = 0; t < k + 3 * s; t++) {
        long ir = first + t;
        if (t >= k + (rows - 1) * s || ir < 0 || ir >= g->ih) continue;
        const float *row = xp + ir * g->iw + c0 * s - g->pad_left;
        _Pragma("clang loop unroll(full)") for (int kj = 0; kj < k; kj++) {
            __m512 v = _mm512_maskz_loadu_ps(m->in[kj][0], row + kj);
            if (s == 2) v = _mm512_permutex2var_ps(v, even, _mm512_maskz_loadu_ps(m->in[kj][1], row + kj + 16));
            _Pragma("clang loop unroll(full)") for (int q = 0; q < 4; q++) {
                int ki = t - q * s;  // kernel row that input row t is for output row r0 + q
                if (ki >= 0 && ki < k) acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(wt[ki * k + kj]), v, acc[q]);
            }
        }
    }
    __m512 out[4];
    _Pragma("clang loop unroll(full)") for (int q = 0; q < 4; q++) out[q] = acc[q];
    for (int q = 0; q < rows; q++) {
        __m512 o = e ? epi16(out[q], e) : out[q];
        _mm512_mask_storeu_ps(yp + (r0 + q) * g->ow + c0, m->out, o);
    }
}

/// Plane `p` (= image·channels + channel).
QK_AVX512 static void plane(const float *x, const float *w, const float *bias, float *y, long p, const qk_dw_geometry *g,
                            const qk_epilogue *e) {
    long c = p % g->channels, k = g->kw, s = g->sw;
    const float *wt = w + c * k * k;
    __m512 bv = _mm512_set1_ps(bias ? bias[c] : 0);
    const float *xp = x + p * (long)g->ih * g->iw;
    float *yp = y + p * (long)g->oh * g->ow;
    // Input element i of load h for kernel column kj of block b is column
    // s·16·b + 16·h + i + kj - pad_left; it is loaded when inside the row.
    long blocks = (g->ow + 15) / 16;
    block_masks masks[blocks];
    for (long b = 0; b < blocks; b++) {
        long n = g->ow - 16 * b < 16 ? g->ow - 16 * b : 16;
        masks[b].out = (__mmask16)((1u << n) - 1);
        for (long kj = 0; kj < k; kj++) {
            for (long h = 0; h < s; h++) {
                unsigned bits = 0;
                for (long i = 0; i < 16; i++) {
                    long col = s * 16 * b + 16 * h + i + kj - g->pad_left;
                    if (col >= 0 && col < g->iw) bits |= 1u << i;
                }
                masks[b].in[kj][h] = (__mmask16)bits;
            }
        }
    }
    // Rows outer: four output rows' input rows stay in L1 across the column blocks.
    for (long r = 0; r < g->oh; r += 4) {
        int rows = g->oh - r < 4 ? (int)(g->oh - r) : 4;
        for (long b = 0; b < blocks; b++) {
            const block_masks *m = &masks[b];
            if (k == 3 && s == 1) rows4(xp, wt, bv, yp, r, rows, 16 * b, m, g, e, 3, 1);
            else if (k == 5 && s == 1) rows4(xp, wt, bv, yp, r, rows, 16 * b, m, g, e, 5, 1);
            else if (k == 3) rows4(xp, wt, bv, yp, r, rows, 16 * b, m, g, e, 3, 2);
            else rows4(xp, wt, bv, yp, r, rows, 16 * b, m, g, e, 5, 2);
        }
    }
}

void qk_depthwise_rows(const float *x, const float *w, const float *bias, float *y, long p0, long p1, const qk_dw_geometry *g,
                       const qk_epilogue *e) {
    for (long p = p0; p < p1; p++) plane(x, w, bias, y, p, g, e);
}
#endif
