/* test_kernels.c - the f32 kernels (core/kernels.h), the linear layer, one
 * SwiGLU expert and the routed-expert group against naive double-precision loops
 * written here, independently of the engine.
 *
 * Tolerances (u = 2^-24, the f32 unit roundoff; every reference is exact double
 * arithmetic on the same f32 inputs):
 *  - rmsnorm: rel (d/2 + 6) u per element. Sequential f32 sum of d positive
 *    squares has rel error <= (d-1) u; 1/sqrt halves it; 3 more roundings.
 *  - swiglu_inplace: rel 16 u (+1e-30 abs where silu underflows). expf(-g) is
 *    within 1 ulp (glibc), then 1 + e, g / (1 + e) and the product round once
 *    each, and 1 + e passes e's error on damped by e / (1 + e): ~6 u, 16 u margin.
 *  - softmax_row: rel (n + |x_i - max| + 8) u per entry (+1e-37 abs for f32
 *    underflow). The rounding of x_i - max is amplified by |x_i - max| through
 *    exp, and the f32 sum of n positive terms adds <= n u.
 *  - axpy: |err| <= 2 u (|y| + |a x|): one product, one sum.
 *  - argmax: exact (ties -> lowest index).
 *  - linear_forward / linear_forward_rows: |err_j| <= 8 sqrt(K) u sum_k |x_k w_jk|.
 *    Rounding errors of an f32 dot product of length K grow like sqrt(K) u times the
 *    sum of |terms| (Higham, "Accuracy and Stability", sec. 3.1/3.5, probabilistic
 *    bound); factor 8 is margin. Dropping or duplicating one of K terms errs by
 *    ~ sum/K on average, which this bound detects for every K tested. Integer-valued
 *    inputs (exact in f32) must give exact results.
 *  - expert_forward(_rows): the linear bound propagated through silu (slope <= 1.1)
 *    and the product, element by element (see ref_expert_row()).
 *  - expert_group_apply: the expert bound times |weight| summed over a row's
 *    experts, plus 2 u per axpy; and the ascending-expert-order claim checked bit
 *    for bit in a case where the order of the f32 additions changes the result. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/expert.h"
#include "core/expert_group.h"
#include "core/kernels.h"
#include "core/linear.h"
#include "testutil.h"

#define U 0x1.0p-24

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
    double tol = (d / 2.0 + 6) * U;
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

/* --------------------------------------------------------------- axpy, argmax */

Test(kernels, axpy_vs_naive) {
    enum { N = 1031 };
    float y[N], y0[N], x[N];
    test_fill_random(y0, N, 31, 5.0f);
    test_fill_random(x, N, 32, 5.0f);
    float as[] = {0.0f, 1.0f, -1.0f, 0.37f, -1e4f, 3e-5f};
    for (size_t k = 0; k < sizeof as / sizeof *as; k++) {
        memcpy(y, y0, sizeof y);
        axpy(y, as[k], x, N);
        for (int i = 0; i < N; i++) {
            double ref = (double)y0[i] + (double)as[k] * x[i];
            double tol = 2 * U * (fabs(y0[i]) + fabs((double)as[k] * x[i]));
            cr_assert(fabs(y[i] - ref) <= tol, "axpy a=%g [%d]: got %.9g want %.9g", as[k], i, y[i], ref);
        }
    }
    memcpy(y, y0, sizeof y);
    axpy(y, 2.0f, x, 0);   /* n = 0 touches nothing */
    cr_assert_eq(memcmp(y, y0, sizeof y), 0);
}

