/* test_mla.c - Multi-head Latent Attention (coordinator/model/mla.h), which attends in
 * the latent space with absorbed weights, against a NAIVE MLA written here in
 * double precision: per head, keys k = [W_uk c_kv[t] ; k_pe[t]] and values
 * v = W_uv c_kv[t] are expanded for every cached token, then standard causal
 * softmax attention with scale 1/sqrt(qk_head_dim) * mscale (mla_t.softmax_scale),
 * then o_proj. mla_t is built by hand with random weights, with q_lora > 0
 * (q_a -> rmsnorm -> q_b) and q_lora == 0 (q_proj); RoPE is plain, rotating
 * interleaved pairs, re-derived here (angle pos * theta^(-2i/d)).
 *
 * Checked: several sequences in one batch with different cache lengths (and one
 * contributing no rows), each row the same bits alone or in a batch, prefill vs
 * token-by-token decode vs uneven chunks, the cache contents (normalised latent,
 * rotated k_pe), writes confined to the requested layer, and errors (not
 * crashes, not partial appends) when a cache or the rope table would overflow.
 *
 * Tolerance: |out - ref| <= 2e-5 * max|ref| over each call's output (and the
 * same for cache contents and prefill-vs-decode). The engine's f32 path is ~7
 * chained dot products of length <= 128 plus one softmax; each contributes
 * about sqrt(K) u ~ 1e-6 of the output scale (u = 2^-24); observed max 7e-7,
 * so 2e-5 is a ~30x margin, while a wrong mask, position or head layout errs by
 * O(1) (a 1e-4 relative change of the softmax scale already fails). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/model/kv_cache.h"
#include "coordinator/model/mla.h"
#include "core/rope.h"
#include "testutil.h"

#define TOL 2e-5
#define THETA 10000.0

typedef struct {
    int hidden, H, nope, rope, v, L, q_lora;
} dims_t;

static unsigned g_seed = 1;

/* f32 weights handed to the layer (linear_free frees them through `owned`). */
static linear_t rand_linear(int out, int in) {
    float *w = malloc(sizeof(float) * (size_t)out * in);
    cr_assert_not_null(w);
    test_fill_random(w, (size_t)out * in, g_seed++, sqrtf(3.0f / (float)in));
    linear_t l = linear_borrow_f32(w, out, in);
    l.owned = w;
    return l;
}

static const float *wf(const linear_t *l) { return (const float *)l->w.data; }

/* One 2-thread pool for the file's kernels (freed at exit, so leak checks stay quiet). */
static threadpool_t *g_pool;
static exec_t EXEC(void) {
    spex_err_t err = {0};
    if (!g_pool) g_pool = threadpool_create(2, &err);
    cr_assert_not_null(g_pool, "%s", err.msg);
    return (exec_t){g_pool, simd_detect(), -1};
}
static arena_t g_work;
__attribute__((destructor)) static void free_pool(void) {
    threadpool_free(g_pool);
    arena_free(&g_work);
}

static float *rand_norm(int d) {
    float *w = malloc(sizeof(float) * d);
    test_fill_random(w, d, g_seed++, 0.5f);
    for (int i = 0; i < d; i++) w[i] += 1.0f;
    return w;
}

static mla_t make_mla(dims_t d, double mscale) {
    mla_t a;
    memset(&a, 0, sizeof a);
    a.n_heads = d.H, a.nope = d.nope, a.rope = d.rope, a.v_dim = d.v, a.kv_lora = d.L, a.q_lora = d.q_lora;
    a.eps = 1e-6f;
    a.softmax_scale = (float)(1.0 / sqrt((double)(d.nope + d.rope)) * mscale);
    int qk = d.nope + d.rope;
    if (d.q_lora > 0) {
        a.q_a = rand_linear(d.q_lora, d.hidden);
        a.q_a_norm = rand_norm(d.q_lora);
        a.q_b = rand_linear(d.H * qk, d.q_lora);
    } else {
        a.q_proj = rand_linear(d.H * qk, d.hidden);
    }
    a.kv_a = rand_linear(d.L + d.rope, d.hidden);
    a.kv_norm = rand_norm(d.L);
    a.kv_b = rand_linear(d.H * (d.nope + d.v), d.L);
    a.o_proj = rand_linear(d.hidden, d.H * d.v);
    return a;
}

