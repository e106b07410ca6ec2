#include "CKernels.h"
#include "simd.h"

// Bin indices must equal Swift's `Int(min(max(v * inv - first, 0), top))` in double exactly:
// no contraction of `v * inv - first` into an FMA (the product is exact anyway, being a float
// times a power of two, but keep the two roundings explicit).
#pragma clang fp contract(off)

typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

// Copies of each histogram that consecutive elements rotate through: runs of equal values
// (the zeros after a Relu) would otherwise chain every increment on the previous store.
#define QK_HIST_COPIES 4

/// Lanes of `v` that are finite (all-ones), from `v - v == 0` (NaN for inf and NaN).
QK_INLINE v8i finite8(v8f v) { return (v - v) == v8_splat(0); }

QK_INLINE void summarize_range(const float *x, long n, qk_summary *out) {
    v8f mn = v8_splat(__builtin_inff()), mx = v8_splat(-__builtin_inff());
    v4d s0 = {0, 0, 0, 0}, s1 = s0, q0 = s0, q1 = s0;
    v8i cnt = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = v8_load(x + i);
        v8i fin = finite8(v);
        v8f z = v8_select(fin, v, v8_splat(0));
        mn = v8_select(fin & (v < mn), v, mn);
        mx = v8_select(fin & (v > mx), v, mx);
        cnt -= fin;
        v4d lo = __builtin_convertvector(__builtin_shufflevector(z, z, 0, 1, 2, 3), v4d);
        v4d hi = __builtin_convertvector(__builtin_shufflevector(z, z, 4, 5, 6, 7), v4d);
        s0 += lo;
        s1 += hi;
        q0 += lo * lo;
        q1 += hi * hi;
    }
    float fmn = __builtin_inff(), fmx = -__builtin_inff();
    double sum = 0, sq = 0;
    long finite = 0;
    for (int k = 0; k < 8; k++) {
        if (mn[k] < fmn) fmn = mn[k];
        if (mx[k] > fmx) fmx = mx[k];
        finite += cnt[k];
    }
    for (int k = 0; k < 4; k++) {
        sum += s0[k] + s1[k];
        sq += q0[k] + q1[k];
    }
    for (; i < n; i++) {
        float v = x[i];
        if (v - v != 0) continue;
        if (v < fmn) fmn = v;
        if (v > fmx) fmx = v;
        sum += (double)v;
        sq += (double)v * (double)v;
        finite++;
    }
    // -0 and +0 compare equal; report +0 whichever came first.
    out->min = fmn == 0 ? 0.0f : fmn;
    out->max = fmx == 0 ? 0.0f : fmx;
    out->sum = sum;
    out->sum_squares = sq;
    out->finite = finite;
}

static void summarize_generic(const float *x, long n, qk_summary *out) { summarize_range(x, n, out); }

#if QK_HAS_X86
QK_AVX2 static void summarize_avx2(const float *x, long n, qk_summary *out) { summarize_range(x, n, out); }
#endif

void qk_summarize(const float *x, long n, qk_summary *out) {
#if QK_HAS_X86
    if (qk_uses_avx2()) { summarize_avx2(x, n, out); return; }
#endif
    summarize_generic(x, n, out);
}

