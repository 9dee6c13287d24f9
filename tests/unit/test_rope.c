/* test_rope.c - rotary position embedding (core/rope.h), plain and YaRN, against
 * a double-precision re-derivation written here from DeepSeek-V3's
 * inference/model.py precompute_freqs_cis (find_correction_dim,
 * find_correction_range, linear_ramp_factor, the smooth blend of freq and
 * freq / factor) and Hugging Face's YaRN mscale for cos/sin; the rotation is
 * checked as complex multiplication of interleaved pairs (x[2i] + i x[2i+1]).
 *
 * Tolerances (u = 2^-24; the engine, like DeepSeek, forms the angle pos * freq
 * in f32):
 *  - frequency read back at position 1 (atan2 of the rotated unit vector):
 *    |f - f_ref| <= 8 u f. f is rounded to f32 once, cos/sin once each, and
 *    atan2 of (cos f (1+e1), sin f (1+e2)) moves the angle by <= |e1 - e2| sin f cos f <= 2 u f.
 *  - rotated vectors: |err| <= (|a| + |b|) m (4 u pos f + 6 u): the f32 angle is
 *    off by <= ~2 u pos f (rounding of f and of the product), cos/sin rounding,
 *    then 3 roundings in a c - b s.
 *  - rope_softmax_mscale: rel 1e-14 (the same double formula).
 * Frequencies are compared per dimension, so a wrong correction range, ramp
 * direction or clamping (f vs f / 40 differ 40x) fails outright. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rope.h"
#include "testutil.h"

#define U 0x1.0p-24

/* -------------------------------------------- reference (DeepSeek-V3, in double) */

static double find_correction_dim(double num_rotations, int dim, double base, int max_seq_len) {
    return dim * log(max_seq_len / (num_rotations * 2 * M_PI)) / (2 * log(base));
}

static void find_correction_range(double low_rot, double high_rot, int dim, double base, int max_seq_len,
                                  double *low, double *high) {
    double lo = floor(find_correction_dim(low_rot, dim, base, max_seq_len));
    double hi = ceil(find_correction_dim(high_rot, dim, base, max_seq_len));
    *low = lo > 0 ? lo : 0;               /* max(low, 0) */
    *high = hi < dim - 1 ? hi : dim - 1;  /* min(high, dim - 1) */
}

