/* test_kernels.c - the f32 kernels (core/kernels.h), the linear layer, one
 * SwiGLU expert and the routed-expert group against naive double-precision loops
 * written here, independently of the engine.
 *
 * Tolerances (u = 2^-24, the f32 unit roundoff; every reference is exact double
 * arithmetic on the same f32 inputs):
 *  - rmsnorm: rel (m/2 + 7) u per element, m = ceil(d/16). The sum of squares
 *    runs in 16 lanes of <= m rounded squares each (rel <= m u), then a 4-level
 *    tree of positive adds (+4 u); / d and + eps add 2 u; sqrt halves it and
 *    rounds, then 1/, and the two products: 4 more roundings.
 *  - swiglu_inplace: rel 16 u (+1e-30 abs where silu underflows). expf(-g) is
 *    within 1 ulp (glibc), then 1 + e, g / (1 + e) and the product round once
 *    each, and 1 + e passes e's error on damped by e / (1 + e): ~6 u, 16 u margin.
 *  - softmax_row: rel (n + |x_i - max| + 8) u per entry (+1e-37 abs for f32
 *    underflow). The rounding of x_i - max is amplified by |x_i - max| through
 *    exp, and the f32 sum of n positive terms adds <= n u.
 *  - argmax: exact (ties -> lowest index).
 *  - linear_apply: |err_j| <= 8 sqrt(K) u sum_k |x_k w_jk|.
 *    Rounding errors of an f32 dot product of length K grow like sqrt(K) u times the
 *    sum of |terms| (Higham, "Accuracy and Stability", sec. 3.1/3.5, probabilistic
 *    bound); factor 8 is margin. Dropping or duplicating one of K terms errs by
 *    ~ sum/K on average, which this bound detects for every K tested. Integer-valued
 *    inputs (exact in f32) must give exact results.
 *  - expert_forward: the linear bound propagated through silu (slope <= 1.1)
 *    and the product, element by element (see ref_expert_row()).
 * The stored-precision kernels themselves (dtypes, SIMD paths, threads) are
 * tested in test_matmul.c, the routed-expert shard in test_expert_shard.c. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/expert.h"
#include "core/kernels.h"
#include "core/linear.h"
#include "testutil.h"

#define U 0x1.0p-24

/* A 1-thread exec on the widest SIMD path (matmul.h: every path gives the same bits). */
static exec_t exec1(threadpool_t **pool) {
    spex_err_t err = {0};
    *pool = threadpool_create(1, &err);
    cr_assert_not_null(*pool, "%s", err.msg);
    return (exec_t){*pool, simd_detect(), -1};
}

static float *fmalloc(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    cr_assert_not_null(p);
    return p;
}

/* ------------------------------------------------------------------ rmsnorm */

static void ref_rmsnorm(double *y, const float *x, const float *w, int n, int d, double eps) {
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
        double inv = 1.0 / sqrt(ss / d + eps);
        for (int j = 0; j < d; j++) y[(size_t)i * d + j] = x[(size_t)i * d + j] * inv * w[j];
    }
}

static void check_rmsnorm(int n, int d, float xscale, float eps, unsigned seed, bool in_place) {
    float *x = fmalloc((size_t)n * d), *w = fmalloc(d), *y = fmalloc((size_t)n * d);
    double *ref = malloc(sizeof(double) * (size_t)n * d);
    test_fill_random(x, (size_t)n * d, seed, xscale);
    test_fill_random(w, d, seed + 1, 2.0f);
    ref_rmsnorm(ref, x, w, n, d, eps);
    if (in_place) {
        memcpy(y, x, sizeof(float) * (size_t)n * d);
        rmsnorm(y, y, w, n, d, eps);
    } else {
        rmsnorm(y, x, w, n, d, eps);
    }
    double tol = ((d + 15) / 16 / 2.0 + 7) * U;
    for (size_t i = 0; i < (size_t)n * d; i++) {
        double err = fabs(y[i] - ref[i]);
        cr_assert(err <= tol * fabs(ref[i]) + 1e-300, "rmsnorm n=%d d=%d scale=%g [%zu]: got %.9g want %.9g (rel %.3g > %.3g)",
                  n, d, xscale, i, y[i], ref[i], err / fabs(ref[i]), tol);
    }
    free(x), free(w), free(y), free(ref);
}

