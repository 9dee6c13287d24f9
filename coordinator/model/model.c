/* model.c - see model.h: loading the weights and the forward pass, one function per step. */
#include "model.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/clock.h"
#include "core/kernels.h"
#include "coordinator/model/experts_local.h"
#include "coordinator/model/layer_pipeline.h"

/* ---------------------------------------------------------------- loading */

static int layer_load(decoder_layer_t *d, const spex_config_t *cfg, const tensor_store_t *ts, int l,
                      spex_err_t *err) {
    char p[128], n[256];
    int hid = cfg->hidden_size;
    snprintf(p, sizeof p, "model.layers.%d", l);
    snprintf(n, sizeof n, "%s.input_layernorm.weight", p);
    if (!(d->attn_norm = vector_load(ts, n, hid, err))) return -1;
    snprintf(n, sizeof n, "%s.post_attention_layernorm.weight", p);
    if (!(d->ffn_norm = vector_load(ts, n, hid, err))) return -1;
    if (mla_load(&d->attn, cfg, ts, p, err)) return -1;
    d->moe = config_layer_is_moe(cfg, l);
    if (!d->moe) {
        snprintf(n, sizeof n, "%s.mlp", p);
        return expert_load(&d->dense, ts, n, hid, cfg->intermediate_size, err);
    }
    if (router_load(&d->router, cfg, ts, p, err)) return -1;
    d->has_shared = cfg->n_shared_experts > 0;
    if (!d->has_shared) return 0;
    snprintf(n, sizeof n, "%s.mlp.shared_experts", p);
    return expert_load(&d->shared, ts, n, hid, cfg->moe_intermediate_size * cfg->n_shared_experts, err);
}

static void layer_free(decoder_layer_t *d) {
    free(d->attn_norm);
    free(d->ffn_norm);
    mla_free(&d->attn);
    expert_free(&d->dense);
    router_free(&d->router);
    expert_free(&d->shared);
}

/* The MTP module of layer l. Its head may be absent from the checkpoint: it is
 * then lm_head itself (a view that owns nothing), as in DeepSeek-V3's training. */
static int mtp_load(mtp_module_t *t, const spex_config_t *cfg, const tensor_store_t *ts, int l,
                    const linear_t *lm_head, spex_err_t *err) {
    char n[256];
    int hid = cfg->hidden_size;
    snprintf(n, sizeof n, "model.layers.%d.enorm.weight", l);
    if (!(t->enorm = vector_load(ts, n, hid, err))) return -1;
    snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", l);
    if (!(t->hnorm = vector_load(ts, n, hid, err))) return -1;
    snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", l);
    if (linear_load(&t->eh_proj, ts, n, hid, 2 * hid, err)) return -1;
    snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", l);
    if (!(t->head_norm = vector_load(ts, n, hid, err))) return -1;
    snprintf(n, sizeof n, "model.layers.%d.shared_head.head.weight", l);
    if (!tensor_store_find(ts, n)) {
        t->head = *lm_head;
        t->head.owned = NULL, t->head.arena = NULL, t->head.owned_scale = NULL;
    } else if (linear_load(&t->head, ts, n, cfg->vocab_size, hid, err)) {
        return -1;
    }
    return layer_load(&t->block, cfg, ts, l, err);
}

static void mtp_free(mtp_module_t *t) {
    free(t->enorm);
    free(t->hnorm);
    free(t->head_norm);
    linear_free(&t->eh_proj);
    linear_free(&t->head);
    layer_free(&t->block);
}

/* The thread pool and SIMD path every kernel of the model uses. */
static int model_exec_init(model_t *m, const model_options_t *opt, spex_err_t *err) {
    if (matmul_fp_env_check(err)) return -1;   /* before the pool: its threads inherit the environment */
    simd_t simd = simd_detect();
    if (opt->simd && simd_parse(opt->simd, &simd))
        return spex_fail(err, "SIMD path '%s' is unknown or not supported by this CPU (best: %s)", opt->simd,
                         simd_name(simd_detect()));
    int threads = opt->threads > 0 ? opt->threads : threadpool_default_threads();
    if (!(m->pool = threadpool_create(threads, err))) return -1;
    m->ex = (exec_t){m->pool, simd, -1};
    return 0;
}

static void load_progress(const model_options_t *opt, int done, int total) {
    if (opt->progress) opt->progress(opt->progress_user, done, total);
}