static rope_t make_rope(int dim, int max_pos) {
    spex_config_t c;
    memset(&c, 0, sizeof c);
    c.qk_rope_head_dim = dim;
    c.rope_theta = THETA;
    rope_t r;
    spex_err_t err = {0};
    cr_assert_eq(rope_init(&r, &c, max_pos, &err), 0, "%s", err.msg);
    return r;
}

/* ------------------------------------------------------------ naive MLA */

typedef struct {
    int len, cap;
    double *c;    /* [cap, L]   normalised latent */
    double *kpe;  /* [cap, rope] rotated */
} ref_cache_t;

static ref_cache_t ref_cache(dims_t d, int cap) {
    ref_cache_t r = {0, cap, calloc((size_t)cap * d.L, sizeof(double)), calloc((size_t)cap * d.rope, sizeof(double))};
    return r;
}

static void ref_cache_free(ref_cache_t *r) { free(r->c), free(r->kpe); }

static void mv(const linear_t *l, const double *x, double *y) {   /* y = W x */
    for (int j = 0; j < l->out; j++) {
        double s = 0;
        for (int k = 0; k < l->in; k++) s += (double)wf(l)[(size_t)j * l->in + k] * x[k];
        y[j] = s;
    }
}

static void ref_rmsnorm(double *x, const float *w, int d, double eps) {
    double ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / d + eps);
    for (int i = 0; i < d; i++) x[i] = x[i] * inv * w[i];
}

/* (x[2i] + i x[2i+1]) * e^{i pos theta^(-2i/d)} */
static void ref_rope(double *x, int d, int pos) {
    for (int i = 0; i < d / 2; i++) {
        double th = pos * pow(THETA, -(double)(2 * i) / d), a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * cos(th) - b * sin(th);
        x[2 * i + 1] = a * sin(th) + b * cos(th);
    }
}

/* Rows x[m, hidden] of one sequence appended at positions rc->len...; out[m, hidden]. */
static void ref_mla_seq(const mla_t *a, dims_t d, ref_cache_t *rc, const float *x, int m, double *out) {
    int qk = d.nope + d.rope, p0 = rc->len;
    cr_assert_leq(p0 + m, rc->cap);
    double *xd = malloc(sizeof(double) * d.hidden), *q = malloc(sizeof(double) * (size_t)m * d.H * qk);
    double *tmp = malloc(sizeof(double) * (d.q_lora > 0 ? d.q_lora : 1)), *kva = malloc(sizeof(double) * (d.L + d.rope));
    /* projections and cache append */
    for (int i = 0; i < m; i++) {
        for (int k = 0; k < d.hidden; k++) xd[k] = x[(size_t)i * d.hidden + k];
        double *qi = q + (size_t)i * d.H * qk;
        if (d.q_lora > 0) {
            mv(&a->q_a, xd, tmp);
            ref_rmsnorm(tmp, a->q_a_norm, d.q_lora, a->eps);
            mv(&a->q_b, tmp, qi);
        } else {
            mv(&a->q_proj, xd, qi);
        }
        for (int h = 0; h < d.H; h++) ref_rope(qi + h * qk + d.nope, d.rope, p0 + i);
        mv(&a->kv_a, xd, kva);
        ref_rmsnorm(kva, a->kv_norm, d.L, a->eps);
        ref_rope(kva + d.L, d.rope, p0 + i);
        memcpy(rc->c + (size_t)(p0 + i) * d.L, kva, sizeof(double) * d.L);
        memcpy(rc->kpe + (size_t)(p0 + i) * d.rope, kva + d.L, sizeof(double) * d.rope);
    }
    rc->len = p0 + m;
    int T = rc->len;
    /* expanded keys and values per head for every cached token */
    double *kn = malloc(sizeof(double) * (size_t)T * d.nope), *vv = malloc(sizeof(double) * (size_t)T * d.v);
    double *sc = malloc(sizeof(double) * T), *att = malloc(sizeof(double) * (size_t)m * d.H * d.v);
    for (int h = 0; h < d.H; h++) {
        const float *wk = wf(&a->kv_b) + (size_t)h * (d.nope + d.v) * d.L, *wv = wk + (size_t)d.nope * d.L;
        for (int t = 0; t < T; t++) {
            const double *c = rc->c + (size_t)t * d.L;
            for (int j = 0; j < d.nope; j++) {
                double s = 0;
                for (int l = 0; l < d.L; l++) s += (double)wk[(size_t)j * d.L + l] * c[l];
                kn[(size_t)t * d.nope + j] = s;
            }
            for (int j = 0; j < d.v; j++) {
                double s = 0;
                for (int l = 0; l < d.L; l++) s += (double)wv[(size_t)j * d.L + l] * c[l];
                vv[(size_t)t * d.v + j] = s;
            }
        }
        for (int i = 0; i < m; i++) {
            const double *qi = q + (size_t)i * d.H * qk + h * qk;
            int vis = p0 + i + 1;   /* causal */
            double mx = -INFINITY, sum = 0;
            for (int t = 0; t < vis; t++) {
                double s = 0;
                for (int j = 0; j < d.nope; j++) s += qi[j] * kn[(size_t)t * d.nope + j];
                for (int j = 0; j < d.rope; j++) s += qi[d.nope + j] * rc->kpe[(size_t)t * d.rope + j];
                sc[t] = s * a->softmax_scale;
                if (sc[t] > mx) mx = sc[t];
            }
            for (int t = 0; t < vis; t++) sum += (sc[t] = exp(sc[t] - mx));
            double *o = att + (size_t)i * d.H * d.v + h * d.v;
            for (int j = 0; j < d.v; j++) o[j] = 0;
            for (int t = 0; t < vis; t++)
                for (int j = 0; j < d.v; j++) o[j] += sc[t] / sum * vv[(size_t)t * d.v + j];
        }
    }
    for (int i = 0; i < m; i++) mv(&a->o_proj, att + (size_t)i * d.H * d.v, out + (size_t)i * d.hidden);
    free(xd), free(q), free(tmp), free(kva), free(kn), free(vv), free(sc), free(att);
}

