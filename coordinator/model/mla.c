/* mla.c - see mla.h. Shapes in comments: m = rows of one sequence, T = cached
 * tokens after appending them, H heads. */
#include "mla.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"

int mla_load(mla_t *a, const spex_config_t *cfg, const tensor_store_t *ts, const char *prefix, spex_err_t *err) {
    char n[512];
    memset(a, 0, sizeof *a);
    int H = cfg->num_attention_heads, hid = cfg->hidden_size, qk = config_qk_head_dim(cfg);
    a->n_heads = H;
    a->nope = cfg->qk_nope_head_dim;
    a->rope = cfg->qk_rope_head_dim;
    a->v_dim = cfg->v_head_dim;
    a->kv_lora = cfg->kv_lora_rank;
    a->q_lora = cfg->q_lora_rank;
    a->eps = (float)cfg->rms_norm_eps;
    a->softmax_scale = (float)(1.0 / sqrt((double)qk) * rope_softmax_mscale(cfg));
#define LOAD_LIN(field, suffix, o, i)                                        \
    do {                                                                     \
        snprintf(n, sizeof n, "%s.self_attn.%s", prefix, suffix);            \
        if (linear_load(&a->field, ts, n, (o), (i), err)) return -1;         \
    } while (0)
#define LOAD_VEC(field, suffix, d)                                           \
    do {                                                                     \
        snprintf(n, sizeof n, "%s.self_attn.%s", prefix, suffix);            \
        if (!(a->field = vector_load(ts, n, (d), err))) return -1;           \
    } while (0)
    if (a->q_lora > 0) {
        LOAD_LIN(q_a, "q_a_proj.weight", a->q_lora, hid);
        LOAD_VEC(q_a_norm, "q_a_layernorm.weight", a->q_lora);
        LOAD_LIN(q_b, "q_b_proj.weight", H * qk, a->q_lora);
    } else {
        LOAD_LIN(q_proj, "q_proj.weight", H * qk, hid);
    }
    LOAD_LIN(kv_a, "kv_a_proj_with_mqa.weight", a->kv_lora + a->rope, hid);
    LOAD_VEC(kv_norm, "kv_a_layernorm.weight", a->kv_lora);
    LOAD_LIN(kv_b, "kv_b_proj.weight", H * (a->nope + a->v_dim), a->kv_lora);
    LOAD_LIN(o_proj, "o_proj.weight", hid, H * a->v_dim);
#undef LOAD_LIN
#undef LOAD_VEC
    return 0;
}

void mla_free(mla_t *a) {
    if (!a) return;
    linear_free(&a->q_a);
    linear_free(&a->q_b);
    linear_free(&a->q_proj);
    linear_free(&a->kv_a);
    linear_free(&a->kv_b);
    linear_free(&a->o_proj);
    free(a->q_a_norm);
    free(a->kv_norm);
    a->q_a_norm = a->kv_norm = NULL;
}

/* q[n, H*(nope+rope)] from x[n, hidden]. scratch: n * q_lora floats. */
static void mla_query(const exec_t *ex, const mla_t *a, const float *x, float *q, int n, float *scratch) {
    if (a->q_lora > 0) {
        linear_apply(ex, &a->q_a, x, scratch, n);
        rmsnorm(scratch, scratch, a->q_a_norm, n, a->q_lora, a->eps);
        linear_apply(ex, &a->q_b, scratch, q, n);
    } else {
        linear_apply(ex, &a->q_proj, x, q, n);
    }
}

/* Write rows [c_kv normed | k_pe roped] of one sequence into its cache at positions p0.. */
static void mla_append(const mla_t *a, const rope_t *rope, kv_cache_t *kv, int layer, const float *kva, int m) {
    int p0 = kv->len[layer], w = a->kv_lora + a->rope;
    for (int i = 0; i < m; i++) {
        float *lat = kv->latent[layer] + (size_t)(p0 + i) * a->kv_lora;
        float *pe = kv->pe[layer] + (size_t)(p0 + i) * a->rope;
        rmsnorm(lat, kva + (size_t)i * w, a->kv_norm, 1, a->kv_lora, a->eps);
        memcpy(pe, kva + (size_t)i * w + a->kv_lora, sizeof(float) * a->rope);
        rope_apply(rope, pe, p0 + i);
    }
    kv->len[layer] = p0 + m;
}

/* Attention of head h for one query row at position p (sees cache rows 0..p),
 * with fixed-order loops: the result depends only on q and the cache, so a
 * prefill row, a decode row and a verify row agree to the bit.
 * work: kv_lora (q_abs) + (p + 1) (scores) + kv_lora (latent output) floats. */