static int model_load_weights(model_t *m, const model_options_t *opt, spex_err_t *err) {
    const spex_config_t *c = &m->cfg;
    int n_mtp = opt->load_mtp ? c->num_nextn_predict_layers : 0;
    int total = c->num_hidden_layers + n_mtp + (opt->local_experts && c->n_routed_experts > 0 ? 1 : 0) + 1, done = 0;
    if (linear_load(&m->embed, m->ts, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, err)) return -1;
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) return spex_fail(err, "out of memory");
    for (int l = 0; l < c->num_hidden_layers; l++) {
        if (layer_load(&m->layers[l], c, m->ts, l, err)) return -1;
        if (opt->residency.copy) tensor_store_release_mapped(m->ts);   /* not kept until the load's peak */
        load_progress(opt, ++done, total);
    }
    if (!(m->final_norm = vector_load(m->ts, "model.norm.weight", c->hidden_size, err))) return -1;
    const char *head = tensor_store_find(m->ts, "lm_head.weight") || !c->tie_word_embeddings
                           ? "lm_head.weight" : "model.embed_tokens.weight";
    if (linear_load(&m->lm_head, m->ts, head, c->vocab_size, c->hidden_size, err)) return -1;
    if (opt->load_mtp && c->num_nextn_predict_layers > 0) {
        m->mtp = calloc((size_t)c->num_nextn_predict_layers, sizeof *m->mtp);
        if (!m->mtp) return spex_fail(err, "out of memory");
        m->n_mtp = c->num_nextn_predict_layers;
        for (int k = 0; k < m->n_mtp; k++) {
            if (mtp_load(&m->mtp[k], c, m->ts, c->num_hidden_layers + k, &m->lm_head, err)) return -1;
            load_progress(opt, ++done, total);
        }
    }
    if (opt->local_experts && c->n_routed_experts > 0) {
        if (!(m->experts = experts_local_create(c, m->ts, &m->ex, err))) return -1;
        load_progress(opt, ++done, total);
    }
    load_progress(opt, total, total);
    return 0;
}

model_t *model_load(const char *dir, const model_options_t *opt, spex_err_t *err) {
    model_options_t def = {.load_mtp = true, .local_experts = true};
    if (!opt) opt = &def;
    model_t *m = calloc(1, sizeof *m);
    if (!m) { spex_fail(err, "out of memory"); return NULL; }
    if (!(m->dir = strdup(dir))) {   /* unchecked until the allocation-failure test */
        spex_fail(err, "out of memory");
        goto fail;
    }
    if (!(m->ts = checkpoint_open(dir, &m->cfg, err))) goto fail;
    tensor_store_set_residency(m->ts, opt->residency);
    if (model_exec_init(m, opt, err) || model_load_weights(m, opt, err)) goto fail;
    if (opt->residency.copy) tensor_store_release_mapped(m->ts);   /* everything used is copied */
    int max_pos = opt->max_positions > 0 ? opt->max_positions : m->cfg.max_position_embeddings;
    if (rope_init(&m->rope, &m->cfg, max_pos, err)) goto fail;
    return m;
fail:
    spex_err_prefix(err, "model '%s': ", dir);
    model_free(m);
    return NULL;
}

int model_set_prefix_cache(model_t *m, size_t max_bytes, spex_err_t *err) {
    prefix_cache_t *pc = prefix_cache_create(m->cfg.num_hidden_layers, m->n_mtp,
                                             m->cfg.kv_lora_rank + m->cfg.qk_rope_head_dim, m->cfg.hidden_size,
                                             max_bytes, err);
    if (!pc) return -1;
    prefix_cache_free(m->prefix);
    m->prefix = pc;
    return 0;
}

int model_set_bias_update(model_t *m, float rate, int window, spex_err_t *err) {
    const spex_config_t *c = &m->cfg;
    if (c->n_routed_experts <= 0) return spex_fail(err, "--bias-update-rate: the model has no routed experts");
    bias_balance_t *b = bias_balance_create(c->num_hidden_layers, c->n_routed_experts, c->num_experts_per_tok, rate,
                                            window, err);
    if (!b) return -1;
    bias_balance_free(m->balance);
    m->balance = b;
    for (int l = 0; l < c->num_hidden_layers; l++)
        if (m->layers[l].moe) m->layers[l].router.extra_bias = bias_balance_delta(b, l);
    return 0;
}

