#include "CKernels.h"
#include "simd512.h"

// Depthwise 2-D convolution, AVX-512, stride 1 or 2 (the same both ways), dilation 1, 3×3 or
// 5×5, output rows of at least 14 columns: straight on the NCHW plane, 16 output columns per
// vector. For kernel column kj the input vector is an unaligned masked load of the input row
// at stride·(output column) + kj - pad_left (stride 2: two loads of 16 and the even lanes of
// the pair); lanes left of column 0 or right of the row are masked to zero, so neither a
// padded copy nor a transpose is needed. Six output rows are computed together: each input
// row vector is loaded once and feeds every output row whose window contains that row; the
// kernel's taps stay in registers as broadcast vectors.

#if QK_HAS_X86

/// Output rows per step. Six measured best for both kernel sizes (3×3: 4 and 8 slower; 5×5:
/// 4 slower, 8 would not fit the weights and accumulators in the 32 registers).
#define QK_DW_ROWS 6

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

/// Output rows [r0, r0 + rows) (rows ≤ R) of one plane, the 16 output columns from c0.
/// `k` (kernel size), `s` (stride) and `R` are constants at the call sites, so the loops
/// unroll and the weights `wk` (one broadcast vector per tap) stay in registers.
QK_AVX512 QK_INLINE void rows_block(const float *xp, const __m512 *wk, __m512 bias, float *yp, long r0, int rows, long c0,
                                    const block_masks *m, const qk_dw_geometry *g, const qk_epilogue *e, const int k,
                                    const int s, const int R) {
    __m512 acc[R];
    _Pragma("clang loop unroll(full)") for (int q = 0; q < R; q++) acc[q] = bias;
    __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    long first = r0 * s - g->pad_top;  // input row of kernel row 0 for output row r0
    _Pragma("clang loop unroll(full)") for (int t = 0; t < k + (R - 1) * s; t++) {
        long ir = first + t;
        if (t >= k + (rows - 1) * s || ir < 0 || ir >= g->ih) continue;
        const float *row = xp + ir * g->iw + c0 * s - g->pad_left;
        _Pragma("clang loop unroll(full)") for (int kj = 0; kj < k; kj++) {
            __m512 v = _mm512_maskz_loadu_ps(m->in[kj][0], row + kj);
            if (s == 2) v = _mm512_permutex2var_ps(v, even, _mm512_maskz_loadu_ps(m->in[kj][1], row + kj + 16));
            _Pragma("clang loop unroll(full)") for (int q = 0; q < R; q++) {
                int ki = t - q * s;  // kernel row that input row t is for output row r0 + q
                if (ki >= 0 && ki < k) acc[q] = _mm512_fmadd_ps(wk[ki * k + kj], v, acc[q]);
            }
        }
    }
    __m512 out[R];
    _Pragma("clang loop unroll(full)") for (int q = 0; q < R; q++) out[q] = acc[q];
    for (int q = 0; q < rows; q++) {
        __m512 o = e ? epi16(out[q], e) : out[q];
        _mm512_mask_storeu_ps(yp + (r0 + q) * g->ow + c0, m->out, o);
    }
}

/// Fills the masks of every 16-column block of an output row (`blocks` of them).
static void fill_masks(block_masks *masks, long blocks, const qk_dw_geometry *g) {
    long k = g->kw, s = g->sw;
    // Input element i of load h for kernel column kj of block b is column
    // s·16·b + 16·h + i + kj - pad_left; it is loaded when inside the row.
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
}

/// One plane: input `xp`, output `yp`, channel `c`'s weights and bias, the row blocks' masks
/// from `fill_masks`; kernel size `k`, stride `s`, `R` output rows per step (constants at the
/// call sites).
QK_AVX512 QK_INLINE void plane_ks(const float *xp, const float *w, const float *bias, float *yp, long c, const block_masks *masks,
                                  const qk_dw_geometry *g, const qk_epilogue *e, const int k, const int s, const int R) {
    const float *wt = w + c * k * k;
    __m512 wk[k * k];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < k * k; i++) wk[i] = _mm512_set1_ps(wt[i]);
    __m512 bv = _mm512_set1_ps(bias ? bias[c] : 0);
    long blocks = (g->ow + 15) / 16;
    // Rows outer: R output rows' input rows stay in L1 across the column blocks.
    for (long r = 0; r < g->oh; r += R) {
        int rows = g->oh - r < R ? (int)(g->oh - r) : R;
        for (long b = 0; b < blocks; b++) rows_block(xp, wk, bv, yp, r, rows, 16 * b, &masks[b], g, e, k, s, R);
    }
}