static double linear_ramp_factor(double min, double max, int i) {
    if (min == max) max += 0.001;
    double v = (i - min) / (max - min);
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static double yarn_get_mscale(double scale, double mscale) {
    if (scale <= 1) return 1.0;
    return 0.1 * mscale * log(scale) + 1.0;
}

/* inv_freq[dim/2] as precompute_freqs_cis; *cs = the cos/sin multiplier (HF YaRN). */
static void ref_freqs(const spex_config_t *c, double *f, double *cs) {
    int dim = c->qk_rope_head_dim;
    for (int i = 0; i < dim / 2; i++) f[i] = 1.0 / pow(c->rope_theta, (double)(2 * i) / dim);
    *cs = 1.0;
    if (!c->rope_scaling.yarn) return;
    const spex_rope_scaling_t *y = &c->rope_scaling;
    double low, high;
    find_correction_range(y->beta_fast, y->beta_slow, dim, c->rope_theta, y->original_max_position_embeddings, &low,
                          &high);
    for (int i = 0; i < dim / 2; i++) {
        double smooth = 1 - linear_ramp_factor(low, high, i);
        f[i] = f[i] / y->factor * (1 - smooth) + f[i] * smooth;
    }
    *cs = yarn_get_mscale(y->factor, y->mscale) / yarn_get_mscale(y->factor, y->mscale_all_dim);
}

/* --------------------------------------------------------------- configs */

static spex_config_t plain_cfg(int dim, double theta) {
    spex_config_t c;
    memset(&c, 0, sizeof c);
    c.qk_rope_head_dim = dim;
    c.rope_theta = theta;
    /* YaRN fields filled but disabled: must be ignored */
    c.rope_scaling = (spex_rope_scaling_t){.yarn = false, .factor = 40, .original_max_position_embeddings = 16,
                                           .beta_fast = 32, .beta_slow = 1, .mscale = 1, .mscale_all_dim = 0.5};
    return c;
}

static spex_config_t yarn_cfg(int dim, double theta, double factor, int orig, double bf, double bs, double ms,
                              double msad) {
    spex_config_t c = plain_cfg(dim, theta);
    c.rope_scaling = (spex_rope_scaling_t){.yarn = true, .factor = factor, .original_max_position_embeddings = orig,
                                           .beta_fast = bf, .beta_slow = bs, .mscale = ms, .mscale_all_dim = msad};
    return c;
}

/* ---------------------------------------------------------------- checks */

static void check_freqs(const spex_config_t *c, const char *what) {
    int dim = c->qk_rope_head_dim, half = dim / 2;
    rope_t r;
    spex_err_t err = {0};
    cr_assert_eq(rope_init(&r, c, 4, &err), 0, "%s: %s", what, err.msg);
    double *f = malloc(sizeof(double) * half), cs;
    ref_freqs(c, f, &cs);
    float *x = malloc(sizeof(float) * dim);
    /* position 0: identity rotation, scaled by the cos/sin multiplier */
    for (int i = 0; i < half; i++) x[2 * i] = 1.0f, x[2 * i + 1] = 0.0f;
    rope_apply(&r, x, 0);
    for (int i = 0; i < half; i++) {
        cr_assert(fabs(x[2 * i] - cs) <= 2 * U * cs && x[2 * i + 1] == 0.0f, "%s pos 0 pair %d: (%.9g, %.9g), want (%.9g, 0)",
                  what, i, x[2 * i], x[2 * i + 1], cs);
    }
    /* position 1: the rotated unit vector is cs * (cos f_i, sin f_i) */
    for (int i = 0; i < half; i++) x[2 * i] = 1.0f, x[2 * i + 1] = 0.0f;
    rope_apply(&r, x, 1);
    for (int i = 0; i < half; i++) {
        double ang = atan2(x[2 * i + 1], x[2 * i]), mag = hypot(x[2 * i], x[2 * i + 1]);
        cr_assert(fabs(ang - f[i]) <= 8 * U * f[i], "%s: frequency of pair %d is %.12g, want %.12g (rel %.3g)", what, i,
                  ang, f[i], fabs(ang - f[i]) / f[i]);
        cr_assert(fabs(mag - cs) <= 4 * U * cs, "%s: pair %d magnitude %.9g, want %.9g", what, i, mag, cs);
    }
    free(f), free(x);
    rope_free(&r);
}

static void check_apply(const spex_config_t *c, int max_pos, const char *what) {
    int dim = c->qk_rope_head_dim, half = dim / 2;
    rope_t r;
    spex_err_t err = {0};
    cr_assert_eq(rope_init(&r, c, max_pos, &err), 0, "%s: %s", what, err.msg);
    cr_assert_eq(r.dim, dim);
    cr_assert_eq(r.max_pos, max_pos);
    double *f = malloc(sizeof(double) * half), cs;
    ref_freqs(c, f, &cs);
    float *x = malloc(sizeof(float) * dim), *x0 = malloc(sizeof(float) * dim);
    int positions[] = {0, 1, 2, 3, 7, 63, 64, 100, 1000, 4095, 4096, 8000, max_pos - 1};
    for (size_t k = 0; k < sizeof positions / sizeof *positions; k++) {
        int p = positions[k];
        if (p >= max_pos) continue;
        test_fill_random(x0, dim, 1000 + p, 2.0f);
        memcpy(x, x0, sizeof(float) * dim);
        rope_apply(&r, x, p);
        for (int i = 0; i < half; i++) {
            /* (a + ib) * cs * e^{i p f} */
            double a = x0[2 * i], b = x0[2 * i + 1], th = p * f[i];
            double re = cs * (a * cos(th) - b * sin(th)), im = cs * (a * sin(th) + b * cos(th));
            double tol = (fabs(a) + fabs(b)) * cs * (4 * U * p * f[i] + 6 * U);
            cr_assert(fabs(x[2 * i] - re) <= tol && fabs(x[2 * i + 1] - im) <= tol,
                      "%s pos %d pair %d: got (%.9g, %.9g), want (%.9g, %.9g), tol %.3g", what, p, i, x[2 * i],
                      x[2 * i + 1], re, im, tol);
        }
    }
    free(f), free(x), free(x0);
    rope_free(&r);
}

Test(rope, plain_frequencies_and_rotation) {
    spex_config_t c = plain_cfg(64, 10000.0);
    check_freqs(&c, "plain d64");
    check_apply(&c, 4096, "plain d64");
    c = plain_cfg(16, 500000.0);
    check_freqs(&c, "plain d16 theta 5e5");
    check_apply(&c, 300, "plain d16 theta 5e5");
    c = plain_cfg(2, 10000.0);
    check_freqs(&c, "plain d2");
    check_apply(&c, 70, "plain d2");
}

Test(rope, yarn_deepseek_v3) {
    /* DeepSeek-V3's config: low = floor(10.47) = 10, high = ceil(22.5) = 23 */
    spex_config_t c = yarn_cfg(64, 10000.0, 40.0, 4096, 32, 1, 1.0, 1.0);
    double lo, hi;
    find_correction_range(32, 1, 64, 10000.0, 4096, &lo, &hi);
    cr_assert(lo == 10 && hi == 23, "reference correction range (%g, %g)", lo, hi);
    check_freqs(&c, "yarn V3");
    check_apply(&c, 8192, "yarn V3");
}

Test(rope, yarn_tiny_fixture) {
    /* tests/data/golden's config: low clamps to 0 (correction dim -0.99), high = 3 */
    spex_config_t c = yarn_cfg(16, 10000.0, 40.0, 64, 32, 1, 1.0, 1.0);
    double lo, hi;
    find_correction_range(32, 1, 16, 10000.0, 64, &lo, &hi);
    cr_assert(lo == 0 && hi == 3, "reference correction range (%g, %g)", lo, hi);
    check_freqs(&c, "yarn tiny");
    check_apply(&c, 256, "yarn tiny");
}

Test(rope, yarn_cos_sin_mscale) {
    /* mscale != mscale_all_dim: cos/sin scaled by mscale(f, 1) / mscale(f, 0.5) */
    spex_config_t c = yarn_cfg(32, 10000.0, 4.0, 512, 32, 1, 1.0, 0.5);
    double f[16], cs;
    ref_freqs(&c, f, &cs);
    cr_assert(fabs(cs - (0.1 * log(4.0) + 1) / (0.05 * log(4.0) + 1)) < 1e-15);
    check_freqs(&c, "yarn mscale 1 / 0.5");
    check_apply(&c, 2048, "yarn mscale 1 / 0.5");
}

Test(rope, yarn_degenerate_ranges) {
    /* low == high (both 0: correction dims -0.99 and -0.14) -> high += 0.001 */
    spex_config_t c = yarn_cfg(16, 10000.0, 40.0, 64, 32, 12, 1.0, 1.0);
    double lo, hi;
    find_correction_range(32, 12, 16, 10000.0, 64, &lo, &hi);
    cr_assert(lo == hi, "test setup: want low == high, got %g %g", lo, hi);
    check_freqs(&c, "yarn low == high");
    check_apply(&c, 128, "yarn low == high");
    /* high clamped to dim - 1 (huge original context) */
    c = yarn_cfg(16, 10000.0, 8.0, 1 << 30, 32, 1, 1.0, 1.0);
    find_correction_range(32, 1, 16, 10000.0, 1 << 30, &lo, &hi);
    cr_assert(hi == 15, "test setup: want high clamped to 15, got %g", hi);
    check_freqs(&c, "yarn high clamped");
    /* every dimension below the range: all frequencies divided by factor */
    c = yarn_cfg(8, 10.0, 16.0, 1 << 20, 1, 0.5, 1.0, 1.0);
    find_correction_range(1, 0.5, 8, 10.0, 1 << 20, &lo, &hi);
    cr_assert(lo > 3, "test setup: want low beyond dim/2, got %g", lo);
    check_freqs(&c, "yarn all interpolated");
}

Test(rope, softmax_mscale) {
    spex_config_t c = yarn_cfg(64, 10000.0, 40.0, 4096, 32, 1, 1.0, 1.0);
    double want = pow(0.1 * 1.0 * log(40.0) + 1.0, 2);
    cr_assert(fabs(rope_softmax_mscale(&c) - want) <= 1e-14 * want, "V3: %.17g want %.17g", rope_softmax_mscale(&c), want);
    c = yarn_cfg(64, 10000.0, 40.0, 4096, 32, 1, 0.707, 0.707);
    want = pow(0.1 * 0.707 * log(40.0) + 1.0, 2);
    cr_assert(fabs(rope_softmax_mscale(&c) - want) <= 1e-14 * want, "V2-style: %.17g want %.17g",
              rope_softmax_mscale(&c), want);
    c = yarn_cfg(64, 10000.0, 4.0, 4096, 32, 1, 1.0, 0.5);   /* uses mscale_all_dim, not mscale */
    want = pow(0.1 * 0.5 * log(4.0) + 1.0, 2);
    cr_assert(fabs(rope_softmax_mscale(&c) - want) <= 1e-14 * want, "mscale_all_dim 0.5: %.17g want %.17g",
              rope_softmax_mscale(&c), want);
    c = yarn_cfg(64, 10000.0, 1.0, 4096, 32, 1, 1.0, 1.0);   /* factor <= 1: no scaling */
    cr_assert_eq(rope_softmax_mscale(&c), 1.0);
    c = plain_cfg(64, 10000.0);
    cr_assert_eq(rope_softmax_mscale(&c), 1.0);
}

Test(rope, bad_dim_is_an_error) {
    rope_t r;
    spex_err_t err = {0};
    spex_config_t c = plain_cfg(15, 10000.0);
    cr_assert_eq(rope_init(&r, &c, 8, &err), -1);
    cr_assert(strstr(err.msg, "qk_rope_head_dim") != NULL, "message: %s", err.msg);
    c = plain_cfg(0, 10000.0);
    cr_assert_eq(rope_init(&r, &c, 8, &err), -1);
}
