#include "CKernels.h"
#include "simd512.h"

// Depthwise 2-D convolution, one plane at a time.
//
// Each plane is first copied into a zero-padded buffer split into `sw` column phases (phase p
// holds padded columns p, p + sw, p + 2sw, ...), so that for every kernel tap an output row
// reads a contiguous run of one phase: the inner loop is a chain of 8-wide (AVX-512: 16-wide)
// multiply-adds over output columns, four vectors at a time, with no bounds checks, for any stride and dilation.
// The buffer is wide enough that the last (partial) vector of a row reads zeros.

typedef struct {
    long rows, vectors, width;
} dw_layout;

/// Buffer layout for output rows computed in whole vectors of `lanes` floats.
static dw_layout layout_of(const qk_dw_geometry *g, int lanes) {
    dw_layout l;
    l.rows = (long)(g->oh - 1) * g->sh + (long)(g->kh - 1) * g->dh + 1;
    l.vectors = (g->ow + lanes - 1) / lanes;
    l.width = l.vectors * lanes + ((long)(g->kw - 1) * g->dw) / g->sw + 1;
    return l;
}

long qk_depthwise2d_scratch(const qk_dw_geometry *g) {
    dw_layout l = layout_of(g, 8);
    long planes = g->sw * l.rows * l.width;
#if QK_HAS_X86
    long tiles = qk_depthwise16_scratch(g);
    if (tiles > planes) return tiles;
#endif
    return planes;
}

/// Element offset of each kernel tap from the start of output row 0's vector in the buffer.
QK_INLINE void tap_offsets(const qk_dw_geometry *g, dw_layout l, long *offsets) {
    for (int ki = 0; ki < g->kh; ki++) {
        for (int kj = 0; kj < g->kw; kj++) {
            long off = (long)kj * g->dw;
            offsets[ki * g->kw + kj] = ((off % g->sw) * l.rows + (long)ki * g->dh) * l.width + off / g->sw;
        }
    }
}

