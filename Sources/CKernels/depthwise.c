#include "CKernels.h"
#include "simd.h"

// Depthwise 2-D convolution, one plane at a time.
//
// Each plane is first copied into a zero-padded buffer split into `sw` column phases (phase p
// holds padded columns p, p + sw, p + 2sw, ...), so that for every kernel tap an output row
// reads a contiguous run of one phase: the inner loop is a chain of 8-wide multiply-adds over
// output columns, four vectors at a time, with no bounds checks, for any stride and dilation.
// The buffer is wide enough that the last (partial) vector of a row reads zeros.

typedef struct {
    long rows, vectors, width;
} dw_layout;

static dw_layout layout_of(const qk_dw_geometry *g) {
    dw_layout l;
    l.rows = (long)(g->oh - 1) * g->sh + (long)(g->kh - 1) * g->dh + 1;
    l.vectors = (g->ow + 7) / 8;
    l.width = l.vectors * 8 + ((long)(g->kw - 1) * g->dw) / g->sw + 1;
    return l;
}

long qk_depthwise2d_scratch(const qk_dw_geometry *g) {
    dw_layout l = layout_of(g);
    return g->sw * l.rows * l.width;
}

/// Padded, phase-split copy of one input plane.
static void fill_buffer(const float *xp, const qk_dw_geometry *g, dw_layout l, float *buf) {
    int sw = g->sw;
    for (long r = 0; r < l.rows; r++) {
        long src_row = r - g->pad_top;
        for (int p = 0; p < sw; p++) {
            float *dst = buf + (p * l.rows + r) * l.width;
            if (src_row < 0 || src_row >= g->ih) {
                memset(dst, 0, sizeof(float) * l.width);
                continue;
            }
            // Columns j with 0 <= j*sw + first < iw.
            long first = p - g->pad_left;
            long lo = first >= 0 ? 0 : (-first + sw - 1) / sw;
            long hi = g->iw - first <= 0 ? 0 : (g->iw - first - 1) / sw + 1;
            if (lo > l.width) lo = l.width;
            if (hi > l.width) hi = l.width;
            if (hi < lo) hi = lo;
            if (lo > 0) memset(dst, 0, sizeof(float) * lo);
            if (hi < l.width) memset(dst + hi, 0, sizeof(float) * (l.width - hi));
            const float *src = xp + src_row * g->iw + first;
            if (sw == 1) {
                memcpy(dst + lo, src + lo, sizeof(float) * (hi - lo));
            } else {
                for (long j = lo; j < hi; j++) dst[j] = src[j * sw];
            }
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
    dw_layout l = layout_of(g);
    long taps = (long)g->kh * g->kw;
    long offsets[taps];
    for (int ki = 0; ki < g->kh; ki++) {
        for (int kj = 0; kj < g->kw; kj++) {
            long off = (long)kj * g->dw;
            offsets[ki * g->kw + kj] = ((off % g->sw) * l.rows + (long)ki * g->dh) * l.width + off / g->sw;
        }
    }
    long oh = g->oh, ow = g->ow, full = l.vectors * 8;
    for (long plane = p0; plane < p1; plane++) {
        long ch = plane % g->channels;
        fill_buffer(x + plane * g->ih * g->iw, g, l, buf);
        const float *wc = w + ch * taps;
        v8f bv = v8_splat(bias ? bias[ch] : 0);
        float *yp = y + plane * oh * ow;
        for (long r = 0; r < oh; r++) {
            const float *base = buf + r * g->sh * l.width;
            float *yr = yp + r * ow;
            long o = 0;
            for (; o + 32 <= full; o += 32) {
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
            for (; o < full; o += 8) {
                v8f a0 = bv;
                for (long t = 0; t < taps; t++) a0 += v8_splat(wc[t]) * v8_load(base + offsets[t] + o);
                store_clipped(yr, o, ow, epi8(a0, e));
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

void qk_depthwise2d(const float *x, const float *w, const float *bias, float *y, long p0, long p1,
                    const qk_dw_geometry *g, const qk_epilogue *e, float *scratch) {
#if QK_HAS_X86
    if (qk_uses_avx2()) { planes_avx2(x, w, bias, y, p0, p1, g, e, scratch); return; }
#endif
    planes_generic(x, w, bias, y, p0, p1, g, e, scratch);
}