/* ------------------------------------------------------------ comparison */

static double max_abs(const double *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

static double g_worst = 0;   /* largest normalised error seen (reported) */

static void expect_close(const float *got, const double *ref, size_t n, const char *what) {
    double scale = max_abs(ref, n), worst = 0;
    cr_assert(scale > 0, "%s: reference is all zero", what);
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / scale;
        if (!(e <= worst)) worst = e;
    }
    if (worst > g_worst) g_worst = worst;
    cr_assert(worst <= TOL, "%s: max |got - ref| / max|ref| = %.3g > %g", what, worst, TOL);
}

static void expect_cache(const kv_cache_t *kv, int layer, const ref_cache_t *rc, dims_t d, const char *what) {
    cr_assert_eq(kv->len[layer], rc->len, "%s: cache len %d, want %d", what, kv->len[layer], rc->len);
    char w[256];
    size_t nl = (size_t)rc->len * d.L, np = (size_t)rc->len * d.rope;
    float *lat = malloc(sizeof(float) * (nl + np + 1)), *pe = lat + nl;   /* the rows split into both parts */
    cr_assert_not_null(lat);
    for (int t = 0; t < rc->len; t++) {
        memcpy(lat + (size_t)t * d.L, kv->rows[layer] + (size_t)t * kv->width, sizeof(float) * d.L);
        memcpy(pe + (size_t)t * d.rope, kv->rows[layer] + (size_t)t * kv->width + d.L, sizeof(float) * d.rope);
    }
    snprintf(w, sizeof w, "%s: cached latent", what);
    expect_close(lat, rc->c, nl, w);
    snprintf(w, sizeof w, "%s: cached k_pe", what);
    expect_close(pe, rc->kpe, np, w);
    free(lat);
}

/* ------------------------------------------------------------ tests */

#define NLAYERS 3
#define LAYER 1

