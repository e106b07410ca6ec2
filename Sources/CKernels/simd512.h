// AVX-512 helpers (16 lanes, intrinsics) for the kernels' AVX-512 variants. Every function
// here is compiled for AVX-512 (`QK_AVX512`) and called only from such functions.
#ifndef QK_SIMD512_H
#define QK_SIMD512_H

#include "simd.h"

#if QK_HAS_X86
#include <immintrin.h>

/// The epilogue of 16 lanes (same operations and NaN behaviour as `epi8`: max(lo, x) keeps a
/// NaN x, min(hi, x) too).
QK_AVX512 QK_INLINE __m512 epi16(__m512 v, const qk_epilogue *e) {
    v = _mm512_fmadd_ps(v, _mm512_set1_ps(e->pre_scale), _mm512_set1_ps(e->pre_shift));
    __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1);
    switch (e->act) {
    case QK_ACT_RELU: v = _mm512_max_ps(zero, v); break;
    case QK_ACT_CLIP: v = _mm512_min_ps(_mm512_set1_ps(e->b), _mm512_max_ps(_mm512_set1_ps(e->a), v)); break;
    case QK_ACT_HARDSWISH: {
        __m512 h = _mm512_fmadd_ps(v, _mm512_set1_ps(e->a), _mm512_set1_ps(e->b));
        v = _mm512_mul_ps(v, _mm512_min_ps(one, _mm512_max_ps(zero, h)));
        break;
    }
    case QK_ACT_HARDSIGMOID: {
        __m512 h = _mm512_fmadd_ps(v, _mm512_set1_ps(e->a), _mm512_set1_ps(e->b));
        v = _mm512_min_ps(one, _mm512_max_ps(zero, h));
        break;
    }
    default: break;
    }
    return _mm512_fmadd_ps(v, _mm512_set1_ps(e->post_scale), _mm512_set1_ps(e->post_shift));
}

/// The 16-channel depthwise variant (depthwise16.c): whether it handles `g`, its scratch in
/// floats, and the convolution of planes [p0, p1) with `qk_depthwise2d`'s contract.
int qk_depthwise16_applies(const qk_dw_geometry *g);
long qk_depthwise16_scratch(const qk_dw_geometry *g);
void qk_depthwise16(const float *x, const float *w, const float *bias, float *y, long p0, long p1, const qk_dw_geometry *g,
                    const qk_epilogue *e, float *scratch);

/// The direct row variant (depthwise_rows.c) for stride 1 or 2, dilation 1, 3×3 or 5×5 and
/// output rows of at least 14 columns: whether it handles `g`, and planes [p0, p1) (no scratch).
int qk_depthwise_rows_applies(const qk_dw_geometry *g);
void qk_depthwise_rows(const float *x, const float *w, const float *bias, float *y, long p0, long p1, const qk_dw_geometry *g,
                       const qk_epilogue *e);
#endif
#endif