void model_free(model_t *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) layer_free(&m->layers[l]);
    for (int k = 0; k < m->n_mtp; k++) mtp_free(&m->mtp[k]);
    free(m->layers);
    free(m->mtp);
    linear_free(&m->embed);
    free(m->final_norm);
    linear_free(&m->lm_head);
    rope_free(&m->rope);
    if (m->experts) m->experts->destroy(m->experts);
    bias_balance_free(m->balance);
    prefix_cache_free(m->prefix);
    threadpool_free(m->pool);
    for (size_t i = 0; i < sizeof m->scratch / sizeof m->scratch[0]; i++) arena_free(&m->scratch[i]);
    for (size_t i = 0; i < sizeof m->step / sizeof m->step[0]; i++) arena_free(&m->step[i]);
    for (size_t i = 0; i < sizeof m->micro / sizeof m->micro[0]; i++) arena_free(&m->micro[i]);
    free(m->micro_seqs);
    tensor_store_free(m->ts);
    free(m->dir);
    free(m);
}

void model_set_experts(model_t *m, moe_backend_t *backend) {
    if (m->experts) m->experts->destroy(m->experts);
    m->experts = backend;
}

int model_cache_layers(const model_t *m) { return m->cfg.num_hidden_layers + m->n_mtp; }

/* ---------------------------------------------------------------- forward */

static float *scratch(model_t *m, int role, size_t floats, spex_err_t *err) {
    float *p = arena_floats(&m->scratch[role], floats);
    if (!p) spex_fail(err, "out of memory for %zu MB of scratch", floats * sizeof(float) >> 20);
    return p;
}

/* logits[count, vocab] = head(hidden rows with want != 0). */
static int head_forward(model_t *m, const linear_t *head, const float *hidden, int n, const uint8_t *want,
                        float *logits, spex_err_t *err) {
    int hid = m->cfg.hidden_size;
    if (!logits) return 0;
    if (!want) {
        linear_apply(&m->ex, head, hidden, logits, n);
        return 0;
    }
    int count = 0;
    float *rows = scratch(m, MODEL_S_HEAD, (size_t)n * hid, err);
    if (!rows) return -1;
    for (int i = 0; i < n; i++)
        if (want[i]) memcpy(rows + (size_t)count++ * hid, hidden + (size_t)i * hid, sizeof(float) * hid);
    linear_apply(&m->ex, head, rows, logits, count);
    return 0;
}

static int check_tokens(const model_t *m, const int32_t *tokens, int n, spex_err_t *err) {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return spex_fail(err, "token %d at row %d is outside the vocabulary [0, %d)", tokens[i], i,
                             m->cfg.vocab_size);
    return 0;
}

static int batch_rows(const mla_seq_t *seqs, int n_seqs) {
    int n = 0;
    for (int s = 0; s < n_seqs; s++) n += seqs[s].n;
    return n;
}

int model_forward(model_t *m, const int32_t *tokens, const mla_seq_t *seqs, int n_seqs, float *hidden_out,
                  const uint8_t *want, float *logits, spex_err_t *err) {
    int n = batch_rows(seqs, n_seqs), hid = m->cfg.hidden_size;
    if (n <= 0) return 0;
    if (check_tokens(m, tokens, n, err)) return -1;
    float *h = scratch(m, MODEL_S_H, (size_t)n * hid, err);
    if (!h) return -1;
    for (int i = 0; i < n; i++)                                         /* embed */
        wview_row_f32(&m->embed.w, tokens[i], h + (size_t)i * hid);
    int rc = layers_forward(m, m->layers, 0, m->cfg.num_hidden_layers, h, seqs, n_seqs, n, err);
    if (!rc) {
        double t0 = spex_now();
        rmsnorm(h, h, m->final_norm, n, hid, (float)m->cfg.rms_norm_eps);   /* model.norm */
        rc = head_forward(m, &m->lm_head, h, n, want, logits, err);
        m->timing.head += spex_now() - t0;
        if (!rc && hidden_out) memcpy(hidden_out, h, sizeof(float) * (size_t)n * hid);
    }
    return rc;
}

/* The MTP module's input rows: h[n, hidden] = eh_proj([enorm(embed(token)) ; hnorm(hidden_in)]),
 * at `h` in MODEL_S_H after `extra` floats the caller may use; the first
 * 2 n hidden floats after h are free once it returns. */
