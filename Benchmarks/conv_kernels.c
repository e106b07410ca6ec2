// Single-core throughput of the CKernels convolution kernels on EfficientNet-Lite0's shapes
// (224×224 input), in CPU time (CLOCK_PROCESS_CPUTIME_ID: other jobs on a shared machine
// disturb it less than wall time). Build and run from the repository root:
//
//     clang -O2 -ISources/CKernels/include Benchmarks/conv_kernels.c Sources/CKernels/*.c \
//         -lpthread -o /tmp/conv_kernels && /tmp/conv_kernels
//
// Prints GFLOP/s (2 per multiply-add) per pointwise GEMM (qk_gemm_packed with a HardSwish
// epilogue) and per depthwise convolution (qk_depthwise2d with Clip 0..6, TF-style "same"
// padding), the totals, and the AVX-512 FMA peak of the core for comparison.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "CKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fill(float *p, long n, int mod) {
    for (long i = 0; i < n; i++) p[i] = (float)(i % mod) * 0.1f - 0.3f;
}

/// Seconds per call of a pointwise convolution as a GEMM: m output channels, k input channels,
/// n pixels.
static double time_gemm(long m, long k, long n) {
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
    float *p = malloc(sizeof(float) * qk_gemm_packed_count(m, k)), *s = malloc(sizeof(float) * qk_gemm_scratch(k));
    fill(a, m * k, 7);
    fill(b, k * n, 5);
    qk_gemm_pack(a, k, m, k, p);
    qk_epilogue e = {QK_ACT_HARDSWISH, 1.0f / 6, 0.5f, 1, 0, 1, 0};
    int reps = (int)(2e9 / (2.0 * m * n * k)) + 3;
    qk_gemm_packed(p, m, k, b, n, c, n, 0, m, 0, n, NULL, &e, s);
    double t0 = cpu_seconds();
    for (int r = 0; r < reps; r++) qk_gemm_packed(p, m, k, b, n, c, n, 0, m, 0, n, NULL, &e, s);
    double t = (cpu_seconds() - t0) / reps;
    free(a), free(b), free(c), free(p), free(s);
    return t;
}

/// Seconds per call of a depthwise convolution over `ch` channels of h×h, kernel k×k, stride s.
static double time_depthwise(int ch, int h, int k, int s) {
    int oh = (h + s - 1) / s, pad = (oh - 1) * s + k - h;
    if (pad < 0) pad = 0;
    qk_dw_geometry g = {h, h, oh, oh, k, k, s, s, 1, 1, pad / 2, pad / 2, ch};
    float *x = malloc(sizeof(float) * ch * h * h), *w = malloc(sizeof(float) * ch * k * k), *bias = malloc(sizeof(float) * ch);
    float *y = malloc(sizeof(float) * ch * oh * oh), *scratch = malloc(sizeof(float) * qk_depthwise2d_scratch(&g));
    fill(x, (long)ch * h * h, 13);
    fill(w, (long)ch * k * k, 7);
    fill(bias, ch, 3);
    qk_epilogue e = {QK_ACT_CLIP, 0, 6, 1, 0, 1, 0};
    int reps = 100;
    qk_depthwise2d(x, w, bias, y, 0, ch, &g, &e, scratch);
    double t0 = cpu_seconds();
    for (int r = 0; r < reps; r++) qk_depthwise2d(x, w, bias, y, 0, ch, &g, &e, scratch);
    double t = (cpu_seconds() - t0) / reps;
    free(x), free(w), free(bias), free(y), free(scratch);
    return t;
}

#if defined(__x86_64__)
/// FLOP/s of independent 16-lane FMA chains.
__attribute__((target("avx512f"))) static double fma_peak(void) {
    __m512 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps(i * 0.001f);
    __m512 x = _mm512_set1_ps(0.9999f), y = _mm512_set1_ps(0.0001f);
    long iterations = 20000000;
    double t0 = cpu_seconds();
    for (long i = 0; i < iterations; i++) {
        for (int j = 0; j < 12; j++) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]), "+v"(acc[6]),
                         "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    return iterations * 12.0 * 32 / (cpu_seconds() - t0);
}
#endif

int main(void) {
    // (output channels, input channels, pixels) of every pointwise Conv, in model order.
    static const long pointwise[][3] = {
        {16, 32, 12544}, {96, 16, 12544}, {24, 96, 3136}, {144, 24, 3136}, {24, 144, 3136}, {144, 24, 3136},
        {40, 144, 784}, {240, 40, 784}, {40, 240, 784}, {240, 40, 784}, {80, 240, 196}, {480, 80, 196},
        {80, 480, 196}, {480, 80, 196}, {80, 480, 196}, {480, 80, 196}, {112, 480, 196}, {672, 112, 196},
        {112, 672, 196}, {672, 112, 196}, {112, 672, 196}, {672, 112, 196}, {192, 672, 49}, {1152, 192, 49},
        {192, 1152, 49}, {1152, 192, 49}, {192, 1152, 49}, {1152, 192, 49}, {192, 1152, 49}, {1152, 192, 49},
        {320, 1152, 49}, {1280, 320, 49},
    };
    // (channels, input size, kernel, stride) of every depthwise Conv.
    static const int depthwise[][4] = {
        {32, 112, 3, 1}, {96, 112, 3, 2}, {144, 56, 3, 1}, {144, 56, 5, 2}, {240, 28, 5, 1}, {240, 28, 3, 2},
        {480, 14, 3, 1}, {480, 14, 3, 1}, {480, 14, 5, 1}, {672, 14, 5, 1}, {672, 14, 5, 1}, {672, 14, 5, 2},
        {1152, 7, 5, 1}, {1152, 7, 5, 1}, {1152, 7, 5, 1}, {1152, 7, 3, 1},
    };
    printf("kernels: %s\n", qk_uses_avx512() ? "AVX-512" : qk_uses_avx2() ? "AVX2+FMA" : "portable");
    double total = 0, flops = 0;
    for (size_t i = 0; i < sizeof pointwise / sizeof pointwise[0]; i++) {
        long m = pointwise[i][0], k = pointwise[i][1], n = pointwise[i][2];
        double t = time_gemm(m, k, n), f = 2.0 * m * k * n;
        printf("pointwise M=%5ld K=%5ld N=%6ld  %8.1f us  %6.1f GFLOP/s\n", m, k, n, t * 1e6, f / t / 1e9);
        total += t, flops += f;
    }
    printf("pointwise total %.2f ms, %.1f GFLOP/s\n", total * 1e3, flops / total / 1e9);
    total = 0, flops = 0;
    for (size_t i = 0; i < sizeof depthwise / sizeof depthwise[0]; i++) {
        int c = depthwise[i][0], h = depthwise[i][1], k = depthwise[i][2], s = depthwise[i][3], oh = (h + s - 1) / s;
        double t = time_depthwise(c, h, k, s), f = 2.0 * c * oh * oh * k * k;
        printf("depthwise C=%4d %3dx%-3d k=%d s=%d  %8.1f us  %6.1f GFLOP/s\n", c, h, h, k, s, t * 1e6, f / t / 1e9);
        total += t, flops += f;
    }
    printf("depthwise total %.2f ms, %.1f GFLOP/s\n", total * 1e3, flops / total / 1e9);
#if defined(__x86_64__)
    if (qk_uses_avx512()) printf("AVX-512 FMA peak of this core: %.1f GFLOP/s\n", fma_peak() / 1e9);
#endif
    return 0;
}