// Error sums of the analysis (`ErrorAccumulator`): in double, 8 lanes in two 4-lane halves,
// combined in a fixed order (results depend on n only, not on the thread that runs them).
QK_INLINE void error_sums_range(const float *r, const float *t, long n, qk_error_totals *out) {
    v4d s0 = {0, 0, 0, 0}, s1 = s0, e0 = s0, e1 = s0, d0 = s0, d1 = s0, p0 = s0, p1 = s0, a0 = s0, a1 = s0, m0 = s0, m1 = s0;
    v8i nan = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f rv = v8_load(r + i), tv = v8_load(t + i);
        v4d rl = __builtin_convertvector(__builtin_shufflevector(rv, rv, 0, 1, 2, 3), v4d);
        v4d rh = __builtin_convertvector(__builtin_shufflevector(rv, rv, 4, 5, 6, 7), v4d);
        v4d tl = __builtin_convertvector(__builtin_shufflevector(tv, tv, 0, 1, 2, 3), v4d);
        v4d th = __builtin_convertvector(__builtin_shufflevector(tv, tv, 4, 5, 6, 7), v4d);
        v4d el = tl - rl, eh = th - rh;
        v4d al = __builtin_elementwise_abs(el), ah = __builtin_elementwise_abs(eh);
        s0 += rl * rl; s1 += rh * rh;
        e0 += el * el; e1 += eh * eh;
        d0 += rl * tl; d1 += rh * th;
        p0 += tl * tl; p1 += th * th;
        a0 += al; a1 += ah;
        m0 = __builtin_elementwise_max(m0, al); m1 = __builtin_elementwise_max(m1, ah);
        v8f ev = tv - rv;
        nan |= ev != ev;
    }
    double s = 0, e = 0, d = 0, p = 0, a = 0, m = 0;
    int anynan = 0;
    for (int k = 0; k < 4; k++) {
        s += s0[k] + s1[k]; e += e0[k] + e1[k]; d += d0[k] + d1[k]; p += p0[k] + p1[k]; a += a0[k] + a1[k];
        if (m0[k] > m) m = m0[k];
        if (m1[k] > m) m = m1[k];
    }
    for (int k = 0; k < 8; k++) anynan |= nan[k];
    for (; i < n; i++) {
        double rv = r[i], tv = t[i], ev = tv - rv, av = ev < 0 ? -ev : ev;
        s += rv * rv; e += ev * ev; d += rv * tv; p += tv * tv; a += av;
        if (av > m) m = av;
        if (ev != ev) anynan = 1;
    }
    out->signal = s;
    out->noise = e;
    out->dot = d;
    out->test_power = p;
    out->abs_sum = a;
    out->max_abs = anynan ? __builtin_nan("") : m;
}

static void error_sums_generic(const float *r, const float *t, long n, qk_error_totals *out) { error_sums_range(r, t, n, out); }

#if QK_HAS_X86
QK_AVX2 static void error_sums_avx2(const float *r, const float *t, long n, qk_error_totals *out) { error_sums_range(r, t, n, out); }
#endif

void qk_error_sums(const float *r, const float *t, long n, qk_error_totals *out) {
#if QK_HAS_X86
    if (qk_uses_avx2()) { error_sums_avx2(r, t, n, out); return; }
#endif
    error_sums_generic(r, t, n, out);
}

long qk_histogram2_scratch(long bins, long abs_bins) { return QK_HIST_COPIES * (bins + abs_bins + 1); }

/// Bins of four values (finite ones; the caller redirects the others).
QK_INLINE v4i bins4(v4d v, qk_bin_grid g) {
    v4d t = v * (v4d){g.inv, g.inv, g.inv, g.inv} - (v4d){g.first, g.first, g.first, g.first};
    v4d zero = {0, 0, 0, 0}, top = {g.top, g.top, g.top, g.top};
    t = __builtin_elementwise_min(__builtin_elementwise_max(t, zero), top);
    return __builtin_convertvector(t, v4i);
}