static float *mtp_input(model_t *m, const mtp_module_t *t, const int32_t *tokens, const float *hidden_in, int n,
                        size_t extra, spex_err_t *err) {
    int hid = m->cfg.hidden_size;
    float eps = (float)m->cfg.rms_norm_eps;
    if (check_tokens(m, tokens, n, err)) return NULL;
    float *base = scratch(m, MODEL_S_H, extra + (size_t)n * hid * 3, err);
    if (!base) return NULL;
    float *h = base + extra, *cat = h + (size_t)n * hid;
    for (int i = 0; i < n; i++) {                 /* cat[i] = [enorm(embed(t)) ; hnorm(hidden)] */
        float *row = cat + (size_t)i * 2 * hid;
        wview_row_f32(&m->embed.w, tokens[i], row);
        rmsnorm(row, row, t->enorm, 1, hid, eps);
        rmsnorm(row + hid, hidden_in + (size_t)i * hid, t->hnorm, 1, hid, eps);
    }
    linear_apply(&m->ex, &t->eh_proj, cat, h, n);  /* h[n, hidden] */
    return h;
}

int model_mtp_forward_last(model_t *m, int k, const int32_t *tokens, const float *hidden_in, const mla_seq_t *seqs,
                           int n_seqs, float *hidden_out, float *logits, spex_err_t *err) {
    if (k < 0 || k >= m->n_mtp) return spex_fail(err, "MTP module %d not loaded (model has %d)", k, m->n_mtp);
    int n = batch_rows(seqs, n_seqs), hid = m->cfg.hidden_size, layer = m->cfg.num_hidden_layers + k;
    if (n <= 0) return 0;
    const mtp_module_t *t = &m->mtp[k];
    size_t seq_floats = (sizeof(mla_seq_t) * 2 * (size_t)n_seqs + 63) / 64 * 16;   /* 64-byte multiple */
    float *h = mtp_input(m, t, tokens, hidden_in, n, seq_floats, err);
    if (!h) return -1;
    mla_seq_t *pre = (mla_seq_t *)(h - seq_floats), *last = pre + n_seqs;
    float *xpre = h + (size_t)n * hid, *tail = xpre + (size_t)n * hid;   /* [n - n_seqs, hid], [n_seqs, hid] */
    int np = 0;
    for (int s = 0, row = 0; s < n_seqs; row += seqs[s].n, s++) {   /* split: rows before the last, the last */
        int r = seqs[s].n - 1;
        if (r < 0) return spex_fail(err, "MTP module %d: sequence %d has no rows", k, s);
        pre[s] = (mla_seq_t){seqs[s].kv, r};
        last[s] = (mla_seq_t){seqs[s].kv, 1};
        rmsnorm(xpre + (size_t)np * hid, h + (size_t)row * hid, t->block.attn_norm, r, hid, (float)m->cfg.rms_norm_eps);
        memcpy(tail + (size_t)s * hid, h + (size_t)(row + r) * hid, sizeof(float) * hid);
        np += r;
    }
    int rc = np > 0 ? mla_append_rows(&m->ex, &t->block.attn, &m->rope, layer, pre, n_seqs, xpre,
                                      &m->scratch[MODEL_S_ATTN], err) : 0;
    if (!rc) rc = layers_forward(m, &t->block, layer, 1, tail, last, n_seqs, n_seqs, err);
    if (!rc) {
        rmsnorm(tail, tail, t->head_norm, n_seqs, hid, (float)m->cfg.rms_norm_eps);
        rc = head_forward(m, &t->head, tail, n_seqs, NULL, logits, err);
        if (!rc && hidden_out) memcpy(hidden_out, tail, sizeof(float) * (size_t)n_seqs * hid);
    }
    if (rc) spex_err_prefix(err, "MTP module %d: ", k);
    return rc;
}

int model_mtp_forward(model_t *m, int k, const int32_t *tokens, const float *hidden_in, const mla_seq_t *seqs,
                      int n_seqs, float *hidden_out, const uint8_t *want, float *logits, spex_err_t *err) {
    if (k < 0 || k >= m->n_mtp) return spex_fail(err, "MTP module %d not loaded (model has %d)", k, m->n_mtp);
    int n = batch_rows(seqs, n_seqs), hid = m->cfg.hidden_size;
    float eps = (float)m->cfg.rms_norm_eps;
    if (n <= 0) return 0;
    const mtp_module_t *t = &m->mtp[k];
    float *h = mtp_input(m, t, tokens, hidden_in, n, 0, err);
    if (!h) return -1;
    int layer = m->cfg.num_hidden_layers + k;
    int rc = layers_forward(m, &t->block, layer, 1, h, seqs, n_seqs, n, err);
    if (!rc) {
        rmsnorm(h, h, t->head_norm, n, hid, eps);
        rc = head_forward(m, &t->head, h, n, want, logits, err);
        if (!rc && hidden_out) memcpy(hidden_out, h, sizeof(float) * (size_t)n * hid);
    }
    if (rc) spex_err_prefix(err, "MTP module %d: ", k);
    return rc;
}
