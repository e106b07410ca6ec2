#include "CKernels.h"
#include "simd512.h"

// Depthwise 2-D convolution, AVX-512 variant: 16 channels per vector.
//
// NCHW planes waste most lanes on small planes (a 7-wide row fills 7 of 16) and need a padded
// copy per plane. Here a run of up to 16 consecutive channels of one image is gathered into a
// zero-padded, channel-interleaved tile `T[row][col][16]` (16×16 in-register transposes of
// 16 columns of the 16 planes), so every kernel tap is one full-width multiply-add per output
// pixel, for any stride and dilation. Outputs go to `O[pixel][16]` with bias and epilogue
// applied and are transposed back into the channels' planes. Output rows are processed in
// bands so that T and O stay in the L2 cache.

#if QK_HAS_X86

/// Output rows per band: T and O of one band fit in ~256 KiB.
static long band_rows(const qk_dw_geometry *g) {
    long cols = (long)(g->ow - 1) * g->sw + (long)(g->kw - 1) * g->dw + 1;
    long per_row = (long)g->sh * cols + g->ow;  // T floats per extra output row, plus O
    long budget = 65536 / 16;                  // 256 KiB of 16-float vectors
    long fixed = (long)(g->kh - 1) * g->dh * cols;
    long rows = per_row > 0 ? (budget - fixed) / per_row : g->oh;
    if (rows < 1) rows = 1;
    if (rows > g->oh) rows = g->oh;
    return rows;
}

/// Vectors of 16 floats the band buffers need (T with 8·sw vectors of slack for the last
/// pixel group's reads, then O).
static long tile_vectors(const qk_dw_geometry *g, long rows, long *t_vectors) {
    long cols = (long)(g->ow - 1) * g->sw + (long)(g->kw - 1) * g->dw + 1;
    long trows = (rows - 1) * g->sh + (long)(g->kh - 1) * g->dh + 1;
    *t_vectors = trows * cols + 8L * g->sw + (long)(g->kw - 1) * g->dw;
    return *t_vectors + rows * g->ow;
}

long qk_depthwise16_scratch(const qk_dw_geometry *g) {
    long t;
    return 16 * tile_vectors(g, band_rows(g), &t) + 16;
}

/// Whether the 16-channel variant handles `g` (gather offsets must fit in 32 bits).
int qk_depthwise16_applies(const qk_dw_geometry *g) {
    return qk_uses_avx512() && (long)g->ih * g->iw * 16 < (1L << 30);
}

/// Transposes the 16×16 matrix whose rows are `r[0..15]`, in place.
QK_AVX512 QK_INLINE void transpose16(__m512 *r) {
    __m512 t[16];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    _Pragma("clang loop unroll(full)") for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    _Pragma("clang loop unroll(full)") for (int i = 0; i < 16; i += 8) {
        _Pragma("clang loop unroll(full)") for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
        }
    }
    _Pragma("clang loop unroll(full)") for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

/// 8 output pixels of one row (columns ocol..ocol+7; those past the row are computed from
/// the slack and not kept) into O.
QK_AVX512 QK_INLINE void pixels8(const float *trow, long sw, long cols_t, long dh, long dw, long kh, long kw, const __m512 *wv,
                                 __m512 bias, float *o, long n, const qk_epilogue *e) {
    __m512 acc[8];
    for (int j = 0; j < 8; j++) acc[j] = bias;
    for (long ki = 0; ki < kh; ki++) {
        const float *tr = trow + ki * dh * cols_t * 16;
        for (long kj = 0; kj < kw; kj++) {
            __m512 w = wv[ki * kw + kj];
            const float *t = tr + kj * dw * 16;
            _Pragma("clang loop unroll(full)") for (int j = 0; j < 8; j++) {
                acc[j] = _mm512_fmadd_ps(w, _mm512_loadu_ps(t + j * sw * 16), acc[j]);
            }
        }
    }
    __m512 out[8];
    _Pragma("clang loop unroll(full)") for (int j = 0; j < 8; j++) out[j] = acc[j];
    for (long j = 0; j < n; j++) _mm512_storeu_ps(o + j * 16, e ? epi16(out[j], e) : out[j]);
}