/* Sequences with different histories, then one batched call; both kernels. */
static void batch_case(dims_t d, double mscale, bool exact) {
    exec_t ex = EXEC();
    enum { S = 4, CAP = 32 };
    g_seed = 100 + d.q_lora;
    mla_t a = make_mla(d, mscale);
    rope_t rope = make_rope(d.rope, 64);
    kv_cache_t *kv[S], *kv2[S];   /* kv2: the same histories, for running each sequence alone */
    ref_cache_t rc[S];
    spex_err_t err = {0};
    int hist[S] = {0, 5, 1, 11};   /* tokens already cached */
    int now[S] = {3, 1, 0, 6};     /* rows in the batched call (sequence 2 contributes none) */
    for (int s = 0; s < S; s++) {
        kv[s] = kv_cache_create(NLAYERS, d.L, d.rope, CAP, &err);
        kv2[s] = kv_cache_create(NLAYERS, d.L, d.rope, CAP, &err);
        cr_assert(kv[s] && kv2[s], "%s", err.msg);
        rc[s] = ref_cache(d, CAP);
    }
    char what[128];
    /* histories: one prefill call per sequence */
    for (int s = 0; s < S; s++) {
        if (!hist[s]) continue;
        float *x = malloc(sizeof(float) * (size_t)hist[s] * d.hidden), *y = malloc(sizeof(float) * (size_t)hist[s] * d.hidden);
        double *ref = malloc(sizeof(double) * (size_t)hist[s] * d.hidden);
        test_fill_random(x, (size_t)hist[s] * d.hidden, 500 + s, 1.0f);
        mla_seq_t one = {kv[s], hist[s]}, two = {kv2[s], hist[s]};
        cr_assert_eq(mla_forward(&ex, &a, &rope, LAYER, &two, 1, x, y, &g_work, &err), 0, "%s", err.msg);
        cr_assert_eq(mla_forward(&ex, &a, &rope, LAYER, &one, 1, x, y, &g_work, &err), 0, "%s", err.msg);
        ref_mla_seq(&a, d, &rc[s], x, hist[s], ref);
        snprintf(what, sizeof what, "q_lora=%d exact=%d history of seq %d", d.q_lora, exact, s);
        expect_close(y, ref, (size_t)hist[s] * d.hidden, what);
        free(x), free(y), free(ref);
    }
    /* the batch */
    int n = 0;
    mla_seq_t seqs[S];
    for (int s = 0; s < S; s++) seqs[s] = (mla_seq_t){kv[s], now[s]}, n += now[s];
    float *x = malloc(sizeof(float) * (size_t)n * d.hidden), *y = malloc(sizeof(float) * (size_t)n * d.hidden);
    double *ref = malloc(sizeof(double) * (size_t)n * d.hidden);
    test_fill_random(x, (size_t)n * d.hidden, 600, 1.0f);
    cr_assert_eq(mla_forward(&ex, &a, &rope, LAYER, seqs, S, x, y, &g_work, &err), 0, "%s", err.msg);
    int row = 0;
    for (int s = 0; s < S; s++) {
        ref_mla_seq(&a, d, &rc[s], x + (size_t)row * d.hidden, now[s], ref + (size_t)row * d.hidden);
        row += now[s];
    }
    snprintf(what, sizeof what, "q_lora=%d exact=%d batch of %d sequences", d.q_lora, exact, S);
    expect_close(y, ref, (size_t)n * d.hidden, what);
    /* each sequence alone on its twin cache: within tolerance, and the same bits
     * with the exact kernel (a row's result must not depend on the batch) */
    float *y1 = malloc(sizeof(float) * (size_t)n * d.hidden);
    row = 0;
    for (int s = 0; s < S; s++) {
        mla_seq_t one = {kv2[s], now[s]};
        cr_assert_eq(mla_forward(&ex, &a, &rope, LAYER, &one, 1, x + (size_t)row * d.hidden, y1 + (size_t)row * d.hidden, &g_work, &err), 0, "%s", err.msg);
        row += now[s];
    }
    snprintf(what, sizeof what, "q_lora=%d exact=%d sequences alone", d.q_lora, exact);
    expect_close(y1, ref, (size_t)n * d.hidden, what);
    (void)exact;   /* one kernel now: every row is computed alone */
    for (int i = 0; i < n; i++)
            cr_assert_eq(memcmp(y1 + (size_t)i * d.hidden, y + (size_t)i * d.hidden, sizeof(float) * d.hidden), 0,
                         "exact kernel, q_lora=%d: row %d differs alone vs in the batch", d.q_lora, i);
    free(y1);
    for (int s = 0; s < S; s++) {
        snprintf(what, sizeof what, "q_lora=%d exact=%d seq %d", d.q_lora, exact, s);
        expect_cache(kv[s], LAYER, &rc[s], d, what);
        for (int l = 0; l < NLAYERS; l++)
            if (l != LAYER) cr_assert_eq(kv[s]->len[l], 0, "layer %d written (len %d)", l, kv[s]->len[l]);
        kv_cache_free(kv[s]);
        kv_cache_free(kv2[s]);
        ref_cache_free(&rc[s]);
    }
    free(x), free(y), free(ref);
    rope_free(&rope);
    mla_free(&a);
}