Test(kernels, rmsnorm_vs_naive) {
    check_rmsnorm(1, 1, 1.0f, 1e-6f, 1, false);
    check_rmsnorm(3, 7, 1.0f, 1e-6f, 2, false);
    check_rmsnorm(5, 128, 3.0f, 1e-6f, 3, false);
    check_rmsnorm(2, 7168, 1.0f, 1e-6f, 4, false);
    check_rmsnorm(4, 64, 1.0f, 1e-6f, 5, true);   /* y aliases x */
    /* Tiny activations: mean(x^2) ~ eps, so where eps enters matters. */
    check_rmsnorm(3, 96, 1e-3f, 1e-6f, 6, false);
    check_rmsnorm(3, 96, 1e-3f, 1e-2f, 7, true);
}

Test(kernels, rmsnorm_zero_row_is_zero) {
    float x[8] = {0}, w[8] = {1, 1, 1, 1, 1, 1, 1, 1}, y[8];
    rmsnorm(y, x, w, 1, 8, 1e-6f);
    for (int i = 0; i < 8; i++) cr_assert_eq(y[i], 0.0f);
}

/* ------------------------------------------------------------------ swiglu */

static double ref_silu(double g) { return g / (1.0 + exp(-g)); }

Test(kernels, swiglu_vs_naive) {
    enum { N = 4099 };
    float *x = fmalloc(N), *g = fmalloc(N), *x0 = fmalloc(N);
    test_fill_random(x0, N, 11, 3.0f);
    test_fill_random(g, N, 12, 20.0f);
    float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 88.0f, -88.0f, 100.0f, -100.0f, 1e-3f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) g[i] = special[i];
    memcpy(x, x0, sizeof(float) * N);
    swiglu_inplace(x, g, N);
    for (int i = 0; i < N; i++) {
        double ref = ref_silu(g[i]) * x0[i];
        double err = fabs(x[i] - ref);
        cr_assert(err <= 16 * U * fabs(ref) + 1e-30, "swiglu [%d] g=%.9g x=%.9g: got %.9g want %.9g", i, g[i], x0[i],
                  x[i], ref);
    }
    free(x), free(g), free(x0);
}

/* ------------------------------------------------------------------ softmax */

/* Exact-in-double softmax of a float row; -inf entries -> 0; fully masked -> all 0. */
static void ref_softmax(double *p, const float *x, int n) {
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) {
        for (int i = 0; i < n; i++) p[i] = 0;
        return;
    }
    double s = 0;
    for (int i = 0; i < n; i++) s += (p[i] = exp((double)x[i] - mx));
    for (int i = 0; i < n; i++) p[i] /= s;
}

static void check_softmax(const float *x0, int n, const char *what) {
    float *x = fmalloc(n);
    double *p = malloc(sizeof(double) * n);
    memcpy(x, x0, sizeof(float) * n);
    ref_softmax(p, x0, n);
    softmax_row(x, n);
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x0[i] > mx) mx = x0[i];
    double sum = 0, sum_tol = n * U;
    for (int i = 0; i < n; i++) {
        cr_assert(isfinite(x[i]), "softmax %s [%d] not finite: %g", what, i, x[i]);
        if (x0[i] == -INFINITY) {
            cr_assert_eq(x[i], 0.0f, "softmax %s [%d]: masked entry got %g", what, i, x[i]);
            continue;
        }
        double tol = (n + fabs((double)x0[i] - mx) + 8) * U * p[i] + 1e-37;
        cr_assert(fabs(x[i] - p[i]) <= tol, "softmax %s [%d] x=%.9g: got %.9g want %.9g", what, i, x0[i], x[i], p[i]);
        sum += x[i];
        sum_tol += tol;
    }
    if (mx != -INFINITY) cr_assert(fabs(sum - 1.0) <= sum_tol, "softmax %s sums to %.12g", what, sum);
    free(x), free(p);
}

Test(kernels, softmax_row_vs_naive) {
    float x[1000];
    test_fill_random(x, 1000, 21, 8.0f);
    check_softmax(x, 1000, "random n=1000");
    check_softmax(x, 1, "n=1");
    check_softmax(x, 17, "n=17");
    float flat[5] = {2.5f, 2.5f, 2.5f, 2.5f, 2.5f};
    check_softmax(flat, 5, "all equal");
    float wide[6] = {0.0f, -30.0f, -80.0f, -100.0f, -200.0f, 5.0f};   /* entries underflow f32 */
    check_softmax(wide, 6, "wide range");
}

