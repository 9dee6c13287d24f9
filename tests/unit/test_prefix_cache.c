/* test_prefix_cache.c - the prompt prefix cache (coordinator/model/prefix_cache.h):
 * generation with the cache gives exactly the tokens it gives without (hit,
 * partial hit, extension of a finished chat turn; with and without
 * speculation), hits are counted, and eviction keeps within the byte budget;
 * on a model with several MTP modules, rows a request with fewer drafts never
 * computed are not restored as if it had. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/decode/generate.h"
#include "coordinator/model/model.h"
#include "tools/synth.h"

typedef struct { char dir[64]; model_t *m; } fx_t;

/* The tiny synthetic model with n_mtp MTP modules (the preset has 1). */
static void open_fx_mtp(fx_t *f, int n_mtp) {
    snprintf(f->dir, sizeof f->dir, "/tmp/spex-prefix-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    spex_config_t cfg;
    spex_err_t err = {0};
    cr_assert_eq(synth_preset("tiny", &cfg, &err), 0, "%s", err.msg);
    cfg.num_nextn_predict_layers = n_mtp;
    synth_opts_t o = {.dtype = SYNTH_F32, .seed = 17, .shards = 1};
    cr_assert_eq(synth_write(f->dir, &cfg, &o, &err), 0, "%s", err.msg);
    f->m = model_load(f->dir, NULL, &err);
    cr_assert_not_null(f->m, "%s", err.msg);
    cr_assert_eq(f->m->n_mtp, n_mtp);
}

static void open_fx(fx_t *f) { open_fx_mtp(f, 1); }

static void close_fx(fx_t *f) {
    model_free(f->m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    cr_assert_eq(system(cmd), 0);
}

static int32_t *gen(model_t *m, const int32_t *prompt, int n, int k, int *n_out) {
    seq_params_t p = {.max_new_tokens = 24, .spec_k = k, .sampling = {.top_p = 1.0f}};
    int32_t *out;
    gen_stats_t st;
    spex_err_t err = {0};
    cr_assert_eq(generate(m, prompt, n, &p, NULL, NULL, &out, n_out, &st, &err), 0, "%s", err.msg);
    return out;
}

Test(prefix_cache, same_tokens_with_and_without, .timeout = 120) {
    fx_t f;
    open_fx(&f);
    int V = f.m->cfg.vocab_size;
    int32_t prompt[80];
    for (int i = 0; i < 80; i++) prompt[i] = (int32_t)((i * 37 + 5) % V);
    for (int k = 0; k <= 2; k += 2) {
        int lens[3] = {37, 53, 80}, n_ref[3];
        int32_t *ref[3];
        for (int i = 0; i < 3; i++) ref[i] = gen(f.m, prompt, lens[i], k, &n_ref[i]);   /* no cache */
        spex_err_t err = {0};
        cr_assert_eq(model_set_prefix_cache(f.m, 8u << 20, &err), 0, "%s", err.msg);
        for (int round = 0; round < 2; round++)          /* round 0: misses and partial hits; 1: hits */
            for (int i = 0; i < 3; i++) {
                int n;
                int32_t *got = gen(f.m, prompt, lens[i], k, &n);
                cr_assert_eq(n, n_ref[i]);
                cr_assert_arr_eq(got, ref[i], sizeof(int32_t) * (size_t)n,
                                 "spec-k %d, prompt of %d, round %d: the cache changed the output", k, lens[i], round);
                free(got);
            }
        /* a next chat turn: the first prompt, its answer, more tokens */
        int n0 = lens[0] + n_ref[0] + 7;
        int32_t *turn = malloc(sizeof(int32_t) * (size_t)n0);
        memcpy(turn, prompt, sizeof(int32_t) * (size_t)lens[0]);
        memcpy(turn + lens[0], ref[0], sizeof(int32_t) * (size_t)n_ref[0]);
        for (int i = lens[0] + n_ref[0]; i < n0; i++) turn[i] = (int32_t)((i * 11 + 3) % V);
        int n_with, n_without;
        int32_t *with = gen(f.m, turn, n0, k, &n_with);
        prefix_cache_stats_t st = prefix_cache_stats(f.m->prefix);
        cr_log_info("spec-k %d: %llu lookups, %llu hits, %llu hit tokens, %zu bytes", k,
                    (unsigned long long)st.lookups, (unsigned long long)st.hits, (unsigned long long)st.hit_tokens,
                    st.bytes);
        cr_assert_geq(st.hit_tokens, (uint64_t)(lens[0] + n_ref[0]) / 16 * 16 - 1 - 16,
                      "the finished turn's tokens should be reused");
        prefix_cache_free(f.m->prefix);
        f.m->prefix = NULL;
        int32_t *without = gen(f.m, turn, n0, k, &n_without);
        cr_assert_eq(n_with, n_without);
        cr_assert_arr_eq(with, without, sizeof(int32_t) * (size_t)n_with, "spec-k %d: next turn differs", k);
        free(with), free(without), free(turn);
        for (int i = 0; i < 3; i++) free(ref[i]);
    }
    close_fx(&f);
}

Test(prefix_cache, eviction_keeps_the_budget_and_drops_the_oldest) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(3, 4, 2, 256, &err);   /* 2 main + 1 MTP layer, width 6 */
    cr_assert_not_null(kv, "%s", err.msg);
    size_t node = sizeof(float) * 3 * PREFIX_BLOCK * 6;
    prefix_cache_t *pc = prefix_cache_create(2, 1, 6, 0, 5 * (node + 200), &err);   /* about 5 blocks */
    cr_assert_not_null(pc, "%s", err.msg);
    int32_t a[64], b[64];
    for (int i = 0; i < 64; i++) a[i] = i, b[i] = 1000 + i;
    for (int l = 0; l < 3; l++) {
        kv->len[l] = 64;
        for (int i = 0; i < 64 * 6; i++) kv->rows[l][i] = (float)(l * 10000 + i);
    }
    prefix_cache_insert(pc, a, 64, kv, 64);   /* 4 blocks */
    prefix_cache_insert(pc, b, 64, kv, 64);   /* 4 more: a's oldest leaves go */
    prefix_cache_stats_t st = prefix_cache_stats(pc);
    cr_assert_leq(st.bytes, st.max_bytes);
    cr_assert_gt(st.evicted_blocks, 0);
    kv_cache_t *k2 = kv_cache_create(3, 4, 2, 256, &err);
    /* b's blocks are the newest and stay: of 64 tokens, 63 match (one is left to compute: its
     * logits pick the first token); with MTP rows [0, 62) come back */
    cr_assert_eq(prefix_cache_restore(pc, b, 64, k2, 1), 62);
    kv_cache_t *k3 = kv_cache_create(3, 4, 2, 256, &err);
    cr_assert_lt(prefix_cache_restore(pc, a, 64, k3, 1), 62, "a's oldest blocks were evicted");
    kv_cache_free(k3);
    for (int l = 0; l < 3; l++)
        cr_assert_arr_eq(k2->rows[l], kv->rows[l], sizeof(float) * 62 * 6, "layer %d rows restored exactly", l);
    /* without MTP rows no hidden state is needed: all 63 matched rows come back, MTP layers empty */
    kv_cache_t *k4 = kv_cache_create(3, 4, 2, 256, &err);
    cr_assert_eq(prefix_cache_restore(pc, b, 64, k4, 0), 63);
    cr_assert_eq(k4->len[0], 63);
    cr_assert_eq(k4->len[2], 0);
    for (int l = 0; l < 2; l++)
        cr_assert_arr_eq(k4->rows[l], kv->rows[l], sizeof(float) * 63 * 6, "layer %d rows restored exactly", l);
    kv_cache_t *k5 = kv_cache_create(3, 4, 2, 256, &err);
    cr_assert_eq(prefix_cache_restore(pc, b, 48, k5, 0), 47, "one token is always left to compute");
    kv_cache_free(k5);
    kv_cache_free(k4);
    kv_cache_free(k2);
    prefix_cache_free(pc);
    kv_cache_free(kv);
}

/* Evicted blocks' rows are reused for new blocks (a free list over slabs):
 * many prompts through a small budget, each with its own rows, must each get
 * its own rows back, never another block's or a stale copy. */
Test(prefix_cache, reused_rows_hold_the_new_blocks) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(3, 4, 2, 64, &err), *back = kv_cache_create(3, 4, 2, 64, &err);
    cr_assert(kv && back, "%s", err.msg);
    size_t node = sizeof(float) * 3 * PREFIX_BLOCK * 6;
    prefix_cache_t *pc = prefix_cache_create(2, 1, 6, 0, 5 * (node + 200), &err);   /* about 5 blocks */
    cr_assert_not_null(pc, "%s", err.msg);
    int32_t t[33];
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 33; i++) t[i] = round * 100 + i;
        for (int l = 0; l < 3; l++) {
            kv->len[l] = 32;
            for (int i = 0; i < 32 * 6; i++) kv->rows[l][i] = (float)(round * 1000000 + l * 10000 + i);
        }
        prefix_cache_insert(pc, t, 33, kv, 32);   /* 2 blocks */
        for (int l = 0; l < 3; l++) back->len[l] = 0;
        cr_assert_eq(prefix_cache_restore(pc, t, 33, back, 1), 31, "round %d", round);
        for (int l = 0; l < 3; l++)
            cr_assert_arr_eq(back->rows[l], kv->rows[l], sizeof(float) * 31 * 6, "round %d layer %d", round, l);
        cr_assert_leq(prefix_cache_stats(pc).bytes, prefix_cache_stats(pc).max_bytes);
    }
    cr_assert_gt(prefix_cache_stats(pc).evicted_blocks, 60);
    prefix_cache_free(pc);
    kv_cache_free(kv);
    kv_cache_free(back);
}

