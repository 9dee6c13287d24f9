/* kernels.c - see kernels.h. Reductions accumulate in float in a fixed order
 * (16 lanes and matmul.h's tree: rmsnorm's and softmax's sums) so that every
 * caller (prefill, decode, every rank) gets the same bits for the same row. */
#include "kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "matmul.h"

/* ---------------------------------------------------------------- expf, 8 at a time
 *
 * softmax_row and swiglu_inplace call expf once per element: 7% of a 1-row
 * decode step of the shipped model, 11% of a 5-row verify step (perf). On
 * AVX-512 they take 8 at a time through exp8 below: glibc's expf
 * (sysdeps/ieee754/flt-32/e_expf.c: a 2^(k/32) table and a cubic, in double)
 * written out op for op as its FMA build computes it (__expf_fma, the variant
 * glibc picks on every CPU with AVX-512: the same two fused steps for k and r,
 * the same three fmas, the same constants and table), so every lane is libm's
 * expf bit for bit: compared over all 2^32 floats on the development machine,
 * and test_kernels compares a spread of them on every run. Lanes that glibc too
 * treats apart (its top-12-bit test: |x| >= 88, inf, nan) are computed by expf
 * itself. Without AVX-512 the loops call expf, as before. */
#if defined(__x86_64__)
#include <immintrin.h>

static const uint64_t EXP2F_T[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};
enum {
    EXPF_INVLN2N = 0,   /* 0x1.71547652b82fep+0 * 32 */
    EXPF_C0, EXPF_C1, EXPF_C2, EXPF_SHIFT,
};
static const uint64_t EXPF_K[5] = {0x40471547652b82fe, 0x3ebc6af84b912394, 0x3f2ebfce50fac4f3, 0x3f962e42ff0c52d6,
                                   0x4338000000000000};

#define EXP_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

static inline EXP_TARGET __m512d k_pd(int i) {
    double d;
    memcpy(&d, &EXPF_K[i], sizeof d);
    return _mm512_set1_pd(d);
}

/* expf of 8 floats in the double lanes of glibc's algorithm (special lanes not meaningful). */
static inline EXP_TARGET __m256 exp8(__m256 xf) {
    __m512d xd = _mm512_cvtps_pd(xf);
    __m512d kdr = _mm512_fmadd_pd(k_pd(EXPF_INVLN2N), xd, k_pd(EXPF_SHIFT));      /* z + shift, fused */
    __m512i ki = _mm512_castpd_si512(kdr);
    __m512d kd = _mm512_sub_pd(kdr, k_pd(EXPF_SHIFT));
    __m512d r = _mm512_fmsub_pd(k_pd(EXPF_INVLN2N), xd, kd);                       /* z - kd, fused */
    __m512i idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
    __m512i t0 = _mm512_permutex2var_epi64(_mm512_loadu_si512(EXP2F_T), idx, _mm512_loadu_si512(EXP2F_T + 8));
    __m512i t1 = _mm512_permutex2var_epi64(_mm512_loadu_si512(EXP2F_T + 16), idx, _mm512_loadu_si512(EXP2F_T + 24));
    __m512i t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(idx, _mm512_set1_epi64(16)), t0, t1);
    t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
    __m512d sc = _mm512_castsi512_pd(t);
    __m512d z = _mm512_fmadd_pd(r, k_pd(EXPF_C0), k_pd(EXPF_C1));
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, k_pd(EXPF_C2), _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    y = _mm512_mul_pd(y, sc);
    return _mm512_cvtpd_ps(y);
}

/* y[i] = expf(x[i]) for 8 floats (y may alias x); lanes glibc treats apart go through expf. */
static inline EXP_TARGET void exp8_store(const float *x, float *y) {
    __m256 xf = _mm256_loadu_ps(x);
    __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(xf), 20), _mm256_set1_epi32(0x7ff));
    __mmask8 special = _mm256_cmpgt_epi32_mask(top, _mm256_set1_epi32(0x42a));
    float xs[8];
    if (special) memcpy(xs, x, sizeof xs);
    _mm256_storeu_ps(y, exp8(xf));
    for (int i = 0; special && i < 8; i++)
        if (special >> i & 1) y[i] = expf(xs[i]);
}