/// Channels [ch, ch + lanes) of image `img`.
QK_AVX512 static void run16(const float *x, const float *w, const float *bias, float *y, long img, long ch, int lanes,
                            const qk_dw_geometry *g, const qk_epilogue *e, float *scratch) {
    long taps = (long)g->kh * g->kw, plane_in = (long)g->ih * g->iw, plane_out = (long)g->oh * g->ow;
    __mmask16 mask = (__mmask16)((1u << lanes) - 1);
    __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i w_index = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)taps));
    __m512 zero = _mm512_setzero_ps();
    __m512 wv[taps];
    for (long t = 0; t < taps; t++) wv[t] = _mm512_mask_i32gather_ps(zero, mask, w_index, w + ch * taps + t, 4);
    __m512 bv = bias ? _mm512_mask_loadu_ps(zero, mask, bias + ch) : zero;
    const float *xc = x + (img * g->channels + ch) * plane_in;
    float *yc = y + (img * g->channels + ch) * plane_out;
    long cols_t = (long)(g->ow - 1) * g->sw + (long)(g->kw - 1) * g->dw + 1;
    long band = band_rows(g), t_vectors;
    tile_vectors(g, band, &t_vectors);
    float *tile = scratch, *o = scratch + 16 * t_vectors;
    for (long r0 = 0; r0 < g->oh; r0 += band) {
        long r1 = r0 + band < g->oh ? r0 + band : g->oh;
        long trows = (r1 - r0 - 1) * g->sh + (long)(g->kh - 1) * g->dh + 1;
        long first = r0 * g->sh - g->pad_top;
        for (long tr = 0; tr < trows; tr++) {
            long src = first + tr;
            float *dst = tile + tr * cols_t * 16;
            if (src < 0 || src >= g->ih) {
                memset(dst, 0, sizeof(float) * 16 * cols_t);
                continue;
            }
            // Columns [lo, hi) of T come from the input row; the rest is padding.
            long lo = g->pad_left < cols_t ? g->pad_left : cols_t;
            long hi = g->pad_left + g->iw < cols_t ? g->pad_left + g->iw : cols_t;
            memset(dst, 0, sizeof(float) * 16 * lo);
            memset(dst + hi * 16, 0, sizeof(float) * 16 * (cols_t - hi));
            const float *row = xc + src * g->iw;
            for (long c = lo; c < hi; c += 16) {
                long n = hi - c < 16 ? hi - c : 16;
                __mmask16 m = (__mmask16)((1u << n) - 1);
                __m512 r[16];
                _Pragma("clang loop unroll(full)") for (int l = 0; l < 16; l++) {
                    r[l] = l < lanes ? _mm512_maskz_loadu_ps(m, row + l * plane_in + (c - g->pad_left)) : zero;
                }
                transpose16(r);
                for (long i = 0; i < n; i++) _mm512_storeu_ps(dst + (c + i) * 16, r[i]);
            }
        }
        // Slack after the last row: finite values for the discarded pixels' reads.
        memset(tile + trows * cols_t * 16, 0, sizeof(float) * 16 * (t_vectors - trows * cols_t));
        for (long r = r0; r < r1; r++) {
            const float *trow = tile + (r - r0) * g->sh * cols_t * 16;
            float *orow = o + (r - r0) * g->ow * 16;
            for (long oc = 0; oc < g->ow; oc += 8) {
                long n = g->ow - oc < 8 ? g->ow - oc : 8;
                pixels8(trow + oc * g->sw * 16, g->sw, cols_t, g->dh, g->dw, g->kh, g->kw, wv, bv, orow + oc * 16, n, e);
            }
        }
        // Back to planes: 16 pixels of the 16 channels per transpose.
        long px0 = r0 * g->ow, count = (r1 - r0) * g->ow;
        for (long p = 0; p < count; p += 16) {
            long n = count - p < 16 ? count - p : 16;
            __mmask16 m = (__mmask16)((1u << n) - 1);
            __m512 r[16];
            _Pragma("clang loop unroll(full)") for (int i = 0; i < 16; i++) r[i] = i < n ? _mm512_loadu_ps(o + (p + i) * 16) : zero;
            transpose16(r);
            for (int l = 0; l < lanes; l++) _mm512_mask_storeu_ps(yc + l * plane_out + px0 + p, m, r[l]);
        }
    }
}

void qk_depthwise16(const float *x, const float *w, const float *bias, float *y, long p0, long p1, const qk_dw_geometry *g,
                    const qk_epilogue *e, float *scratch) {
    if (qk_depthwise_rows_applies(g)) {
        qk_depthwise_rows(x, w, bias, y, p0, p1, g, e);
        return;
    }
    long c = g->channels;
    for (long p = p0; p < p1;) {
        long img = p / c, ch = p % c;
        long lanes = 16;
        if (lanes > c - ch) lanes = c - ch;
        if (lanes > p1 - p) lanes = p1 - p;
        run16(x, w, bias, y, img, ch, (int)lanes, g, e, scratch);
        p += lanes;
    }
}
#endif