/* Matching is token by token, not block by block: a prompt's tail that does
 * not fill a block is kept (and grown in place when a longer prompt with the
 * same tokens comes), and a prompt that leaves a cached block half way takes
 * the rows of the tokens it shares. */
Test(prefix_cache, partial_blocks_and_token_granular_matches) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(3, 4, 2, 128, &err);   /* 2 main + 1 MTP layer, width 6 */
    cr_assert_not_null(kv, "%s", err.msg);
    prefix_cache_t *pc = prefix_cache_create(2, 1, 6, 0, 1u << 20, &err);
    cr_assert_not_null(pc, "%s", err.msg);
    int32_t t[64];
    for (int i = 0; i < 64; i++) t[i] = 500 + i;
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 64 * 6; i++) kv->rows[l][i] = (float)(l * 10000 + i);
    for (int l = 0; l < 3; l++) kv->len[l] = 21;
    prefix_cache_insert(pc, t, 21, kv, 0);             /* a block and a 5-token tail, no MTP rows */
    kv_cache_t *b = kv_cache_create(3, 4, 2, 128, &err);
    cr_assert_eq(prefix_cache_restore(pc, t, 40, b, 0), 21, "the tail is restored too");
    for (int l = 0; l < 2; l++)
        cr_assert_arr_eq(b->rows[l], kv->rows[l], sizeof(float) * 21 * 6, "layer %d", l);
    for (int l = 0; l < 3; l++) kv->len[l] = 37;
    prefix_cache_insert(pc, t, 37, kv, 37);            /* grows the tail, adds MTP rows and a new tail */
    cr_assert_eq(prefix_cache_stats(pc).inserted_blocks, 3, "the 5-token tail grew in place");
    for (int l = 0; l < 3; l++) b->len[l] = 0;
    cr_assert_eq(prefix_cache_restore(pc, t, 64, b, 0), 37);
    for (int l = 0; l < 3; l++) b->len[l] = 0;
    cr_assert_eq(prefix_cache_restore(pc, t, 64, b, 1), 36, "with MTP: rows [0, 36), row 36 recomputed");
    for (int l = 0; l < 3; l++)
        cr_assert_arr_eq(b->rows[l], kv->rows[l], sizeof(float) * 36 * 6, "layer %d", l);
    int32_t u[64];
    memcpy(u, t, sizeof u);
    u[25] = 7;                                         /* leaves the second block at its 10th token */
    for (int l = 0; l < 3; l++) b->len[l] = 0;
    cr_assert_eq(prefix_cache_restore(pc, u, 64, b, 0), 25);
    for (int l = 0; l < 3; l++) b->len[l] = 0;
    cr_assert_eq(prefix_cache_restore(pc, t, 30, b, 0), 29, "one token is always left to compute");
    kv_cache_free(b);
    prefix_cache_free(pc);
    kv_cache_free(kv);
}

