/* test_mtp_layers.c - checkpoints with several MTP modules draft with module
 * (j-1) mod count at draft step j (issue 4), and every module's cache sees
 * every row, so a module used again later attends over a cache without holes.
 *
 * Reference: the same chain spelled out with model_forward / model_mtp_forward
 * calls on a fresh cache (prompt rows through every module, then step 2 from
 * module 1, step 3 from module 0 again), compared draft for draft with what
 * engine_step leaves in sequence_t.drafts after its first step. Greedy output
 * with --spec-k 1..4 must also equal --spec-k 0, as for one module. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/decode/engine.h"
#include "coordinator/decode/generate.h"
#include "coordinator/model/kv_cache.h"
#include "core/kernels.h"
#include "core/safetensors_write.h"
#include "tools/synth.h"

typedef struct { char dir[256]; model_t *m; } fixture_t;

/* A tiny random checkpoint with two MTP modules (distinct weights). */
static void fixture_open(fixture_t *f) {
    snprintf(f->dir, sizeof f->dir, "/tmp/spex-mtp2-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    spex_config_t cfg;
    spex_err_t err = {0};
    cr_assert_eq(synth_preset("tiny", &cfg, &err), 0, "%s", err.msg);
    cfg.num_nextn_predict_layers = 2;
    synth_opts_t o = {.dtype = SYNTH_F32, .seed = 99, .shards = 1};
    cr_assert_eq(synth_write(f->dir, &cfg, &o, &err), 0, "%s", err.msg);
    f->m = model_load(f->dir, NULL, &err);
    cr_assert_not_null(f->m, "%s", err.msg);
    cr_assert_eq(f->m->n_mtp, 2);
}

static void fixture_close(fixture_t *f) {
    model_free(f->m);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    cr_assert_eq(system(cmd), 0);
}

/* Run modules 0..count-1 over rows (hidden[n], tokens[n]) appended to kv, as
 * the engine does; returns module `use`'s argmax at the last row and its
 * hidden state there in h_out[hidden]. */
static int32_t mtp_step(model_t *m, kv_cache_t *kv, const int32_t *tokens, const float *hidden, int n, int use,
                        float *h_out) {
    int hid = m->cfg.hidden_size, V = m->cfg.vocab_size;
    float *ho = malloc(sizeof(float) * (size_t)n * hid), *logits = malloc(sizeof(float) * (size_t)n * V);
    cr_assert(ho && logits);
    mla_seq_t seq = {kv, n};
    spex_err_t err = {0};
    int32_t best = -1;
    for (int k = 0; k < m->n_mtp; k++) {
        cr_assert_eq(model_mtp_forward(m, k, tokens, hidden, &seq, 1, ho, NULL, logits, &err), 0, "%s",
                     err.msg);
        if (k != use) continue;
        memcpy(h_out, ho + (size_t)(n - 1) * hid, sizeof(float) * hid);
        best = argmax(logits + (size_t)(n - 1) * V, V);
    }
    free(ho);
    free(logits);
    return best;
}

/* Drafts d1..d3 for `prompt` the long way: prefill, first token, then the
 * chain; step 2 drafts with module `mod2` (1 is the rule; 0 is the counterfactual). */
static void reference_drafts(model_t *m, const int32_t *prompt, int n, int mod2, int32_t *first, int32_t d[3]) {
    int hid = m->cfg.hidden_size, V = m->cfg.vocab_size;
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, 64, &err);
    float *hidden = malloc(sizeof(float) * (size_t)n * hid), *logits = malloc(sizeof(float) * (size_t)n * V);
    float *h = malloc(sizeof(float) * hid), *h2 = malloc(sizeof(float) * hid);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n);
    cr_assert(kv && hidden && logits && h && h2 && tok, "%s", err.msg);
    mla_seq_t seq = {kv, n};
    cr_assert_eq(model_forward(m, prompt, &seq, 1, hidden, NULL, logits, &err), 0, "%s", err.msg);
    *first = argmax(logits + (size_t)(n - 1) * V, V);
    memcpy(tok, prompt + 1, sizeof(int32_t) * (size_t)(n - 1));   /* rows (h_t, token_{t+1}) */
    tok[n - 1] = *first;
    d[0] = mtp_step(m, kv, tok, hidden, n, 0, h);        /* step 1: module 0 */
    d[1] = mtp_step(m, kv, &d[0], h, 1, mod2, h2);       /* step 2: module 1 */
    d[2] = mtp_step(m, kv, &d[1], h2, 1, 0, h);          /* step 3: module 0 again */
    kv_cache_free(kv);
    free(hidden), free(logits), free(h), free(h2), free(tok);
}

