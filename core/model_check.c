/* model_check.c - see model_check.h: the expected tensor table of a
 * DeepSeek-V3-architecture checkpoint and the check of a store against it. */
#include "model_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Growing list of expected tensors. */
typedef struct {
    model_tensor_t *v;
    size_t n, cap;
    bool oom;
} mt_list_t;

static void add(mt_list_t *l, model_tensor_kind_t kind, int layer, int expert, int64_t d0, int64_t d1,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* Append one tensor; d1 < 0 means 1-D [d0]. */
static void add(mt_list_t *l, model_tensor_kind_t kind, int layer, int expert, int64_t d0, int64_t d1,
                const char *fmt, ...) {
    if (l->oom) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        model_tensor_t *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) { l->oom = true; return; }
        l->v = nv;
        l->cap = cap;
    }
    model_tensor_t *t = &l->v[l->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->kind = kind;
    t->layer = layer;
    t->expert = expert;
    t->ndim = d1 < 0 ? 1 : 2;
    t->shape[0] = d0;
    t->shape[1] = d1 < 0 ? 0 : d1;
}

/* MLA attention of layer L. */
static void add_attention(mt_list_t *l, const spex_config_t *c, int L) {
    int64_t H = c->hidden_size, nh = c->num_attention_heads;
    int64_t dq = config_qk_head_dim(c);
    const char *p = "model.layers";
    if (c->q_lora_rank > 0) {
        add(l, MT_LINEAR, L, -1, c->q_lora_rank, H, "%s.%d.self_attn.q_a_proj.weight", p, L);
        add(l, MT_NORM, L, -1, c->q_lora_rank, -1, "%s.%d.self_attn.q_a_layernorm.weight", p, L);
        add(l, MT_LINEAR, L, -1, nh * dq, c->q_lora_rank, "%s.%d.self_attn.q_b_proj.weight", p, L);
    } else {
        add(l, MT_LINEAR, L, -1, nh * dq, H, "%s.%d.self_attn.q_proj.weight", p, L);
    }
    add(l, MT_LINEAR, L, -1, c->kv_lora_rank + c->qk_rope_head_dim, H, "%s.%d.self_attn.kv_a_proj_with_mqa.weight",
        p, L);
    add(l, MT_NORM, L, -1, c->kv_lora_rank, -1, "%s.%d.self_attn.kv_a_layernorm.weight", p, L);
    add(l, MT_LINEAR, L, -1, nh * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank,
        "%s.%d.self_attn.kv_b_proj.weight", p, L);
    add(l, MT_LINEAR, L, -1, H, nh * c->v_head_dim, "%s.%d.self_attn.o_proj.weight", p, L);
}

/* SwiGLU FFN with inner size I under `prefix` (gate, up: [I,H]; down: [H,I]). */
static void add_swiglu(mt_list_t *l, int L, int expert, int64_t H, int64_t I, const char *prefix) {
    add(l, MT_LINEAR, L, expert, I, H, "%s.gate_proj.weight", prefix);
    add(l, MT_LINEAR, L, expert, I, H, "%s.up_proj.weight", prefix);
    add(l, MT_LINEAR, L, expert, H, I, "%s.down_proj.weight", prefix);
}

static void add_ffn(mt_list_t *l, const spex_config_t *c, int L) {
    char prefix[MODEL_TENSOR_NAME_MAX];
    int64_t H = c->hidden_size, E = c->n_routed_experts;
    if (!config_layer_is_moe(c, L)) {
        snprintf(prefix, sizeof prefix, "model.layers.%d.mlp", L);
        add_swiglu(l, L, -1, H, c->intermediate_size, prefix);
        return;
    }
    add(l, MT_ROUTER, L, -1, E, H, "model.layers.%d.mlp.gate.weight", L);
    if (c->topk_method == TOPK_NOAUX_TC)
        add(l, MT_ROUTER_BIAS, L, -1, E, -1, "model.layers.%d.mlp.gate.e_score_correction_bias", L);
    for (int e = 0; e < c->n_routed_experts; e++) {
        snprintf(prefix, sizeof prefix, "model.layers.%d.mlp.experts.%d", L, e);
        add_swiglu(l, L, e, H, c->moe_intermediate_size, prefix);
    }
    if (c->n_shared_experts > 0) {
        snprintf(prefix, sizeof prefix, "model.layers.%d.mlp.shared_experts", L);
        add_swiglu(l, L, -1, H, (int64_t)c->n_shared_experts * c->moe_intermediate_size, prefix);
    }
}

/* The MTP module's own tensors around its decoder layer. */
static void add_mtp_extras(mt_list_t *l, const spex_config_t *c, int L) {
    int64_t H = c->hidden_size, V = c->vocab_size;
    add(l, MT_EMBED, L, -1, V, H, "model.layers.%d.embed_tokens.weight", L);
    add(l, MT_NORM, L, -1, H, -1, "model.layers.%d.enorm.weight", L);
    add(l, MT_NORM, L, -1, H, -1, "model.layers.%d.hnorm.weight", L);
    add(l, MT_LINEAR_HP, L, -1, H, 2 * H, "model.layers.%d.eh_proj.weight", L);
    add(l, MT_NORM, L, -1, H, -1, "model.layers.%d.shared_head.norm.weight", L);
    add(l, MT_HEAD, L, -1, V, H, "model.layers.%d.shared_head.head.weight", L);
    l->v[l->n - 1].optional = l->v[l->n - 6].optional = !l->oom;   /* head and embed_tokens */
}