QK_INLINE void histogram_range(const float *x, long n, qk_bin_grid h, qk_bin_grid a, unsigned *scratch) {
    // One copy: [x bins | |x| bins | a slot for non-finite elements].
    const long hn = (long)h.top + 1, an = (long)a.top + 1, stride = hn + an + 1;
    // Non-finite elements count in the extra slot (through either histogram).
    const v4i trash_h = {(int)(hn + an), (int)(hn + an), (int)(hn + an), (int)(hn + an)};
    const v4i trash_a = {(int)an, (int)an, (int)an, (int)an};
    // Zeros (most of a Relu's output) fall in fixed bins: count runs of 8 zeros apart.
    long zeros = 0;
    int zh = bins4((v4d){0, 0, 0, 0}, h)[0], za = bins4((v4d){0, 0, 0, 0}, a)[0];
    enum { B = 256 };
    int ih[B], ia[B];
    long i = 0;
    while (i + 8 <= n) {
        int m = 0;
        for (; m + 8 <= B && i + 8 <= n; i += 8) {
            v8f v8 = v8_load(x + i);
            v8i nz = v8 != v8_splat(0);
            if (!(nz[0] | nz[1] | nz[2] | nz[3] | nz[4] | nz[5] | nz[6] | nz[7])) { zeros += 8; continue; }
            for (int half = 0; half < 2; half++) {
                v4f f = half ? __builtin_shufflevector(v8, v8, 4, 5, 6, 7) : __builtin_shufflevector(v8, v8, 0, 1, 2, 3);
                v4i fin = (f - f) == (v4f){0, 0, 0, 0};
                v4i fi;
                memcpy(&fi, &f, sizeof fi);
                fi &= fin;
                memcpy(&f, &fi, sizeof f);
                v4d d = __builtin_convertvector(f, v4d);
                v4d ad = __builtin_elementwise_abs(d);
                v4i bh = bins4(d, h), ba = bins4(ad, a);
                bh = (fin & bh) | (~fin & trash_h);
                ba = (fin & ba) | (~fin & trash_a);
                memcpy(ih + m, &bh, sizeof bh);
                memcpy(ia + m, &ba, sizeof ba);
                m += 4;
            }
        }
        unsigned *c0 = scratch, *c1 = scratch + stride, *c2 = scratch + 2 * stride, *c3 = scratch + 3 * stride;
        for (int k = 0; k < m; k += 4) {
            c0[ih[k]]++; c0[hn + ia[k]]++;
            c1[ih[k + 1]]++; c1[hn + ia[k + 1]]++;
            c2[ih[k + 2]]++; c2[hn + ia[k + 2]]++;
            c3[ih[k + 3]]++; c3[hn + ia[k + 3]]++;
        }
    }
    scratch[zh] += (unsigned)zeros;
    scratch[hn + za] += (unsigned)zeros;
    for (; i < n; i++) {
        float v = x[i];
        if (v - v != 0) continue;
        double d = (double)v, t = d * h.inv - h.first, u = (d < 0 ? -d : d) * a.inv - a.first;
        t = t < 0 ? 0 : (t > h.top ? h.top : t);
        u = u < 0 ? 0 : (u > a.top ? a.top : u);
        scratch[(int)t]++;
        scratch[hn + (int)u]++;
    }
}

static void histogram_generic(const float *x, long n, qk_bin_grid h, qk_bin_grid a, unsigned *scratch) {
    histogram_range(x, n, h, a, scratch);
}

#if QK_HAS_X86
QK_AVX2 static void histogram_avx2(const float *x, long n, qk_bin_grid h, qk_bin_grid a, unsigned *scratch) {
    histogram_range(x, n, h, a, scratch);
}
#endif

void qk_histogram2(const float *x, long n, qk_bin_grid h, qk_bin_grid a, double *counts, double *abs_counts,
                   unsigned *scratch) {
    const long hn = (long)h.top + 1, an = (long)a.top + 1, stride = hn + an + 1;
    // uint32 counters: at most 2^31 elements per call keeps them from wrapping.
    const long block = 1L << 31;
    for (long s = 0; s < n; s += block) {
        long len = n - s < block ? n - s : block;
#if QK_HAS_X86
        if (qk_uses_avx2()) histogram_avx2(x + s, len, h, a, scratch);
        else histogram_generic(x + s, len, h, a, scratch);
#else
        histogram_generic(x + s, len, h, a, scratch);
#endif
        for (long b = 0; b < hn + an; b++) {
            unsigned long total = 0;
            for (int k = 0; k < QK_HIST_COPIES; k++) {
                total += scratch[k * stride + b];
                scratch[k * stride + b] = 0;
            }
            if (b < hn) counts[b] += total; else abs_counts[b - hn] += total;
        }
        for (int k = 0; k < QK_HIST_COPIES; k++) scratch[k * stride + hn + an] = 0;
    }
}
