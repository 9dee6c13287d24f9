/* test_router.c - the MoE gate (coordinator/model/router.h) against a naive
 * double-precision rendering, written here, of DeepSeek-V3's Gate.forward
 * (inference/model.py) with Hugging Face's norm_topk_prob rule:
 *   s = sigmoid(x W^T) (softmax for V2-style configs);  b = s + bias (selection only)
 *   group score = sum of the top-2 b in the group (noaux_tc) or max b
 *   (group_limited_greedy); keep topk_group groups, mask the others with -inf;
 *   top-k experts by b; weights = unbiased s of those experts, normalised to sum 1
 *   when norm_topk_prob and top_k > 1, times routed_scaling_factor.
 * Ties pick the lower group / expert index (the engine's documented rule; torch's
 * topk leaves it unspecified). router_t structs are built by hand, no checkpoint.
 *
 * Tolerances (u = 2^-24):
 *  - selection: exact. For random inputs a row is compared only when every
 *    decision (group cut, expert cut) has a margin > 1e-4 in the reference, far
 *    above the f32 error of the scores (< 1e-6 here), so float and double agree;
 *    the test requires most rows to qualify. Hand-built cases use hidden = 1 and
 *    x = 1, so the logits are the weights bit for bit and ties are exact ties.
 *  - weights: |w - w_ref| <= scale ((k + 1) ds / S + 8 u) with ds = e_l / 4 + 4 u
 *    the sigmoid's error (slope <= 1/4) from the logit bound e_l = 8 sqrt(K) u
 *    sum|x w| (f32 dot product, see test_kernels.c) and S the selected scores' sum;
 *    for softmax scoring ds = (2 e_l + (E + 8) u) per probability. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/model/router.h"
#include "testutil.h"

#define U 0x1.0p-24
#define MAXE 512

/* ------------------------------------------------------------- reference */

typedef struct {
    int32_t idx[64];
    double w[64];
    double margin;   /* smallest gap at a selection cut (INFINITY when there is none) */
    double wtol;     /* weight tolerance */
} ref_route_t;

/* indices of the top `k` of v[n] (skipping -inf), by value desc then index asc; returns count found;
 * *gap = v[last taken] - v[first not taken] (INFINITY if nothing finite remains). */
/* The gate's f32 weights (the tests build routers over f32 gates). */
#define GW(r) ((float *)(r)->gate.w.data)

/* One 1-thread pool for the file's kernels (freed at exit). */
static threadpool_t *g_pool;
static exec_t EXEC(void) {
    spex_err_t err = {0};
    if (!g_pool) g_pool = threadpool_create(1, &err);
    cr_assert_not_null(g_pool, "%s", err.msg);
    return (exec_t){g_pool, simd_detect(), -1};
}
__attribute__((destructor)) static void free_pool(void) { threadpool_free(g_pool); }

static int ref_topk(const double *v, int n, int k, int *out, double *gap) {
    unsigned char taken[MAXE] = {0};
    int got = 0;
    for (; got < k; got++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!taken[i] && v[i] != -INFINITY && (best < 0 || v[i] > v[best])) best = i;
        if (best < 0) break;
        taken[best] = 1;
        out[got] = best;
    }
    double next = -INFINITY;
    for (int i = 0; i < n; i++) if (!taken[i] && v[i] > next) next = v[i];
    *gap = (got > 0 && next != -INFINITY) ? v[out[got - 1]] - next : INFINITY;
    return got;
}

