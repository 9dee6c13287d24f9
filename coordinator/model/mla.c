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
        float *lat = kv->rows[layer] + (size_t)(p0 + i) * kv->width;
        float *pe = lat + a->kv_lora;
        rmsnorm(lat, kva + (size_t)i * w, a->kv_norm, 1, a->kv_lora, a->eps);
        memcpy(pe, kva + (size_t)i * w + a->kv_lora, sizeof(float) * a->rope);
        rope_apply(rope, pe, p0 + i);
    }
    kv->len[layer] = p0 + m;
}

/* Rows of one sequence that one task attends with one head: up to
 * MM_TILE_ROWS consecutive rows, so the latent cache and the head's W_uk/W_uv
 * are read once for all of them (a verify step or a prefill chunk). */
typedef struct head_rows {
    const kv_cache_t *kv;
    const float *q;      /* row r's query: q + r * ldq, [nope | rope] of this head */
    float *out;          /* row r's output: out + r * ldo, [v_dim] */
    int ldq, ldo, m, p0; /* rows, position of the first */
} head_rows_t;

/* Attention of head h for m rows at positions p0.. (row r sees cache rows
 * 0..p0+r), with fixed-order kernels: every row gets exactly the operations
 * it would get alone, so a prefill row, a decode row and a verify row agree
 * to the bit. A score is one product of [q_nope W_uk | q_pe] with the cache
 * row [c_kv | k_pe]; the latent output is the probabilities times c_kv.
 * work: m * (2 width + p0 + m) floats. */