Test(kernels, softmax_row_masked) {
    float x[9] = {1.0f, -INFINITY, 0.5f, -INFINITY, -INFINITY, 3.0f, -2.0f, -INFINITY, 0.0f};
    check_softmax(x, 9, "with -inf");
    float one[4] = {-INFINITY, -INFINITY, 7.0f, -INFINITY};
    float y[4];
    memcpy(y, one, sizeof y);
    softmax_row(y, 4);
    cr_assert(y[0] == 0 && y[1] == 0 && y[2] == 1.0f && y[3] == 0, "single unmasked entry must get exactly 1");
    /* Fully masked row: every probability 0 (no NaN), as kernels.c defines it. */
    float all[7];
    for (int i = 0; i < 7; i++) all[i] = -INFINITY;
    softmax_row(all, 7);
    for (int i = 0; i < 7; i++) cr_assert_eq(all[i], 0.0f, "fully masked row [%d] = %g", i, all[i]);
}

Test(kernels, softmax_row_large_values) {
    /* exp(x) itself would overflow f32 (and even double for FLT_MAX): the max must be subtracted. */
    float big[4] = {1000.0f, 999.0f, 990.0f, -1000.0f};
    check_softmax(big, 4, "large");
    float huge[3] = {FLT_MAX, FLT_MAX, 0.0f};
    float y[3];
    memcpy(y, huge, sizeof y);
    softmax_row(y, 3);
    cr_assert(y[0] == 0.5f && y[1] == 0.5f && y[2] == 0.0f, "FLT_MAX row: got %g %g %g", y[0], y[1], y[2]);
    float neg[3] = {-FLT_MAX, -FLT_MAX / 2, -FLT_MAX};
    memcpy(y, neg, sizeof y);
    softmax_row(y, 3);
    cr_assert(y[0] == 0.0f && y[1] == 1.0f && y[2] == 0.0f, "-FLT_MAX row: got %g %g %g", y[0], y[1], y[2]);
    float mixed[5] = {3e38f, -INFINITY, 2.9e38f, 3e38f, -3e38f};
    float z[5];
    memcpy(z, mixed, sizeof z);
    softmax_row(z, 5);
    cr_assert(z[0] == 0.5f && z[1] == 0 && z[2] == 0 && z[3] == 0.5f && z[4] == 0, "3e38 row: %g %g %g %g %g", z[0],
              z[1], z[2], z[3], z[4]);
}

/* --------------------------------------------------------------- argmax */

static int ref_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 0; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

/* swiglu_inplace and softmax_row take 16 expf at a time on AVX-512 (kernels.c):
 * each must be libm's expf bit for bit, so the results are those of the plain
 * scalar loops. Every 4099th float bit pattern as a gate (all magnitudes, both
 * signs, inf and nan), and softmax rows of every length to 40. */
Test(kernels, expf_batches_are_libm_bit_for_bit) {
    enum { STEP = 4099, N = (int)(0xffffffffu / STEP) + 1 };
    float *g = malloc(sizeof(float) * N), *x = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        uint32_t b = (uint32_t)i * STEP;
        memcpy(&g[i], &b, sizeof b);
        x[i] = 1.0f;
    }
    swiglu_inplace(x, g, (size_t)N);
    for (int i = 0; i < N; i++) {
        float want = 1.0f;
        want *= g[i] / (1.0f + expf(-g[i]));
        cr_assert(memcmp(&want, &x[i], sizeof want) == 0 || (isnan(want) && isnan(x[i])),
                  "swiglu gate %a: %a, scalar %a", (double)g[i], (double)x[i], (double)want);
    }
    float row[40], ref[40];
    for (int n = 1; n <= 40; n++) {
        test_fill_random(row, (size_t)n, 700 + n, 30.0f);
        if (n > 9) row[3] = -INFINITY, row[n - 1] = -100.0f;   /* masked, and a lane glibc treats apart */
        memcpy(ref, row, sizeof(float) * (size_t)n);
        float mx = -INFINITY, lane[16] = {0}, s8[8], s4[4], s2[2];
        for (int i = 0; i < n; i++) if (ref[i] > mx) mx = ref[i];
        for (int i = 0; i < n; i++) { ref[i] = expf(ref[i] - mx); lane[i % 16] += ref[i]; }   /* kernels.h's order */
        for (int l = 0; l < 8; l++) s8[l] = lane[l] + lane[l + 8];
        for (int l = 0; l < 4; l++) s4[l] = s8[l] + s8[l + 4];
        for (int l = 0; l < 2; l++) s2[l] = s4[l] + s4[l + 2];
        float inv = 1.0f / (s2[0] + s2[1]);
        for (int i = 0; i < n; i++) ref[i] *= inv;
        softmax_row(row, n);
        cr_assert_eq(memcmp(row, ref, sizeof(float) * (size_t)n), 0, "softmax of %d differs from the scalar loop", n);
    }
    free(g);
    free(x);
}

