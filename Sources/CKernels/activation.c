#include "CKernels.h"
#include "simd.h"

/// y = act(x + bias) over n floats (x may equal y).
QK_INLINE void bias_act_row(const float *x, float *y, long n, float bias, int act, float a, float b) {
    long i = 0;
    v8f bv = v8_splat(bias);
    for (; i + 8 <= n; i += 8) v8_store(y + i, act8(v8_load(x + i) + bv, act, a, b));
    for (; i < n; i++) y[i] = act1(x[i] + bias, act, a, b);
}

static void activation_generic(const float *x, float *y, long n, int act, float a, float b) {
    bias_act_row(x, y, n, 0, act, a, b);
}

#if QK_HAS_X86
QK_AVX2 static void activation_avx2(const float *x, float *y, long n, int act, float a, float b) {
    bias_act_row(x, y, n, 0, act, a, b);
}
#endif

void qk_activation(const float *x, float *y, long n, int act, float a, float b) {
#if QK_HAS_X86
    if (qk_uses_avx2()) { activation_avx2(x, y, n, act, a, b); return; }
#endif
    activation_generic(x, y, n, act, a, b);
}

QK_INLINE void binary_row(int op, const float *a, long sa, const float *b, long sb, float *y, long n) {
    long i = 0;
    // Scalars of a broadcast operand; the contiguous case reloads per vector.
    v8f av = v8_splat(a[0]), bv = v8_splat(b[0]);
#define QK_BINARY_LOOP(EXPR, SEXPR)                                                   \
    for (; i + 8 <= n; i += 8) {                                                      \
        v8f x = sa ? v8_load(a + i) : av, z = sb ? v8_load(b + i) : bv;               \
        v8_store(y + i, EXPR);                                                        \
    }                                                                                 \
    for (; i < n; i++) {                                                              \
        float x = a[i * sa], z = b[i * sb];                                           \
        y[i] = SEXPR;                                                                 \
    }
    switch (op) {
    case QK_ADD: QK_BINARY_LOOP(x + z, x + z) break;
    case QK_SUB: QK_BINARY_LOOP(x - z, x - z) break;
    case QK_MUL: QK_BINARY_LOOP(x * z, x * z) break;
    default: QK_BINARY_LOOP(x / z, x / z) break;
    }
#undef QK_BINARY_LOOP
}

static void binary_generic(int op, const float *a, long sa, const float *b, long sb, float *y, long n) {
    binary_row(op, a, sa, b, sb, y, n);
}

#if QK_HAS_X86
QK_AVX2 static void binary_avx2(int op, const float *a, long sa, const float *b, long sb, float *y, long n) {
    binary_row(op, a, sa, b, sb, y, n);
}
#endif

void qk_binary(int op, const float *a, long sa, const float *b, long sb, float *y, long n) {
    if (n <= 0) return;
#if QK_HAS_X86
    if (qk_uses_avx2()) { binary_avx2(op, a, sa, b, sb, y, n); return; }
#endif
    binary_generic(op, a, sa, b, sb, y, n);
}

int qk_uses_avx2(void) {
#if QK_HAS_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

int qk_uses_avx512(void) {
#if QK_HAS_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && qk_uses_avx2();
    }
    return cached;
#else
    return 0;
#endif
}