/* No cached flag (that would be global mutable state shared by the pool's threads):
 * simd_detect reads the CPU model the runtime filled in once, a few loads. */
static int exp_vector(void) { return simd_detect() == SIMD_AVX512; }

/* x[i] = expf(x[i] - mx) for i < n; returns how many were done (a multiple of 8). */
static EXP_TARGET int exp_sub_avx512(float *x, int n, float mx) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(mx)));
        exp8_store(x + i, x + i);
    }
    return i;
}

/* x[i] *= gate[i] / (1 + expf(-gate[i])) for i < n; returns how many were done. */
static EXP_TARGET size_t swiglu_avx512(float *x, const float *gate, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        float e[8], ng[8];
        _mm256_storeu_ps(ng, _mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));   /* -g: the sign flipped, as in C */
        exp8_store(ng, e);
        __m256 q = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_loadu_ps(e)));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), q));
    }
    return i;
}
#else
static int exp_vector(void) { return 0; }
static int exp_sub_avx512(float *x, int n, float mx) { (void)x, (void)n, (void)mx; return 0; }
static size_t swiglu_avx512(float *x, const float *gate, size_t n) { (void)x, (void)gate, (void)n; return 0; }
#endif

void swiglu_inplace(float *x, const float *gate, size_t n) {
    for (size_t i = exp_vector() ? swiglu_avx512(x, gate, n) : 0; i < n; i++) {
        float g = gate[i];
        x[i] *= g / (1.0f + expf(-g));
    }
}

/* The largest of x[0..n) (-INFINITY if none), 16 lanes at a time: a maximum
 * is exact, so any order gives the same value; lanes let the compiler vectorize. */
static float max_row(const float *x, int n) {
    float m[16];
    for (int l = 0; l < 16; l++) m[l] = -INFINITY;
    for (int i = 0; i < n; i++) m[i & 15] = x[i] > m[i & 15] ? x[i] : m[i & 15];
    float mx = m[0];
    for (int l = 1; l < 16; l++) mx = m[l] > mx ? m[l] : mx;
    return mx;
}

/* The reduce16 tree of matmul.h over 16 lane sums (a is overwritten). */
static float tree16(float *a) {
    for (int w = 8; w >= 1; w /= 2)   /* s8[l] = a[l] + a[l+8]; s4; s2; y = s2[0] + s2[1] */
        for (int l = 0; l < w; l++) a[l] = a[l] + a[l + w];
    return a[0];
}

/* sum of x[0..n) in matmul.h's order: lane l adds x[l], x[l + 16], ... in
 * increasing index, then the reduce16 tree. The same bits on every CPU (no
 * reassociation is left to the compiler), and 16 independent adds instead of
 * one serial chain: at a context of 500 the serial sum was ~7% of a decode
 * step of the shipped model (perf). */
static float sum_row(const float *x, int n) {
    float a[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) a[l] += x[i + l];
    for (int l = 0; i + l < n; l++) a[l] += x[i + l];
    return tree16(a);
}

/* sum of x[i]^2 (each square rounded, then added: no fma) in sum_row's
 * order. A serial chain of d adds was 2.7% of a 4-row verify step of the
 * shipped model (perf: 4 norms per layer per row, each d adds of latency). */
static float sumsq_row(const float *x, int n) {
    float a[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) a[l] += x[i + l] * x[i + l];
    for (int l = 0; i + l < n; l++) a[l] += x[i + l] * x[i + l];
    return tree16(a);
}

void rmsnorm(float *y, const float *x, const float *w, int n, int d, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * d;
        float *yr = y + (size_t)i * d;
        float ss = sumsq_row(xr, d);
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (int j = 0; j < d; j++) yr[j] = xr[j] * inv * w[j];
    }
}

void softmax_row(float *x, int n) {
    float mx = max_row(x, n);
    if (mx == -INFINITY) {           /* fully masked row: defined as all zeros */
        for (int i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    int done = exp_vector() ? exp_sub_avx512(x, n, mx) : 0;
    for (int i = done; i < n; i++) x[i] = expf(x[i] - mx);
    float inv = 1.0f / sum_row(x, n);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}