Test(kernels, argmax_ties_lowest) {
    float a[6] = {1, 3, 3, 2, 3, -1};
    cr_assert_eq(argmax(a, 6), 1);
    float b[4] = {5, 5, 5, 5};
    cr_assert_eq(argmax(b, 4), 0);
    float c[5] = {-INFINITY, -INFINITY, -7, -INFINITY, -7};
    cr_assert_eq(argmax(c, 5), 2);
    float d[3] = {0, 0, 1e-45f};   /* denormal beats zero */
    cr_assert_eq(argmax(d, 3), 2);
    float e[3] = {-0.0f, 0.0f, -0.0f};   /* -0 == +0: a tie, lowest index */
    cr_assert_eq(argmax(e, 3), 0);
    float f[1] = {-3};
    cr_assert_eq(argmax(f, 1), 0);
    float g[4] = {INFINITY, 1, INFINITY, 2};
    cr_assert_eq(argmax(g, 4), 0);
    float r[513];
    test_fill_random(r, 513, 41, 1.0f);
    cr_assert_eq(argmax(r, 513), ref_argmax(r, 513));
    r[512] = 2.0f;
    cr_assert_eq(argmax(r, 513), 512);
    r[7] = 2.0f;
    cr_assert_eq(argmax(r, 513), 7);
}

/* ------------------------------------------------------------------ linear */

/* ref[n, out] = x W^T in double; mag[n, out] = sum_k |x_k w_jk|. */
static void ref_linear(const float *x, const float *w, int n, int out, int in, double *ref, double *mag) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out; j++) {
            double s = 0, m = 0;
            for (int k = 0; k < in; k++) {
                double t = (double)x[(size_t)i * in + k] * w[(size_t)j * in + k];
                s += t;
                m += fabs(t);
            }
            ref[(size_t)i * out + j] = s;
            if (mag) mag[(size_t)i * out + j] = m;
        }
}

static double dot_tol(int K) { return 8.0 * sqrt((double)K) * U; }

static void check_linear(int n, int out, int in, unsigned seed) {
    threadpool_t *pool;
    exec_t ex = exec1(&pool);
    float *w = fmalloc((size_t)out * in);
    linear_t l = linear_borrow_f32(w, out, in);
    float *x = fmalloc((size_t)n * in), *y = fmalloc((size_t)n * out);
    double *ref = malloc(sizeof(double) * (size_t)n * out), *mag = malloc(sizeof(double) * (size_t)n * out);
    test_fill_random(w, (size_t)out * in, seed, 1.0f);
    test_fill_random(x, (size_t)n * in, seed + 7, 1.0f);
    ref_linear(x, w, n, out, in, ref, mag);
    linear_apply(&ex, &l, x, y, n);
    double tol = dot_tol(in);
    for (size_t i = 0; i < (size_t)n * out; i++)
        cr_assert(fabs(y[i] - ref[i]) <= tol * mag[i], "linear_apply n=%d out=%d in=%d [%zu]: got %.9g want %.9g", n,
                  out, in, i, y[i], ref[i]);
    /* each row alone gives the same bits as in the batch */
    float *one = fmalloc(out);
    for (int i = 0; i < n; i++) {
        linear_apply(&ex, &l, x + (size_t)i * in, one, 1);
        cr_assert_eq(memcmp(one, y + (size_t)i * out, sizeof(float) * out), 0,
                     "linear_apply row %d of %d differs alone vs in batch (out=%d in=%d)", i, n, out, in);
    }
    free(one), free(w), free(x), free(y), free(ref), free(mag);
    threadpool_free(pool);
}

Test(linear, forward_vs_naive_triple_loop) {
    check_linear(1, 1, 1, 1);
    check_linear(1, 5, 3, 2);
    check_linear(3, 17, 9, 3);
    check_linear(7, 64, 128, 4);
    check_linear(37, 33, 71, 5);
    check_linear(2, 24, 4096, 6);
    check_linear(5, 320, 128, 7);
    check_linear(64, 96, 257, 8);
}

Test(linear, integer_inputs_exact_and_layout) {
    /* Small integers: every product and partial sum is exact in f32, so the result
     * must be exact; W is [out, in] row-major and y = x W^T (not x W). */
    enum { N = 3, OUT = 5, IN = 4 };
    threadpool_t *pool;
    exec_t ex = exec1(&pool);
    float w[OUT * IN], x[N * IN], y[N * OUT];
    for (int j = 0; j < OUT; j++)
        for (int k = 0; k < IN; k++) w[j * IN + k] = (float)(10 * j + k - 17);
    for (int i = 0; i < N * IN; i++) x[i] = (float)((i * 7) % 11 - 5);
    linear_t l = linear_borrow_f32(w, OUT, IN);
    linear_apply(&ex, &l, x, y, N);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < OUT; j++) {
            long s = 0;
            for (int k = 0; k < IN; k++) s += (long)x[i * IN + k] * (long)w[j * IN + k];
            cr_assert_eq(y[i * OUT + j], (float)s, "y[%d,%d] = %g, want %ld", i, j, y[i * OUT + j], s);
        }
    threadpool_free(pool);
}

