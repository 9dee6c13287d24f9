/* test_sampler.c - logits -> token (coordinator/decode/sampler.h) against references
 * written here:
 *  - rng: splitmix64 seeding and xoshiro256** checked against the published test
 *    vectors (splitmix64(0) = e220a8397b1dcdaf 6e789e6aa1b965f4 06c45d188009454f
 *    f88bb8a8724c81ec; xoshiro256** from {1,2,3,4} = 11520, 0, 1509978240,
 *    1215971899390074240) and a transcription of Blackman & Vigna's reference
 *    code; rng_uniform = top 53 bits * 2^-53; same seed -> same stream.
 *  - sampler_check accepts the valid range and names the bad field.
 *  - greedy (temperature 0) = argmax, lowest id on ties, one-hot probs.
 *  - sampler_probs vs a naive double reference with the composition used by
 *    Hugging Face transformers, vLLM and llama.cpp: softmax(logits / T); top-k
 *    keeps the k largest (ties -> lower id) and renormalises; top-p then keeps the
 *    smallest prefix (by descending probability) of THAT distribution whose mass
 *    reaches top_p, and renormalises. Test thresholds sit midway between
 *    cumulative sums, so f32 rounding cannot move the cut.
 *    Tolerance per probability: rel (V + (|z_i| + |z_max| + |z_i - z_max|) / T + k + 16) u,
 *    u = 2^-24: the f32 rounding of z / T is amplified by exp, the f32 sum of V
 *    positive terms adds <= V u, renormalising over k kept entries <= k u.
 *  - sampler_draw / sampler_sample: empirical frequencies of 200000 draws vs the
 *    distribution, Pearson chi-square below the exact p = 1e-6 critical value (so
 *    with a fresh seed a correct sampler fails 1 time in a million; the seeds are
 *    fixed, so the test is deterministic); zero-probability entries never drawn.
 * Two tests are marked ENGINE BUG (they fail on the current engine; see their
 * comments): top-p after top-k over un-renormalised mass, and NaN probabilities
 * for a tiny positive temperature. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/decode/sampler.h"
#include "core/kernels.h"
#include "testutil.h"

#define U 0x1.0p-24

/* ------------------------------------------------------------------ rng */

static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t ref_xoshiro(uint64_t s[4]) {   /* Blackman & Vigna, xoshiro256starstar.c */
    const uint64_t result = ref_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ref_rotl(s[3], 45);
    return result;
}

Test(rng, splitmix64_seeding_test_vector) {
    rng_t r;
    rng_seed(&r, 0);
    uint64_t want[4] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full, 0xf88bb8a8724c81ecull};
    for (int i = 0; i < 4; i++) cr_assert_eq(r.s[i], want[i], "state[%d] = %016llx, want %016llx", i,
                                             (unsigned long long)r.s[i], (unsigned long long)want[i]);
}

Test(rng, xoshiro256starstar_vs_reference) {
    rng_t r = {{1, 2, 3, 4}};
    uint64_t want[4] = {11520ull, 0ull, 1509978240ull, 1215971899390074240ull};
    for (int i = 0; i < 4; i++) {
        uint64_t v = rng_next(&r);
        cr_assert_eq(v, want[i], "output %d = %llu, want %llu", i, (unsigned long long)v, (unsigned long long)want[i]);
    }
    for (uint64_t seed = 0; seed < 5; seed++) {
        rng_t a;
        rng_seed(&a, seed * 0x1234567ull + 99);
        uint64_t s[4];
        memcpy(s, a.s, sizeof s);
        for (int i = 0; i < 5000; i++) {
            uint64_t want_v = ref_xoshiro(s);
            if (i % 2) {
                cr_assert_eq(rng_next(&a), want_v, "seed %llu output %d", (unsigned long long)seed, i);
            } else {
                double u = rng_uniform(&a), want_u = (double)(want_v >> 11) * 0x1.0p-53;
                cr_assert(u == want_u && u >= 0.0 && u < 1.0, "seed %llu uniform %d: %.17g want %.17g",
                          (unsigned long long)seed, i, u, want_u);
            }
        }
    }
}

