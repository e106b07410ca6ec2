// Portable 8-wide float vectors (Clang/GCC vector extension). The same source compiles to
// AVX2+FMA inside functions marked QK_AVX2 and to SSE pairs elsewhere; `acc += w * x` in one
// statement contracts to an FMA where the target has one.
#ifndef QK_SIMD_H
#define QK_SIMD_H

#include <string.h>

#include "CKernels.h"

// The generic variants pass 8-wide vectors between always-inline helpers only; no ABI is
// crossed.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

#if defined(__x86_64__) || defined(__i386__)
#define QK_HAS_X86 1
#define QK_AVX2 __attribute__((target("avx2,fma")))
#define QK_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#else
#define QK_HAS_X86 0
#define QK_AVX2
#endif

#define QK_INLINE static inline __attribute__((always_inline))

QK_INLINE v8f v8_load(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
QK_INLINE void v8_store(float *p, v8f v) { memcpy(p, &v, sizeof v); }
QK_INLINE v8f v8_splat(float x) { return (v8f){x, x, x, x, x, x, x, x}; }

/// `m ? a : b` lane-wise (m lanes are all-ones or zero).
QK_INLINE v8f v8_select(v8i m, v8f a, v8f b) {
    v8i ai, bi;
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    v8i r = (m & ai) | (~m & bi);
    v8f out;
    memcpy(&out, &r, sizeof out);
    return out;
}

/// Lane-wise min(max(x, lo), hi) that propagates NaN (like numpy.clip and Swift's max/min on x
/// first).
QK_INLINE v8f v8_clamp(v8f x, v8f lo, v8f hi) {
    x = v8_select(x < lo, lo, x);
    return v8_select(x > hi, hi, x);
}

QK_INLINE float s_clamp(float x, float lo, float hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

/// Activation of one vector / one scalar (`qk_activation_kind`); `act` is loop-invariant, so the
/// branches predict.
QK_INLINE v8f act8(v8f v, int act, float a, float b) {
    switch (act) {
    case QK_ACT_RELU: return v8_select(v < v8_splat(0), v8_splat(0), v);
    case QK_ACT_CLIP: return v8_clamp(v, v8_splat(a), v8_splat(b));
    case QK_ACT_HARDSWISH: return v * v8_clamp(v * v8_splat(a) + v8_splat(b), v8_splat(0), v8_splat(1));
    case QK_ACT_HARDSIGMOID: return v8_clamp(v * v8_splat(a) + v8_splat(b), v8_splat(0), v8_splat(1));
    default: return v;
    }
}

QK_INLINE float act1(float v, int act, float a, float b) {
    switch (act) {
    case QK_ACT_RELU: return v < 0 ? 0 : v;
    case QK_ACT_CLIP: return s_clamp(v, a, b);
    case QK_ACT_HARDSWISH: return v * s_clamp(v * a + b, 0, 1);
    case QK_ACT_HARDSIGMOID: return s_clamp(v * a + b, 0, 1);
    default: return v;
    }
}

/// The epilogue of one vector.
QK_INLINE v8f epi8(v8f v, const qk_epilogue *e) {
    v = v * v8_splat(e->pre_scale) + v8_splat(e->pre_shift);
    v = act8(v, e->act, e->a, e->b);
    return v * v8_splat(e->post_scale) + v8_splat(e->post_shift);
}

QK_INLINE float epi1(float v, const qk_epilogue *e) {
    return act1(v * e->pre_scale + e->pre_shift, e->act, e->a, e->b) * e->post_scale + e->post_shift;
}

#endif