static void mla_head_rows(const exec_t *ex, const mla_t *a, int layer, int h, const head_rows_t *hr, float *work) {
    int L = a->kv_lora, W = hr->kv->width, m = hr->m, T = hr->p0 + m;
    const float *rows = hr->kv->rows[layer];
    wview_t w_uk = wview_rows(&a->kv_b.w, h * (a->nope + a->v_dim), a->nope);          /* [nope, L] */
    wview_t w_uv = wview_rows(&a->kv_b.w, h * (a->nope + a->v_dim) + a->nope, a->v_dim); /* [v, L] */
    float *q_cat = work, *scores = q_cat + (size_t)m * W, *o_lat = scores + (size_t)m * T;   /* [m,W] [m,T] [m,L] */
    matvec_t_rows(ex, &w_uk, hr->q, hr->ldq, NULL, q_cat, W, m, L);     /* q_nope W_uk, every row */
    for (int r = 0; r < m; r++)                                          /* q_pe */
        memcpy(q_cat + (size_t)r * W + L, hr->q + (size_t)r * hr->ldq + a->nope, sizeof(float) * (size_t)a->rope);
    wview_t cache = {.dtype = DTYPE_F32, .out = T, .in = W, .data = rows};
    matmul(ex, &cache, q_cat, scores, m);               /* [m, T]; row r uses t <= p0 + r */
    int visible[MM_TILE_ROWS];
    for (int r = 0; r < m; r++) {
        float *sr = scores + (size_t)r * T;
        visible[r] = hr->p0 + r + 1;
        for (int t = 0; t < visible[r]; t++) sr[t] *= a->softmax_scale;
        softmax_row(sr, visible[r]);
    }
    matvec_t_rows(ex, &cache, scores, T, visible, o_lat, L, m, L);      /* sum_t p_t c_kv[t], t < visible */
    matmul_ld(ex, &w_uv, o_lat, L, hr->out, hr->ldo, m); /* W_uv o_lat */
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

/* The heads of every row, as pool tasks: task = (chunk of <= MM_TILE_ROWS
 * rows of one sequence, head). */
typedef struct heads_ctx {
    const exec_t *ex;
    const mla_t *a;
    int layer, H, n_chunks;
    const int *chunk_row, *chunk_seq;   /* [n_chunks] first row, its sequence */
    const int *seq_row;                 /* [n_seqs] first row of each sequence */
    const mla_seq_t *seqs;
    const float *q;                     /* [n, H*qk] */
    float *att;                         /* [n, H*v] */
} heads_ctx_t;

static size_t heads_work(const mla_t *a, int max_T) {
    return (size_t)MM_TILE_ROWS * (2 * ((size_t)a->kv_lora + (size_t)a->rope) + (size_t)max_T);
}

static void heads_task(void *vctx, int task, int thread) {
    const heads_ctx_t *c = vctx;
    const mla_t *a = c->a;
    int chunk = task / c->H, h = task % c->H, qk = a->nope + a->rope;
    int row = c->chunk_row[chunk], s = c->chunk_seq[chunk];
    const mla_seq_t *sq = &c->seqs[s];
    int first = row - c->seq_row[s], m = sq->n - first < MM_TILE_ROWS ? sq->n - first : MM_TILE_ROWS;
    int p0 = sq->kv->len[c->layer] - sq->n + first;     /* the rows are in the cache already */
    head_rows_t hr = {sq->kv, c->q + (size_t)row * c->H * qk + h * qk, c->att + (size_t)row * c->H * a->v_dim + h * a->v_dim,
                      c->H * qk, c->H * a->v_dim, m, p0};
    exec_t ex = exec_serial(c->ex, thread);
    mla_head_rows(&ex, a, c->layer, h, &hr, threadpool_scratch(c->ex->pool, thread, heads_work(a, p0 + m)));
}

int mla_append_rows(const exec_t *ex, const mla_t *a, const rope_t *rope, int layer, const mla_seq_t *seqs,
                    int n_seqs, const float *x, arena_t *work, spex_err_t *err) {
    if (mla_check_room(seqs, n_seqs, layer, rope, err)) return -1;
    int n = 0, w = a->kv_lora + a->rope;
    for (int s = 0; s < n_seqs; s++) n += seqs[s].n;
    float *kva = arena_floats(work, (size_t)(n > 0 ? n : 1) * w);   /* mla_forward reuses `work` after */
    if (!kva) return spex_fail(err, "attention: out of memory for %d rows", n);
    linear_apply(ex, &a->kv_a, x, kva, n);                /* kva[n, L + rope] */
    for (int s = 0, row = 0; s < n_seqs; row += seqs[s].n, s++)
        mla_append(a, rope, seqs[s].kv, layer, kva + (size_t)row * w, seqs[s].n);
    return 0;
}

int mla_forward(const exec_t *ex, const mla_t *a, const rope_t *rope, int layer, const mla_seq_t *seqs, int n_seqs,
                const float *x, float *out, arena_t *work, spex_err_t *err) {
    if (mla_append_rows(ex, a, rope, layer, seqs, n_seqs, x, work, err)) return -1;   /* the rows' cache entries */
    int n = 0, max_T = 0;
    for (int s = 0; s < n_seqs; s++) {
        n += seqs[s].n;
        if (seqs[s].kv->len[layer] > max_T) max_T = seqs[s].kv->len[layer];
    }
    int H = a->n_heads, qk = a->nope + a->rope, L = a->kv_lora;
    size_t q_sz = (size_t)n * H * qk, att_sz = (size_t)n * H * a->v_dim;
    size_t scratch_sz = (size_t)n * (a->q_lora > 0 ? a->q_lora : 1);
    float *buf = arena_floats(work, q_sz + att_sz + scratch_sz + 2 * (size_t)n + (size_t)n_seqs);   /* reuses kva's */
    if (!buf) return spex_fail(err, "attention: out of memory for %d rows", n);
    float *q = buf, *att = q + q_sz, *scratch = att + att_sz;
    int *chunk_row = (int *)(scratch + scratch_sz), *chunk_seq = chunk_row + n, *seq_row = chunk_seq + n;

    mla_query(ex, a, x, q, n, scratch);                   /* q[n, H*qk] */
    int row = 0, n_chunks = 0;
    for (int s = 0; s < n_seqs; s++) {
        int m = seqs[s].n, p0 = seqs[s].kv->len[layer] - m;
        for (int i = 0; i < m; i++)
            for (int h = 0; h < H; h++) rope_apply(rope, q + (size_t)(row + i) * H * qk + h * qk + a->nope, p0 + i);
        for (int i = 0; i < m; i += MM_TILE_ROWS) chunk_row[n_chunks] = row + i, chunk_seq[n_chunks++] = s;
        seq_row[s] = row;
        row += m;
    }
    heads_ctx_t c = {ex, a, layer, H, n_chunks, chunk_row, chunk_seq, seq_row, seqs, q, att};
    int threads = ex->thread < 0 ? threadpool_size(ex->pool) : 1;
    if (threadpool_reserve(ex->pool, heads_work(a, max_T), err)) return -1;
    if (threads > 1 && (size_t)n * H * (size_t)max_T * L >= (1u << 16)) threadpool_run(ex->pool, heads_task, &c, n_chunks * H);
    else
        for (int t = 0; t < n_chunks * H; t++) heads_task(&c, t, ex->thread >= 0 ? ex->thread : 0);
    linear_apply(ex, &a->o_proj, att, out, n);            /* out[n, hidden] */
    return 0;
}