static void ref_route(const router_t *r, const float *x, int hidden, ref_route_t *o) {
    int E = r->n_experts, K = r->top_k;
    double s[MAXE], b[MAXE], mag = 0, el;
    for (int e = 0; e < E; e++) {
        double l = 0, m = 0;
        for (int k = 0; k < hidden; k++) {
            double t = (double)x[k] * GW(r)[(size_t)e * hidden + k];
            l += t, m += fabs(t);
        }
        s[e] = l;
        if (m > mag) mag = m;
    }
    el = 8 * sqrt((double)hidden) * U * mag;
    double ds;
    if (r->scoring == SCORING_SOFTMAX) {
        double mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++) if (s[e] > mx) mx = s[e];
        for (int e = 0; e < E; e++) sum += (s[e] = exp(s[e] - mx));
        for (int e = 0; e < E; e++) s[e] /= sum;
        ds = 2 * el + (E + 8) * U;
    } else {
        for (int e = 0; e < E; e++) s[e] = 1.0 / (1.0 + exp(-s[e]));
        ds = el / 4 + 4 * U;
    }
    for (int e = 0; e < E; e++) b[e] = s[e] + (r->bias ? (double)r->bias[e] : 0.0);
    o->margin = INFINITY;
    if (r->n_group > 1 && r->method != TOPK_GREEDY) {
        int per = E / r->n_group, keep[256];
        double gs[256], gap;
        for (int g = 0; g < r->n_group; g++) {
            if (r->method == TOPK_NOAUX_TC) {
                int t2[2];
                double dummy;
                int c = ref_topk(b + g * per, per, 2, t2, &dummy);
                gs[g] = 0;
                for (int j = 0; j < c; j++) gs[g] += b[g * per + t2[j]];
            } else {
                gs[g] = -INFINITY;
                for (int i = 0; i < per; i++) if (b[g * per + i] > gs[g]) gs[g] = b[g * per + i];
            }
        }
        ref_topk(gs, r->n_group, r->topk_group, keep, &gap);
        o->margin = gap;
        unsigned char kept[256] = {0};
        for (int j = 0; j < r->topk_group; j++) kept[keep[j]] = 1;
        for (int g = 0; g < r->n_group; g++)
            if (!kept[g]) for (int i = 0; i < per; i++) b[g * per + i] = -INFINITY;
    }
    int sel[64];
    double gap;
    int got = ref_topk(b, E, K, sel, &gap);
    cr_assert_eq(got, K, "reference: only %d experts reachable", got);
    if (gap < o->margin) o->margin = gap;
    /* sort ascending by expert id */
    for (int i = 1; i < K; i++)
        for (int j = i; j > 0 && sel[j] < sel[j - 1]; j--) { int t = sel[j]; sel[j] = sel[j - 1]; sel[j - 1] = t; }
    double S = 0;
    for (int j = 0; j < K; j++) S += s[sel[j]];
    bool norm = r->norm_topk_prob && K > 1;
    for (int j = 0; j < K; j++) {
        o->idx[j] = sel[j];
        o->w[j] = (norm ? s[sel[j]] / S : s[sel[j]]) * r->scale;
    }
    o->wtol = r->scale * ((norm ? (K + 1) * ds / S : ds) + 8 * U);
}

/* ------------------------------------------------------------- helpers */

static router_t make_router(int E, int hidden, int top_k, int n_group, int topk_group, spex_scoring_t sc,
                            spex_topk_method_t m, bool norm, float scale, bool with_bias) {
    router_t r;
    memset(&r, 0, sizeof r);
    r.n_experts = E, r.top_k = top_k, r.n_group = n_group, r.topk_group = topk_group;
    r.scoring = sc, r.method = m, r.norm_topk_prob = norm, r.scale = scale;
    float *gw = calloc((size_t)E * hidden, sizeof(float));
    cr_assert_not_null(gw);
    r.gate = linear_borrow_f32(gw, E, hidden);
    r.gate.owned = gw;   /* router_free frees it */
    if (with_bias) {
        r.bias = calloc((size_t)E, sizeof(float));
        cr_assert_not_null(r.bias);
    }
    return r;
}

/* Run router_select (both kernels) on n rows; compare with the reference where the
 * margins allow. Returns the number of rows compared. */
static int check_rows(const router_t *r, const float *x, int n, int hidden, double min_margin, const char *what) {
    exec_t ex = EXEC();
    int K = r->top_k, checked = 0;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n * K);
    float *w = malloc(sizeof(float) * (size_t)n * K), *scratch = malloc(sizeof(float) * 2 * (size_t)n * r->n_experts);
    for (int exact = 0; exact < 2; exact++) {
        router_select(&ex, r, x, n, idx, w, scratch);
        checked = 0;
        for (int i = 0; i < n; i++) {
            ref_route_t ref;
            ref_route(r, x + (size_t)i * hidden, hidden, &ref);
            if (ref.margin <= min_margin) continue;
            checked++;
            for (int j = 0; j < K; j++) {
                cr_assert_eq(idx[(size_t)i * K + j], ref.idx[j], "%s exact=%d row %d slot %d: expert %d, want %d", what,
                             exact, i, j, idx[(size_t)i * K + j], ref.idx[j]);
                double d = fabs(w[(size_t)i * K + j] - ref.w[j]);
                cr_assert(d <= ref.wtol, "%s exact=%d row %d expert %d: weight %.9g, want %.9g (tol %.3g)", what, exact,
                          i, ref.idx[j], w[(size_t)i * K + j], ref.w[j], ref.wtol);
            }
        }
    }
    free(idx), free(w), free(scratch);
    return checked;
}

/* hidden = 1, x = 1: logits are exactly the gate column; set from desired sigmoid scores. */
static void set_scores(router_t *r, const double *s) {
    for (int e = 0; e < r->n_experts; e++) GW(r)[e] = (float)log(s[e] / (1.0 - s[e]));
}