static int ref_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 0; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
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
    linear_t l = {.out = out, .in = in, .w = fmalloc((size_t)out * in)};
    float *x = fmalloc((size_t)n * in), *y = fmalloc((size_t)n * out), *yr = fmalloc((size_t)n * out);
    double *ref = malloc(sizeof(double) * (size_t)n * out), *mag = malloc(sizeof(double) * (size_t)n * out);
    test_fill_random(l.w, (size_t)out * in, seed, 1.0f);
    test_fill_random(x, (size_t)n * in, seed + 7, 1.0f);
    ref_linear(x, l.w, n, out, in, ref, mag);
    linear_forward(&l, x, y, n);
    linear_forward_rows(&l, x, yr, n);
    double tol = dot_tol(in);
    for (size_t i = 0; i < (size_t)n * out; i++) {
        cr_assert(fabs(y[i] - ref[i]) <= tol * mag[i], "linear_forward n=%d out=%d in=%d [%zu]: got %.9g want %.9g", n,
                  out, in, i, y[i], ref[i]);
        cr_assert(fabs(yr[i] - ref[i]) <= tol * mag[i],
                  "linear_forward_rows n=%d out=%d in=%d [%zu]: got %.9g want %.9g", n, out, in, i, yr[i], ref[i]);
    }
    /* linear_forward_rows: each row alone gives the same bits as in the batch. */
    float *one = fmalloc(out);
    for (int i = 0; i < n; i++) {
        linear_forward_rows(&l, x + (size_t)i * in, one, 1);
        cr_assert_eq(memcmp(one, yr + (size_t)i * out, sizeof(float) * out), 0,
                     "linear_forward_rows row %d of %d differs alone vs in batch (out=%d in=%d)", i, n, out, in);
    }
    free(one), free(l.w), free(x), free(y), free(yr), free(ref), free(mag);
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
    linear_t l = {.out = OUT, .in = IN, .w = fmalloc(OUT * IN)};
    float x[N * IN], y[N * OUT], yr[N * OUT];
    for (int j = 0; j < OUT; j++)
        for (int k = 0; k < IN; k++) l.w[j * IN + k] = (float)(10 * j + k - 17);
    for (int i = 0; i < N * IN; i++) x[i] = (float)((i * 7) % 11 - 5);
    linear_forward(&l, x, y, N);
    linear_forward_rows(&l, x, yr, N);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < OUT; j++) {
            long s = 0;
            for (int k = 0; k < IN; k++) s += (long)x[i * IN + k] * (long)l.w[j * IN + k];
            cr_assert_eq(y[i * OUT + j], (float)s, "y[%d,%d] = %g, want %ld", i, j, y[i * OUT + j], s);
            cr_assert_eq(yr[i * OUT + j], (float)s, "rows y[%d,%d] = %g, want %ld", i, j, yr[i * OUT + j], s);
        }
    free(l.w);
}

/* ------------------------------------------------------------------ expert */

static expert_t make_expert(int hidden, int inter, unsigned seed, float scale) {
    expert_t e = {
        .gate = {.out = inter, .in = hidden, .w = fmalloc((size_t)inter * hidden)},
        .up = {.out = inter, .in = hidden, .w = fmalloc((size_t)inter * hidden)},
        .down = {.out = hidden, .in = inter, .w = fmalloc((size_t)hidden * inter)},
    };
    test_fill_random(e.gate.w, (size_t)inter * hidden, seed, scale / sqrtf((float)hidden) * 1.7f);
    test_fill_random(e.up.w, (size_t)inter * hidden, seed + 1, scale / sqrtf((float)hidden) * 1.7f);
    test_fill_random(e.down.w, (size_t)hidden * inter, seed + 2, scale / sqrtf((float)inter) * 1.7f);
    return e;
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
            double tg = (double)e->gate.w[(size_t)i * H + k] * x[k], tu = (double)e->up.w[(size_t)i * H + k] * x[k];
            g += tg, u += tu, G += fabs(tg), Uu += fabs(tu);
        }
        double s = ref_silu(g);
        h[i] = s * u;
        eh[i] = fabs(s) * ch * Uu + 1.1 * fabs(u) * ch * G + 20 * U * fabs(h[i]);
    }
    for (int j = 0; j < H; j++) {
        double y = 0, m = 0, p = 0;
        for (int i = 0; i < I; i++) {
            double d = e->down.w[(size_t)j * I + i];
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
    expert_t e = make_expert(hidden, inter, seed, 1.0f);
    float *x = fmalloc((size_t)n * hidden), *y = fmalloc((size_t)n * hidden), *yr = fmalloc((size_t)n * hidden);
    float *scratch = fmalloc((size_t)2 * n * inter);
    double *ref = malloc(sizeof(double) * hidden), *bound = malloc(sizeof(double) * hidden);
    test_fill_random(x, (size_t)n * hidden, seed + 9, 2.0f);
    expert_forward(&e, x, y, n, scratch);
    expert_forward_rows(&e, x, yr, n, scratch);
    for (int i = 0; i < n; i++) {
        ref_expert_row(&e, x + (size_t)i * hidden, ref, bound);
        for (int j = 0; j < hidden; j++) {
            float a = y[(size_t)i * hidden + j], b = yr[(size_t)i * hidden + j];
            cr_assert(fabs(a - ref[j]) <= bound[j], "expert_forward n=%d H=%d I=%d [%d,%d]: got %.9g want %.9g (bound %.3g)",
                      n, hidden, inter, i, j, a, ref[j], bound[j]);
            cr_assert(fabs(b - ref[j]) <= bound[j],
                      "expert_forward_rows n=%d H=%d I=%d [%d,%d]: got %.9g want %.9g (bound %.3g)", n, hidden, inter, i,
                      j, b, ref[j], bound[j]);
        }
    }
    free(x), free(y), free(yr), free(scratch), free(ref), free(bound);
    expert_free(&e);
}

Test(expert, forward_vs_naive) {
    check_expert(1, 8, 4, 50);
    check_expert(3, 128, 96, 51);
    check_expert(9, 64, 288, 52);
    check_expert(2, 256, 35, 53);
}

/* -------------------------------------------------------------- expert group */

/* out[i] += sum_j w[i,j] * expert_{idx[i,j]}(x[i]) over present experts, in double. */
static void ref_group(expert_t *const *ex, int n_experts, const float *x, int n, int hidden, int k, const int32_t *idx,
                      const float *w, const float *out0, double *ref, double *bound) {
    double *r = malloc(sizeof(double) * hidden), *b = malloc(sizeof(double) * hidden);
    double *S = malloc(sizeof(double) * hidden);
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < hidden; c++) {
            ref[(size_t)i * hidden + c] = out0[(size_t)i * hidden + c];
            bound[(size_t)i * hidden + c] = 0;
            S[c] = fabs(out0[(size_t)i * hidden + c]);
        }
        for (int j = 0; j < k; j++) {
            int e = idx[(size_t)i * k + j];
            if (e < 0 || e >= n_experts || !ex[e]) continue;
            ref_expert_row(ex[e], x + (size_t)i * hidden, r, b);
            double wt = w[(size_t)i * k + j];
            for (int c = 0; c < hidden; c++) {
                ref[(size_t)i * hidden + c] += wt * r[c];
                bound[(size_t)i * hidden + c] += fabs(wt) * b[c];
                S[c] += fabs(wt * r[c]);
            }
        }
        /* each of <= k axpys rounds w*y (<= u |w y|) and the sum (<= u S, S bounding
         * every partial sum): 2 (k + 1) u S with margin */
        for (int c = 0; c < hidden; c++) bound[(size_t)i * hidden + c] += 2 * U * (k + 1) * S[c] + 1e-30;
    }
    free(r), free(b), free(S);
}