/* A speculative request reuses what requests without speculation cached:
 * they keep their main hidden states instead of the MTP rows they never
 * computed, and the speculative request computes those rows from them (one MTP
 * layer). Two turns of a chat without speculation (the second restores the
 * first and adds to it), then a third with: its tokens equal those without any
 * cache, and all but the last cached token is reused. */
static int32_t *next_turn(const int32_t *prev, int n_prev, const int32_t *answer, int n_answer, int extra, int V,
                          int *n) {
    *n = n_prev + n_answer + extra;
    int32_t *t = malloc(sizeof(int32_t) * (size_t)*n);
    memcpy(t, prev, sizeof(int32_t) * (size_t)n_prev);
    memcpy(t + n_prev, answer, sizeof(int32_t) * (size_t)n_answer);
    for (int i = n_prev + n_answer; i < *n; i++) t[i] = (int32_t)((i * 13 + 1) % V);
    return t;
}

Test(prefix_cache, speculation_reuses_entries_cached_without_it, .timeout = 120) {
    fx_t f;
    open_fx(&f);
    int V = f.m->cfg.vocab_size;
    int32_t prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = (int32_t)((i * 29 + 3) % V);
    for (int k = 1; k <= 2; k++) {
        int n_a, n_b, n2, n3;
        int32_t *a = gen(f.m, prompt, 40, 0, &n_a);            /* no cache yet: the chat's answers */
        int32_t *turn2 = next_turn(prompt, 40, a, n_a, 9, V, &n2);
        int32_t *b = gen(f.m, turn2, n2, 0, &n_b);
        int32_t *turn3 = next_turn(turn2, n2, b, n_b, 7, V, &n3);
        int n_ref, n_with, n_again;
        int32_t *ref = gen(f.m, turn3, n3, k, &n_ref);         /* no cache */
        spex_err_t err = {0};
        cr_assert_eq(model_set_prefix_cache(f.m, 8u << 20, &err), 0, "%s", err.msg);
        free(gen(f.m, prompt, 40, 0, &n_a));                   /* turns 1 and 2 without speculation */
        free(gen(f.m, turn2, n2, 0, &n_b));
        uint64_t before = prefix_cache_stats(f.m->prefix).hit_tokens;
        int32_t *with = gen(f.m, turn3, n3, k, &n_with);       /* turn 3 with it */
        uint64_t hit = prefix_cache_stats(f.m->prefix).hit_tokens - before;
        cr_assert_geq(hit, (uint64_t)(n2 + n_b - 2), "spec-k %d: only %llu of %d cached tokens reused", k,
                      (unsigned long long)hit, n2 + n_b - 1);
        cr_assert_eq(n_with, n_ref);
        cr_assert_arr_eq(with, ref, sizeof(int32_t) * (size_t)n_ref, "spec-k %d: the reused rows changed the output", k);
        int32_t *again = gen(f.m, turn3, n3, k, &n_again);     /* and once more, from the rows it cached itself */
        cr_assert_eq(n_again, n_ref);
        cr_assert_arr_eq(again, ref, sizeof(int32_t) * (size_t)n_ref, "spec-k %d: second hit differs", k);
        prefix_cache_free(f.m->prefix);
        f.m->prefix = NULL;
        free(a), free(b), free(turn2), free(turn3), free(ref), free(with), free(again);
    }
    close_fx(&f);
}