/* Single row through router_select with x = 1; expect the given experts (ascending). */
static void expect_route(const router_t *r, const int *want, const char *what) {
    exec_t ex = EXEC();
    float one = 1.0f;
    check_rows(r, &one, 1, 1, -1.0, what);   /* also compares weights with the reference */
    int32_t idx[64];
    float w[64], scratch[2 * MAXE];
    for (int exact = 0; exact < 2; exact++) {
        router_select(&ex, r, &one, 1, idx, w, scratch);
        for (int j = 0; j < r->top_k; j++)
            cr_assert_eq(idx[j], want[j], "%s: slot %d is expert %d, want %d", what, j, idx[j], want[j]);
    }
}

/* ------------------------------------------------------------- random */

static void random_case(int E, int hidden, int K, int G, int TG, spex_scoring_t sc, spex_topk_method_t m, bool norm,
                        float scale, bool bias, unsigned seed, const char *what) {
    enum { N = 300 };
    router_t r = make_router(E, hidden, K, G, TG, sc, m, norm, scale, bias);
    test_fill_random(GW(&r), (size_t)E * hidden, seed, 2.0f / sqrtf((float)hidden));
    if (bias) test_fill_random(r.bias, E, seed + 1, 0.2f);
    float *x = malloc(sizeof(float) * N * hidden);
    test_fill_random(x, (size_t)N * hidden, seed + 2, 1.0f);
    int checked = check_rows(&r, x, N, hidden, 1e-4, what);
    fprintf(stderr, "router %-16s %d of %d rows compared (decision margins > 1e-4)\n", what, checked, N);
    cr_assert(checked >= N * 8 / 10, "%s: only %d of %d rows had clear margins", what, checked, N);
    free(x);
    router_free(&r);
}

Test(router, random_v3_full_routing) {
    /* DeepSeek-V3: 256 experts, 8 groups, keep 4, top-8, scale 2.5 */
    random_case(256, 64, 8, 8, 4, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.5f, true, 1, "V3 256/8/4/8");
}

Test(router, random_tiny_fixture_shape) {
    random_case(16, 128, 4, 4, 2, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.5f, true, 2, "16/4/2/4");
    random_case(16, 33, 4, 4, 2, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.5f, false, 3, "16/4/2/4 no bias");
    random_case(64, 40, 6, 1, 1, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 1.0f, true, 4, "64 ungrouped");
    random_case(32, 24, 1, 4, 1, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.0f, true, 5, "top-1");
}

Test(router, random_softmax_variants) {
    /* DeepSeek-V2: softmax, group_limited_greedy, no normalisation, scale 16 */
    random_case(160, 48, 6, 8, 3, SCORING_SOFTMAX, TOPK_GROUP_LIMITED_GREEDY, false, 16.0f, false, 6, "V2 glg");
    /* DeepSeek-V2-Lite: softmax, greedy (groups ignored even if n_group > 1) */
    random_case(64, 48, 6, 4, 1, SCORING_SOFTMAX, TOPK_GREEDY, false, 1.0f, false, 7, "V2-Lite greedy");
    random_case(64, 48, 6, 1, 1, SCORING_SOFTMAX, TOPK_GREEDY, false, 1.0f, false, 8, "greedy 1 group");
}

/* ------------------------------------------------------------- adversarial */

Test(router, group_with_high_max_but_low_second) {
    /* 16 experts, 4 groups of 4, keep 2 groups, top-4. Group 0 holds the best
     * expert (0.99) but its second is 0.01: top-2 sum 1.00 loses to groups 1 (1.20)
     * and 2 (1.10), so expert 0 must NOT be chosen under noaux_tc. */
    double s[16] = {0.99, 0.01, 0.01, 0.01, 0.60, 0.60, 0.10, 0.10,
                    0.55, 0.55, 0.10, 0.10, 0.30, 0.30, 0.30, 0.30};
    router_t r = make_router(16, 1, 4, 4, 2, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.5f, true);
    set_scores(&r, s);
    int want[4] = {4, 5, 8, 9};
    expect_route(&r, want, "noaux_tc top-2 sum");
    /* the same scores under group_limited_greedy (group score = max): groups 0 and 1 */
    r.method = TOPK_GROUP_LIMITED_GREEDY;
    int want2[4] = {0, 4, 5, 6};
    expect_route(&r, want2, "group_limited_greedy max");
    /* greedy: no groups at all */
    r.method = TOPK_GREEDY;
    int want3[4] = {0, 4, 5, 8};
    expect_route(&r, want3, "greedy");
    router_free(&r);
}

