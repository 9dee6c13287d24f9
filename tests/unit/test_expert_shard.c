/* test_expert_shard.c - the routed-expert shard (core/expert_shard.h) on a
 * small checkpoint written here, against a naive double-precision reference:
 *  - per-row sums within the expert bound of test_kernels.c times |weight|
 *    summed over the row's experts, plus 2 (k+1) u per addition;
 *  - per-pair vectors (combine "expert" mode) added in pair order give the sum
 *    mode's bits, and a row's result alone equals its result in a batch;
 *  - ascending expert order checked bit for bit where the order of the f32
 *    additions changes the result;
 *  - a shard holding a subset refuses rows naming an expert it does not host,
 *    and rows whose ids are not ascending, naming layer and row;
 *  - 1 and 3 threads give the same bits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/expert_shard.h"
#include "core/safetensors_write.h"
#include "testutil.h"

#define U 0x1.0p-24
enum { E = 6, H = 40, I = 24 };

typedef struct fixture {
    char dir[256];
    spex_config_t cfg;
    tensor_store_t *ts;
    float *w[E][3];   /* gate [I,H], up [I,H], down [H,I] */
} fixture_t;

/* A one-layer MoE checkpoint with E experts of BF16 weights; w holds their f32 values. */
static void fixture_make(fixture_t *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/spex-shard-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    st_writer_t *wr = st_writer_create();
    spex_err_t err = {0};
    static const char *names[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int e = 0; e < E; e++)
        for (int m = 0; m < 3; m++) {
            int out = m == 2 ? H : I, in = m == 2 ? I : H;
            float *v = malloc(sizeof(float) * out * in);
            uint16_t *b = malloc(sizeof(uint16_t) * out * in);
            test_fill_random(v, (size_t)out * in, 1000 + 10 * e + m, 1.7f / sqrtf((float)in));
            for (int i = 0; i < out * in; i++) v[i] = bf16_to_f32(b[i] = f32_to_bf16(v[i]));
            char name[128];
            snprintf(name, sizeof name, "model.layers.0.mlp.experts.%d.%s.weight", e, names[m]);
            int64_t shape[2] = {out, in};
            cr_assert_eq(st_writer_add(wr, name, DTYPE_BF16, 2, shape, b, sizeof(uint16_t) * out * in, &err), 0, "%s",
                         err.msg);
            f->w[e][m] = v;
            free(b);
        }
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", f->dir);
    cr_assert_eq(st_writer_write(wr, path, &err), 0, "%s", err.msg);
    st_writer_free(wr);
    int block[2] = {128, 128};
    f->ts = tensor_store_open(f->dir, block, &err);
    cr_assert_not_null(f->ts, "%s", err.msg);
    f->cfg.num_hidden_layers = 1, f->cfg.n_routed_experts = E, f->cfg.hidden_size = H;
    f->cfg.moe_intermediate_size = I, f->cfg.moe_layer_freq = 1;
}

static void fixture_free(fixture_t *f) {
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", f->dir);
    tensor_store_free(f->ts);
    unlink(path);
    rmdir(f->dir);
    for (int e = 0; e < E; e++)
        for (int m = 0; m < 3; m++) free(f->w[e][m]);
}