/* ------------------------------------------------------------------ expert */

/* An expert over f32 weights owned by the test (free with free_expert). */
static expert_t make_expert(int hidden, int inter, unsigned seed, float scale) {
    float *g = fmalloc((size_t)inter * hidden), *u = fmalloc((size_t)inter * hidden), *d = fmalloc((size_t)hidden * inter);
    test_fill_random(g, (size_t)inter * hidden, seed, scale / sqrtf((float)hidden) * 1.7f);
    test_fill_random(u, (size_t)inter * hidden, seed + 1, scale / sqrtf((float)hidden) * 1.7f);
    test_fill_random(d, (size_t)hidden * inter, seed + 2, scale / sqrtf((float)inter) * 1.7f);
    expert_t e = {linear_borrow_f32(g, inter, hidden), linear_borrow_f32(u, inter, hidden),
                  linear_borrow_f32(d, hidden, inter)};
    return e;
}

static const float *wf(const linear_t *l) { return (const float *)l->w.data; }

static void free_expert(expert_t *e) {
    free((void *)e->gate.w.data), free((void *)e->up.w.data), free((void *)e->down.w.data);
}

/* ref[hidden] = down(silu(gate x) * up x) in double for one row, and bound[hidden]
 * = the propagated f32 rounding bound described at the top of the file. */
static void ref_expert_row(const expert_t *e, const float *x, double *ref, double *bound) {
    int H = e->gate.in, I = e->gate.out;
    double *h = malloc(sizeof(double) * I), *eh = malloc(sizeof(double) * I);
    double ch = dot_tol(H), ci = dot_tol(I);
    for (int i = 0; i < I; i++) {
        double g = 0, u = 0, G = 0, Uu = 0;
        for (int k = 0; k < H; k++) {
            double tg = (double)wf(&e->gate)[(size_t)i * H + k] * x[k], tu = (double)wf(&e->up)[(size_t)i * H + k] * x[k];
            g += tg, u += tu, G += fabs(tg), Uu += fabs(tu);
        }
        double s = ref_silu(g);
        h[i] = s * u;
        eh[i] = fabs(s) * ch * Uu + 1.1 * fabs(u) * ch * G + 20 * U * fabs(h[i]);
    }
    for (int j = 0; j < H; j++) {
        double y = 0, m = 0, p = 0;
        for (int i = 0; i < I; i++) {
            double d = wf(&e->down)[(size_t)j * I + i];
            y += d * h[i];
            m += fabs(d * h[i]);
            p += fabs(d) * eh[i];
        }
        ref[j] = y;
        bound[j] = ci * m + p + 1e-30;
    }
    free(h), free(eh);
}

static void check_expert(int n, int hidden, int inter, unsigned seed) {
    threadpool_t *pool;
    exec_t ex = exec1(&pool);
    expert_t e = make_expert(hidden, inter, seed, 1.0f);
    float *x = fmalloc((size_t)n * hidden), *y = fmalloc((size_t)n * hidden);
    float *scratch = fmalloc((size_t)2 * n * inter);
    double *ref = malloc(sizeof(double) * hidden), *bound = malloc(sizeof(double) * hidden);
    test_fill_random(x, (size_t)n * hidden, seed + 9, 2.0f);
    expert_forward(&ex, &e, x, y, n, scratch);
    for (int i = 0; i < n; i++) {
        ref_expert_row(&e, x + (size_t)i * hidden, ref, bound);
        for (int j = 0; j < hidden; j++) {
            float a = y[(size_t)i * hidden + j];
            cr_assert(fabs(a - ref[j]) <= bound[j], "expert_forward n=%d H=%d I=%d [%d,%d]: got %.9g want %.9g (bound %.3g)",
                      n, hidden, inter, i, j, a, ref[j], bound[j]);
        }
    }
    free(x), free(y), free(scratch), free(ref), free(bound);
    free_expert(&e);
    threadpool_free(pool);
}

Test(expert, forward_vs_naive) {
    check_expert(1, 8, 4, 50);
    check_expert(3, 128, 96, 51);
    check_expert(9, 64, 288, 52);
    check_expert(2, 256, 35, 53);
}