Test(rng, determinism) {
    rng_t a, b, c;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    rng_seed(&c, 43);
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_next(&a), y = rng_next(&b), z = rng_next(&c);
        cr_assert_eq(x, y, "same seed diverged at %d", i);
        same_c += x == z;
    }
    cr_assert_eq(same_c, 0, "seeds 42 and 43 share %d outputs", same_c);
    /* sampler_sample with equal seeds draws equal tokens */
    float logits[30];
    test_fill_random(logits, 30, 5, 3.0f);
    sampling_params_t p = {.temperature = 0.9f, .top_k = 0, .top_p = 1.0f, .seed = 7};
    float probs[30];
    rng_seed(&a, 7);
    rng_seed(&b, 7);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(sampler_sample(&p, logits, 30, &a, probs), sampler_sample(&p, logits, 30, &b, probs));
}

/* ------------------------------------------------------------------ check */

Test(sampler, check_params) {
    struct { sampling_params_t p; const char *field; } cases[] = {
        {{0.0f, 0, 1.0f, 0}, NULL},
        {{1.0f, 50, 0.9f, 1}, NULL},
        {{100.0f, 0, 1e-6f, 1}, NULL},
        {{0.5f, 1, 1.0f, 1}, NULL},
        {{-0.1f, 0, 1.0f, 0}, "temperature"},
        {{NAN, 0, 1.0f, 0}, "temperature"},
        {{100.5f, 0, 1.0f, 0}, "temperature"},
        {{INFINITY, 0, 1.0f, 0}, "temperature"},
        {{1.0f, -1, 1.0f, 0}, "top_k"},
        {{1.0f, 0, 0.0f, 0}, "top_p"},
        {{1.0f, 0, -0.5f, 0}, "top_p"},
        {{1.0f, 0, 1.01f, 0}, "top_p"},
        {{1.0f, 0, NAN, 0}, "top_p"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *m = sampler_check(&cases[i].p);
        if (!cases[i].field) {
            cr_assert_null(m, "case %zu: valid params rejected: %s", i, m);
        } else {
            cr_assert_not_null(m, "case %zu: bad %s accepted", i, cases[i].field);
            cr_assert(strstr(m, cases[i].field) != NULL, "case %zu: message '%s' does not name %s", i, m,
                      cases[i].field);
        }
    }
}

/* ------------------------------------------------------------------ greedy */

Test(sampler, greedy_is_argmax) {
    float logits[9] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9999998f, -INFINITY, 3.0f, 0.0f, 1.0f};
    sampling_params_t p = {.temperature = 0.0f, .top_k = 3, .top_p = 0.5f, .seed = 1};
    float probs[9];
    rng_t r;
    rng_seed(&r, 1);
    for (int i = 0; i < 10; i++) cr_assert_eq(sampler_sample(&p, logits, 9, &r, probs), 1);
    sampler_probs(&p, logits, 9, probs);
    for (int i = 0; i < 9; i++) cr_assert_eq(probs[i], i == 1 ? 1.0f : 0.0f, "probs[%d] = %g", i, probs[i]);
    float big[1000];
    test_fill_random(big, 1000, 77, 10.0f);
    float scratch[1000];
    cr_assert_eq(sampler_sample(&p, big, 1000, &r, scratch), argmax(big, 1000));
}

/* ------------------------------------------------------------------ probs */

typedef struct { double p; int id; } pid_t_;
static int cmp_pid(const void *a, const void *b) {
    const pid_t_ *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

/* Naive: softmax(z / T) in double; top-k, renormalise; top-p on that, renormalise.
 * *tol_rel gets the relative tolerance stated at the top; *top_p_margin the distance
 * of top_p from the nearest cumulative sum that decides the cut. */
static void ref_probs(const sampling_params_t *sp, const float *z, int V, double *p, double *tol, double *margin) {
    double T = sp->temperature, zmax = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) if (z[i] > zmax) zmax = z[i];
    for (int i = 0; i < V; i++) sum += (p[i] = exp((z[i] - zmax) / T));
    for (int i = 0; i < V; i++) p[i] /= sum;
    pid_t_ *v = malloc(sizeof *v * V);
    for (int i = 0; i < V; i++) v[i] = (pid_t_){p[i], i};
    qsort(v, V, sizeof *v, cmp_pid);
    int keep = (sp->top_k > 0 && sp->top_k < V) ? sp->top_k : V;
    double mass = 0;
    for (int i = 0; i < keep; i++) mass += v[i].p;
    for (int i = 0; i < keep; i++) v[i].p /= mass;   /* top-k renormalised */
    *margin = INFINITY;
    if (sp->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < keep; i++) {
            cum += v[i].p;
            double m = fabs(cum - sp->top_p);
            if (m < *margin) *margin = m;
            if (cum >= sp->top_p) { keep = i + 1; break; }
        }
    }
    mass = 0;
    for (int i = 0; i < keep; i++) mass += v[i].p;
    for (int i = 0; i < V; i++) p[i] = 0;
    for (int i = 0; i < keep; i++) p[v[i].id] = v[i].p / mass;
    for (int i = 0; i < V; i++)
        tol[i] = (V + (fabs(z[i]) + fabs(zmax) + fabs(z[i] - zmax)) / T + keep + 16) * U;
    free(v);
}