Test(expert_group, vs_naive_with_absent_experts) {
    enum { E = 8, H = 32, I = 24, N = 11, K = 3 };
    expert_t store[E];
    expert_t *ex[E];
    for (int e = 0; e < E; e++) store[e] = make_expert(H, I, 100 + 3 * e, 1.0f);
    /* This "rank" holds experts 1, 2, 4, 5, 7 only. */
    for (int e = 0; e < E; e++) ex[e] = (e == 0 || e == 3 || e == 6) ? NULL : &store[e];
    float x[N * H], w[N * K], out[N * H], out0[N * H];
    test_fill_random(x, N * H, 7, 1.5f);
    test_fill_random(w, N * K, 8, 1.0f);
    test_fill_random(out0, N * H, 9, 0.5f);   /* a partial sum already there */
    /* Rows sorted by expert id; row 4 and row 9 visit only absent experts. */
    int32_t idx[N * K] = {
        1, 2, 4,   0, 5, 7,   2, 3, 6,   1, 4, 7,   0, 3, 6,   2, 4, 5,
        5, 6, 7,   1, 2, 3,   0, 1, 7,   0, 3, 6,   4, 5, 7,
    };
    memcpy(out, out0, sizeof out);
    int64_t counts[E] = {0};
    expert_group_stats_t st = {.tokens_per_expert = counts};
    spex_err_t err = {0};
    cr_assert_eq(expert_group_apply(ex, E, x, N, H, K, idx, w, out, &st, &err), 0, "%s", err.msg);
    double ref[N * H], bound[N * H];
    ref_group(ex, E, x, N, H, K, idx, w, out0, ref, bound);
    for (int i = 0; i < N * H; i++)
        cr_assert(fabs(out[i] - ref[i]) <= bound[i], "group [%d,%d]: got %.9g want %.9g (bound %.3g)", i / H, i % H,
                  out[i], ref[i], bound[i]);
    for (int c = 0; c < H; c++) {
        cr_assert_eq(out[4 * H + c], out0[4 * H + c], "row 4 routes to absent experts only: must be untouched");
        cr_assert_eq(out[9 * H + c], out0[9 * H + c], "row 9 routes to absent experts only: must be untouched");
    }
    int64_t want[E] = {0};
    for (int i = 0; i < N * K; i++) if (ex[idx[i]]) want[idx[i]]++;
    for (int e = 0; e < E; e++)
        cr_assert_eq(counts[e], want[e], "tokens_per_expert[%d] = %lld, want %lld", e, (long long)counts[e],
                     (long long)want[e]);
    /* No stats, no experts present at all: out unchanged, success. */
    expert_t *none[E] = {0};
    memcpy(out, out0, sizeof out);
    cr_assert_eq(expert_group_apply(none, E, x, N, H, K, idx, w, out, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(out, out0, sizeof out), 0);
    for (int e = 0; e < E; e++) expert_free(&store[e]);
}

Test(expert_group, row_result_independent_of_batch) {
    /* A row's output must be the same bits alone and within a batch. */
    enum { E = 4, H = 40, I = 16, N = 9, K = 2 };
    expert_t store[E], *ex[E];
    for (int e = 0; e < E; e++) store[e] = make_expert(H, I, 300 + e, 1.0f), ex[e] = &store[e];
    float x[N * H], w[N * K], out[N * H] = {0}, one[H];
    int32_t idx[N * K];
    test_fill_random(x, N * H, 17, 1.0f);
    test_fill_random(w, N * K, 18, 1.0f);
    for (int i = 0; i < N; i++) idx[i * K] = i % 2, idx[i * K + 1] = 2 + i % 2;
    spex_err_t err = {0};
    cr_assert_eq(expert_group_apply(ex, E, x, N, H, K, idx, w, out, NULL, &err), 0);
    for (int i = 0; i < N; i++) {
        memset(one, 0, sizeof one);
        cr_assert_eq(expert_group_apply(ex, E, x + i * H, 1, H, K, idx + i * K, w + i * K, one, NULL, &err), 0);
        cr_assert_eq(memcmp(one, out + i * H, sizeof one), 0, "row %d differs alone vs in a batch of %d", i, N);
    }
    for (int e = 0; e < E; e++) expert_free(&store[e]);
}

Test(expert_group, ascending_expert_order_exact) {
    /* One row, routed to experts 1 and 3 (0 and 2 absent), out already holding a
     * partial sum. With contributions c1 = w1*y1 ~ 2^24 and c3 = w3*y3 ~ 1 and
     * out0 = 1, (out0 + c1) + c3 != (out0 + c3) + c1 in f32. We pick w so that the
     * two orders differ, then require the engine to match the ascending order bit
     * for bit (header: "accumulated ... in ascending expert order for every row"). */
    enum { E = 4, H = 6, I = 5, K = 2 };
    expert_t store[E], *ex[E] = {0};
    for (int e = 0; e < E; e++) store[e] = make_expert(H, I, 400 + e, 1.0f);
    ex[1] = &store[1], ex[3] = &store[3];
    float x[H], y1[H], y3[H], scratch[2 * I];
    test_fill_random(x, H, 19, 1.0f);
    expert_forward_rows(ex[1], x, y1, 1, scratch);
    expert_forward_rows(ex[3], x, y3, 1, scratch);
    int c = 0;
    while (c < H && (fabsf(y1[c]) < 1e-3f || fabsf(y3[c]) < 1e-3f)) c++;
    cr_assert(c < H, "test setup: no usable output column");
    int found = 0;
    for (int t = 0; t < 200 && !found; t++) {
        float w1 = (float)ldexp(1.0 + t / 256.0, 24) / y1[c], w3 = (1.0f + t / 64.0f) / y3[c];
        float out0[H], asc[H], desc[H], out[H];
        for (int j = 0; j < H; j++) out0[j] = 1.0f + (float)j;
        for (int j = 0; j < H; j++) {
            float a1 = w1 * y1[j], a3 = w3 * y3[j];
            asc[j] = (out0[j] + a1) + a3;
            desc[j] = (out0[j] + a3) + a1;
        }
        if (asc[c] == desc[c]) continue;
        found = 1;
        memcpy(out, out0, sizeof out);
        int32_t idx[K] = {1, 3};
        float w[K] = {w1, w3};
        spex_err_t err = {0};
        cr_assert_eq(expert_group_apply(ex, E, x, 1, H, K, idx, w, out, NULL, &err), 0);
        for (int j = 0; j < H; j++)
            cr_assert_eq(out[j], asc[j], "column %d: got %.9g, ascending order gives %.9g (descending %.9g)", j, out[j],
                         asc[j], desc[j]);
    }
    cr_assert(found, "test setup: could not make the two orders differ");
    for (int e = 0; e < E; e++) expert_free(&store[e]);
}