int model_tensors(const spex_config_t *cfg, model_tensor_t **out, size_t *n, spex_err_t *err) {
    mt_list_t l = {0};
    int64_t H = cfg->hidden_size, V = cfg->vocab_size;
    add(&l, MT_EMBED, -1, -1, V, H, "model.embed_tokens.weight");
    int layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    for (int L = 0; L < layers; L++) {
        if (L >= cfg->num_hidden_layers) add_mtp_extras(&l, cfg, L);
        add(&l, MT_NORM, L, -1, H, -1, "model.layers.%d.input_layernorm.weight", L);
        add_attention(&l, cfg, L);
        add(&l, MT_NORM, L, -1, H, -1, "model.layers.%d.post_attention_layernorm.weight", L);
        add_ffn(&l, cfg, L);
    }
    add(&l, MT_NORM, -1, -1, H, -1, "model.norm.weight");
    if (!cfg->tie_word_embeddings) add(&l, MT_HEAD, -1, -1, V, H, "lm_head.weight");
    if (l.oom) {
        free(l.v);
        return spex_fail(err, "out of memory listing %zu model tensors", l.n);
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

static bool is_float(spex_dtype_t t) {
    return t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16 || t == DTYPE_F8_E4M3 || t == DTYPE_F64;
}

static int shape_fail(const tensor_store_t *ts, const st_tensor_t *t, int ndim, const int64_t *want,
                      spex_err_t *err) {
    char a[128], b[128];
    return spex_fail(err, "tensor '%s' in %s has shape %s, expected %s", t->name, tensor_store_file_path(ts, t->file),
                     st_shape_str(a, sizeof a, t->ndim, t->shape), st_shape_str(b, sizeof b, ndim, want));
}

static bool same_shape(const st_tensor_t *t, int ndim, const int64_t *want) {
    if (t->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != want[i]) return false;
    return true;
}

/* The block-scale companion of an FP8 tensor. */
static int check_scale(const tensor_store_t *ts, const st_tensor_t *t, spex_err_t *err) {
    const char *file = tensor_store_file_path(ts, t->file);
    if (t->ndim != 2)
        return spex_fail(err, "%s: tensor '%s' is F8_E4M3 with %d dims; block scales need 2", file, t->name, t->ndim);
    char sname[MODEL_TENSOR_NAME_MAX + 16];
    snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
    const st_tensor_t *s = tensor_store_find(ts, sname);
    if (!s)
        return spex_fail(err, "%s: tensor '%s' is F8_E4M3 but its scale tensor '%s' is missing", file, t->name,
                         sname);
    int block[2];
    tensor_store_fp8_block(ts, block);
    int64_t want[2] = {(t->shape[0] + block[0] - 1) / block[0], (t->shape[1] + block[1] - 1) / block[1]};
    if (!same_shape(s, 2, want)) return shape_fail(ts, s, 2, want, err);
    if (!is_float(s->dtype) || s->dtype == DTYPE_F8_E4M3)
        return spex_fail(err, "tensor '%s' in %s has dtype %s, expected F32", sname,
                         tensor_store_file_path(ts, s->file), dtype_name(s->dtype));
    return 0;
}

int model_check_tensors(const spex_config_t *cfg, const tensor_store_t *ts, spex_err_t *err) {
    model_tensor_t *mt;
    size_t n;
    if (model_tensors(cfg, &mt, &n, err)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const st_tensor_t *t = tensor_store_find(ts, mt[i].name);
        if (!t && mt[i].optional) continue;
        if (!t) rc = spex_fail(err, "%s: missing tensor '%s'", tensor_store_origin(ts), mt[i].name);
        else if (!same_shape(t, mt[i].ndim, mt[i].shape)) rc = shape_fail(ts, t, mt[i].ndim, mt[i].shape, err);
        else if (!is_float(t->dtype))
            rc = spex_fail(err, "tensor '%s' in %s has dtype %s, expected a float type", t->name,
                           tensor_store_file_path(ts, t->file), dtype_name(t->dtype));
        else if (t->dtype == DTYPE_F8_E4M3) rc = check_scale(ts, t, err);
    }
    free(mt);
    return rc;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

size_t model_count_unexpected(const spex_config_t *cfg, const tensor_store_t *ts, char *first, size_t cap) {
    model_tensor_t *mt;
    size_t n, count = 0;
    spex_err_t err;
    if (cap) first[0] = '\0';
    if (model_tensors(cfg, &mt, &n, &err)) return 0;
    const char **names = malloc((n + 1) * sizeof *names);
    if (!names) { free(mt); return 0; }
    for (size_t i = 0; i < n; i++) names[i] = mt[i].name;
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < tensor_store_count(ts); i++) {
        char base[512];
        snprintf(base, sizeof base, "%s", tensor_store_at(ts, i)->name);
        size_t bl = strlen(base);
        if (bl > 10 && !strcmp(base + bl - 10, "_scale_inv")) base[bl - 10] = '\0';
        const char *key = base;
        if (bsearch(&key, names, n, sizeof *names, name_cmp)) continue;
        if (count++ == 0 && cap) snprintf(first, cap, "%s", tensor_store_at(ts, i)->name);
    }
    free(names);
    free(mt);
    return count;
}