static void check_probs(const sampling_params_t *sp, const float *z, int V, const char *what) {
    double *p = malloc(sizeof(double) * V), *tol = malloc(sizeof(double) * V), margin;
    float *got = malloc(sizeof(float) * V);
    char msg[512] = "";   /* first mismatch; buffers are freed before asserting (no leak on failure) */
    ref_probs(sp, z, V, p, tol, &margin);
    sampler_probs(sp, z, V, got);
    if (!(margin > 1e-4)) snprintf(msg, sizeof msg, "%s: test setup: top_p within %g of a cumulative sum", what, margin);
    for (int i = 0; i < V && !msg[0]; i++) {
        if (p[i] == 0 ? got[i] != 0.0f : !(fabs(got[i] - p[i]) <= tol[i] * p[i] + 1e-37))
            snprintf(msg, sizeof msg, "%s T=%g k=%d p=%g: token %d prob %.9g, want %.9g%s", what, sp->temperature,
                     sp->top_k, sp->top_p, i, got[i], p[i], p[i] == 0 ? " (cut)" : "");
    }
    free(p), free(tol), free(got);
    cr_assert(!msg[0], "%s", msg);
}

/* top_p midway between the j-th and (j+1)-th cumulative sums of the (top-k
 * renormalised) distribution: the reference then keeps exactly j + 1 tokens. */
static float midway_top_p(float T, int top_k, const float *z, int V, int j) {
    sampling_params_t sp = {.temperature = T, .top_k = top_k, .top_p = 1.0f};
    double *p = malloc(sizeof(double) * V), *tol = malloc(sizeof(double) * V), m;
    ref_probs(&sp, z, V, p, tol, &m);
    pid_t_ *v = malloc(sizeof *v * V);
    for (int i = 0; i < V; i++) v[i] = (pid_t_){p[i], i};
    qsort(v, V, sizeof *v, cmp_pid);
    double c0 = 0;
    for (int i = 0; i < j; i++) c0 += v[i].p;
    /* 1 (= skip) when the step is too small to put a threshold safely inside it */
    float r = v[j].p < 1e-3 ? 1.0f : (float)(c0 + v[j].p / 2);
    free(p), free(tol), free(v);
    return r;
}

Test(sampler, probs_temperature_top_k_top_p_vs_naive) {
    enum { V = 50, VB = 1000 };
    float z[V], zb[VB];
    test_fill_random(z, V, 3, 4.0f);
    test_fill_random(zb, VB, 4, 12.0f);
    float temps[] = {1.0f, 0.7f, 1.5f, 0.05f, 100.0f};
    int n_top_p = 0;
    for (size_t t = 0; t < sizeof temps / sizeof *temps; t++) {
        float T = temps[t];
        sampling_params_t sp = {.temperature = T, .top_k = 0, .top_p = 1.0f};
        check_probs(&sp, z, V, "plain");
        check_probs(&sp, zb, VB, "plain V=1000");
        int ks[] = {1, 2, 5, 49, 50, 51};
        for (size_t k = 0; k < sizeof ks / sizeof *ks; k++) {
            sp.top_k = ks[k];
            check_probs(&sp, z, V, "top-k");
        }
        sp.top_k = 0;
        int js[] = {0, 1, 4, 20};
        for (size_t j = 0; j < sizeof js / sizeof *js; j++) {
            sp.top_p = midway_top_p(T, 0, z, V, js[j]);
            if (sp.top_p < 1.0f) check_probs(&sp, z, V, "top-p"), n_top_p++;
            sp.top_p = midway_top_p(T, 0, zb, VB, js[j]);
            if (sp.top_p < 1.0f) check_probs(&sp, zb, VB, "top-p V=1000"), n_top_p++;
        }
    }
    cr_assert(n_top_p >= 25, "only %d top-p cases had a safe threshold", n_top_p);
    /* -inf logits (masked tokens) stay at 0 */
    z[3] = z[10] = -INFINITY;
    sampling_params_t sp = {.temperature = 0.8f, .top_k = 0, .top_p = 1.0f};
    check_probs(&sp, z, V, "masked");
}