static void mla_head_row(const exec_t *ex, const mla_t *a, const kv_cache_t *kv, int layer, int h, const float *qi,
                         int p, float *out, float *work) {
    int L = a->kv_lora, visible = p + 1;
    const float *lat = kv->latent[layer], *pe = kv->pe[layer];
    wview_t w_uk = wview_rows(&a->kv_b.w, h * (a->nope + a->v_dim), a->nope);          /* [nope, L] */
    wview_t w_uv = wview_rows(&a->kv_b.w, h * (a->nope + a->v_dim) + a->nope, a->v_dim); /* [v, L] */
    wview_t cache = {.dtype = DTYPE_F32, .out = visible, .in = L, .data = lat};
    float *q_abs = work, *scores = work + L, *o_lat = scores + visible;
    matvec_t(ex, &w_uk, qi, q_abs);                                   /* q_abs[L] = q_nope W_uk */
    matmul(ex, &cache, q_abs, scores, 1);                             /* q_abs . c_kv[t] */
    for (int t = 0; t < visible; t++) {
        const float *pt = pe + (size_t)t * a->rope;
        float s = 0.0f;
        for (int r = 0; r < a->rope; r++) s += qi[a->nope + r] * pt[r];
        scores[t] = (scores[t] + s) * a->softmax_scale;
    }
    softmax_row(scores, visible);
    for (int c = 0; c < L; c++) o_lat[c] = 0.0f;
    for (int t = 0; t < visible; t++) axpy(o_lat, scores[t], lat + (size_t)t * L, L);
    matmul(ex, &w_uv, o_lat, out, 1);                                 /* W_uv o_lat */
}

static int mla_check_room(const mla_seq_t *seqs, int n_seqs, int layer, const rope_t *rope, spex_err_t *err) {
    for (int s = 0; s < n_seqs; s++) {
        int need = seqs[s].kv->len[layer] + seqs[s].n;
        if (need > seqs[s].kv->capacity)
            return spex_fail(err, "sequence %d needs %d tokens of KV cache, capacity is %d", s, need,
                             seqs[s].kv->capacity);
        if (need > rope->max_pos)
            return spex_fail(err, "sequence %d reaches position %d, beyond max_position_embeddings %d", s, need,
                             rope->max_pos);
    }
    return 0;
}

/* The heads of every row, as pool tasks: task = (row, head). */
typedef struct heads_ctx {
    const exec_t *ex;
    const mla_t *a;
    int layer, n, H;
    const int *seq_of, *pos_of;      /* [n] */
    const mla_seq_t *seqs;
    const float *q;                  /* [n, H*qk] */
    float *att;                      /* [n, H*v] */
    int max_T;
} heads_ctx_t;

static void heads_task(void *vctx, int task, int thread) {
    const heads_ctx_t *c = vctx;
    const mla_t *a = c->a;
    int row = task / c->H, h = task % c->H, qk = a->nope + a->rope;
    exec_t ex = exec_serial(c->ex, thread);
    float *work = threadpool_scratch(c->ex->pool, thread, 2 * (size_t)a->kv_lora + (size_t)c->max_T);
    mla_head_row(&ex, a, c->seqs[c->seq_of[row]].kv, c->layer, h, c->q + (size_t)row * c->H * qk + h * qk,
                 c->pos_of[row], c->att + (size_t)row * c->H * a->v_dim + h * a->v_dim, work);
}

int mla_forward(const exec_t *ex, const mla_t *a, const rope_t *rope, int layer, const mla_seq_t *seqs, int n_seqs,
                const float *x, float *out, arena_t *work, spex_err_t *err) {
    if (mla_check_room(seqs, n_seqs, layer, rope, err)) return -1;
    int n = 0, max_T = 0;
    for (int s = 0; s < n_seqs; s++) {
        n += seqs[s].n;
        int T = seqs[s].kv->len[layer] + seqs[s].n;
        if (T > max_T) max_T = T;
    }
    int H = a->n_heads, qk = a->nope + a->rope, L = a->kv_lora;
    size_t q_sz = (size_t)n * H * qk, kva_sz = (size_t)n * (L + a->rope), att_sz = (size_t)n * H * a->v_dim;
    size_t scratch_sz = (size_t)n * (a->q_lora > 0 ? a->q_lora : 1);
    float *buf = arena_floats(work, q_sz + kva_sz + att_sz + scratch_sz + 2 * (size_t)n);
    if (!buf) return spex_fail(err, "attention: out of memory for %d rows", n);
    float *q = buf, *kva = q + q_sz, *att = kva + kva_sz, *scratch = att + att_sz;
    int *seq_of = (int *)(scratch + scratch_sz), *pos_of = seq_of + n;

    mla_query(ex, a, x, q, n, scratch);                   /* q[n, H*qk] */
    linear_apply(ex, &a->kv_a, x, kva, n);                /* kva[n, L + rope] */
    int row = 0;
    for (int s = 0; s < n_seqs; s++) {
        int m = seqs[s].n, p0 = seqs[s].kv->len[layer];
        for (int i = 0; i < m; i++) {
            for (int h = 0; h < H; h++) rope_apply(rope, q + (size_t)(row + i) * H * qk + h * qk + a->nope, p0 + i);
            seq_of[row + i] = s;
            pos_of[row + i] = p0 + i;
        }
        mla_append(a, rope, seqs[s].kv, layer, kva + (size_t)row * (L + a->rope), m);
        row += m;
    }
    heads_ctx_t c = {ex, a, layer, n, H, seq_of, pos_of, seqs, q, att, max_T};
    int threads = ex->thread < 0 ? threadpool_size(ex->pool) : 1;
    if (threadpool_reserve(ex->pool, 2 * (size_t)L + (size_t)max_T, err)) return -1;
    if (threads > 1 && (size_t)n * H * (size_t)max_T * L >= (1u << 16)) threadpool_run(ex->pool, heads_task, &c, n * H);
    else
        for (int t = 0; t < n * H; t++) heads_task(&c, t, ex->thread >= 0 ? ex->thread : 0);
    linear_apply(ex, &a->o_proj, att, out, n);            /* out[n, hidden] */
    return 0;
}