static const dims_t TINY_Q = {.hidden = 128, .H = 4, .nope = 32, .rope = 16, .v = 24, .L = 64, .q_lora = 96};
static const dims_t TINY_NOQ = {.hidden = 128, .H = 4, .nope = 32, .rope = 16, .v = 24, .L = 64, .q_lora = 0};
static const dims_t ODD_NOQ = {.hidden = 40, .H = 3, .nope = 8, .rope = 4, .v = 5, .L = 19, .q_lora = 0};
static const dims_t ODD_Q = {.hidden = 36, .H = 2, .nope = 12, .rope = 6, .v = 10, .L = 24, .q_lora = 7};

Test(mla, batch_vs_naive_q_lora) {
    batch_case(TINY_Q, 1.8707, false);
    batch_case(TINY_Q, 1.8707, true);
    fprintf(stderr, "mla q_lora: worst normalised error %.3g\n", g_worst);
}

Test(mla, batch_vs_naive_no_q_lora) {
    batch_case(TINY_NOQ, 1.0, false);
    batch_case(TINY_NOQ, 1.0, true);
    fprintf(stderr, "mla no q_lora: worst normalised error %.3g\n", g_worst);
}

Test(mla, batch_vs_naive_odd_shapes) {
    batch_case(ODD_NOQ, 1.0, false);
    batch_case(ODD_NOQ, 1.0, true);
    batch_case(ODD_Q, 1.3, false);
    batch_case(ODD_Q, 1.3, true);
}

/* The same 10 tokens as one prefill, token by token (exact kernel, as decode), and in
 * uneven chunks: all agree with the reference and with each other. */
static void prefill_vs_decode(dims_t d) {
    exec_t ex = EXEC();
    enum { N = 10 };
    g_seed = 200 + d.q_lora;
    mla_t a = make_mla(d, 1.5);
    rope_t rope = make_rope(d.rope, 16);
    spex_err_t err = {0};
    float *x = malloc(sizeof(float) * N * d.hidden), *yp = malloc(sizeof(float) * N * d.hidden);
    float *yd = malloc(sizeof(float) * N * d.hidden), *yc = malloc(sizeof(float) * N * d.hidden);
    double *ref = malloc(sizeof(double) * N * d.hidden), *ydd = malloc(sizeof(double) * N * d.hidden);
    test_fill_random(x, (size_t)N * d.hidden, 700, 1.0f);
    ref_cache_t rc = ref_cache(d, N);
    ref_mla_seq(&a, d, &rc, x, N, ref);

    kv_cache_t *kp = kv_cache_create(1, d.L, d.rope, N, &err), *kd = kv_cache_create(1, d.L, d.rope, N, &err),
               *kc = kv_cache_create(1, d.L, d.rope, N, &err);
    mla_seq_t sp = {kp, N};
    cr_assert_eq(mla_forward(&ex, &a, &rope, 0, &sp, 1, x, yp, &g_work, &err), 0, "%s", err.msg);
    for (int t = 0; t < N; t++) {
        mla_seq_t sd = {kd, 1};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 0, &sd, 1, x + (size_t)t * d.hidden, yd + (size_t)t * d.hidden, &g_work, &err),
                     0, "%s", err.msg);
    }
    int chunks[] = {4, 1, 3, 2}, row = 0;
    for (int c = 0; c < 4; c++) {
        mla_seq_t sc = {kc, chunks[c]};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 0, &sc, 1, x + (size_t)row * d.hidden, yc + (size_t)row * d.hidden, &g_work, &err), 0, "%s", err.msg);
        row += chunks[c];
    }
    expect_close(yp, ref, (size_t)N * d.hidden, "prefill vs naive");
    expect_close(yd, ref, (size_t)N * d.hidden, "token-by-token decode vs naive");
    expect_close(yc, ref, (size_t)N * d.hidden, "chunked vs naive");
    for (size_t i = 0; i < (size_t)N * d.hidden; i++) ydd[i] = yp[i];
    expect_close(yd, ydd, (size_t)N * d.hidden, "decode vs prefill");
    cr_assert_eq(memcmp(yd, yp, sizeof(float) * N * d.hidden), 0, "decode rows differ from prefill rows (bits)");
    cr_assert_eq(memcmp(yc, yp, sizeof(float) * N * d.hidden), 0, "chunked rows differ from prefill rows (bits)");
    expect_cache(kp, 0, &rc, d, "prefill cache");
    expect_cache(kd, 0, &rc, d, "decode cache");
    kv_cache_free(kp), kv_cache_free(kd), kv_cache_free(kc);
    ref_cache_free(&rc);
    free(x), free(yp), free(yd), free(yc), free(ref), free(ydd);
    rope_free(&rope);
    mla_free(&a);
}