/* The cache's side of it: hidden states stored without MTP rows come back
 * for the positions after the MTP rows, exactly, and MTP rows are restored
 * only up to there. */
Test(prefix_cache, hidden_states_fill_the_mtp_gap) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(3, 4, 2, 64, &err), *b = kv_cache_create(3, 4, 2, 64, &err);
    cr_assert(kv && b, "%s", err.msg);
    prefix_cache_t *pc = prefix_cache_create(2, 1, 6, 5, 1u << 20, &err);
    cr_assert_not_null(pc, "%s", err.msg);
    int32_t t[48];
    float hid[48 * 5], back[48 * 5];
    for (int i = 0; i < 48; i++) t[i] = 100 + i;
    for (int i = 0; i < 48 * 5; i++) hid[i] = (float)(7000 + i);
    for (int l = 0; l < 3; l++) {
        kv->len[l] = 40;
        for (int i = 0; i < 40 * 6; i++) kv->rows[l][i] = (float)(l * 10000 + i);
    }
    prefix_cache_insert_hidden(pc, t, 20, kv, 20, NULL, 0, 0);      /* a speculative request: MTP rows of [0, 20) */
    prefix_cache_insert_hidden(pc, t, 40, kv, 0, hid, 0, 40);       /* then one without: hidden states of [0, 40) */
    int h0, h1;
    cr_assert_eq(prefix_cache_restore_hidden(pc, t, 48, b, 1, back, &h0, &h1), 39);
    cr_assert_eq(b->len[2], 20, "MTP rows up to the gap");
    cr_assert_eq(h0, 20);
    cr_assert_eq(h1, 39);
    cr_assert_arr_eq(back, hid + 20 * 5, sizeof(float) * 19 * 5, "hidden states of [20, 39)");
    for (int l = 0; l < 3; l++)
        cr_assert_arr_eq(b->rows[l], kv->rows[l], sizeof(float) * (l < 2 ? 39 : 20) * 6, "layer %d", l);
    for (int l = 0; l < 3; l++) b->len[l] = 0;
    cr_assert_eq(prefix_cache_restore(pc, t, 48, b, 1), 20, "without taking hidden states: up to the gap");
    for (int l = 0; l < 3; l++) b->len[l] = 0;
    cr_assert_eq(prefix_cache_restore_hidden(pc, t, 48, b, 0, back, &h0, &h1), 40);
    cr_assert(h0 == 0 && h1 == 40, "without MTP: the whole run of hidden states, [%d, %d)", h0, h1);
    cr_assert_arr_eq(back, hid, sizeof(float) * 40 * 5);
    prefix_cache_free(pc);
    kv_cache_free(kv);
    kv_cache_free(b);
}