/* ENGINE BUG (reported, not fixed here): with both top_k and top_p, the engine
 * (coordinator/decode/sampler.c, cut_tail) accumulates top_p over the ORIGINAL softmax
 * probabilities of the top-k tokens instead of the top-k-renormalised
 * distribution that top-k hands on (Hugging Face TopK -> TopP warpers, vLLM
 * apply_top_k_top_p, llama.cpp's sampler chain). Logits log(0.3), log(0.2), then
 * 6 x log(0.0833): top-k 2 leaves {0.6, 0.4}; top_p 0.55 must keep only token 0
 * (0.6 >= 0.55). The engine sees 0.3, 0.5 < 0.55 and keeps both: probs
 * {0.6, 0.4} instead of {1, 0}. */
Test(sampler, top_k_then_top_p_uses_renormalised_mass) {
    float z[8] = {logf(0.3f), logf(0.2f)};
    for (int i = 2; i < 8; i++) z[i] = logf(0.5f / 6);
    sampling_params_t sp = {.temperature = 1.0f, .top_k = 2, .top_p = 0.55f};
    float got[8];
    sampler_probs(&sp, z, 8, got);
    cr_expect(got[0] == 1.0f && got[1] == 0.0f,
              "ENGINE BUG sampler_probs(T=1, top_k=2, top_p=0.55) on probs {0.3, 0.2, 6 x 0.083}: got p0=%.6g p1=%.6g, "
              "want p0=1 p1=0 (top-p over the top-k-renormalised {0.6, 0.4})", got[0], got[1]);
    check_probs(&sp, z, 8, "top-k then top-p");
}

/* ------------------------------------------------------------------ draws */

/* Survival function of chi-square with an even number of degrees of freedom:
 * P(X > x) = e^{-x/2} sum_{i < df/2} (x/2)^i / i!  (exact). */
static double chi2_sf_even(int df, double x) {
    double term = 1, sum = 1;
    for (int i = 1; i < df / 2; i++) sum += (term *= x / 2 / i);
    return exp(-x / 2) * sum;
}

static double chi2_crit_even(int df, double alpha) {
    double lo = 0, hi = 10.0 * df + 200;
    for (int it = 0; it < 200; it++) {
        double mid = (lo + hi) / 2;
        if (chi2_sf_even(df, mid) > alpha) lo = mid; else hi = mid;
    }
    return hi;
}

/* Pearson chi-square of counts[V] vs probabilities p[V] (zeros must have count 0). */
static void expect_fit(const long *counts, const double *p, int V, long n, const char *what) {
    double chi = 0;
    int df = -1;
    for (int i = 0; i < V; i++) {
        if (p[i] == 0) {
            cr_assert_eq(counts[i], 0, "%s: token %d has probability 0 but was drawn %ld times", what, i, counts[i]);
            continue;
        }
        double e = p[i] * n;
        cr_assert(e >= 20, "%s: test setup: expected count %g too small for chi-square", what, e);
        chi += (counts[i] - e) * (counts[i] - e) / e;
        df++;
    }
    cr_assert(df % 2 == 0, "%s: test setup wants even df, got %d", what, df);
    double crit = chi2_crit_even(df, 1e-6);
    fprintf(stderr, "sampler %-24s chi2 %.2f (df %d, p=1e-6 critical %.2f)\n", what, chi, df, crit);
    cr_assert(chi < crit, "%s: chi-square %.2f >= critical %.2f (df %d, alpha 1e-6)", what, chi, crit, df);
}

Test(sampler, chi2_crit_sanity) {
    /* df 2: P(X > x) = e^{-x/2}, so the critical value is -2 ln(alpha) */
    cr_assert(fabs(chi2_crit_even(2, 1e-6) - (-2 * log(1e-6))) < 1e-9);
    /* df 4 at the 5% point: 9.4877 (standard tables) */
    cr_assert(fabs(chi2_crit_even(4, 0.05) - 9.4877) < 1e-3);
}