Test(router, bias_selects_but_does_not_weigh) {
    exec_t ex = EXEC();
    /* Expert 3 (s = 0.2) gets bias +0.5 and beats expert 1 (s = 0.6); the weights
     * use the unbiased scores 0.9 and 0.2, normalised, times the scale. */
    double s[8] = {0.9, 0.6, 0.1, 0.2, 0.5, 0.1, 0.1, 0.1};
    router_t r = make_router(8, 1, 2, 1, 1, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.5f, true);
    set_scores(&r, s);
    r.bias[3] = 0.5f;
    int want[2] = {0, 3};
    expect_route(&r, want, "bias flips selection");
    float one = 1.0f, w[2], scratch[16];
    int32_t idx[2];
    router_select(&ex, &r, &one, 1, idx, w, scratch);
    double sum = 0.9 + 0.2;
    cr_assert(fabs(w[1] - 2.5 * 0.2 / sum) < 1e-6, "weight of expert 3 = %.9g, want unbiased %.9g", w[1],
              2.5 * 0.2 / sum);
    /* A bias that moves a whole group: group 1 (experts 4..7) outscores group 0 */
    router_t g = make_router(8, 1, 2, 2, 1, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 1.0f, true);
    double s2[8] = {0.7, 0.7, 0.1, 0.1, 0.5, 0.5, 0.1, 0.1};
    set_scores(&g, s2);
    g.bias[4] = g.bias[5] = 0.3f;
    int want2[2] = {4, 5};
    expect_route(&g, want2, "bias moves group");
    router_free(&r);
    router_free(&g);
}

Test(router, ties_pick_lowest_index) {
    /* Exact ties among experts at the cut: identical gate columns. */
    double s[8] = {0.3, 0.7, 0.5, 0.7, 0.5, 0.5, 0.2, 0.5};
    router_t r = make_router(8, 1, 3, 1, 1, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 1.0f, true);
    set_scores(&r, s);
    int want[3] = {1, 2, 3};   /* 0.7, 0.7, then the lowest of the four 0.5s */
    expect_route(&r, want, "expert tie");
    router_free(&r);
    /* Exact tie between group scores: groups 1 and 3 both sum to 1.2; keep 2 groups,
     * group 0 clearly first, then group 1 (lower index) over group 3. */
    double s2[16] = {0.9, 0.8, 0.1, 0.1, 0.6, 0.6, 0.1, 0.1,
                     0.5, 0.2, 0.2, 0.1, 0.6, 0.1, 0.6, 0.1};
    router_t g = make_router(16, 1, 4, 4, 2, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.5f, true);
    set_scores(&g, s2);
    int want2[4] = {0, 1, 4, 5};
    expect_route(&g, want2, "group tie");
    /* Ties inside the top-2 of a group count twice: [0.6, 0.6] = 1.2 beats [0.9, 0.2] = 1.1 */
    double s3[16] = {0.9, 0.2, 0.1, 0.1, 0.6, 0.6, 0.6, 0.1,
                     0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};
    set_scores(&g, s3);
    g.topk_group = 1;
    int want3[4] = {4, 5, 6, 7};
    expect_route(&g, want3, "duplicate max in group");
    router_free(&g);
}

Test(router, all_equal_scores) {
    exec_t ex = EXEC();
    /* x = 0: every logit 0, every score 0.5: ties everywhere -> lowest groups and ids,
     * equal weights scale / k. */
    router_t r = make_router(32, 16, 4, 4, 2, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.5f, true);
    test_fill_random(GW(&r), 32 * 16, 9, 1.0f);
    float x[16] = {0};
    int32_t idx[4];
    float w[4], scratch[64];
    for (int exact = 0; exact < 2; exact++) {
        router_select(&ex, &r, x, 1, idx, w, scratch);
        for (int j = 0; j < 4; j++) {
            cr_assert_eq(idx[j], j, "exact=%d slot %d: expert %d", exact, j, idx[j]);
            cr_assert(fabs(w[j] - 2.5 / 4) < 1e-6, "exact=%d weight %g", exact, w[j]);
        }
    }
    router_free(&r);
}

Test(router, top1_not_normalised) {
    exec_t ex = EXEC();
    /* top_k = 1: HF normalises only when top_k > 1, so the weight is s * scale. */
    double s[4] = {0.2, 0.8, 0.4, 0.1};
    router_t r = make_router(4, 1, 1, 1, 1, SCORING_SIGMOID, TOPK_NOAUX_TC, true, 2.0f, true);
    set_scores(&r, s);
    int want[1] = {1};
    expect_route(&r, want, "top-1");
    float one = 1.0f, w[1], scratch[8];
    int32_t idx[1];
    router_select(&ex, &r, &one, 1, idx, w, scratch);
    cr_assert(fabs(w[0] - 1.6) < 1e-6, "top-1 weight %.9g, want 0.8 * 2", w[0]);
    router_free(&r);
}