QK_AVX512 static void plane(const float *xp, const float *w, const float *bias, float *yp, long c, const block_masks *masks,
                            const qk_dw_geometry *g, const qk_epilogue *e) {
    long k = g->kw, s = g->sw;
    if (k == 3 && s == 1) plane_ks(xp, w, bias, yp, c, masks, g, e, 3, 1, QK_DW_ROWS);
    else if (k == 5 && s == 1) plane_ks(xp, w, bias, yp, c, masks, g, e, 5, 1, QK_DW_ROWS);
    else if (k == 3) plane_ks(xp, w, bias, yp, c, masks, g, e, 3, 2, QK_DW_ROWS);
    else plane_ks(xp, w, bias, yp, c, masks, g, e, 5, 2, QK_DW_ROWS);
}

QK_AVX512 void qk_depthwise_rows(const float *x, const float *w, const float *bias, float *y, long p0, long p1,
                                 const qk_dw_geometry *g, const qk_epilogue *e) {
    long in_plane = (long)g->ih * g->iw, out_plane = (long)g->oh * g->ow;
    long blocks = (g->ow + 15) / 16;
    block_masks masks[blocks];
    fill_masks(masks, blocks, g);
    for (long p = p0; p < p1; p++) plane(x + p * in_plane, w, bias, y + p * out_plane, p % g->channels, masks, g, e);
}

int qk_pointwise_depthwise_applies(const qk_dw_geometry *g) {
    return qk_uses_avx512() && qk_depthwise_rows_applies(g);
}

// Pointwise Conv → depthwise Conv in row bands (one image, channels [c0, c1)): for each band
// of output rows, the pointwise output rows that its windows read are computed into `buf`
// (the rows the previous band already computed are moved up, not recomputed), then the
// depthwise convolution runs on the band as on a small image. The pointwise output never
// exists in full: at 112×112×96 its 4.8 MB would not stay in the L2 cache.
QK_AVX512 void qk_pointwise_depthwise(const float *x, long cin, const float *packed, const float *bias1, const qk_epilogue *e1,
                                      const float *w2, const float *bias2, const qk_epilogue *e2, const qk_dw_geometry *g,
                                      float *y, long c0, long c1, long band, float *buf) {
    long h = g->ih, wd = g->iw, s = g->sh, k = g->kh;
    long cap = qk_pointwise_depthwise_rows(g, band);
    long have_lo = 0, have_hi = 0;  // pointwise rows [have_lo, have_hi) sit in buf rows from 0
    long blocks = (g->ow + 15) / 16;
    block_masks masks[blocks];
    fill_masks(masks, blocks, g);  // the same for every band: only rows differ
    for (long b0 = 0; b0 < g->oh; b0 += band) {
        long b1 = b0 + band < g->oh ? b0 + band : g->oh;
        long top = b0 * s - g->pad_top;  // input row of kernel row 0 for output row b0
        long lo = top > 0 ? top : 0;
        long hi = (b1 - 1) * s - g->pad_top + k;
        if (hi > h) hi = h;
        if (hi < lo) hi = lo;
        long start = lo;
        if (lo >= have_lo && lo < have_hi) {
            long kept = (hi < have_hi ? hi : have_hi) - lo;
            if (lo > have_lo) {
                for (long ch = c0; ch < c1; ch++) {
                    float *plane_buf = buf + (ch - c0) * cap * wd;
                    memmove(plane_buf, plane_buf + (lo - have_lo) * wd, sizeof(float) * kept * wd);
                }
            }
            start = lo + kept;
        }
        if (hi > start) {
            // Rows c0..c1 of the packed weights (c0 is a multiple of 8), written from buf row 0.
            qk_gemm_packed(packed, c1, cin, x + start * wd, h * wd, buf + (start - lo) * wd - c0 * cap * wd, cap * wd, c0, c1, 0,
                           (hi - start) * wd, bias1, e1, NULL);
        }
        have_lo = lo;
        have_hi = hi;
        qk_dw_geometry gb = *g;
        gb.ih = (int)(hi - lo);
        gb.oh = (int)(b1 - b0);
        gb.pad_top = (int)(lo - top);
        for (long ch = c0; ch < c1; ch++) {
            plane(buf + (ch - c0) * cap * wd, w2, bias2, y + ch * (long)g->oh * g->ow + b0 * g->ow, ch, masks, &gb, e2);
        }
    }
}
#else
int qk_pointwise_depthwise_applies(const qk_dw_geometry *g) { (void)g; return 0; }
void qk_pointwise_depthwise(const float *x, long cin, const float *packed, const float *bias1, const qk_epilogue *e1,
                            const float *w2, const float *bias2, const qk_epilogue *e2, const qk_dw_geometry *g,
                            float *y, long c0, long c1, long band, float *buf) {
    (void)x; (void)cin; (void)packed; (void)bias1; (void)e1; (void)w2; (void)bias2; (void)e2; (void)g; (void)y;
    (void)c0; (void)c1; (void)band; (void)buf;
}
#endif

long qk_pointwise_depthwise_rows(const qk_dw_geometry *g, long band) { return (band - 1) * g->sh + g->kh; }