/// Columns [lo, hi) of phase p that map inside the input row (j*sw + p - pad_left in [0, iw)).
QK_INLINE void phase_range(const qk_dw_geometry *g, dw_layout l, int p, long *lo, long *hi) {
    int sw = g->sw;
    long first = p - g->pad_left;
    long a = first >= 0 ? 0 : (-first + sw - 1) / sw;
    long b = g->iw - first <= 0 ? 0 : (g->iw - first - 1) / sw + 1;
    if (a > l.width) a = l.width;
    if (b > l.width) b = l.width;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/// Padded, phase-split copy of one input plane. Inlined into each kernel variant, so the copy
/// loops are vectorized for the variant's target (stride 2 deinterleaves both phases in one
/// pass over the row).
QK_INLINE void fill_buffer(const float *xp, const qk_dw_geometry *g, dw_layout l, float *buf) {
    int sw = g->sw;
    for (long r = 0; r < l.rows; r++) {
        long src_row = r - g->pad_top;
        if (src_row < 0 || src_row >= g->ih) {
            for (int p = 0; p < sw; p++) memset(buf + (p * l.rows + r) * l.width, 0, sizeof(float) * l.width);
            continue;
        }
        const float *row = xp + src_row * g->iw;
        long lo[2], hi[2];
        int both = sw == 2;
        for (int p = 0; p < sw; p++) {
            long a, b;
            phase_range(g, l, p, &a, &b);
            float *dst = buf + (p * l.rows + r) * l.width;
            if (a > 0) memset(dst, 0, sizeof(float) * a);
            if (b < l.width) memset(dst + b, 0, sizeof(float) * (l.width - b));
            if (both) { lo[p] = a; hi[p] = b; continue; }
            const float *src = row + (p - g->pad_left);
            if (sw == 1) {
                memcpy(dst + a, src + a, sizeof(float) * (b - a));
            } else {
                for (long j = a; j < b; j++) dst[j] = src[j * sw];
            }
        }
        if (both) {
            // Phase p column j reads input column 2j + p - pad_left. Over the columns where
            // both phases are inside, one pass writes both.
            float *d0 = buf + r * l.width, *d1 = buf + (l.rows + r) * l.width;
            const float *s0 = row - g->pad_left, *s1 = row + 1 - g->pad_left;
            long a = lo[0] > lo[1] ? lo[0] : lo[1], b = hi[0] < hi[1] ? hi[0] : hi[1];
            if (b < a) b = a;
            for (long j = lo[0]; j < a && j < hi[0]; j++) d0[j] = s0[2 * j];
            for (long j = lo[1]; j < a && j < hi[1]; j++) d1[j] = s1[2 * j];
            for (long j = a; j < b; j++) {
                d0[j] = s0[2 * j];
                d1[j] = s1[2 * j];
            }
            for (long j = b > lo[0] ? b : lo[0]; j < hi[0]; j++) d0[j] = s0[2 * j];
            for (long j = b > lo[1] ? b : lo[1]; j < hi[1]; j++) d1[j] = s1[2 * j];
        }
    }
}

/// Stores the lanes of `v` that fall inside a row of `ow` outputs (`o` is the vector's column).
QK_INLINE void store_clipped(float *yr, long o, long ow, v8f v) {
    if (o + 8 <= ow) {
        v8_store(yr + o, v);
    } else {
        float tmp[8];
        v8_store(tmp, v);
        for (long j = 0; o + j < ow; j++) yr[o + j] = tmp[j];
    }
}

QK_INLINE void planes(const float *x, const float *w, const float *bias, float *y, long p0, long p1,
                      const qk_dw_geometry *g, const qk_epilogue *e, float *buf) {
    dw_layout l = layout_of(g, 8);
    long taps = (long)g->kh * g->kw;
    long offsets[taps];
    tap_offsets(g, l, offsets);
    long oh = g->oh, ow = g->ow, full = l.vectors * 8;
    for (long plane = p0; plane < p1; plane++) {
        long ch = plane % g->channels;
        fill_buffer(x + plane * g->ih * g->iw, g, l, buf);
        const float *wc = w + ch * taps;
        v8f bv = v8_splat(bias ? bias[ch] : 0);
        float *yp = y + plane * oh * ow;
        long wide = full / 32 * 32;
        for (long r = 0; r < oh; r++) {
            const float *base = buf + r * g->sh * l.width;
            float *yr = yp + r * ow;
            for (long o = 0; o < wide; o += 32) {
                v8f a0 = bv, a1 = bv, a2 = bv, a3 = bv;
                for (long t = 0; t < taps; t++) {
                    v8f wv = v8_splat(wc[t]);
                    const float *s = base + offsets[t] + o;
                    a0 += wv * v8_load(s);
                    a1 += wv * v8_load(s + 8);
                    a2 += wv * v8_load(s + 16);
                    a3 += wv * v8_load(s + 24);
                }
                store_clipped(yr, o, ow, epi8(a0, e));
                store_clipped(yr, o + 8, ow, epi8(a1, e));
                store_clipped(yr, o + 16, ow, epi8(a2, e));
                store_clipped(yr, o + 24, ow, epi8(a3, e));
            }
        }
        // Remaining columns (narrow planes): four rows at a time, so that four independent
        // accumulator chains hide the multiply-add latency.
        long step = g->sh * l.width;
        for (long o = wide; o < full; o += 8) {
            long r = 0;
            for (; r + 4 <= oh; r += 4) {
                const float *base = buf + r * step + o;
                v8f a0 = bv, a1 = bv, a2 = bv, a3 = bv;
                for (long t = 0; t < taps; t++) {
                    v8f wv = v8_splat(wc[t]);
                    const float *s = base + offsets[t];
                    a0 += wv * v8_load(s);
                    a1 += wv * v8_load(s + step);
                    a2 += wv * v8_load(s + 2 * step);
                    a3 += wv * v8_load(s + 3 * step);
                }
                store_clipped(yp + r * ow, o, ow, epi8(a0, e));
                store_clipped(yp + (r + 1) * ow, o, ow, epi8(a1, e));
                store_clipped(yp + (r + 2) * ow, o, ow, epi8(a2, e));
                store_clipped(yp + (r + 3) * ow, o, ow, epi8(a3, e));
            }
            for (; r < oh; r++) {
                const float *base = buf + r * step + o;
                v8f a0 = bv;
                for (long t = 0; t < taps; t++) a0 += v8_splat(wc[t]) * v8_load(base + offsets[t]);
                store_clipped(yp + r * ow, o, ow, epi8(a0, e));
            }
        }
    }
}


static void planes_generic(const float *x, const float *w, const float *bias, float *y, long p0, long p1,
                           const qk_dw_geometry *g, const qk_epilogue *e, float *buf) {
    planes(x, w, bias, y, p0, p1, g, e, buf);
}

#if QK_HAS_X86
QK_AVX2 static void planes_avx2(const float *x, const float *w, const float *bias, float *y, long p0, long p1,
                                const qk_dw_geometry *g, const qk_epilogue *e, float *buf) {
    planes(x, w, bias, y, p0, p1, g, e, buf);
}
#endif

long qk_depthwise2d_planes_per_unit(const qk_dw_geometry *g) {
#if QK_HAS_X86
    if (qk_depthwise16_applies(g) && !qk_depthwise_rows_applies(g)) return 16;
#endif
    return 1;
}

void qk_depthwise2d(const float *x, const float *w, const float *bias, float *y, long p0, long p1,
                    const qk_dw_geometry *g, const qk_epilogue *e, float *scratch) {
#if QK_HAS_X86
    if (qk_depthwise16_applies(g)) { qk_depthwise16(x, w, bias, y, p0, p1, g, e, scratch); return; }
    if (qk_uses_avx2()) { planes_avx2(x, w, bias, y, p0, p1, g, e, scratch); return; }
#endif
    planes_generic(x, w, bias, y, p0, p1, g, e, scratch);
}