Test(mla, prefill_vs_decode_q_lora) { prefill_vs_decode(TINY_Q); }
Test(mla, prefill_vs_decode_no_q_lora) { prefill_vs_decode(TINY_NOQ); }

Test(mla, overflow_is_an_error) {
    exec_t ex = EXEC();
    dims_t d = ODD_NOQ;
    g_seed = 300;
    mla_t a = make_mla(d, 1.0);
    rope_t rope = make_rope(d.rope, 8);   /* positions 0..7 */
    spex_err_t err = {0};
    float x[12 * 40], y[12 * 40];
    test_fill_random(x, 12 * 40, 800, 1.0f);
    kv_cache_t *small = kv_cache_create(2, d.L, d.rope, 6, &err), *big = kv_cache_create(2, d.L, d.rope, 12, &err);
    cr_assert(small && big);
    for (int exact = 0; exact < 2; exact++) {
        kv_cache_reset(small, 0, 2);
        kv_cache_reset(big, 0, 2);
        mla_seq_t s4 = {small, 4};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, &s4, 1, x, y, &g_work, &err), 0, "%s", err.msg);
        /* capacity 6, 4 cached, 3 more: error, cache length unchanged */
        mla_seq_t s3 = {small, 3};
        err.msg[0] = 0;
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, &s3, 1, x, y, &g_work, &err), -1, "capacity overflow accepted");
        cr_assert(strstr(err.msg, "capacity") != NULL, "message: '%s'", err.msg);
        cr_assert_eq(small->len[1], 4);
        /* in a batch: the first sequence fits, the second overflows -> nothing appended anywhere */
        mla_seq_t both[2] = {{big, 2}, {small, 3}};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, both, 2, x, y, &g_work, &err), -1, "batch with an overflow accepted");
        cr_assert_eq(big->len[1], 0, "first sequence appended %d rows although the call failed", big->len[1]);
        cr_assert_eq(small->len[1], 4);
        /* exactly full: fine */
        mla_seq_t s2 = {small, 2};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, &s2, 1, x, y, &g_work, &err), 0, "%s", err.msg);
        cr_assert_eq(small->len[1], 6);
        mla_seq_t s1 = {small, 1};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, &s1, 1, x, y, &g_work, &err), -1, "append to a full cache accepted");
        /* rope table: capacity 12 but only 8 positions */
        mla_seq_t b8 = {big, 8};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, &b8, 1, x, y, &g_work, &err), 0, "%s", err.msg);
        mla_seq_t b1 = {big, 1};
        err.msg[0] = 0;
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, &b1, 1, x, y, &g_work, &err), -1, "position beyond the rope table accepted");
        cr_assert(strstr(err.msg, "position") != NULL, "message: '%s'", err.msg);
        cr_assert_eq(big->len[1], 8);
        kv_cache_reset(big, 0, 2);
        mla_seq_t b9 = {big, 9};
        cr_assert_eq(mla_forward(&ex, &a, &rope, 1, &b9, 1, x, y, &g_work, &err), -1, "9-token prefill with an 8-position table");
        cr_assert_eq(big->len[1], 0);
    }
    kv_cache_free(small), kv_cache_free(big);
    rope_free(&rope);
    mla_free(&a);
}
