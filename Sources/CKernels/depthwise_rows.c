#include "CKernels.h"
#include "simd512.h"

// Depthwise 2-D convolution, AVX-512, stride 1 and dilation 1 on planes at least 14 columns
// wide: straight on the NCHW plane, 16 output columns per vector. For kernel column kj the
// input vector is an unaligned (masked) load of the input row at the output column plus
// kj - pad_left; lanes left of column 0, right of the row or past the output row's end are
// masked to zero, so neither a padded copy nor a transpose is needed. Four output rows are
// computed together: each input row vector is loaded once and feeds every output row whose
// window contains that row (kh + 3 loads per kernel column for 4·kh multiply-adds).

#if QK_HAS_X86

int qk_depthwise_rows_applies(const qk_dw_geometry *g) {
    return g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && g->ow >= 14 &&
           ((g->kh == 3 && g->kw == 3) || (g->kh == 5 && g->kw == 5));
}

/// Output rows [r0, r0 + rows) (rows ≤ 4) of one plane, the 16 columns from c0 (`masks` as in
/// `plane`). `kh` and `kw` are constants at the call sites, so the loops unroll fully.
QK_AVX512 QK_INLINE void rows4(const float *xp, const float *wt, __m512 bias, float *yp, long r0, int rows, long c0,
                               const __mmask16 *masks, const qk_dw_geometry *g, const qk_epilogue *e, const int kh,
                               const int kw) {
    __m512 acc[4];
    _Pragma("clang loop unroll(full)") for (int q = 0; q < 4; q++) acc[q] = bias;
    long first = r0 - g->pad_top;  // input row of kernel row 0 for output row r0
    _Pragma("clang loop unroll(full)") for (int t = 0; t < kh + 3; t++) {
        long ir = first + t;
        if (t >= kh + rows - 1 || ir < 0 || ir >= g->ih) continue;
        const float *row = xp + ir * g->iw + c0 - g->pad_left;
        _Pragma("clang loop unroll(full)") for (int kj = 0; kj < kw; kj++) {
            __m512 v = _mm512_maskz_loadu_ps(masks[kj], row + kj);
            _Pragma("clang loop unroll(full)") for (int q = 0; q < 4; q++) {
                int ki = t - q;  // kernel row that input row t is for output row r0 + q
                if (ki >= 0 && ki < kh) acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(wt[ki * kw + kj]), v, acc[q]);
            }
        }
    }
    __m512 out[4];
    _Pragma("clang loop unroll(full)") for (int q = 0; q < 4; q++) out[q] = acc[q];
    for (int q = 0; q < rows; q++) {
        __m512 o = e ? epi16(out[q], e) : out[q];
        _mm512_mask_storeu_ps(yp + (r0 + q) * g->ow + c0, masks[kw], o);
    }
}

/// Plane `p` (= image·channels + channel).
QK_AVX512 static void plane(const float *x, const float *w, const float *bias, float *y, long p, const qk_dw_geometry *g,
                            const qk_epilogue *e) {
    long c = p % g->channels, taps = (long)g->kh * g->kw;
    const float *wt = w + c * taps;
    __m512 bv = _mm512_set1_ps(bias ? bias[c] : 0);
    const float *xp = x + p * (long)g->ih * g->iw;
    float *yp = y + p * (long)g->oh * g->ow;
    // masks[b][kj]: lanes of column block b whose input column (16·b + lane + kj - pad_left)
    // is inside the row and whose output column is inside the output row; masks[b][kw]: the
    // output columns.
    long blocks = (g->ow + 15) / 16;
    __mmask16 masks[blocks][17];
    for (long b = 0; b < blocks; b++) {
        long c0 = 16 * b, n = g->ow - c0 < 16 ? g->ow - c0 : 16;
        for (long kj = 0; kj <= g->kw; kj++) {
            unsigned m = 0;
            for (long l = 0; l < n; l++) {
                long col = c0 + l + kj - g->pad_left;
                if (kj == g->kw || (col >= 0 && col < g->iw)) m |= 1u << l;
            }
            masks[b][kj] = (__mmask16)m;
        }
    }
    // Rows outer: four output rows' input rows stay in L1 across the column blocks.
    for (long r = 0; r < g->oh; r += 4) {
        int rows = g->oh - r < 4 ? (int)(g->oh - r) : 4;
        for (long b = 0; b < blocks; b++) {
            if (g->kh == 3 && g->kw == 3) rows4(xp, wt, bv, yp, r, rows, 16 * b, masks[b], g, e, 3, 3);
            else rows4(xp, wt, bv, yp, r, rows, 16 * b, masks[b], g, e, 5, 5);
        }
    }
}

void qk_depthwise_rows(const float *x, const float *w, const float *bias, float *y, long p0, long p1, const qk_dw_geometry *g,
                       const qk_epilogue *e) {
    for (long p = p0; p < p1; p++) plane(x, w, bias, y, p, g, e);
}
#endif