/* A model with several MTP modules (num_nextn_predict_layers 3): a request
 * speculating with fewer (spec_k 1 runs module 0 only) must not leave the
 * cache claiming MTP rows of the modules it never ran, or a later request
 * with a larger spec_k restores stale rows into them. Speculation is lossless,
 * so the tokens would hide that (a random model's drafts are rarely
 * accepted); the rows do not: after the prefill, every row of every layer at
 * the prompt's positions must be the row a prefill without the cache
 * computes (row-independent kernels: bit for bit). And the tokens must be
 * those without the cache and without speculation. */
static kv_cache_t *prefill_rows(model_t *m, const int32_t *prompt, int n, int k, sequence_t **out) {
    seq_params_t p = {.max_new_tokens = 24, .spec_k = k, .sampling = {.top_p = 1.0f}};
    spex_err_t err = {0};
    sequence_t *s = sequence_create(m, prompt, n, &p, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(engine_step(m, &s, 1, NULL, NULL, &err), 0, "%s", err.msg);   /* the prefill */
    *out = s;
    return s->kv;
}

static void assert_same_rows(const kv_cache_t *a, const kv_cache_t *b, int n, int n_main, int k, const char *what) {
    for (int l = 0; l < n_main + k; l++)   /* the main layers and the MTP modules a spec-k request uses */
        for (int t = 0; t < n; t++)
            cr_assert_eq(memcmp(a->rows[l] + (size_t)t * a->width, b->rows[l] + (size_t)t * b->width,
                                sizeof(float) * (size_t)a->width), 0,
                         "spec-k %d %s: layer %d (%s), position %d differs from a prefill without the cache", k, what,
                         l, l < n_main ? "main" : "MTP", t);
}

Test(prefix_cache, fewer_mtp_modules_than_the_model_has, .timeout = 120) {
    fx_t f;
    open_fx_mtp(&f, 3);
    int V = f.m->cfg.vocab_size, n_main = f.m->cfg.num_hidden_layers, n = 45;
    int32_t prompt[45];
    for (int i = 0; i < n; i++) prompt[i] = (int32_t)((i * 41 + 7) % V);
    int n_ref;
    int32_t *ref = gen(f.m, prompt, n, 0, &n_ref);   /* no cache, no speculation */
    for (int k = 2; k <= 3; k++) {
        sequence_t *plain, *hit;
        kv_cache_t *want = prefill_rows(f.m, prompt, n, k, &plain);   /* no cache */
        spex_err_t err = {0};
        cr_assert_eq(model_set_prefix_cache(f.m, 8u << 20, &err), 0, "%s", err.msg);
        int n_one, n_with;
        int32_t *one = gen(f.m, prompt, n, 1, &n_one);   /* caches the prompt, having run MTP module 0 only */
        cr_assert_eq(n_one, n_ref);
        cr_assert_arr_eq(one, ref, sizeof(int32_t) * (size_t)n_ref, "spec-k 1 differs from spec-k 0");
        uint64_t before = prefix_cache_stats(f.m->prefix).hit_tokens;
        assert_same_rows(want, prefill_rows(f.m, prompt, n, k, &hit), n, n_main, k, "after spec-k 1 cached it");
        uint64_t reused = prefix_cache_stats(f.m->prefix).hit_tokens - before;   /* all but the last cached token */
        cr_assert_geq(reused, (uint64_t)(n - 2), "spec-k %d: only %llu of %d prompt tokens reused", k,
                      (unsigned long long)reused, n);
        sequence_free(hit);
        int32_t *with = gen(f.m, prompt, n, k, &n_with);
        cr_assert_eq(n_with, n_ref);
        cr_assert_arr_eq(with, ref, sizeof(int32_t) * (size_t)n_ref, "spec-k %d with the cache differs", k);
        assert_same_rows(want, prefill_rows(f.m, prompt, n, k, &hit), n, n_main, k, "after its own turn");
        sequence_free(hit);
        sequence_free(plain);
        prefix_cache_free(f.m->prefix);
        f.m->prefix = NULL;
        free(one), free(with);
    }
    free(ref);
    close_fx(&f);
}
