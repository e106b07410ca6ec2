#include "CKernels.h"
#include "simd.h"

#include <math.h>
#include <stdint.h>

// QuantizeLinear with one scale and zero point: y = clamp(round_half_even(x / scale) + zp,
// lo, hi), NaN to lo, stored as int8/uint8/int16/uint16. The division stays a division (not a
// multiply by 1/scale), as in the ONNX definition and ONNX Runtime's kernel. Built for baseline
// x86-64, Swift's `rounded(.toNearestOrEven)` is a libm call per element; here the AVX2 variant
// rounds 8 lanes per instruction.

QK_INLINE float quantize1(float x, float scale, float zp, float lo, float hi) {
    float v = rintf(x / scale) + zp;  // rintf: the current rounding mode, half to even by default
    if (!(v >= lo)) v = lo;           // NaN too
    if (v > hi) v = hi;
    return v;
}

QK_INLINE void store1(void *y, long i, int type, float v) {
    switch (type) {
    case QK_Q_INT8: ((int8_t *)y)[i] = (int8_t)(int)v; break;
    case QK_Q_UINT8: ((uint8_t *)y)[i] = (uint8_t)(int)v; break;
    case QK_Q_INT16: ((int16_t *)y)[i] = (int16_t)(int)v; break;
    default: ((uint16_t *)y)[i] = (uint16_t)(int)v; break;
    }
}

static void quantize_generic(const float *x, long n, float scale, float zp, float lo, float hi, int type, void *y) {
    for (long i = 0; i < n; i++) store1(y, i, type, quantize1(x[i], scale, zp, lo, hi));
}

#if QK_HAS_X86
#include <immintrin.h>

// Stores 8 int32 lanes (already within the type's range) as elements i..i+7 of `type`.
QK_AVX2 static inline void store8(void *y, long i, int type, __m256i q) {
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, q);
    switch (type) {
    case QK_Q_INT8: for (int k = 0; k < 8; k++) ((int8_t *)y)[i + k] = (int8_t)lanes[k]; break;
    case QK_Q_UINT8: for (int k = 0; k < 8; k++) ((uint8_t *)y)[i + k] = (uint8_t)lanes[k]; break;
    case QK_Q_INT16: for (int k = 0; k < 8; k++) ((int16_t *)y)[i + k] = (int16_t)lanes[k]; break;
    default: for (int k = 0; k < 8; k++) ((uint16_t *)y)[i + k] = (uint16_t)lanes[k]; break;
    }
}

QK_AVX2 static void quantize_avx2(const float *x, long n, float scale, float zp, float lo, float hi, int type, void *y) {
    __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps(zp), l = _mm256_set1_ps(lo), h = _mm256_set1_ps(hi);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_add_ps(v, z);
        v = _mm256_max_ps(v, l);  // MAXPS returns the second operand (lo) when v is NaN
        v = _mm256_min_ps(v, h);
        __m256i q = _mm256_cvtps_epi32(v);
        store8(y, i, type, q);
    }
    for (; i < n; i++) store1(y, i, type, quantize1(x[i], scale, zp, lo, hi));
}
#endif

void qk_quantize(const float *x, long n, float scale, float zp, float lo, float hi, int type, void *y) {
#if QK_HAS_X86
    if (qk_uses_avx2()) { quantize_avx2(x, n, scale, zp, lo, hi, type, y); return; }
#endif
    quantize_generic(x, n, scale, zp, lo, hi, type, y);
}

// DequantizeLinear(QuantizeLinear(x)) with one scale and zero point, in float as ONNX Runtime
// computes it: q = clamp(round_half_even(x / scale) + zp, lo, hi) (NaN to lo), y = (q - zp) * scale.

static void fake_quantize_generic(const float *x, long n, float scale, float zp, float lo, float hi, float *y) {
    for (long i = 0; i < n; i++) y[i] = (quantize1(x[i], scale, zp, lo, hi) - zp) * scale;
}

#if QK_HAS_X86
QK_AVX2 static void fake_quantize_avx2(const float *x, long n, float scale, float zp, float lo, float hi, float *y) {
    __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps(zp), l = _mm256_set1_ps(lo), h = _mm256_set1_ps(hi);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, z), l), h);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(v, z), s));
    }
    fake_quantize_generic(x + i, n - i, scale, zp, lo, hi, y + i);
}
#endif

void qk_fake_quantize(const float *x, long n, float scale, float zp, float lo, float hi, float *y) {
#if QK_HAS_X86
    if (qk_uses_avx2()) { fake_quantize_avx2(x, n, scale, zp, lo, hi, y); return; }
#endif
    fake_quantize_generic(x, n, scale, zp, lo, hi, y);
}

// Requantization of int32 sums as ONNX Runtime's MLAS does it: v = float(acc) * multiplier,
// clamped to [lo, hi] (the output range less the zero point), rounded half to even, plus zp.

QK_INLINE float requantize1(int32_t a, float m, float lo, float hi) {
    float v = (float)a * m;
    if (!(v >= lo)) v = lo;  // NaN too, as MAXPS in the vector loop
    if (v > hi) v = hi;
    return rintf(v);
}

static void requantize_generic(const int32_t *acc, long n, const float *mult, int per_element, float lo, float hi, int32_t zp,
                               int type, void *y) {
    for (long i = 0; i < n; i++) store1(y, i, type, requantize1(acc[i], mult[per_element ? i : 0], lo, hi) + (float)zp);
}

#if QK_HAS_X86
QK_AVX2 static void requantize_avx2(const int32_t *acc, long n, const float *mult, int per_element, float lo, float hi, int32_t zp,
                                    int type, void *y) {
    __m256 l = _mm256_set1_ps(lo), h = _mm256_set1_ps(hi), m = _mm256_set1_ps(mult[0]);
    __m256i z = _mm256_set1_epi32(zp);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 mm = per_element ? _mm256_loadu_ps(mult + i) : m;
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + i))), mm);
        v = _mm256_min_ps(_mm256_max_ps(v, l), h);
        __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), z);
        store8(y, i, type, q);
    }
    for (; i < n; i++) store1(y, i, type, requantize1(acc[i], mult[per_element ? i : 0], lo, hi) + (float)zp);
}
#endif

void qk_requantize(const int32_t *acc, long n, const float *mult, int per_element, float lo, float hi, int32_t zp, int type, void *y) {
#if QK_HAS_X86
    if (qk_uses_avx2()) { requantize_avx2(acc, n, mult, per_element, lo, hi, zp, type, y); return; }
#endif
    requantize_generic(acc, n, mult, per_element, lo, hi, zp, type, y);
}