static expert_shard_t *shard_of(fixture_t *f, const int *ids, int n) {
    spex_err_t err = {0};
    expert_shard_t *s = expert_shard_create(&f->cfg, f->ts, ids, n, NULL, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    return s;
}

static exec_t make_exec(threadpool_t **pool, int threads) {
    spex_err_t err = {0};
    *pool = threadpool_create(threads, &err);
    cr_assert_not_null(*pool, "%s", err.msg);
    return (exec_t){*pool, simd_detect(), -1};
}

/* ref[H] = expert e (x) in double; bound[H] as in test_kernels.c's ref_expert_row. */
static void ref_expert(const fixture_t *f, int e, const float *x, double *ref, double *bound) {
    const float *g = f->w[e][0], *u = f->w[e][1], *d = f->w[e][2];
    double h[I], eh[I], ch = 8.0 * sqrt((double)H) * U, ci = 8.0 * sqrt((double)I) * U;
    for (int i = 0; i < I; i++) {
        double a = 0, b = 0, A = 0, B = 0;
        for (int k = 0; k < H; k++) {
            double tg = (double)g[i * H + k] * x[k], tu = (double)u[i * H + k] * x[k];
            a += tg, b += tu, A += fabs(tg), B += fabs(tu);
        }
        double s = a / (1.0 + exp(-a));
        h[i] = s * b;
        eh[i] = fabs(s) * ch * B + 1.1 * fabs(b) * ch * A + 20 * U * fabs(h[i]);
    }
    for (int j = 0; j < H; j++) {
        double y = 0, m = 0, p = 0;
        for (int i = 0; i < I; i++) y += d[j * I + i] * h[i], m += fabs(d[j * I + i] * h[i]), p += fabs(d[j * I + i]) * eh[i];
        ref[j] = y;
        bound[j] = ci * m + p + 1e-30;
    }
}

Test(expert_shard, sums_vs_naive_pairs_and_batch_independence) {
    fixture_t f;
    fixture_make(&f);
    int all[E] = {0, 1, 2, 3, 4, 5};
    expert_shard_t *s = shard_of(&f, all, E);
    enum { N = 11 };
    uint32_t counts[N] = {3, 1, 2, 0, 3, 2, 1, 3, 2, 2, 1};
    uint32_t ids[] = {0, 2, 5, 3, 1, 4, 0, 1, 2, 4, 5, 5, 0, 3, 4, 1, 2, 0, 5, 3};
    size_t P = sizeof ids / sizeof ids[0];
    float x[N * H], w[32], sum[N * H], each[32 * H];
    test_fill_random(x, N * H, 5, 1.5f);
    test_fill_random(w, P, 6, 1.0f);
    expert_rows_t r = {.n = N, .x = x, .counts = counts, .experts = ids, .weights = w};
    cr_assert_eq(expert_rows_pairs(&r), P);
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 1);
    spex_err_t err = {0};
    int64_t tpe[E] = {0};
    cr_assert_eq(expert_shard_apply(s, &ex, 0, &r, true, sum, tpe, &err), 0, "%s", err.msg);
    cr_assert_eq(expert_shard_apply(s, &ex, 0, &r, false, each, NULL, &err), 0, "%s", err.msg);
    size_t p = 0;
    for (int i = 0; i < N; i++) {
        double ref[H] = {0}, bound[H] = {0}, S[H] = {0}, re[H], be[H];
        float acc[H] = {0};
        for (uint32_t j = 0; j < counts[i]; j++, p++) {
            ref_expert(&f, (int)ids[p], x + i * H, re, be);
            for (int c = 0; c < H; c++) {
                ref[c] += w[p] * re[c], bound[c] += fabsf(w[p]) * be[c], S[c] += fabs(w[p] * re[c]);
                acc[c] += each[p * H + c];   /* the coordinator's combine: pair order */
            }
        }
        for (int c = 0; c < H; c++) {
            double b = bound[c] + 2 * U * (counts[i] + 1) * S[c] + 1e-30;
            cr_assert(fabs(sum[i * H + c] - ref[c]) <= b, "row %d col %d: %.9g vs %.9g (bound %.3g)", i, c,
                      sum[i * H + c], ref[c], b);
        }
        cr_assert_eq(memcmp(acc, sum + i * H, sizeof acc), 0, "row %d: pair vectors summed != sum mode", i);
    }
    int64_t want[E] = {0};
    for (size_t q = 0; q < P; q++) want[ids[q]]++;
    cr_assert_eq(memcmp(tpe, want, sizeof want), 0, "tokens per expert");
    /* each row alone, and 3 threads, give the same bits */
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        float one[H];
        expert_rows_t r1 = {.n = 1, .x = x + i * H, .counts = counts + i, .experts = ids + off, .weights = w + off};
        cr_assert_eq(expert_shard_apply(s, &ex, 0, &r1, true, one, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(memcmp(one, sum + i * H, sizeof one), 0, "row %d differs alone vs in a batch", i);
        off += counts[i];
    }
    threadpool_t *pool3;
    exec_t ex3 = make_exec(&pool3, 3);
    float sum3[N * H];
    cr_assert_eq(expert_shard_apply(s, &ex3, 0, &r, true, sum3, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(sum3, sum, sizeof sum), 0, "3 threads differ from 1");
    threadpool_free(pool3);
    threadpool_free(pool);
    expert_shard_free(s);
    fixture_free(&f);
}

Test(expert_shard, ascending_expert_order_exact) {
    /* One row routed to experts 1, 3, 5 with c1 = w1*y1 ~ 2^24 and c3, c5 ~ 1:
     * (c1 + c3) + c5 differs from c1 + (c3 + c5) when c3 and c5 alone round
     * away but their sum does not. Sum mode must give the ascending order. */
    fixture_t f;
    fixture_make(&f);
    int all[E] = {0, 1, 2, 3, 4, 5};
    expert_shard_t *s = shard_of(&f, all, E);
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 1);
    spex_err_t err = {0};
    float x[H], y[6][H];
    test_fill_random(x, H, 19, 1.0f);
    uint32_t one = 1;
    float w1 = 1.0f;
    for (uint32_t e = 1; e <= 5; e += 2) {
        expert_rows_t r1 = {.n = 1, .x = x, .counts = &one, .experts = &e, .weights = &w1};
        cr_assert_eq(expert_shard_apply(s, &ex, 0, &r1, true, y[e], NULL, &err), 0, "%s", err.msg);
    }
    int c = 0;
    while (c < H && (fabsf(y[1][c]) < 1e-3f || fabsf(y[3][c]) < 1e-3f || fabsf(y[5][c]) < 1e-3f)) c++;
    cr_assert(c < H, "test setup: no usable output column");
    uint32_t three = 3, ids[3] = {1, 3, 5};
    int found = 0;
    for (int t = 0; t < 400 && !found; t++) {
        float w[3] = {(float)ldexp(1.0 + t / 256.0, 24) / y[1][c], 0.75f / y[3][c], (0.75f + t / 512.0f) / y[5][c]};
        float c1 = w[0] * y[1][c], c3 = w[1] * y[3][c], c5 = w[2] * y[5][c];
        float asc = ((0.0f + c1) + c3) + c5, other = (0.0f + c1) + (c3 + c5);
        if (asc == other) continue;
        found = 1;
        float out[H];
        expert_rows_t r = {.n = 1, .x = x, .counts = &three, .experts = ids, .weights = w};
        cr_assert_eq(expert_shard_apply(s, &ex, 0, &r, true, out, NULL, &err), 0, "%s", err.msg);
        for (int j = 0; j < H; j++) {
            float a = ((0.0f + w[0] * y[1][j]) + w[1] * y[3][j]) + w[2] * y[5][j];
            cr_assert_eq(out[j], a, "column %d: %.9g, ascending order gives %.9g", j, out[j], a);
        }
    }
    cr_assert(found, "test setup: could not make the two orders differ");
    threadpool_free(pool);
    expert_shard_free(s);
    fixture_free(&f);
}

Test(expert_shard, subset_refuses_foreign_and_unsorted_ids) {
    fixture_t f;
    fixture_make(&f);
    int some[3] = {1, 2, 4};
    expert_shard_t *s = shard_of(&f, some, 3);
    int n;
    const int *got = expert_shard_ids(s, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(got[2], 4);
    cr_assert_eq(expert_shard_bytes(s), 3ull * 3 * H * I * 2, "BF16 bytes of 3 experts");
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 1);
    spex_err_t err = {0};
    float x[2 * H], w[4] = {1, 1, 1, 1}, out[4 * H];
    test_fill_random(x, 2 * H, 3, 1.0f);
    uint32_t counts[2] = {1, 2}, foreign[3] = {2, 1, 3}, unsorted[3] = {2, 4, 1};
    expert_rows_t r = {.n = 2, .x = x, .counts = counts, .experts = foreign, .weights = w};
    cr_assert_eq(expert_shard_apply(s, &ex, 0, &r, false, out, NULL, &err), -1);
    cr_assert(strstr(err.msg, "(layer 0, row 1): expert 3 is not hosted here"), "%s", err.msg);
    r.experts = unsorted;
    cr_assert_eq(expert_shard_apply(s, &ex, 0, &r, false, out, NULL, &err), -1);
    cr_assert(strstr(err.msg, "(layer 0, row 1): experts not ascending"), "%s", err.msg);
    int bad[2] = {3, 3};
    cr_assert_null(expert_shard_create(&f.cfg, f.ts, bad, 2, NULL, NULL, &err));
    cr_assert(strstr(err.msg, "ascending"), "%s", err.msg);
    threadpool_free(pool);
    expert_shard_free(s);
    fixture_free(&f);
}