Test(sampler, draw_frequencies_chi_square) {
    /* unnormalised, with zeros: 9 nonzero entries -> df 8 */
    float probs[12] = {0.0f, 3.0f, 1.0f, 0.5f, 0.0f, 2.0f, 0.25f, 6.0f, 0.1f, 0.0f, 0.7f, 1.45f};
    double total = 0, p[12];
    for (int i = 0; i < 12; i++) total += probs[i];
    for (int i = 0; i < 12; i++) p[i] = probs[i] / total;
    enum { N = 200000 };
    long counts[12] = {0};
    rng_t r;
    rng_seed(&r, 2024);
    for (int i = 0; i < N; i++) {
        int t = sampler_draw(probs, 12, &r);
        cr_assert(t >= 0 && t < 12);
        counts[t]++;
    }
    expect_fit(counts, p, 12, N, "draw unnormalised");
    /* one nonzero entry (the last): always drawn */
    float one[5] = {0, 0, 0, 0, 0.3f};
    for (int i = 0; i < 1000; i++) cr_assert_eq(sampler_draw(one, 5, &r), 4);
    float first[5] = {2.0f, 0, 0, 0, 0};
    for (int i = 0; i < 1000; i++) cr_assert_eq(sampler_draw(first, 5, &r), 0);
}

Test(sampler, sample_frequencies_chi_square) {
    /* end to end: temperature 0.7, top-k 5 over 20 logits -> 5 tokens, df 4 */
    float z[20];
    test_fill_random(z, 20, 99, 2.0f);
    sampling_params_t sp = {.temperature = 0.7f, .top_k = 5, .top_p = 1.0f, .seed = 5};
    double p[20], tol[20], m;
    ref_probs(&sp, z, 20, p, tol, &m);
    enum { N = 200000 };
    long counts[20] = {0};
    float scratch[20];
    rng_t r;
    rng_seed(&r, sp.seed);
    for (int i = 0; i < N; i++) counts[sampler_sample(&sp, z, 20, &r, scratch)]++;
    expect_fit(counts, p, 20, N, "sample T=0.7 top-k 5");
    /* top-p alone, cut after 7 tokens -> df 6 */
    sp.top_k = 0;
    sp.top_p = midway_top_p(0.7f, 0, z, 20, 6);
    ref_probs(&sp, z, 20, p, tol, &m);
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < N; i++) counts[sampler_sample(&sp, z, 20, &r, scratch)]++;
    expect_fit(counts, p, 20, N, "sample T=0.7 top-p");
}

/* ENGINE BUG (reported, not fixed here): a tiny positive temperature, which
 * sampler_check accepts (and `spex generate --temperature 1e-38` passes), makes
 * logits / T overflow to +inf in coordinator/decode/sampler.c sampler_probs; softmax_row
 * then computes inf - inf = NaN, every probability is NaN, and sampler_draw falls
 * through to its last-index fallback: with logits {1, 5, 2, -3} and T = 1e-38 it
 * returns token 3, the LEAST likely one. The limit T -> 0+ is greedy: probs must be
 * finite, one-hot at the argmax (token 1). */
Test(sampler, tiny_temperature_tends_to_greedy) {
    float z[4] = {1.0f, 5.0f, 2.0f, -3.0f}, probs[4], scratch[4];
    float temps[] = {1e-30f, 1e-38f};
    for (int t = 0; t < 2; t++) {
        sampling_params_t sp = {.temperature = temps[t], .top_k = 0, .top_p = 1.0f, .seed = 1};
        cr_assert_null(sampler_check(&sp));
        sampler_probs(&sp, z, 4, probs);
        cr_expect(probs[0] == 0.0f && probs[1] == 1.0f && probs[2] == 0.0f && probs[3] == 0.0f,
                  "ENGINE BUG sampler_probs(T=%g) on logits {1, 5, 2, -3}: got {%g, %g, %g, %g}, want {0, 1, 0, 0}",
                  temps[t], probs[0], probs[1], probs[2], probs[3]);
        rng_t r;
        rng_seed(&r, 1);
        int tok = sampler_sample(&sp, z, 4, &r, scratch);
        cr_expect_eq(tok, 1, "ENGINE BUG sampler_sample(T=%g) on logits {1, 5, 2, -3} drew token %d, want 1", temps[t],
                     tok);
    }
}