Test(mtp_layers, draft_step_j_uses_module_j_minus_1_mod_count) {
    fixture_t f;
    fixture_open(&f);
    int differs = 0;
    for (int trial = 0; trial < 4; trial++) {
        int32_t prompt[8];
        int n = 3 + trial;
        for (int i = 0; i < n; i++) prompt[i] = (int32_t)((trial * 53 + i * 29 + 3) % f.m->cfg.vocab_size);
        int32_t first, want[3];
        reference_drafts(f.m, prompt, n, 1, &first, want);
        seq_params_t p = {.max_new_tokens = 20, .spec_k = 3, .sampling = {.top_p = 1.0f}};
        spex_err_t err = {0};
        sequence_t *s = sequence_create(f.m, prompt, n, &p, &err);
        cr_assert_not_null(s, "%s", err.msg);
        cr_assert_eq(engine_step(f.m, &s, 1, NULL, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(s->n_out, 1);
        cr_assert_eq(s->out[0], first, "prompt %d: first token %d, want %d", trial, s->out[0], first);
        cr_assert_eq(s->n_drafts, 3);
        for (int j = 0; j < 3; j++)
            cr_assert_eq(s->drafts[j], want[j], "prompt %d: draft %d is %d, want %d", trial, j + 1, s->drafts[j],
                         want[j]);
        sequence_free(s);
        /* the test can tell the modules apart: module 0 at step 2 drafts otherwise */
        int32_t alt_first, alt[3];
        reference_drafts(f.m, prompt, n, 0, &alt_first, alt);
        differs += alt[1] != want[1];
    }
    cr_assert_gt(differs, 0, "modules 0 and 1 drafted alike at step 2 for every prompt: the fixture cannot tell them apart");
    fixture_close(&f);
}

Test(mtp_layers, greedy_identical_with_two_modules, .timeout = 120) {
    fixture_t f;
    fixture_open(&f);
    int32_t prompt[5] = {1, 7, 19, 42, 3}, *base, *spec;
    int nb, ns;
    gen_stats_t st;
    spex_err_t err = {0};
    seq_params_t p = {.max_new_tokens = 40, .sampling = {.top_p = 1.0f}};
    cr_assert_eq(generate(f.m, prompt, 5, &p, NULL, NULL, &base, &nb, &st, &err), 0, "%s", err.msg);
    for (int k = 1; k <= 4; k++) {
        p.spec_k = k;
        cr_assert_eq(generate(f.m, prompt, 5, &p, NULL, NULL, &spec, &ns, &st, &err), 0, "%s", err.msg);
        cr_assert_eq(ns, nb);
        cr_assert_arr_eq(spec, base, sizeof(int32_t) * (size_t)nb, "spec-k %d changed the greedy output", k);
        free(spec);
    }
    free(base);
    fixture_close(&f);
}

/* dir/model.safetensors from the store's tensors; the MTP module's embed_tokens
 * and shared_head.head are left out (keep_mtp_copies false) or written as
 * copies of the main model's (true), with config.json beside it. */
static void write_variant(const tensor_store_t *ts, const spex_config_t *cfg, const char *dir, bool keep_mtp_copies) {
    spex_err_t err = {0};
    char path[512], mtp_embed[96], mtp_head[96];
    snprintf(mtp_embed, sizeof mtp_embed, "model.layers.%d.embed_tokens.weight", cfg->num_hidden_layers);
    snprintf(mtp_head, sizeof mtp_head, "model.layers.%d.shared_head.head.weight", cfg->num_hidden_layers);
    cr_assert_not_null(mkdtemp((char *)dir));
    st_writer_t *w = st_writer_create();
    for (size_t i = 0; i < tensor_store_count(ts); i++) {
        const st_tensor_t *t = tensor_store_at(ts, i);
        bool embed = !strcmp(t->name, mtp_embed), head = !strcmp(t->name, mtp_head);
        if ((embed || head) && !keep_mtp_copies) continue;
        const st_tensor_t *src = embed ? tensor_store_find(ts, "model.embed_tokens.weight")
                                 : head ? tensor_store_find(ts, "lm_head.weight") : t;
        cr_assert_eq(st_writer_add(w, t->name, src->dtype, src->ndim, src->shape, src->data, src->nbytes, &err), 0,
                     "%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(st_writer_write(w, path, &err), 0, "%s", err.msg);
    st_writer_free(w);
    char *json = synth_config_json(cfg, SYNTH_F32);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert(json && f);
    fputs(json, f);
    fclose(f);
    free(json);
}

/* MTP logits at every prompt row (prefill, then module 0 over (h_t, token_{t+1})). */
static float *mtp_logits(model_t *m, const int32_t *prompt, int n) {
    int hid = m->cfg.hidden_size, V = m->cfg.vocab_size;
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, 64, &err);
    float *hidden = malloc(sizeof(float) * (size_t)n * hid), *logits = malloc(sizeof(float) * (size_t)n * V);
    cr_assert(kv && hidden && logits, "%s", err.msg);
    mla_seq_t seq = {kv, n};
    cr_assert_eq(model_forward(m, prompt, &seq, 1, hidden, NULL, logits, &err), 0, "%s", err.msg);
    cr_assert_eq(model_mtp_forward(m, 0, prompt + 1, hidden, &(mla_seq_t){kv, n - 1}, 1, NULL, NULL, logits, &err),
                 0, "%s", err.msg);
    kv_cache_free(kv);
    free(hidden);
    return logits;
}

Test(mtp_layers, shared_embed_and_head_may_be_left_out, .timeout = 120) {
    fixture_t f;
    fixture_open(&f);   /* two modules; the variants below keep module 0 only */
    spex_config_t cfg = f.m->cfg;
    cfg.num_nextn_predict_layers = 1;
    char omit[] = "/tmp/spex-mtp-omit-XXXXXX", copies[] = "/tmp/spex-mtp-copies-XXXXXX";
    write_variant(f.m->ts, &cfg, omit, false);
    write_variant(f.m->ts, &cfg, copies, true);
    spex_err_t err = {0};
    model_t *a = model_load(omit, NULL, &err);
    cr_assert_not_null(a, "a checkpoint without the MTP copies must load: %s", err.msg);
    model_t *b = model_load(copies, NULL, &err);
    cr_assert_not_null(b, "%s", err.msg);
    int32_t prompt[6] = {5, 11, 2, 40, 17, 9};
    float *la = mtp_logits(a, prompt, 6), *lb = mtp_logits(b, prompt, 6);
    cr_assert_arr_eq(la, lb, sizeof(float) * 5 * (size_t)cfg.vocab_size,
                     "left-out MTP head/embedding must behave exactly as copies of lm_head/embed_tokens");
    free(la), free(lb);
    model_free(a), model_free(b);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", omit, copies);
    cr_assert_eq(system(cmd), 0);
    fixture_close(&f);
}

/* model_mtp_forward_last (what the engine runs) against model_mtp_forward: two
 * sequences of 5 and 1 rows after a 3-row history; the last rows' hidden states
 * and logits, and every cache entry of both sequences, bit for bit. */
Test(mtp_layers, last_row_forward_equals_full) {
    fixture_t f;
    fixture_open(&f);
    model_t *m = f.m;
    int hid = m->cfg.hidden_size, V = m->cfg.vocab_size, L = m->cfg.num_hidden_layers, n = 9;
    int32_t tok[9];
    float *hidden = malloc(sizeof(float) * (size_t)n * hid), *ho = malloc(sizeof(float) * (size_t)n * hid);
    float *lg = malloc(sizeof(float) * (size_t)n * V), *ho2 = malloc(sizeof(float) * 2 * hid);
    float *lg2 = malloc(sizeof(float) * 2 * (size_t)V);
    cr_assert(hidden && ho && lg && ho2 && lg2);
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((i * 29 + 3) % V);
    for (int i = 0; i < n * hid; i++) hidden[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    kv_cache_t *kv[2][2];   /* [full, last][sequence] */
    spex_err_t err = {0};
    for (int v = 0; v < 2; v++)
        for (int s = 0; s < 2; s++) {
            kv[v][s] = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, 16, &err);
            cr_assert_not_null(kv[v][s], "%s", err.msg);
            mla_seq_t h = {kv[v][s], 3};   /* a history: 3 rows through the full forward */
            cr_assert_eq(model_mtp_forward(m, 0, tok, hidden, &h, 1, NULL, NULL, NULL, &err), 0, "%s", err.msg);
        }
    const int32_t *t2 = tok + 3;
    const float *h2 = hidden + (size_t)3 * hid;
    mla_seq_t full[2] = {{kv[0][0], 5}, {kv[0][1], 1}}, last[2] = {{kv[1][0], 5}, {kv[1][1], 1}};
    cr_assert_eq(model_mtp_forward(m, 0, t2, h2, full, 2, ho, NULL, lg, &err), 0, "%s", err.msg);
    cr_assert_eq(model_mtp_forward_last(m, 0, t2, h2, last, 2, ho2, lg2, &err), 0, "%s", err.msg);
    int rows[2] = {4, 5};   /* each sequence's last row in the full batch */
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(memcmp(ho2 + (size_t)s * hid, ho + (size_t)rows[s] * hid, sizeof(float) * hid), 0, "hidden %d", s);
        cr_assert_eq(memcmp(lg2 + (size_t)s * V, lg + (size_t)rows[s] * V, sizeof(float) * V), 0, "logits %d", s);
        cr_assert_eq(kv[1][s]->len[L], kv[0][s]->len[L]);
        cr_assert_eq(memcmp(kv[1][s]->rows[L], kv[0][s]->rows[L],
                            sizeof(float) * (size_t)kv[0][s]->width * kv[0][s]->len[L]), 0, "cache of sequence %d", s);
    }
    for (int v = 0; v < 2; v++)
        for (int s = 0; s < 2; s++) kv_cache_free(kv[v][s]);
    free(hidden), free(ho), free(lg), free(ho2), free(lg2);
    fixture_close(&f);
}
